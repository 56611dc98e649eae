import { setFlagsFromString } from 'node:v8';

/** V8's heap growing factor for `hisp start`: the old generation may grow to 3× what survives a full GC. */
export const HEAP_GROWING_PERCENT = 200;

/**
 * Gives the gateway's old generation room to grow before V8 starts a full (mark-compact) GC.
 *
 * Why: V8 sets the next full-GC limit at "live size × a growing factor" that it lowers when GCs are
 * fast, and starts marking as soon as the room left under that limit is smaller than the young
 * generation (Heap::IncrementalMarkingLimitReached). The gateway keeps ≈ 20 MB alive (code and
 * modules) while its young generation grows to 32 MB under load, so the room (16-23 MB) was often
 * below it: V8 then ran a full GC every 60-90 ms, background marking took a third of the gateway's
 * CPU, and such a process relayed ≈ 20 % fewer 100 KB messages than one that escaped it (measured
 * with --trace-gc on the sending hop: 30-50 full GCs per 1,000 messages against 2). With a factor
 * of 3 the room stays above the young generation; the cost is up to twice the live heap more
 * between full GCs (≈ 40 MB for the gateway's ≈ 20 MB).
 *
 * `--heap-growing-percent` is read each time V8 computes the limit, so it takes effect when set at
 * start. A flag given on the command line or in NODE_OPTIONS wins.
 */
export function tuneHeapForThroughput(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)].some((a) => /^--heap[-_]growing[-_]percent\b/.test(a));
  if (given) return false;
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  return true;
}

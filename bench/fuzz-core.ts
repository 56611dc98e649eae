import { isHispError } from '../gateway/core/errors.js';
import { applyMutation, NASTY_BER, type Mutation } from '../test/helpers/mutations.js';

/**
 * The loop of `npm run fuzz` (bench/fuzz.ts): inputs made from a seed and their number alone, so
 * that any one of them can be made again (`--replay TARGET:INDEX`), fed to a parser of network bytes;
 * each must end in a result or a HispError (a clean refusal). Anything else thrown is a failure.
 */
export type Outcome = 'ok' | 'typed';

/** A parser under fuzz: makes input `index` and feeds it; throws only what it was given to refuse with. */
export interface FuzzRunner {
  /** Input number `rng`'s index, from the target's seeds. */
  generate(rng: Rng): Buffer;
  /** Feeds one input. A HispError thrown means 'typed'; anything else thrown is a failure. */
  run(input: Buffer): Outcome | Promise<Outcome>;
  close?(): Promise<void>;
}

export interface FuzzTarget {
  /** What it fuzzes, for the report. */
  description: string;
  /** Default share of a 1,000,000-input run. */
  inputs: number;
  setup(): Promise<FuzzRunner>;
}

export interface Failure {
  index: number;
  error: string;
}

export interface SliceResult {
  inputs: number;
  ok: number;
  typed: number;
  failures: Failure[];
  /** All failures, the first few of which are in `failures`. */
  failureCount: number;
  /** Failures by kind: the first line of the error with numbers as #. */
  failureKinds: Record<string, number>;
}

/** sfc32, seeded from (seed, index) through splitmix32: every input has a generator of its own. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(
    seed: number,
    readonly index: number,
  ) {
    let s = (seed ^ Math.imul(index, 0x9e3779b9)) >>> 0;
    const split = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = split();
    this.b = split();
    this.c = split();
    this.d = split();
  }

  /** A uint32. */
  next(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : this.next() % n;
  }

  chance(percent: number): boolean {
    return this.int(100) < percent;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.next() & 0xff;
    return out;
  }
}

/** One random edit (the kinds of test/helpers/mutations.ts), positions anywhere in the input. */
export function randomMutation(rng: Rng, nasty: readonly Uint8Array[] = NASTY_BER): Mutation {
  switch (rng.int(12)) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:
      return { kind: 'flip', pos: rng.next(), bit: rng.int(8) };
    case 6:
    case 7:
      return { kind: 'set', pos: rng.next(), value: rng.pick([0x00, 0x7f, 0x80, 0xff, rng.int(256)]) };
    case 8:
      return { kind: 'truncate', len: rng.next() };
    case 9:
    case 10:
      return { kind: 'insert', pos: rng.next(), bytes: rng.chance(50) ? rng.pick(nasty) : rng.bytes(1 + rng.int(16)) };
    default:
      return { kind: 'delete', pos: rng.next(), len: 1 + rng.int(64) };
  }
}

/**
 * An input from `seeds`: mostly 1–4 edits of one seed; sometimes two seeds spliced, a stretch
 * repeated, or random bytes.
 */
export function mutateSeeds(rng: Rng, seeds: readonly Buffer[], nasty: readonly Uint8Array[] = NASTY_BER, maxRandom = 512): Buffer {
  const roll = rng.int(100);
  if (roll < 6 || seeds.length === 0) return rng.bytes(rng.int(maxRandom));
  let b = rng.pick(seeds);
  if (roll < 12) {
    const other = rng.pick(seeds);
    const at = rng.int(b.length + 1);
    const from = rng.int(other.length + 1);
    b = Buffer.concat([b.subarray(0, at), other.subarray(from, from + 1 + rng.int(256))]);
  } else if (roll < 16 && b.length > 0) {
    const at = rng.int(b.length);
    const piece = b.subarray(at, at + 1 + rng.int(32));
    b = Buffer.concat([b.subarray(0, at), ...Array<Buffer>(2 + rng.int(64)).fill(piece), b.subarray(at)]);
  }
  const edits = 1 + rng.int(4);
  for (let i = 0; i < edits; i++) b = applyMutation(b, randomMutation(rng, nasty));
  return b;
}

const MAX_FAILURES_KEPT = 20;

/**
 * Runs inputs [from, from + count) of `runner`; `progress(i, typed)` is called before input
 * `from + i` (the watchdog of bench/fuzz.ts reads it to tell a hang from slow work, and keeps the
 * typed count of a slice whose process dies).
 */
export async function runSlice(
  runner: FuzzRunner,
  seed: number,
  from: number,
  count: number,
  progress: (done: number, typed: number) => void = () => undefined,
): Promise<SliceResult> {
  const r: SliceResult = { inputs: 0, ok: 0, typed: 0, failures: [], failureCount: 0, failureKinds: {} };
  for (let i = 0; i < count; i++) {
    progress(i, r.typed);
    const index = from + i;
    const outcome = await feed(runner, runner.generate(new Rng(seed, index)));
    r.inputs++;
    if (outcome === 'ok') r.ok++;
    else if (outcome === 'typed') r.typed++;
    else {
      r.failureCount++;
      const kind = outcome.error.split('\n')[0]!.replace(/\d+/g, '#').slice(0, 300);
      r.failureKinds[kind] = (r.failureKinds[kind] ?? 0) + 1;
      if (r.failures.length < MAX_FAILURES_KEPT) r.failures.push({ index, error: outcome.error });
    }
  }
  progress(count, r.typed);
  return r;
}

/** One input: its outcome, or the failure (anything thrown that is not a HispError). */
export async function feed(runner: FuzzRunner, input: Buffer): Promise<Outcome | { error: string }> {
  try {
    return await runner.run(input);
  } catch (err) {
    if (isHispError(err)) return 'typed';
    const e = err as { name?: string; message?: string; stack?: string };
    return { error: `${e.name ?? typeof err}: ${e.message ?? String(err)}${e.stack ? `\n${e.stack.split('\n').slice(1, 4).join('\n')}` : ''}` };
  }
}

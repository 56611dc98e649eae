import { parentPort, workerData } from 'node:worker_threads';
import { runSlice } from './fuzz-core.js';
import { FUZZ_TARGETS, SELF_TEST_TARGET } from './fuzz-targets.js';

/**
 * One slice of one target of `npm run fuzz`, in a worker thread so that bench/fuzz.ts can watch it:
 * progress[0] is the number of inputs done (before each input), progress[1] becomes 1 once the
 * target is set up, progress[2] counts the typed errors so far; the result is posted when the slice ends.
 */
export interface FuzzWorkerData {
  target: string;
  seed: number;
  from: number;
  count: number;
  progress: SharedArrayBuffer;
}

const data = workerData as FuzzWorkerData;
const progress = new Int32Array(data.progress);
const target = data.target === 'self-test' ? SELF_TEST_TARGET : FUZZ_TARGETS[data.target];
if (target === undefined) throw new Error(`no fuzz target ${data.target}`);
const runner = await target.setup();
Atomics.store(progress, 1, 1);
const result = await runSlice(runner, data.seed, data.from, data.count, (done, typed) => {
  Atomics.store(progress, 0, done);
  Atomics.store(progress, 2, typed);
});
await runner.close?.();
parentPort!.postMessage(result);

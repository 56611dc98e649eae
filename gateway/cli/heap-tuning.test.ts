import { describe, expect, it } from 'vitest';
import { tuneHeapForThroughput } from './heap-tuning.js';

// The effect (far fewer full GCs under the sending hop's load) is measured by `npm run bench` with
// E2E_NODE_FLAGS=--trace-gc (docs/gateway.md, Speed); a small synthetic heap does not reproduce the
// gateway's, so only the decision is tested here.
describe('tuneHeapForThroughput (hisp start)', () => {
  it('leaves a heap growing factor given on the command line or in NODE_OPTIONS alone', () => {
    expect(tuneHeapForThroughput(['--heap-growing-percent=50'], '')).toBe(false);
    expect(tuneHeapForThroughput([], '--max-old-space-size=512 --heap_growing_percent=80')).toBe(false);
  });

  it('sets it when nothing else does', () => {
    expect(tuneHeapForThroughput(['--enable-source-maps'], '--max-old-space-size=512')).toBe(true);
  });
});

import { describe, expect, it } from 'vitest';
import { startedByNpm, watchParent } from './parent-watch.js';

describe('parent-watch', () => {
  it('calls back once, when the parent pid changes (the parent exited and the process was re-parented)', async () => {
    let parent = 4242;
    let calls = 0;
    watchParent(() => calls++, { intervalMs: 5, ppid: () => parent });
    await new Promise((r) => setTimeout(r, 30));
    expect(calls).toBe(0);
    parent = 1;
    const deadline = Date.now() + 5000;
    while (calls === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 30));
    expect(calls).toBe(1);
  });

  it('compares with the parent taken at start, even when it is already gone at the first look', async () => {
    let called = false;
    watchParent(() => (called = true), { initialParent: 4242, intervalMs: 5, ppid: () => 1 });
    const deadline = Date.now() + 5000;
    while (!called && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(called).toBe(true);
  });

  it('watches only under npm (npx, npm exec, npm run set npm_lifecycle_event)', () => {
    expect(startedByNpm({ npm_lifecycle_event: 'npx' })).toBe(true);
    expect(startedByNpm({ npm_lifecycle_event: 'start' })).toBe(true);
    expect(startedByNpm({})).toBe(false);
    expect(startedByNpm({ npm_lifecycle_event: '' })).toBe(false);
  });
});

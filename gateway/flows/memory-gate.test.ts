import { describe, expect, it } from 'vitest';
import { MemoryGate } from './memory-gate.js';

const MiB = 1024 * 1024;

describe('MemoryGate: large messages held in memory at once (issue 14, item 6)', () => {
  it('lets small messages through at once and large ones in while they fit; the first always gets in', async () => {
    const gate = new MemoryGate(64 * MiB, MiB);
    const small = await gate.enter(MiB);
    expect(gate.inUse).toBe(0);
    small();
    const huge = await gate.enter(200 * MiB); // alone: in, however large
    expect(gate.inUse).toBe(200 * MiB);
    let entered = false;
    const next = gate.enter(45 * MiB).then((leave) => {
      entered = true;
      return leave;
    });
    await Promise.resolve();
    expect(entered).toBe(false);
    huge();
    const leave = await next;
    expect(entered).toBe(true);
    expect(gate.inUse).toBe(45 * MiB);
    leave();
    leave(); // twice is once
    expect(gate.inUse).toBe(0);
  });

  it('serves waiters in order: ten 45 MB messages with a 64 MiB budget pass one at a time', async () => {
    const gate = new MemoryGate(64 * MiB, MiB);
    let inside = 0;
    let most = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const leave = await gate.enter(45 * MiB);
        inside++;
        most = Math.max(most, inside);
        order.push(i);
        await new Promise((r) => setImmediate(r));
        inside--;
        leave();
      }),
    );
    expect(most).toBe(1);
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(gate.inUse).toBe(0);
  });
});

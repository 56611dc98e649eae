import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type * as DirectorySyncModule from './directory-sync.js';

// The spool folder's fsync fails to open it (EMFILE and the like) while `failOpen` is set.
const state = vi.hoisted(() => ({ failOpen: false }));
vi.mock('./directory-sync.js', async (importOriginal) => {
  const original = await importOriginal<typeof DirectorySyncModule>();
  return {
    ...original,
    fsyncDirectory: (dir: string): Promise<void> => {
      if (!state.failOpen) return original.fsyncDirectory(dir);
      return Promise.reject(Object.assign(new Error(`EMFILE: too many open files, open '${dir}'`), { code: 'EMFILE', syscall: 'open' }));
    },
  };
});

const { BodySpool } = await import('./body-spool.js');

let dir: string;
beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), 'hisp-spool-dir-')), 'spool');
});
afterEach(() => {
  state.failOpen = false;
  rmSync(join(dir, '..'), { recursive: true, force: true });
});

describe('BodySpool when its folder cannot be opened for its fsync', () => {
  it('refuses the appends for now (transient), closes the segments it sealed, and reclaims them later', async () => {
    // Two records fill a segment: the second append seals segment 1 and starts segment 2 in the
    // same sync round as the first.
    const s = new BodySpool(dir, { segmentBytes: 150, reclaimAgeMs: 0 });
    state.failOpen = true;
    const first = await Promise.allSettled([s.append('q1', Buffer.alloc(100, 1)), s.append('q2', Buffer.alloc(100, 2))]);
    for (const r of first) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'HISP_IO', transient: true });
    }
    state.failOpen = false;
    // Not fail-stop: the next append is accepted (and syncs the folder it could not sync before).
    const third = await s.append('q3', Buffer.alloc(100, 3));
    expect(third.segment).toBe(3);
    // No row refers to segments 1 and 2: both are removed (segment 1 used to stay open for good).
    expect(await s.reclaim(() => false, () => Promise.resolve())).toBe(2);
    expect(readdirSync(dir)).toEqual(['0000000003.spool']);
    await s.close();
  });
});

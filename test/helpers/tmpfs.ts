/**
 * A small tmpfs of its own for a test, to fill to the last byte: a real full disk (ENOSPC), which
 * SQLite reports as SQLITE_FULL "database or disk is full". Needs root with CAP_SYS_ADMIN (CI runs
 * as root); elsewhere `mountTmpfs` says why it could not, and the caller decides: with CI=true a
 * test that needs it fails instead of skipping (the guide: a missing peer never skips in CI).
 */
import { execFile } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Tmpfs {
  /** The mount point (mode 0700). */
  readonly dir: string;
  /** Fills the file system with `name` until ENOSPC; returns the bytes written. */
  fill(name?: string): number;
  /** Unmounts (lazily if busy) and removes the mount point. */
  unmount(): Promise<void>;
}

export type TmpfsResult = { ok: true; tmpfs: Tmpfs } | { ok: false; reason: string };

export async function mountTmpfs(bytes: number): Promise<TmpfsResult> {
  const dir = mkdtempSync(join(tmpdir(), 'hisp-tmpfs-'));
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0700`, 'hisp-test', dir]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const e = err as { stderr?: string; message: string };
    return { ok: false, reason: `cannot mount a tmpfs (root with CAP_SYS_ADMIN needed): ${(e.stderr ?? e.message).trim()}` };
  }
  const tmpfs: Tmpfs = {
    dir,
    fill(name = 'filler') {
      const fd = openSync(join(dir, name), 'a');
      let written = 0;
      try {
        // Pages first, then single bytes: tmpfs counts pages, but be exact whatever the file system.
        for (const size of [65_536, 4096, 1]) {
          const chunk = Buffer.alloc(size, 0x5a);
          for (;;) {
            try {
              written += writeSync(fd, chunk);
            } catch (err) {
              if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
              break;
            }
          }
        }
      } finally {
        closeSync(fd);
      }
      return written;
    },
    async unmount() {
      await run('umount', [dir]).catch(() => run('umount', ['-l', dir]));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return { ok: true, tmpfs };
}

/** True when the tests run in CI (CI=true), where nothing may skip for want of a peer. */
export const IN_CI = process.env.CI === 'true';

import { randomFillSync } from 'node:crypto';
import { readdirSync, statfsSync, statSync, unlinkSync } from 'node:fs';
import { open, rename, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** The reserve's name in the data folder. */
export const DISK_RESERVE_FILE = 'disk-reserve';
/** A reserve being written: `.disk-reserve-<pid>-<n>.tmp`, renamed over DISK_RESERVE_FILE once complete. */
const TEMP = /^\.disk-reserve-\d+-\d+\.tmp$/;
/** A temporary file older than this is the leftover of a crash (writing a reserve takes seconds at most). */
const TEMP_STALE_MS = 10 * 60_000;
const CHUNK = 1024 * 1024;
let tempCounter = 0;

/**
 * Room set aside in the data folder so that deleting works on a full disk.
 *
 * SQLite in WAL mode appends every change, a DELETE included, to the `-wal` file, and a connection
 * that finds no `-shm` file has to create it (32 KiB): on a full disk both fail with SQLITE_FULL
 * ("database or disk is full") or SQLITE_IOERR, so the very command meant to free space
 * (`hisp quarantine delete`) could not run. The gateway keeps this file, `<dataDir>/disk-reserve`,
 * at `quarantine.reserveBytes`; a deletion that hits a full disk releases it (unlinks it) and tries
 * once more, then the bodies it deleted free far more, and the reserve is written again once it
 * fits in full (at once, or by the next housekeeping).
 *
 * Why a reserve rather than removing the bodies first: a body removed before its row's DELETE is
 * durable leaves, after a crash in between, a quarantine entry without its message. With the
 * reserve the order stays the store's usual one (the row, then its body), so a crash at any point
 * leaves only what start-up already repairs: a body file no row refers to (MessageStore.sweepOrphans),
 * a missing reserve (written again at start), a half-written one (a temporary file, removed).
 *
 * The bytes are random, not zeros: a compressing file system (ZFS, btrfs) would store zeros in
 * nothing and set nothing aside. Another process (the gateway, an SMTP client's message) may take
 * the room released before the retry does: then the deletion fails as it would have without one.
 */
export class DiskReserve {
  readonly path: string;
  /** The size released by this process, to write again when `bytes` is not given. */
  private released = 0;

  /**
   * @param dir the data folder
   * @param bytes the size to keep; undefined (an operator command, which does not know the
   *   configuration): keep whatever is there, and write back only what this process released
   */
  constructor(
    readonly dir: string,
    private readonly bytes?: number,
  ) {
    this.path = join(dir, DISK_RESERVE_FILE);
  }

  /** The reserve's size now (0: none). */
  size(): number {
    try {
      return statSync(this.path).size;
    } catch {
      return 0;
    }
  }

  /**
   * The bytes really set aside: a file cut short by a crash (its size written, not all its blocks)
   * has holes, which hold no room. Where the file system reports no blocks, its size.
   */
  private allocated(): number {
    try {
      const s = statSync(this.path);
      return s.blocks > 0 ? Math.min(s.size, s.blocks * 512) : s.size;
    } catch {
      return 0;
    }
  }

  /**
   * Frees the reserve (synchronously: called when the disk is full, before a retry). Returns the
   * bytes freed, 0 when there was none.
   */
  release(): number {
    const size = this.size();
    if (size === 0) return 0;
    try {
      unlinkSync(this.path);
    } catch {
      return 0; // released by another process meanwhile
    }
    this.released = Math.max(this.released, size);
    return size;
  }

  /**
   * Bytes free for an unprivileged user on the data folder's file system (statfs f_bavail), or
   * undefined where that cannot be read.
   */
  available(): number | undefined {
    try {
      const s = statfsSync(this.dir);
      return Number(s.bavail) * Number(s.bsize);
    } catch {
      return undefined;
    }
  }

  /**
   * Writes the reserve at its size when it is missing or smaller (a temporary file, synced, then
   * renamed into place), removes it when the size is 0, and removes the temporary files of a crash.
   * Resolves true when the reserve has its size, false when it does not fit now (nothing is left
   * half-written). Never rejects for want of room; other I/O errors reject.
   */
  async ensure(): Promise<boolean> {
    this.removeStaleTemporaries();
    const want = this.bytes ?? this.released;
    const have = this.allocated();
    if (this.bytes === 0) {
      if (have > 0) await unlink(this.path).catch(() => undefined);
      return true;
    }
    if (this.bytes !== undefined && have > want) await truncate(this.path, want); // the configured size was lowered
    if (have >= want) {
      this.released = 0;
      return true;
    }
    const temp = join(this.dir, `.disk-reserve-${process.pid}-${tempCounter++}.tmp`);
    let fd;
    try {
      fd = await open(temp, 'wx', 0o600);
    } catch (err) {
      if (isOutOfSpace(err)) return false; // not even an inode to spare
      throw err;
    }
    try {
      const chunk = randomFillSync(Buffer.allocUnsafe(Math.min(CHUNK, want)));
      for (let written = 0; written < want; ) {
        const { bytesWritten } = await fd.write(chunk, 0, Math.min(chunk.length, want - written));
        written += bytesWritten;
      }
      // No sync: the file system sets the blocks aside at write(2) (ENOSPC comes then, delayed
      // allocation included); a crash before they reach the disk leaves holes, seen by allocated().
      await fd.close();
      await rename(temp, this.path);
    } catch (err) {
      await fd.close().catch(() => undefined);
      await unlink(temp).catch(() => undefined);
      if (isOutOfSpace(err)) return false;
      throw err;
    }
    this.released = 0;
    return true;
  }

  private removeStaleTemporaries(): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (!TEMP.test(name)) continue;
      const path = join(this.dir, name);
      try {
        if (Date.now() - statSync(path).mtimeMs > TEMP_STALE_MS) unlinkSync(path);
      } catch {
        // gone already
      }
    }
  }
}

/** ENOSPC or EDQUOT (a quota is a full disk for this user). */
function isOutOfSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * True when `err` (or an error it wraps, `cause`) says the disk is full: SQLITE_FULL ("database or
 * disk is full"), ENOSPC, EDQUOT. A HispError of the store wraps SQLite's error as its cause.
 */
export function isDiskFull(err: unknown): boolean {
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT') return true;
  }
  return false;
}

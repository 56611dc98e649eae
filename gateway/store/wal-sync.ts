import { closeSync, fdatasync, fdatasyncSync, fsyncSync, openSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Makes what SQLite committed into its write-ahead log durable: `fdatasync` of the `-wal` file.
 *
 * With `PRAGMA synchronous=NORMAL` in WAL mode, SQLite writes each COMMIT into the WAL without
 * syncing it, syncs the WAL before every checkpoint and the database file after it
 * (https://sqlite.org/pragma.html#pragma_synchronous). A commit is therefore durable once the WAL
 * holding it was synced, either by us here or by a checkpoint that copied it into the database
 * file (which is then synced). Syncing here, in the thread pool, instead of inside COMMIT
 * (`synchronous=FULL`) gives the same guarantee without holding the event loop for the disk.
 *
 * fsync and fdatasync act on the file, not on the descriptor (POSIX; Linux flushes the inode's
 * dirty pages whichever descriptor wrote them), so a read-only descriptor of our own will do. It is
 * opened at the first sync, when SQLite has created the WAL, and kept: SQLite truncates and reuses
 * the WAL but does not remove it while a connection is open.
 */
export class WalSync {
  private fd: number | undefined;

  constructor(readonly walPath: string) {}

  /** Syncs in the thread pool; `done(null)` once everything written to the WAL before the call is on disk. */
  sync(done: (err: Error | null) => void): void {
    let fd: number;
    try {
      fd = this.open();
    } catch (err) {
      done(err as Error);
      return;
    }
    fdatasync(fd, (err) => done(err ?? null));
  }

  /** The same, blocking (for the synchronous `transaction()`). */
  syncNow(): void {
    fdatasyncSync(this.open());
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private open(): number {
    if (this.fd === undefined) {
      this.fd = openSync(this.walPath, 'r');
      // SQLite under FULL fsyncs the directory when it first syncs a new WAL; under NORMAL its
      // first sync is the first checkpoint. The WAL's name must be durable before the first commit
      // in it is acknowledged (POSIX: a file's fsync does not cover its directory entry).
      const dir = openSync(dirname(this.walPath), 'r');
      try {
        fsyncSync(dir);
      } finally {
        closeSync(dir);
      }
    }
    return this.fd;
  }
}

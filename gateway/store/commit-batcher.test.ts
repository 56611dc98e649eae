import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { CommitBatcher, maybeCommitted } from './commit-batcher.js';

let dir: string;
let writer: BetterSqlite3.Database;
/** A second connection: it sees only what the writer committed. */
let observer: BetterSqlite3.Database;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-batch-'));
  writer = new BetterSqlite3(join(dir, 'db.sqlite'));
  writer.pragma('journal_mode = WAL');
  writer.pragma('synchronous = FULL');
  writer.exec('CREATE TABLE t (n INTEGER NOT NULL UNIQUE)');
  observer = new BetterSqlite3(join(dir, 'db.sqlite'));
});

afterEach(() => {
  writer.close();
  observer.close();
  rmSync(dir, { recursive: true, force: true });
});

const committed = (): number => observer.prepare('SELECT count(*) FROM t').pluck().get() as number;
const insert = (n: number) => (): number => {
  writer.prepare('INSERT INTO t (n) VALUES (?)').run(n);
  return committed();
};

describe('CommitBatcher', () => {
  it('runs the operations of one event-loop turn in one transaction and resolves them after its commit', async () => {
    const batcher = new CommitBatcher(writer);
    const seenByOthers = await Promise.all([1, 2, 3, 4].map((n) => batcher.run(insert(n))));
    // Inside the batch no operation's row was visible to another connection: one transaction.
    expect(seenByOthers).toEqual([0, 0, 0, 0]);
    expect(committed()).toBe(4);
  });

  it('does not resolve before the commit: when the commit cannot happen every operation rejects (HISP_IO, transient) and nothing is written', async () => {
    const short = new BetterSqlite3(join(dir, 'db.sqlite'), { timeout: 50 });
    observer.exec('BEGIN IMMEDIATE'); // another process holds the write lock past busy_timeout
    try {
      const batcher = new CommitBatcher(short);
      const results = await Promise.allSettled([batcher.run(insert(1)), batcher.run(insert(2))]);
      for (const r of results) {
        expect(r.status).toBe('rejected');
        const err = (r as PromiseRejectedResult).reason as HispError;
        expect(err).toBeInstanceOf(HispError);
        expect(err.code).toBe('HISP_IO');
        expect(err.transient).toBe(true);
      }
    } finally {
      observer.exec('ROLLBACK');
      short.close();
    }
    expect(committed()).toBe(0);
  });

  it('an operation that throws rejects alone; the others of its batch commit', async () => {
    const batcher = new CommitBatcher(writer);
    const results = await Promise.allSettled([
      batcher.run(insert(1)),
      batcher.run(() => {
        writer.prepare('INSERT INTO t (n) VALUES (2)').run();
        throw new Error('refused');
      }),
      batcher.run(insert(1)), // UNIQUE violation: a SqliteError, reported as HISP_IO
      batcher.run(insert(3)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect(((results[1] as PromiseRejectedResult).reason as Error).message).toBe('refused');
    expect(((results[2] as PromiseRejectedResult).reason as HispError).code).toBe('HISP_IO');
    expect(observer.prepare('SELECT n FROM t ORDER BY n').pluck().all()).toEqual([1, 3]);
  });

  it('an operation that ends the whole transaction (ROLLBACK) fails the batch rather than letting the rest autocommit', async () => {
    const batcher = new CommitBatcher(writer);
    const results = await Promise.allSettled([
      batcher.run(insert(1)),
      batcher.run(() => {
        writer.exec('ROLLBACK'); // what SQLite does itself on SQLITE_FULL or an I/O error
        throw new Error('disk full');
      }),
      batcher.run(insert(3)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(((results[0] as PromiseRejectedResult).reason as HispError).code).toBe('HISP_IO');
    expect(committed()).toBe(0);
    // Nothing committed: what the rows would have referred to may be removed.
    for (const r of results) expect(maybeCommitted((r as PromiseRejectedResult).reason)).toBe(false);
  });

  it('refuses an async operation (it would commit before its awaits), rolling back what it wrote', async () => {
    const batcher = new CommitBatcher(writer);
    await expect(
      batcher.run(async () => {
        writer.prepare('INSERT INTO t (n) VALUES (1)').run();
        await Promise.resolve();
      }),
    ).rejects.toMatchObject({ code: 'HISP_USAGE' });
    expect(committed()).toBe(0);
  });

  it('commits at most maxBatch operations per transaction', async () => {
    const batcher = new CommitBatcher(writer, { maxBatch: 2 });
    const seen = await Promise.all([1, 2, 3, 4, 5].map((n) => batcher.run(insert(n))));
    expect(seen).toEqual([0, 0, 2, 2, 4]);
  });

  it('with maxDelayMs, operations arriving within the delay share the commit', async () => {
    const batcher = new CommitBatcher(writer, { maxDelayMs: 40 });
    const first = batcher.run(insert(1));
    await new Promise((r) => setTimeout(r, 10));
    const second = batcher.run(insert(2));
    expect(await Promise.all([first, second])).toEqual([0, 0]);
  });

  it('operations submitted while a batch commits go to the next one', async () => {
    const batcher = new CommitBatcher(writer);
    let nested: Promise<number> | undefined;
    const outer = batcher.run(() => {
      nested = batcher.run(insert(2));
      return insert(1)();
    });
    expect(await outer).toBe(0);
    expect(await nested).toBe(1);
  });

  it('drain() waits for everything submitted', async () => {
    const batcher = new CommitBatcher(writer, { maxDelayMs: 10_000 });
    void batcher.run(insert(1));
    expect(batcher.size).toBe(1);
    await batcher.drain();
    expect(committed()).toBe(1);
    expect(batcher.size).toBe(0);
  });

  describe('with syncLog (synchronous=NORMAL, the WAL synced off the event loop)', () => {
    /** A log sync the test ends by hand. */
    function manualSync(): { syncLog: (done: (err: Error | null) => void) => void; calls: number; end(err?: Error): void } {
      const waiting: ((err: Error | null) => void)[] = [];
      const control = {
        calls: 0,
        syncLog: (done: (err: Error | null) => void) => {
          control.calls++;
          waiting.push(done);
        },
        end(err?: Error) {
          const done = waiting.shift();
          if (!done) throw new Error('no sync in flight');
          done(err ?? null);
        },
      };
      return control;
    }
    const settled = async (p: Promise<unknown>): Promise<boolean> => {
      let done = false;
      p.then(
        () => (done = true),
        () => (done = true),
      );
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      return done;
    };

    it('settles a batch only after its log sync ended, though the commit is already visible', async () => {
      const sync = manualSync();
      const batcher = new CommitBatcher(writer, { syncLog: sync.syncLog });
      const first = batcher.run(insert(1));
      expect(await settled(first)).toBe(false);
      expect(committed()).toBe(1); // committed, not yet acknowledged
      expect(sync.calls).toBe(1);
      sync.end();
      expect(await first).toBe(0);
    });

    it('lets what arrives during a sync wait, then commit together and share the next sync', async () => {
      const sync = manualSync();
      const batcher = new CommitBatcher(writer, { syncLog: sync.syncLog });
      const first = batcher.run(insert(1));
      await settled(first);
      const later = [2, 3, 4].map((n) => batcher.run(insert(n)));
      expect(await settled(Promise.all(later))).toBe(false);
      expect(committed()).toBe(1); // not committed while the first sync is in flight
      sync.end();
      await first;
      await new Promise((r) => setImmediate(r));
      expect(committed()).toBe(4); // one transaction for the three…
      expect(sync.calls).toBe(2); // …and one sync
      sync.end();
      expect(await Promise.all(later)).toEqual([1, 1, 1]);
    });

    it('rejects the batch with a transient HISP_IO when the sync fails, then refuses everything (fail-stop)', async () => {
      const sync = manualSync();
      const failures: Error[] = [];
      const batcher = new CommitBatcher(writer, { syncLog: sync.syncLog, onSyncFailure: (e) => failures.push(e) });
      const first = batcher.run(insert(1));
      await settled(first);
      const waiting = batcher.run(insert(2)); // arrived during the sync
      sync.end(new Error('EIO: i/o error, fdatasync'));
      const err = (await first.catch((e: unknown) => e)) as HispError;
      expect(err).toBeInstanceOf(HispError);
      expect(err.code).toBe('HISP_IO');
      expect(err.transient).toBe(true);
      expect(err.message).toMatch(/could not sync its log: EIO/);
      // Nothing is acknowledged any more: a later sync may succeed without the lost pages.
      const refused = (await waiting.catch((e: unknown) => e)) as HispError;
      expect(refused.code).toBe('HISP_IO');
      expect(refused.message).toMatch(/until hisp restarts/);
      // The first batch did commit (it may be on disk after a restart); the second never ran.
      expect(maybeCommitted(err)).toBe(true);
      expect(maybeCommitted(refused)).toBe(false);
      await expect(batcher.run(insert(3))).rejects.toMatchObject({ code: 'HISP_IO' });
      expect(sync.calls).toBe(1);
      expect(failures.map((e) => e.message)).toEqual(['EIO: i/o error, fdatasync']);
      expect(committed()).toBe(1); // the failed batch is committed, nothing after it
      await batcher.drain();
    });

    it('drain() waits for the sync in flight', async () => {
      const sync = manualSync();
      const batcher = new CommitBatcher(writer, { syncLog: sync.syncLog });
      void batcher.run(insert(1));
      const drained = batcher.drain();
      expect(await settled(drained)).toBe(false);
      sync.end();
      await drained;
    });
  });
});

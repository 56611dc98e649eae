import type BetterSqlite3 from 'better-sqlite3';
import { HispError, isHispError } from '../core/errors.js';

export interface CommitBatcherOptions {
  /** Most operations in one transaction; a full batch commits at once. Default 1000. */
  maxBatch?: number;
  /**
   * How long the first operation of a batch waits for others, in ms. Default 0: the batch closes at
   * the next turn of the event loop (setImmediate). Every request that arrives while the previous
   * commit is being made durable joins the next batch: the batches grow with the load without
   * adding latency when idle.
   */
  maxDelayMs?: number;
  /**
   * Makes the committed transactions durable, off the event loop: with `synchronous=NORMAL`, an
   * `fdatasync` of the WAL in the thread pool ({@link WalSync}). The promises of a batch settle only
   * once it called back. Without it, the COMMIT itself must be durable (`synchronous=FULL`).
   */
  syncLog?: (done: (err: Error | null) => void) => void;
  /**
   * Called once when a log sync failed. The batcher then refuses every operation (fail-stop): the
   * failed batch is committed but maybe not on disk, and after an fsync error the kernel may drop
   * the dirty pages and report the next sync as a success, so nothing may be acknowledged any more
   * until the process restarts and SQLite recovers from what is really on disk.
   */
  onSyncFailure?: (err: Error) => void;
}

interface Pending {
  op: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** The errors of batches that committed but whose log sync failed (see {@link maybeCommitted}). */
const COMMITTED_UNSYNCED = new WeakSet<object>();

/**
 * True when `err` rejected an operation whose transaction did commit, though its log sync failed:
 * the rows may be on disk after a restart, so what they refer to (a body file, a spool record)
 * must not be removed. False for every other failure (the operation's own error, a failed BEGIN or
 * COMMIT, an operation refused after an earlier sync failure): nothing of it was committed.
 */
export function maybeCommitted(err: unknown): boolean {
  return typeof err === 'object' && err !== null && COMMITTED_UNSYNCED.has(err);
}

/** Settles a committed batch once its log sync ended (`null`: durable). */
type Settle = (syncError: Error | null) => void;

/**
 * Group commit for synchronous SQL operations: the operations submitted close together run in one
 * IMMEDIATE transaction, each in its own savepoint, and every promise settles only after that
 * transaction is durable: after the COMMIT returned (`synchronous=FULL`), or after the log sync
 * that followed it (`syncLog`). Many SMTP sessions thus share one fsync and none is answered 250
 * before its own data is durable (issue 5: "group commits are fine, a 250 before the commit is not").
 *
 * With `syncLog`, one sync is in flight at a time: the operations that arrive meanwhile wait, then
 * commit together and share the next one, so the event loop goes on serving SMTP sessions while
 * the disk works instead of blocking in COMMIT for the whole fsync.
 */
export class CommitBatcher {
  private readonly maxBatch: number;
  private readonly maxDelayMs: number;
  private readonly syncLog: CommitBatcherOptions['syncLog'];
  private readonly onSyncFailure: CommitBatcherOptions['onSyncFailure'];
  private pending: Pending[] = [];
  /** Committed batches waiting for a log sync to start. */
  private committed: Settle[] = [];
  private syncing = false;
  /** Set when a log sync failed: every operation is refused from then on. */
  private syncFailure: HispError | undefined;
  private timer: { clear: () => void } | undefined;
  private readonly runAll: BetterSqlite3.Transaction<(items: readonly Pending[]) => Outcome[]>;
  private readonly inSavepoint: (op: () => unknown) => unknown;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly sqlite: BetterSqlite3.Database,
    options: CommitBatcherOptions = {},
  ) {
    this.maxBatch = Math.max(1, options.maxBatch ?? 1000);
    this.maxDelayMs = Math.max(0, options.maxDelayMs ?? 0);
    this.syncLog = options.syncLog;
    this.onSyncFailure = options.onSyncFailure;
    // better-sqlite3 runs a transaction function called inside another as a SAVEPOINT.
    this.inSavepoint = sqlite.transaction((op: () => unknown) => {
      const value = op();
      // An async op would commit before its awaits ran: refuse it (its savepoint is rolled back).
      if (value instanceof Promise) throw new HispError('HISP_USAGE', 'a batch operation must be synchronous SQL, not async');
      return value;
    });
    this.runAll = sqlite.transaction((items: readonly Pending[]) =>
      items.map((item): Outcome => {
        try {
          return { ok: true, value: this.inSavepoint(item.op) };
        } catch (error) {
          // Some errors (SQLITE_FULL, SQLITE_IOERR…) make SQLite roll back the whole transaction:
          // the next operations would then autocommit one by one. Abort the batch instead.
          if (!sqlite.inTransaction) throw error;
          return { ok: false, error };
        }
      }),
    );
  }

  /** Operations waiting for the next commit. */
  get size(): number {
    return this.pending.length;
  }

  /** Runs `op` in the next group transaction; resolves with its result once that transaction committed. */
  run<T>(op: () => T): Promise<T> {
    if (this.syncFailure) return Promise.reject(this.syncFailure);
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ op, resolve: resolve as (value: unknown) => void, reject });
      if (this.pending.length >= this.maxBatch) this.schedule(true);
      else if (this.timer === undefined) this.schedule(false);
    });
  }

  /**
   * Commits what is pending now (synchronously). The promises settle after this returns: at once,
   * or when the log sync that follows ended.
   */
  flush(): void {
    this.clearTimer();
    while (this.pending.length > 0) {
      const settle = this.commit(this.pending.splice(0, this.maxBatch));
      if (settle) this.committed.push(settle);
    }
    this.startSync();
  }

  /** Resolves once everything submitted so far has been committed and made durable (or rejected). */
  drain(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
      if (!this.syncing) this.schedule(true);
    });
  }

  private get idle(): boolean {
    return this.pending.length === 0 && this.committed.length === 0 && !this.syncing;
  }

  private schedule(now: boolean): void {
    this.clearTimer();
    if (now || this.maxDelayMs === 0) {
      const immediate = setImmediate(() => this.flushFromTimer());
      this.timer = { clear: () => clearImmediate(immediate) };
    } else {
      const timeout = setTimeout(() => this.flushFromTimer(), this.maxDelayMs);
      this.timer = { clear: () => clearTimeout(timeout) };
    }
  }

  private flushFromTimer(): void {
    this.timer = undefined;
    // The sync in flight calls flush again when it ends: what arrived meanwhile shares the next one.
    if (this.syncing) return;
    this.flush();
  }

  private clearTimer(): void {
    this.timer?.clear();
    this.timer = undefined;
  }

  /** Starts one log sync for every committed batch (or settles them at once without `syncLog`). */
  private startSync(): void {
    if (!this.syncing && this.committed.length > 0) {
      const batches = this.committed;
      this.committed = [];
      const syncLog = this.syncLog;
      if (!syncLog) {
        for (const settle of batches) settle(null);
      } else {
        this.syncing = true;
        syncLog((err) => {
          this.syncing = false;
          for (const settle of batches) settle(err);
          if (err) this.fail(err);
          if (this.pending.length > 0) this.flush();
          else this.startSync();
        });
        return;
      }
    }
    if (this.idle) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /**
   * Fail-stop after a failed sync (this log's, or another file's the commits depend on, such as the
   * body spool's): every pending and future operation is refused, and onSyncFailure is called once.
   */
  fail(err: Error): void {
    if (this.syncFailure) return;
    this.syncFailure = new HispError('HISP_IO', `a sync of the database or of the body spool failed earlier (${err.message}): nothing is accepted until hisp restarts`, {
      transient: true,
      cause: err,
    });
    for (const item of this.pending.splice(0)) item.reject(this.syncFailure);
    this.onSyncFailure?.(err);
  }

  /** Commits one batch; returns how to settle it once durable, or settles it now when the commit failed. */
  private commit(batch: Pending[]): Settle | undefined {
    let outcomes: Outcome[];
    try {
      if (!this.sqlite.open) throw new Error('the database is closed');
      outcomes = this.runAll.immediate(batch);
    } catch (err) {
      // BEGIN or COMMIT failed (SQLITE_BUSY past busy_timeout, disk full, I/O error): nothing of the
      // batch is durable, so every caller hears of it (SMTP: 451, the client retries).
      const failure = new HispError('HISP_IO', `the database could not commit: ${(err as Error).message}`, {
        transient: true,
        cause: err,
      });
      for (const item of batch) item.reject(failure);
      return undefined;
    }
    return (syncError) => {
      if (syncError) {
        // The transaction is in the log but may not be on disk: nobody may count on it (SMTP: 451,
        // the client sends again; a duplicate after a crash is better than a loss).
        const failure = new HispError('HISP_IO', `the database could not sync its log: ${syncError.message}`, {
          transient: true,
          cause: syncError,
        });
        COMMITTED_UNSYNCED.add(failure);
        for (const item of batch) item.reject(failure);
        return;
      }
      batch.forEach((item, i) => {
        const outcome = outcomes[i];
        if (outcome === undefined) item.reject(new Error('no outcome'));
        else if (outcome.ok) item.resolve(outcome.value);
        else item.reject(wrap(outcome.error));
      });
    };
  }
}

function wrap(err: unknown): unknown {
  if (isHispError(err) || !(err instanceof Error) || err.name !== 'SqliteError') return err;
  return new HispError('HISP_IO', `database error: ${err.message}`, { transient: true, cause: err });
}

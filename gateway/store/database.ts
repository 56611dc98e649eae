import { chmodSync, closeSync, constants, mkdirSync, openSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { AUDIT_HASH_FUNCTION, auditHashSql } from '../audit/audit-chain.js';
import { HispError } from '../core/errors.js';
import { CommitBatcher, type CommitBatcherOptions } from './commit-batcher.js';
import { HISP_MIGRATIONS } from './schema.js';
import { WalSync } from './wal-sync.js';

/** A raw better-sqlite3 connection, for the stores that prepare their statements on it. */
export type SqliteConnection = BetterSqlite3.Database;

/** One step of the schema; `version` counts from 1 and is written to `PRAGMA user_version`. */
export interface Migration {
  readonly version: number;
  readonly description: string;
  /** SQL run as one script, or a function for steps that need to look at data. */
  readonly up: string | ((db: SqliteConnection) => void);
}

export interface DatabaseOptions {
  /** The data folder; created (mode 0700) when missing. */
  dataDir: string;
  /** Default `hisp.sqlite`. */
  fileName?: string;
  /** How long a write waits for another process's transaction (the CLI's) before SQLITE_BUSY. Default 5000 ms. */
  busyTimeoutMs?: number;
  /** Default {@link HISP_MIGRATIONS}; tests pass their own lists. */
  migrations?: readonly Migration[];
  /** Group commit of {@link HispDatabase.batch}. */
  batch?: CommitBatcherOptions;
}

/**
 * The gateway's SQLite database `<dataDir>/hisp.sqlite`: queue, message envelopes, MDN tracking,
 * inbound de-duplication and quarantine.
 *
 * - WAL with `synchronous=NORMAL` plus our own fdatasync of the WAL ({@link WalSync}): a batch's
 *   promises settle, and the SMTP edge answers 250, only once the WAL holding it is on disk
 *   (issue 5), as with `synchronous=FULL`, but the fsync runs in the thread pool instead of holding
 *   the event loop inside COMMIT (it was ≈ 0.5 ms of the loop per relayed 100 KB message).
 *   Migrations run under FULL.
 * - `foreign_keys=ON` (per connection in SQLite), so deliveries and quarantine entries go with their
 *   message.
 * - `busy_timeout`, so the CLI (`hisp queue retry` in another process) and the gateway take turns.
 * - migrations by `PRAGMA user_version`, each in its own IMMEDIATE transaction together with the
 *   version bump, so a crash or a second process starting at the same time never half-applies one.
 */
export class HispDatabase {
  readonly sqlite: SqliteConnection;
  readonly dataDir: string;
  readonly path: string;
  private readonly batcher: CommitBatcher;
  private readonly walSync: WalSync;

  private constructor(sqlite: SqliteConnection, dataDir: string, path: string, batch: CommitBatcherOptions | undefined) {
    this.sqlite = sqlite;
    this.dataDir = dataDir;
    this.path = path;
    this.walSync = new WalSync(`${path}-wal`);
    this.batcher = new CommitBatcher(sqlite, { ...batch, syncLog: (done) => this.walSync.sync(done) });
  }

  /**
   * Opens (creating if needed) and migrates the database.
   * @example
   * const db = HispDatabase.open({ dataDir: '/var/lib/hisp' });
   * const id = await db.batch(() => store.insert(envelope, prepared));
   * await db.close();
   */
  static open(options: DatabaseOptions): HispDatabase {
    const dataDir = resolve(options.dataDir);
    const path = join(dataDir, options.fileName ?? 'hisp.sqlite');
    const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    let sqlite: SqliteConnection;
    try {
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      ownerOnly(path);
      sqlite = new BetterSqlite3(path, { timeout: busyTimeoutMs });
    } catch (err) {
      throw new HispError('HISP_IO', `cannot open the database ${path}: ${(err as Error).message}`, { cause: err, transient: true });
    }
    try {
      const mode = sqlite.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal') throw new Error(`journal_mode is ${String(mode)}, not wal`);
      sqlite.pragma('synchronous = FULL');
      sqlite.pragma('foreign_keys = ON');
      sqlite.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
      // The audit chain's hash, for the triggers that append audit entries (schema.ts migration 10):
      // on every connection, before anything can write.
      sqlite.function(AUDIT_HASH_FUNCTION, { deterministic: true, varargs: true }, auditHashSql);
      // Temporary b-trees (DISTINCT, IN (SELECT …), RETURNING: the relay's lease query has all three)
      // and statement journals in memory: with the default (a temporary file) each run of the lease
      // query set up a page cache of its own, ≈ 230 µs with nothing due against ≈ 6 µs, most of it
      // page faults (perf; LIMIT in the text both times, see LimitedStatement). What they hold here is
      // small: a few rows, or the pages one statement of a batch changes (a `queue retry` of every
      // deferred delivery touches a page per few dozen rows). Sorts spill to files of their own anyway.
      sqlite.pragma('temp_store = MEMORY');
      // Bodies up to 128 KiB ride in the WAL: after a burst, truncate it back to 64 MB at most.
      sqlite.pragma('journal_size_limit = 67108864');
      migrate(sqlite, options.migrations ?? HISP_MIGRATIONS);
      // From here on, commits are made durable by WalSync (see the class comment).
      sqlite.pragma('synchronous = NORMAL');
    } catch (err) {
      sqlite.close();
      if (err instanceof HispError) throw err;
      throw new HispError('HISP_IO', `cannot prepare the database ${path}: ${(err as Error).message}`, { cause: err, transient: true });
    }
    return new HispDatabase(sqlite, dataDir, path, options.batch);
  }

  /** `PRAGMA user_version`: the last migration applied. */
  get schemaVersion(): number {
    return Number(this.sqlite.pragma('user_version', { simple: true }));
  }

  get isOpen(): boolean {
    return this.sqlite.open;
  }

  /** Runs `fn` in one IMMEDIATE transaction (or a savepoint when already in one); durable on return. */
  transaction<T>(fn: () => T): T {
    const outermost = !this.sqlite.inTransaction;
    const value = this.sqlite.transaction(fn).immediate();
    if (outermost) this.walSync.syncNow();
    return value;
  }

  /**
   * Group commit: runs `op` (synchronous SQL) in a transaction shared with the other operations
   * submitted in the same turn of the event loop and resolves only after that transaction is on
   * disk (its COMMIT returned and the WAL was synced). An `op` that throws rejects alone (it runs in a savepoint).
   */
  batch<T>(op: () => T): Promise<T> {
    return this.batcher.run(op);
  }

  /**
   * A file the commits depend on could not be synced (the body spool): fail-stop, as after a failed
   * WAL sync (CommitBatcherOptions.onSyncFailure).
   */
  syncFailed(err: Error): void {
    this.batcher.fail(err);
  }

  /** Commits what is pending, then closes the connection. */
  async close(): Promise<void> {
    if (!this.sqlite.open) return;
    await this.batcher.drain();
    this.sqlite.close();
    this.walSync.close();
  }
}

/** The mode of the database and of the files SQLite keeps beside it. */
const FILE_MODE = 0o600;

/**
 * Makes the database file, and the WAL and shared-memory files SQLite keeps beside it, readable
 * and writable by their owner only (issue 14, item 11): they hold every queued message's envelope
 * and the quarantine's reasons. SQLite creates a new database file with 0644 minus the umask, but
 * its `-wal` and `-shm` with the mode of the database file, and sets that mode on them whatever the
 * umask (os_unix.c: findCreateFileMode, unixOpenSharedMemory, robust_open's fchmod). So the file is
 * created here first, with 0600; one made by an older hisp (0644) is tightened, with its WAL and
 * shared-memory files. Done by the store itself, not through the umask, so that it holds for any
 * program that opens the store (`hisp start` also sets umask 077 for everything else).
 */
function ownerOnly(path: string): void {
  closeSync(openSync(path, constants.O_RDWR | constants.O_CREAT, FILE_MODE));
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    let mode: number;
    try {
      mode = statSync(file).mode;
    } catch {
      continue; // not there (yet): SQLite creates it with the database file's mode
    }
    if ((mode & 0o777) !== FILE_MODE) chmodSync(file, FILE_MODE);
  }
}

/** Shorthand for {@link HispDatabase.open}. */
export function openDatabase(options: DatabaseOptions): HispDatabase {
  return HispDatabase.open(options);
}

function migrate(sqlite: SqliteConnection, migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new HispError('HISP_USAGE', `migration ${i + 1} has version ${m.version}: versions must count 1, 2, 3…`);
  });
  const latest = migrations.length;
  const current = (): number => Number(sqlite.pragma('user_version', { simple: true }));
  if (current() > latest) {
    throw new HispError('HISP_IO', `the database schema is version ${current()}, newer than this hisp knows (${latest}); upgrade hisp`, {
      details: { schemaVersion: current(), known: latest },
    });
  }
  for (const m of migrations) {
    if (current() >= m.version) continue;
    try {
      sqlite
        .transaction(() => {
          // Re-read inside the write lock: another process may have migrated meanwhile.
          if (current() >= m.version) return;
          if (typeof m.up === 'string') sqlite.exec(m.up);
          else m.up(sqlite);
          sqlite.pragma(`user_version = ${m.version}`);
        })
        .immediate();
    } catch (err) {
      throw new HispError('HISP_IO', `schema migration ${m.version} (${m.description}) failed: ${(err as Error).message}`, {
        cause: err,
        details: { schemaVersion: current(), migration: m.version },
      });
    }
  }
}

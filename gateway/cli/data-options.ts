import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { Option } from 'commander';
import { loadConfig } from '../config/load-config.js';
import { HispError, isHispError } from '../core/errors.js';
import { SqliteQueue } from '../queue/sqlite-queue.js';
import { ApiKeyStore } from '../store/api-key-store.js';
import { openDatabase, type HispDatabase } from '../store/database.js';
import { DiskReserve } from '../store/disk-reserve.js';
import { QuarantineStore } from '../store/quarantine-store.js';
import { HISP_MIGRATIONS } from '../store/schema.js';
import { TrackingStore } from '../store/tracking-store.js';
import { EXIT, ReportedFailure } from './exit-codes.js';

/** The flags every operator verb (`hisp status`, `hisp queue …`, `hisp quarantine …`) takes. */
export interface DataFlags {
  config?: string;
  dataDir?: string;
  json?: boolean;
}

/** The stores of a data folder, opened for one operator command. */
export interface OperatorStores {
  db: HispDatabase;
  queue: SqliteQueue;
  quarantine: QuarantineStore;
  tracking: TrackingStore;
  apiKeys: ApiKeyStore;
  /** The data folder's disk reserve (released when the disk is full, see openOperatorStores). */
  reserve: DiskReserve;
  /** Commits what is pending and closes the database. */
  close(): Promise<void>;
}

/** The database file of a data folder (HispDatabase's default name). */
const DATABASE_FILE = 'hisp.sqlite';

/**
 * How long a write of the CLI (`queue retry`, `queue bounce`, `quarantine delete`) waits for the
 * running gateway's transaction before giving up with SQLITE_BUSY. The gateway's group commits last
 * milliseconds; this only has to outlast a checkpoint or a burst.
 */
const BUSY_TIMEOUT_MS = 10_000;

/**
 * Below this much free room, an operator command releases the data folder's disk reserve before it
 * opens the database: a connection that finds no `-shm` file (the gateway stopped) must create one
 * (32 KiB), and a deletion must append to the WAL; on a full disk both fail (DiskReserve).
 */
const LOW_ROOM_BYTES = 1024 * 1024;

/** Adds `--config FILE`, `--data-dir DIR` (mutually exclusive) and `--json` to an operator verb. */
export function addDataOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--config <file>', "use this configuration file's dataDir (default $HISP_CONFIG; $HISP_DATA_DIR overrides dataDir)").conflicts('dataDir'),
    )
    .addOption(new Option('--data-dir <dir>', 'the data folder (default: from $HISP_CONFIG, else $HISP_DATA_DIR, else ./hisp-data)'))
    .option('--json', 'JSON on stdout (a contract: fields may be added, never renamed)');
}

/**
 * The data folder, resolved as `hisp start` does: with `--config FILE` the configuration's `dataDir`
 * (which $HISP_DATA_DIR overrides, see loadConfig); else `--data-dir`; else, with $HISP_CONFIG, that
 * configuration's; else $HISP_DATA_DIR; else ./hisp-data. An explicit `--data-dir` beats $HISP_CONFIG
 * (`hisp start` has no such case: its --data-dir is for the embedded default). Relative paths are
 * against the working directory.
 */
export function resolveDataDir(flags: DataFlags, env: NodeJS.ProcessEnv = process.env): string {
  const configFile = flags.config ?? (flags.dataDir === undefined ? env.HISP_CONFIG || undefined : undefined);
  if (configFile !== undefined) {
    try {
      return loadConfig(configFile, env).dataDir;
    } catch (err) {
      if (!isHispError(err) || err.code !== 'HISP_CONFIG_INVALID') throw err;
      // The queue is most needed when something is broken: say how to reach it anyway.
      throw new HispError(err.code, `${err.message}\n(to inspect the data folder anyway, give --data-dir DIR instead of --config)`, {
        cause: err,
        ...(err.details ? { details: err.details } : {}),
      });
    }
  }
  return resolve(flags.dataDir ?? (env.HISP_DATA_DIR || 'hisp-data'));
}

/**
 * Opens the database of an existing data folder: unlike the gateway, an operator command never
 * creates one (a mistyped --data-dir would otherwise show an empty queue). HISP_IO "no hisp data
 * folder at …" when the folder or its database is missing.
 */
export function openOperatorStores(flags: DataFlags, env: NodeJS.ProcessEnv = process.env): OperatorStores {
  const dataDir = resolveDataDir(flags, env);
  if (!isDirectory(dataDir)) {
    throw new HispError('HISP_IO', `no hisp data folder at ${dataDir} (give --data-dir DIR or --config FILE, or set HISP_DATA_DIR)`, {
      details: { dataDir },
    });
  }
  const file = join(dataDir, DATABASE_FILE);
  if (!isFile(file)) {
    throw new HispError('HISP_IO', `no hisp data folder at ${dataDir}: it has no ${DATABASE_FILE} (the gateway creates it when it first starts)`, {
      details: { dataDir },
    });
  }
  // The size is the gateway's to choose: this process only releases the file and writes back what it released.
  const reserve = new DiskReserve(dataDir);
  if ((reserve.available() ?? Number.POSITIVE_INFINITY) < LOW_ROOM_BYTES) reserve.release();
  const db = openDatabase({ dataDir, migrations: HISP_MIGRATIONS, busyTimeoutMs: BUSY_TIMEOUT_MS });
  try {
    const queue = new SqliteQueue(db);
    return {
      db,
      queue,
      quarantine: new QuarantineStore(db, queue.messages, { reserve }),
      tracking: new TrackingStore(db),
      apiKeys: new ApiKeyStore(db),
      reserve,
      close: async () => {
        await db.close();
        await queue.messages.close();
        // Written back (if released) once the connection's files are gone, when it fits.
        await reserve.ensure().catch(() => undefined);
      },
    };
  } catch (err) {
    db.sqlite.close();
    throw err;
  }
}

/**
 * Runs an operator command on the stores and closes them, whatever happens. With `--json`, a
 * failure other than a usage error is printed on stdout as `{"error":{"code","reason"}}` (exit 1)
 * instead of on stderr, so that a script always gets JSON to parse.
 */
export async function withOperatorStores<T>(flags: DataFlags, run: (stores: OperatorStores) => Promise<T>): Promise<T> {
  try {
    const stores = openOperatorStores(flags);
    try {
      return await run(stores);
    } finally {
      await stores.close();
    }
  } catch (err) {
    if (flags.json && isHispError(err) && err.code !== 'HISP_USAGE') {
      writeJson({ error: err.toJSON() });
      throw new ReportedFailure(EXIT.failed);
    }
    throw err;
  }
}

/** `--limit N`: a whole number from 1 to 100,000. */
export function parseLimit(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > 100_000) {
    throw new HispError('HISP_USAGE', `--limit must be a whole number from 1 to 100000, not ${JSON.stringify(value)}`);
  }
  return n;
}

/** One JSON document and a newline on stdout. */
export function writeJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

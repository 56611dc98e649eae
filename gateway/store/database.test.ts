import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HispDatabase, type Migration } from './database.js';
import { HISP_MIGRATIONS } from './schema.js';
import { hispError as thrown } from '../../test/helpers/hisp-error.js';

let dir: string;
const open: HispDatabase[] = [];

function openDb(options: Partial<Parameters<typeof HispDatabase.open>[0]> = {}): HispDatabase {
  const db = HispDatabase.open({ dataDir: dir, ...options });
  open.push(db);
  return db;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-db-'));
});

afterEach(async () => {
  for (const db of open.splice(0)) await db.close();
  rmSync(dir, { recursive: true, force: true });
});

const tableV1: Migration = { version: 1, description: 'notes', up: 'CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)' };
const columnV2: Migration = {
  version: 2,
  description: 'notes.author',
  up: (db) => {
    db.exec("ALTER TABLE notes ADD COLUMN author TEXT NOT NULL DEFAULT 'unknown'");
    db.prepare("UPDATE notes SET author = 'migrated'").run();
  },
};

describe('HispDatabase.open', () => {
  it('creates <dataDir>/hisp.sqlite in WAL mode with synchronous=NORMAL (the WAL synced by WalSync), foreign keys, a busy timeout and temporary b-trees in memory', () => {
    const db = openDb({ dataDir: join(dir, 'nested', 'data'), busyTimeoutMs: 1234 });
    expect(db.path).toBe(join(dir, 'nested', 'data', 'hisp.sqlite'));
    expect(db.sqlite.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.sqlite.pragma('synchronous', { simple: true })).toBe(1); // NORMAL: batch() syncs the WAL itself
    expect(db.sqlite.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(db.sqlite.pragma('busy_timeout', { simple: true })).toBe(1234);
    expect(db.sqlite.pragma('temp_store', { simple: true })).toBe(2); // MEMORY (database.ts says why)
  });

  it('applies every hisp migration to a new database and records the version', () => {
    const db = openDb();
    expect(db.schemaVersion).toBe(HISP_MIGRATIONS.length);
    const tables = db.sqlite.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all();
    expect(tables.map((t) => t.name)).toEqual(['api_keys', 'audit_log', 'deliveries', 'events', 'fhir_tasks', 'idempotency_keys', 'inbound_seen', 'mailbox_messages', 'mdn_sent', 'mdn_tracking', 'messages', 'quarantine', 'quarantine_drops', 'quarantine_usage', 'sqlite_sequence', 'transmissions', 'transmit_authorizations', 'transmit_records', 'webhooks']);
  });

  it('reopening an up-to-date database runs no migration and keeps the data', async () => {
    const first = openDb({ migrations: [tableV1] });
    first.sqlite.prepare("INSERT INTO notes (text) VALUES ('kept')").run();
    await first.close();
    let ran = 0;
    const counting: Migration = { ...tableV1, up: () => void ran++ };
    const again = openDb({ migrations: [counting] });
    expect(ran).toBe(0);
    expect(again.sqlite.prepare('SELECT text FROM notes').pluck().all()).toEqual(['kept']);
  });

  it('upgrades an older database by the missing migrations only, in order', async () => {
    const v1 = openDb({ migrations: [tableV1] });
    v1.sqlite.prepare("INSERT INTO notes (text) VALUES ('old')").run();
    expect(v1.schemaVersion).toBe(1);
    await v1.close();
    const v2 = openDb({ migrations: [tableV1, columnV2] });
    expect(v2.schemaVersion).toBe(2);
    expect(v2.sqlite.prepare('SELECT text, author FROM notes').all()).toEqual([{ text: 'old', author: 'migrated' }]);
  });

  it('a failing migration is rolled back whole and the version stays', async () => {
    const v1 = openDb({ migrations: [tableV1] });
    await v1.close();
    const broken: Migration = { version: 2, description: 'broken', up: 'CREATE TABLE half (x); INSERT INTO nowhere VALUES (1);' };
    const err = thrown(() => HispDatabase.open({ dataDir: dir, migrations: [tableV1, broken] }));
    expect(err.code).toBe('HISP_IO');
    expect(err.message).toContain('migration 2 (broken)');
    const raw = new BetterSqlite3(join(dir, 'hisp.sqlite'));
    try {
      expect(raw.pragma('user_version', { simple: true })).toBe(1);
      expect(raw.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'half'").pluck().get()).toBe(0);
    } finally {
      raw.close();
    }
  });

  it('refuses a database written by a newer hisp (schema version above the known migrations)', async () => {
    const v2 = openDb({ migrations: [tableV1, columnV2] });
    await v2.close();
    const err = thrown(() => HispDatabase.open({ dataDir: dir, migrations: [tableV1] }));
    expect(err.code).toBe('HISP_IO');
    expect(err.message).toMatch(/newer than this hisp knows/);
  });

  it('refuses a migration list whose versions do not count 1, 2, 3', () => {
    const err = thrown(() => HispDatabase.open({ dataDir: dir, migrations: [{ ...columnV2 }] }));
    expect(err.code).toBe('HISP_USAGE');
  });

  it('transaction() rolls everything back when its function throws', () => {
    const db = openDb({ migrations: [tableV1] });
    expect(() =>
      db.transaction(() => {
        db.sqlite.prepare("INSERT INTO notes (text) VALUES ('gone')").run();
        throw new Error('abort');
      }),
    ).toThrow('abort');
    expect(db.sqlite.prepare('SELECT count(*) FROM notes').pluck().get()).toBe(0);
  });

  it('close() commits the operations still waiting for their group commit', async () => {
    const db = openDb({ migrations: [tableV1] });
    const pending = db.batch(() => db.sqlite.prepare("INSERT INTO notes (text) VALUES ('late')").run().changes);
    await db.close();
    await expect(pending).resolves.toBe(1);
    const again = openDb({ migrations: [tableV1] });
    expect(again.sqlite.prepare('SELECT text FROM notes').pluck().all()).toEqual(['late']);
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, type HispDatabase } from './database.js';
import { WalSync } from './wal-sync.js';

let dir: string;
let db: HispDatabase | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-walsync-'));
});

afterEach(async () => {
  await db?.close();
  db = undefined;
  rmSync(dir, { recursive: true, force: true });
});

describe('WalSync', () => {
  it("syncs the database's WAL in the thread pool and blocking", async () => {
    db = openDatabase({ dataDir: dir });
    const sync = new WalSync(`${db.path}-wal`);
    try {
      await expect(new Promise<Error | null>((resolve) => sync.sync(resolve))).resolves.toBeNull();
      expect(() => sync.syncNow()).not.toThrow();
    } finally {
      sync.close();
    }
  });

  it('reports a WAL that cannot be opened to the callback, not as a throw', async () => {
    const sync = new WalSync(join(dir, 'missing.sqlite-wal'));
    const err = await new Promise<Error | null>((resolve) => sync.sync(resolve));
    expect((err as NodeJS.ErrnoException).code).toBe('ENOENT');
    sync.close();
  });

  it('lets HispDatabase acknowledge a batch and a transaction once the WAL is synced', async () => {
    db = openDatabase({ dataDir: dir });
    const open = db;
    open.sqlite.exec('CREATE TABLE IF NOT EXISTS probe (n INTEGER)');
    await expect(open.batch(() => open.sqlite.prepare('INSERT INTO probe VALUES (1)').run().changes)).resolves.toBe(1);
    expect(open.transaction(() => open.sqlite.prepare('INSERT INTO probe VALUES (2)').run().changes)).toBe(1);
    expect(open.sqlite.prepare('SELECT count(*) FROM probe').pluck().get()).toBe(2);
  });
});

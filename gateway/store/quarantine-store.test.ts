import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { IN_CI, mountTmpfs, type TmpfsResult } from '../../test/helpers/tmpfs.js';
import { HispError } from '../core/errors.js';
import { SqliteQueue } from '../queue/sqlite-queue.js';
import { HispDatabase } from './database.js';
import { DiskReserve } from './disk-reserve.js';
import { MessageStore, type MessageEnvelope } from './message-store.js';
import { ENTRY_OVERHEAD_BYTES, QuarantineStore, type QuarantineLimits, type QuarantineLogger } from './quarantine-store.js';
import { HISP_MIGRATIONS } from './schema.js';

const DAY = 86_400_000;
const KiB = 1024;
const MiB = 1024 * KiB;

let dir: string;
let db: HispDatabase;
let clock: number;
let messages: MessageStore;
let quarantine: QuarantineStore;

/** A logger that keeps what it is told. */
function memoryLogger(): QuarantineLogger & { lines: { level: 'info' | 'warn'; msg: string; obj: Record<string, unknown> }[] } {
  const lines: { level: 'info' | 'warn'; msg: string; obj: Record<string, unknown> }[] = [];
  return {
    lines,
    info: (obj, msg) => void lines.push({ level: 'info', msg, obj: obj as Record<string, unknown> }),
    warn: (obj, msg) => void lines.push({ level: 'warn', msg, obj: obj as Record<string, unknown> }),
  };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-quarantine-'));
  db = HispDatabase.open({ dataDir: dir });
  clock = Date.UTC(2026, 0, 1);
  messages = new MessageStore(db, { now: () => clock });
  quarantine = new QuarantineStore(db, messages, { now: () => clock });
});

afterEach(async () => {
  await db.close();
  await messages.close();
  rmSync(dir, { recursive: true, force: true });
});

const inbound: MessageEnvelope = { direction: 'inbound', mailFrom: 'hisp@sender.example', recipients: ['p@phr.example'], messageId: '<q1@sender.example>' };
const raw = Buffer.from('Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAx\r\n');
/** A raw message of `size` bytes. */
const sized = (size: number, fill = 'A') => Buffer.concat([Buffer.from('Subject: x\r\n\r\n'), Buffer.alloc(size - 14, fill)]);

/** A store bounded by `limits`, on the same database and clock. */
function bounded(limits: QuarantineLimits, extra: { logger?: QuarantineLogger; reserve?: DiskReserve } = {}): QuarantineStore {
  return new QuarantineStore(db, messages, { now: () => clock, limits, ...extra });
}

describe('QuarantineStore', () => {
  it('stores a raw inbound message with its reason in one commit; show() returns both', async () => {
    const id = await quarantine.store(inbound, raw, 'HISP_SIG_INVALID', 'no signature verifies');
    const shown = await quarantine.show(id);
    expect(shown?.raw).toEqual(raw);
    expect(shown?.entry).toMatchObject({
      id,
      reasonCode: 'HISP_SIG_INVALID',
      detail: 'no signature verifies',
      quarantinedAt: new Date(clock),
      message: { queueId: id, direction: 'inbound', mailFrom: 'hisp@sender.example', recipients: ['p@phr.example'], messageId: 'q1@sender.example', size: raw.length },
    });
  });

  it('quarantines a message already stored; again, the reason is replaced', async () => {
    const stored = await messages.put(inbound, raw);
    await quarantine.quarantine(stored.queueId, 'HISP_TRUST_NO_ANCHOR', 'first');
    await quarantine.quarantine(stored.queueId, 'HISP_TRUST_REVOKED', 'second');
    expect(quarantine.get(stored.queueId)).toMatchObject({ reasonCode: 'HISP_TRUST_REVOKED', detail: 'second' });
    expect(quarantine.list()).toHaveLength(1);
    expect(quarantine.usage()).toEqual({ entries: 1, bytes: raw.length, charged: raw.length + ENTRY_OVERHEAD_BYTES });
  });

  it('refuses to quarantine a message that is not stored', async () => {
    await expect(quarantine.quarantine('nosuchid', 'HISP_SIG_INVALID', 'x')).rejects.toSatisfy(
      (err) => err instanceof HispError && err.code === 'HISP_USAGE',
    );
  });

  it('lists newest first, with a limit and paging by time', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push(await quarantine.store(inbound, raw, 'HISP_CMS_DECRYPT_FAILED', `#${i}`));
      clock += 1000;
    }
    expect(quarantine.list().map((e) => e.detail)).toEqual(['#2', '#1', '#0']);
    expect(quarantine.list({ limit: 2 }).map((e) => e.id)).toEqual([ids[2], ids[1]]);
    expect(quarantine.list({ before: new Date(clock - 2000) }).map((e) => e.detail)).toEqual(['#0']);
  });

  it('delete() removes the entry, the message and its raw file', async () => {
    const id = await quarantine.store(inbound, raw, 'HISP_SIG_INVALID', 'x');
    const path = messages.bodyPath(id);
    expect(await quarantine.delete(id)).toBe(true);
    expect(quarantine.get(id)).toBeUndefined();
    expect(messages.get(id)).toBeUndefined();
    expect(existsSync(path)).toBe(false);
    expect(await quarantine.delete(id)).toBe(false);
    expect(await quarantine.show(id)).toBeUndefined();
    expect(quarantine.usage()).toEqual({ entries: 0, bytes: 0, charged: 0 });
  });

  it('delete() of an id that is a message but not quarantined deletes nothing', async () => {
    const stored = await messages.put(inbound, raw);
    expect(await quarantine.delete(stored.queueId)).toBe(false);
    expect(messages.get(stored.queueId)).toBeDefined();
  });

  it('delete() keeps the message while a delivery of it is still to be made (quarantined for one recipient, queued for another)', async () => {
    const queue = new SqliteQueue(db, { now: () => clock });
    const id = await queue.enqueue({ ...inbound, recipients: ['a@phr.example', 'b@phr.example'] }, raw);
    await quarantine.quarantine(id, 'HISP_TRUST_NO_ANCHOR', 'not trusted by a@');
    expect(await quarantine.delete(id)).toBe(true);
    expect(quarantine.get(id)).toBeUndefined();
    // Both deliveries are still queued: the message stays for them, and for `hisp queue`.
    expect(messages.get(id)).toBeDefined();
    expect(await messages.readBody(id)).toEqual(raw);
  });

  it('keeps the total of the entries in step however they go (re-quarantine, delete, a message deleted under it)', async () => {
    const a = await quarantine.store(inbound, sized(1000), 'HISP_SIG_INVALID', 'a');
    const b = await quarantine.store(inbound, sized(3000), 'HISP_SIG_INVALID', 'b');
    await quarantine.quarantine(a, 'HISP_TRUST_REVOKED', 'again');
    expect(quarantine.usage()).toMatchObject({ entries: 2, bytes: 4000 });
    await messages.delete(b); // the cascade removes the entry
    expect(quarantine.usage()).toMatchObject({ entries: 1, bytes: 1000 });
    await quarantine.delete(a);
    expect(quarantine.usage()).toMatchObject({ entries: 0, bytes: 0 });
  });
});

describe('QuarantineStore: retention', () => {
  it('drops an entry older than retentionDays (and nothing younger), logs it at info and counts it', async () => {
    const logger = memoryLogger();
    const q = bounded({ retentionDays: 30, maxBytes: 100 * MiB }, { logger });
    const old = await q.store({ ...inbound, messageId: '<old@sender.example>' }, raw, 'HISP_SIG_INVALID', 'no signature verifies');
    const oldFile = messages.bodyPath(old);
    clock += 2 * DAY;
    const young = await q.store(inbound, raw, 'HISP_TRUST_NO_ANCHOR', 'not trusted');
    clock += 29 * DAY; // old: 31 days, young: 29 days

    expect(await q.enforce()).toEqual({ retention: 1, cap: 0 });
    expect(q.get(old)).toBeUndefined();
    expect(messages.get(old)).toBeUndefined();
    expect(existsSync(oldFile)).toBe(false);
    expect(q.get(young)).toBeDefined();
    expect(logger.lines).toEqual([
      {
        level: 'info',
        msg: 'quarantine entry dropped: older than quarantine.retentionDays',
        obj: {
          queueId: old,
          reasonCode: 'HISP_SIG_INVALID',
          detail: 'no signature verifies',
          mailFrom: 'hisp@sender.example',
          messageId: 'old@sender.example',
          size: raw.length,
          quarantinedAt: new Date(Date.UTC(2026, 0, 1)).toISOString(),
          ageHours: 31 * 24,
          cause: 'retention',
        },
      },
    ]);
    expect(q.drops(new Date(clock - 30 * DAY))).toEqual({ retention: { entries: 1, bytes: raw.length }, cap: { entries: 0, bytes: 0 } });

    // The hourly housekeeping does the same (and logs a summary).
    clock += 2 * DAY;
    await q.housekeeping();
    expect(q.get(young)).toBeUndefined();
    expect(logger.lines.at(-1)).toMatchObject({ level: 'info', msg: 'quarantine housekeeping', obj: { dropped: { retention: 1, cap: 0 }, entries: 0 } });
  });

  it('drops in commits of 500 until none is left past the retention', async () => {
    const q = bounded({ retentionDays: 1, maxBytes: 100 * MiB });
    const ids = await Promise.all(Array.from({ length: 1203 }, async () => (await messages.put(inbound, raw)).queueId));
    await db.batch(() => ids.forEach((id) => q.add(id, 'HISP_SIG_INVALID', 'x')));
    clock += 2 * DAY;
    expect(await q.enforce()).toEqual({ retention: 1203, cap: 0 });
    expect(q.usage().entries).toBe(0);
  });
});

describe('QuarantineStore: size cap', () => {
  it('an entry that takes the total over the cap drops the oldest first, until the total fits', async () => {
    const logger = memoryLogger();
    const entry = 10 * KiB;
    const cost = entry + ENTRY_OVERHEAD_BYTES;
    // Room for 4 entries.
    const q = bounded({ retentionDays: 30, maxBytes: 4 * cost + 100 }, { logger });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      ids.push(await q.store(inbound, sized(entry), 'HISP_SIG_INVALID', `#${i}`));
      clock += 60_000;
    }
    await q.settled();
    expect(logger.lines).toEqual([]);
    const files = ids.map((id) => messages.bodyPath(id));

    ids.push(await q.store(inbound, sized(entry), 'HISP_SIG_INVALID', '#4'));
    await q.settled();
    expect(q.list().map((e) => e.detail)).toEqual(['#4', '#3', '#2', '#1']);
    expect(existsSync(files[0]!)).toBe(false);
    expect(q.usage().charged).toBeLessThanOrEqual(4 * cost + 100);

    // One twice as large pushes out two.
    clock += 60_000;
    await q.store(inbound, sized(2 * entry + ENTRY_OVERHEAD_BYTES), 'HISP_SIG_INVALID', 'large');
    await q.settled();
    expect(q.list().map((e) => e.detail)).toEqual(['large', '#4', '#3']);
    expect(q.usage().charged).toBeLessThanOrEqual(4 * cost + 100);
    expect(messages.get(ids[1]!)).toBeUndefined();
    expect(messages.get(ids[2]!)).toBeUndefined();

    expect(logger.lines.map((l) => [l.level, l.obj.queueId, l.obj.cause])).toEqual([
      ['warn', ids[0], 'cap'],
      ['warn', ids[1], 'cap'],
      ['warn', ids[2], 'cap'],
    ]);
    expect(logger.lines[0]?.obj).toMatchObject({ reasonCode: 'HISP_SIG_INVALID', detail: '#0', size: entry, ageHours: 0.1, maxBytes: 4 * cost + 100 });
    expect(q.drops(new Date(clock - DAY)).cap).toEqual({ entries: 3, bytes: 3 * entry });
  });

  it('keeps the total within the cap under many concurrent additions', async () => {
    const entry = 4 * KiB;
    const maxBytes = 20 * (entry + ENTRY_OVERHEAD_BYTES);
    const q = bounded({ retentionDays: 30, maxBytes });
    const stored = await Promise.all(Array.from({ length: 60 }, (_, i) => messages.put({ ...inbound, messageId: `<m${i}@x>` }, sized(entry))));
    for (let i = 0; i < stored.length; i++) {
      clock += 1000;
      // In groups of three per commit, as receive workers would.
      if (i % 3 === 2) await Promise.all(stored.slice(i - 2, i + 1).map((x) => q.quarantine(x.queueId, 'HISP_SIG_INVALID', `#${i}`)));
    }
    await q.settled();
    expect(q.usage().charged).toBeLessThanOrEqual(maxBytes);
    expect(q.usage().entries).toBe(20);
    // The newest are the ones kept.
    expect(new Set(q.list().map((e) => e.id))).toEqual(new Set(stored.slice(40).map((s) => s.queueId)));
  });

  it('an entry larger than the cap by itself is dropped, not every other entry with it', async () => {
    const logger = memoryLogger();
    const q = bounded({ retentionDays: 30, maxBytes: 64 * KiB }, { logger });
    const small = await q.store(inbound, sized(8 * KiB), 'HISP_SIG_INVALID', 'small');
    clock += 1000;
    const huge = await q.store(inbound, sized(80 * KiB), 'HISP_SIG_INVALID', 'huge');
    await q.settled();
    expect(q.get(huge)).toBeUndefined();
    expect(messages.get(huge)).toBeUndefined();
    expect(q.get(small)).toBeDefined();
    expect(logger.lines.map((l) => l.obj.queueId)).toEqual([huge]);
  });

  it('housekeeping applies a cap lowered since (the configuration changed)', async () => {
    for (let i = 0; i < 5; i++) {
      await quarantine.store(inbound, sized(10 * KiB), 'HISP_SIG_INVALID', `#${i}`);
      clock += 1000;
    }
    const q = bounded({ retentionDays: 30, maxBytes: 2 * (10 * KiB + ENTRY_OVERHEAD_BYTES) });
    await q.housekeeping();
    expect(q.list().map((e) => e.detail)).toEqual(['#4', '#3']);
  });

  it('an unbounded store (the operator commands) never drops', async () => {
    for (let i = 0; i < 3; i++) await quarantine.store(inbound, sized(10 * KiB), 'HISP_SIG_INVALID', `#${i}`);
    clock += 1000 * DAY;
    expect(await quarantine.enforce()).toEqual({ retention: 0, cap: 0 });
    expect(quarantine.usage().entries).toBe(3);
  });
});

describe('QuarantineStore: purge', () => {
  async function fill(): Promise<{ old: string[]; young: string; spooled: string }> {
    const old: string[] = [];
    for (let i = 0; i < 3; i++) {
      old.push(await quarantine.store(inbound, sized(300, String(i)), i === 1 ? 'HISP_TRUST_NO_ANCHOR' : 'HISP_SIG_INVALID', `#${i}`));
      clock += DAY;
    }
    // A quarantined body that stayed in the spool (its set-aside as a file failed).
    const spooledMessage = await messages.put({ ...inbound, messageId: '<spooled@x>' }, Buffer.from('Subject: s\r\n\r\nSPOOLED-PATIENT-DATA\r\n'));
    await quarantine.quarantine(spooledMessage.queueId, 'HISP_SIG_INVALID', 'spooled');
    clock += 5 * DAY;
    const young = await quarantine.store(inbound, raw, 'HISP_SIG_INVALID', 'young');
    return { old, young, spooled: spooledMessage.queueId };
  }

  const spoolBytes = () =>
    Buffer.concat(readdirSync(join(dir, 'spool')).map((f) => readFileSync(join(dir, 'spool', f))));

  it('--dry-run lists the entries older than the date, oldest first, and deletes nothing', async () => {
    const { old, spooled } = await fill();
    const listed = await quarantine.purge({ before: new Date(clock - 2 * DAY), dryRun: true });
    expect(listed.map((e) => e.id)).toEqual([...old, spooled]);
    expect(listed[0]).toMatchObject({ reasonCode: 'HISP_SIG_INVALID', detail: '#0', size: 300, mailFrom: 'hisp@sender.example', quarantinedAt: new Date(Date.UTC(2026, 0, 1)) });
    expect(quarantine.usage().entries).toBe(5);
    for (const id of old) expect(existsSync(messages.bodyPath(id))).toBe(true);
  });

  it('deletes them with their bodies: files removed, spooled bodies overwritten; a reason narrows it', async () => {
    const { old, young, spooled } = await fill();
    expect(spoolBytes().includes('SPOOLED-PATIENT-DATA')).toBe(true);
    const byReason = await quarantine.purge({ before: new Date(clock), reasonCode: 'HISP_TRUST_NO_ANCHOR' });
    expect(byReason.map((e) => e.id)).toEqual([old[1]]);
    const purged = await quarantine.purge({ before: new Date(clock - 2 * DAY) });
    expect(purged.map((e) => e.id)).toEqual([old[0], old[2], spooled]);
    for (const id of [...old, spooled]) {
      expect(messages.get(id)).toBeUndefined();
      expect(existsSync(messages.bodyPath(id))).toBe(false);
    }
    expect(spoolBytes().includes('SPOOLED-PATIENT-DATA')).toBe(false);
    expect(quarantine.list().map((e) => e.id)).toEqual([young]);
    // Everything quarantined up to now (`--all`).
    expect((await quarantine.purge({ before: new Date(clock + 1) })).map((e) => e.id)).toEqual([young]);
    expect(quarantine.usage()).toEqual({ entries: 0, bytes: 0, charged: 0 });
  });

  it('pages through more than one commit (dry run and real)', async () => {
    const ids = await Promise.all(Array.from({ length: 1100 }, async () => (await messages.put(inbound, raw)).queueId));
    await db.batch(() => ids.forEach((id) => quarantine.add(id, 'HISP_SIG_INVALID', 'x')));
    clock += 1;
    expect(await quarantine.purge({ before: new Date(clock), dryRun: true })).toHaveLength(1100);
    expect(await quarantine.purge({ before: new Date(clock) })).toHaveLength(1100);
    expect(quarantine.usage().entries).toBe(0);
  });
});

describe('QuarantineStore: the schema migration', () => {
  it('an older database gets the sizes and the total of its entries', async () => {
    const old = mkdtempSync(join(tmpdir(), 'hisp-quarantine-v3-'));
    try {
      const v3 = HispDatabase.open({ dataDir: old, migrations: HISP_MIGRATIONS.slice(0, 3) });
      v3.sqlite.prepare("INSERT INTO messages (queue_id, direction, mail_from, rcpt_to, received_at, size) VALUES ('a', 'inbound', '', '[]', 0, 1234), ('b', 'inbound', '', '[]', 0, 66)").run();
      v3.sqlite.prepare("INSERT INTO quarantine VALUES ('a', 'HISP_SIG_INVALID', 'x', 0), ('b', 'HISP_SIG_INVALID', 'y', 0)").run();
      await v3.close();
      const v4 = HispDatabase.open({ dataDir: old });
      const m = new MessageStore(v4);
      const q = new QuarantineStore(v4, m);
      expect(q.usage()).toEqual({ entries: 2, bytes: 1300, charged: 1300 + 2 * ENTRY_OVERHEAD_BYTES });
      await v4.close();
      await m.close();
    } finally {
      rmSync(old, { recursive: true, force: true });
    }
  });
});

/**
 * A full store, simulated where no file system can be filled: the database may not grow
 * (PRAGMA max_page_count, SQLite's own SQLITE_FULL "database or disk is full"), and a deletion that
 * needs a page (a trigger of the test writes one) fails as on a full disk. Releasing the reserve
 * lifts the limit, as freeing its bytes makes room. The real disk is the tmpfs test below.
 */
describe('QuarantineStore on a full store (PRAGMA max_page_count)', () => {
  class PageReserve extends DiskReserve {
    override release(): number {
      const freed = super.release();
      if (freed > 0) db.sqlite.pragma('max_page_count = 1073741823');
      return freed;
    }
  }

  async function full(): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push(await quarantine.store(inbound, raw, 'HISP_SIG_INVALID', `#${i}`));
      clock += DAY;
    }
    db.sqlite.exec('CREATE TABLE filler (b BLOB)');
    db.sqlite.exec('CREATE TEMP TRIGGER needs_room AFTER DELETE ON main.quarantine BEGIN INSERT INTO main.filler VALUES (zeroblob(16384)); END');
    db.sqlite.pragma(`max_page_count = ${Number(db.sqlite.pragma('page_count', { simple: true }))}`);
    return ids;
  }

  it('without a reserve, delete fails with "database or disk is full" (as before this fix)', async () => {
    const [id] = await full();
    await expect(quarantine.delete(id!)).rejects.toThrow('database or disk is full');
    expect(quarantine.get(id!)).toBeDefined();
  });

  it('delete, purge and the drops release the reserve and succeed; the reserve is written again', async () => {
    const ids = await full();
    const logger = memoryLogger();
    const reserve = new PageReserve(dir, 64 * KiB);
    await reserve.ensure();
    const q = new QuarantineStore(db, messages, { now: () => clock, reserve, logger });
    expect(await q.delete(ids[0]!)).toBe(true);
    expect(logger.lines[0]).toMatchObject({ level: 'warn', msg: expect.stringContaining('the disk is full: released the reserve') as unknown, obj: { bytes: 64 * KiB } });
    expect(reserve.size()).toBe(64 * KiB);

    db.sqlite.pragma(`max_page_count = ${Number(db.sqlite.pragma('page_count', { simple: true }))}`);
    expect((await q.purge({ before: new Date(clock) })).map((e) => e.id)).toEqual(ids.slice(1));
    expect(q.usage().entries).toBe(0);
    expect(reserve.size()).toBe(64 * KiB);

    const id = await q.store(inbound, raw, 'HISP_SIG_INVALID', 'late');
    db.sqlite.pragma(`max_page_count = ${Number(db.sqlite.pragma('page_count', { simple: true }))}`);
    clock += 40 * DAY;
    const dropping = new QuarantineStore(db, messages, { now: () => clock, reserve, limits: { retentionDays: 30, maxBytes: 100 * MiB } });
    expect(await dropping.enforce()).toEqual({ retention: 1, cap: 0 });
    expect(dropping.get(id)).toBeUndefined();
  });
});

/**
 * A real full disk: a tmpfs filled to the last byte. SQLite must append a DELETE to the WAL, which
 * cannot grow: SQLITE_FULL. Needs root (CI runs as root); with CI=true it never skips.
 */
describe('QuarantineStore on a full disk (a real tmpfs)', () => {
  let mounted: TmpfsResult | undefined;
  beforeAll(async () => {
    mounted = await mountTmpfs(12 * MiB);
  });
  afterAll(async () => {
    if (mounted?.ok) await mounted.tmpfs.unmount();
  });

  it('delete and purge work on a full disk: the reserve is released, the bodies free the room, the reserve is written again', async (ctx) => {
    if (!mounted?.ok) {
      if (IN_CI) throw new Error(`CI=true: ${mounted?.reason ?? 'no tmpfs'}`);
      ctx.skip();
      return;
    }
    const data = join(mounted.tmpfs.dir, 'data');
    mkdirSync(data, { mode: 0o700 });
    const fullDb = HispDatabase.open({ dataDir: data });
    const store = new MessageStore(fullDb);
    const reserve = new DiskReserve(data, 1 * MiB);
    try {
      expect(await reserve.ensure()).toBe(true);
      const logger = memoryLogger();
      const q = new QuarantineStore(fullDb, store, { reserve, logger });
      const ids: string[] = [await q.store(inbound, sized(8 * KiB), 'HISP_SIG_INVALID', 'small')];
      for (let i = 0; i < 3; i++) ids.push(await q.store(inbound, sized(400 * KiB), 'HISP_SIG_INVALID', `#${i}`));
      // The WAL back to nothing, as after a checkpoint: the next write must grow it.
      fullDb.sqlite.pragma('wal_checkpoint(TRUNCATE)');
      mounted.tmpfs.fill();
      expect(reserve.available()).toBe(0);

      // What the operator got before: "database or disk is full".
      const without = new QuarantineStore(fullDb, store);
      await expect(without.delete(ids[0]!)).rejects.toThrow('database or disk is full');

      expect(await q.delete(ids[0]!)).toBe(true);
      expect(existsSync(store.bodyPath(ids[0]!))).toBe(false);
      expect(q.get(ids[0]!)).toBeUndefined();
      expect(logger.lines.map((l) => l.msg)).toEqual([
        'the disk is full: released the reserve to delete; it is written again once there is room',
        // 8 KiB freed, less than the reserve: it waits for room rather than take the last bytes.
        'no room for the disk reserve: written again when there is',
      ]);
      expect(reserve.size()).toBe(0);

      // The operator frees room; the next housekeeping (or deletion) writes the reserve again.
      rmSync(join(mounted.tmpfs.dir, 'filler'));
      await q.housekeeping();
      expect(reserve.size()).toBe(1 * MiB);

      mounted.tmpfs.fill('filler-2');
      expect((await q.purge({ before: new Date(Date.now() + 1) })).map((e) => e.id)).toEqual(ids.slice(1));
      for (const id of ids) expect(existsSync(store.bodyPath(id))).toBe(false);
      expect(q.usage().entries).toBe(0);
      // The purge freed 1.2 MiB: the reserve is back, whole.
      expect(reserve.size()).toBe(1 * MiB);
      expect(readdirSync(data).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    } finally {
      await fullDb.close();
      await store.close();
    }
  });
});

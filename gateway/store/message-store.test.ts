import { existsSync, fdatasync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { CommitBatcher } from './commit-batcher.js';
import { HispDatabase } from './database.js';
import { MessageStore, normalizeMessageId, type MessageEnvelope } from './message-store.js';

let dir: string;
let db: HispDatabase;
let clock: number;
/** The default store: the small test body goes to the spool. */
let store: MessageStore;
/** A store that puts every body in a file. */
let files: MessageStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-msg-'));
  db = HispDatabase.open({ dataDir: dir });
  clock = Date.UTC(2026, 0, 1, 12);
  store = new MessageStore(db, { now: () => clock });
  files = new MessageStore(db, { now: () => clock, spoolMaxBytes: 0 });
});

afterEach(async () => {
  await store.close();
  await files.close();
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

const envelope: MessageEnvelope = {
  direction: 'outbound',
  mailFrom: 'doctor@hospital.example',
  recipients: ['patient@phr.example', 'Other@PHR.example'],
  submittedBy: 'ehr-system',
  messageId: '<abc.123@hospital.example>',
  meta: { client: '192.0.2.10', mdn: 'timely-and-reliable' },
};
const body = Buffer.from('Subject: lab results\r\n\r\nGlucose 5.2 mmol/L\r\n');

describe('MessageStore', () => {
  it('stores a small body once, in the spool, with no file and nothing inline', async () => {
    const stored = await store.put(envelope, body);
    expect(stored.queueId).toMatch(/^[0-9a-f]{22}$/);
    expect(readdirSync(store.dir)).toEqual([]);
    expect(readdirSync(join(dir, 'spool'))).toEqual(['0000000001.spool']);
    expect(db.sqlite.prepare('SELECT body, spool_segment, spool_offset FROM messages WHERE queue_id = ?').get(stored.queueId)).toEqual({
      body: null,
      spool_segment: 1,
      spool_offset: 0,
    });
    // The first read takes the bytes kept in memory; the next ones read the spool.
    expect(await store.readBody(stored.queueId)).toBe(body);
    expect(await store.readBody(stored.queueId)).toEqual(body);
    const fresh = new MessageStore(db);
    expect(await fresh.readBody(stored.queueId)).toEqual(body);
    await fresh.close();
    expect(store.get(stored.queueId)).toEqual({
      queueId: stored.queueId,
      direction: 'outbound',
      mailFrom: 'doctor@hospital.example',
      recipients: ['patient@phr.example', 'Other@PHR.example'],
      submittedBy: 'ehr-system',
      messageId: 'abc.123@hospital.example',
      receivedAt: new Date(clock),
      size: body.length,
      meta: { client: '192.0.2.10', mdn: 'timely-and-reliable' },
    });
  });

  it('stores a body above spoolMaxBytes once, as a 0600 file named after the queue id', async () => {
    const big = new MessageStore(db, { spoolMaxBytes: 100 });
    const large = Buffer.alloc(101, 0x41);
    const stored = await big.put(envelope, large);
    const path = big.bodyPath(stored.queueId);
    expect(path).toBe(join(dir, 'messages', `${stored.queueId}.eml`));
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(await big.readBody(stored.queueId)).toEqual(large);
    expect(db.sqlite.prepare('SELECT body, spool_segment FROM messages WHERE queue_id = ?').get(stored.queueId)).toEqual({ body: null, spool_segment: null });
    await big.put(envelope, Buffer.alloc(100)); // exactly at the limit: spooled
    expect(readdirSync(big.dir)).toHaveLength(1);
    await big.close();
  });

  it('keeps a body up to inlineMaxBytes in its row, and reads the inline bodies of earlier releases', async () => {
    const inline = new MessageStore(db, { inlineMaxBytes: body.length });
    const stored = await inline.put(envelope, body);
    expect(db.sqlite.prepare('SELECT body FROM messages WHERE queue_id = ?').pluck().get(stored.queueId)).toEqual(body);
    expect(existsSync(join(dir, 'spool', '0000000001.spool'))).toBe(false);
    expect(await store.readBody(stored.queueId)).toEqual(body);
    await inline.close();
  });

  it('a 10 MB body round-trips through its file', async () => {
    const huge = Buffer.alloc(10 * 1024 * 1024, 0x5a);
    const stored = await store.put(envelope, huge);
    expect(statSync(store.bodyPath(stored.queueId)).size).toBe(huge.length);
    expect((await store.readBody(stored.queueId)).equals(huge)).toBe(true);
  });

  it('queue ids are ordered by time', async () => {
    const a = await store.put(envelope, body);
    clock += 1;
    const b = await store.put(envelope, body);
    expect(a.queueId < b.queueId).toBe(true);
  });

  it('finds messages by Message-ID, with or without angle brackets, newest first', async () => {
    const older = await store.put(envelope, body);
    clock += 1000;
    const newer = await store.put({ ...envelope, messageId: 'abc.123@hospital.example' }, body);
    expect(store.findByMessageId('<abc.123@hospital.example>').map((m) => m.queueId)).toEqual([newer.queueId, older.queueId]);
    expect(store.findByMessageId(' abc.123@hospital.example ')).toHaveLength(2);
    expect(store.findByMessageId('<>')).toEqual([]);
  });

  it('a body written but not committed is a file no row refers to; discard() removes it', async () => {
    const prepared = await files.writeBody(body);
    expect(existsSync(files.bodyPath(prepared.queueId))).toBe(true);
    expect(files.has(prepared.queueId)).toBe(false);
    await files.discard(prepared);
    expect(existsSync(files.bodyPath(prepared.queueId))).toBe(false);
  });

  it('a small prepared body below inlineMaxBytes is only in memory until its row commits', async () => {
    const inline = new MessageStore(db, { inlineMaxBytes: 1000 });
    const prepared = await inline.writeBody(body);
    expect(prepared.inline).toBe(body);
    expect(readdirSync(inline.dir)).toEqual([]);
    expect(readdirSync(join(dir, 'spool'))).toEqual([]);
    await inline.discard(prepared);
    await inline.close();
  });

  it('a spooled body not committed leaves a record no row refers to, reclaimed with its segment', async () => {
    const spooled = new MessageStore(db, { spool: { segmentBytes: 1, reclaimAgeMs: 0 } });
    const prepared = await spooled.writeBody(body);
    expect(prepared.spool).toEqual({ segment: 1, offset: 0 });
    await spooled.discard(prepared);
    const kept = await spooled.put(envelope, body); // a segment of its own (1 byte each): 1 is sealed
    expect(readdirSync(join(dir, 'spool'))).toEqual(['0000000001.spool', '0000000002.spool']);
    expect(await spooled.reclaimSpool()).toBe(1);
    expect(readdirSync(join(dir, 'spool'))).toEqual(['0000000002.spool']);
    // The current segment is never reclaimed; a sealed one that a row refers to neither.
    await spooled.put(envelope, body);
    expect(await spooled.reclaimSpool()).toBe(0);
    expect(await new MessageStore(db).readBody(kept.queueId)).toEqual(body);
    await spooled.close();
  });

  it('a row that fails to commit leaves no body file behind', async () => {
    // A row already holds the id the store will pick (its file is gone): the INSERT fails.
    db.sqlite
      .prepare("INSERT INTO messages (queue_id, direction, mail_from, rcpt_to, received_at, size) VALUES ('taken', 'outbound', '', '[]', 0, 0)")
      .run();
    const clashing = new MessageStore(db, { newId: () => 'taken', spoolMaxBytes: 0 });
    await expect(clashing.put(envelope, body)).rejects.toMatchObject({ code: 'HISP_IO' });
    expect(existsSync(store.bodyPath('taken'))).toBe(false);
    await clashing.close();
  });

  it('gives up with HISP_IO when new ids keep clashing with existing files', async () => {
    const fixed = new MessageStore(db, { newId: () => 'fixedid', spoolMaxBytes: 0 });
    await fixed.writeBody(body);
    await expect(fixed.writeBody(body)).rejects.toMatchObject({ code: 'HISP_IO', transient: true });
    await fixed.close();
  });

  it('a spool that cannot sync stops the store: the body is refused, and so is every later commit (fail-stop)', async () => {
    const failures: Error[] = [];
    const failing = HispDatabase.open({ dataDir: join(dir, 'failing'), batch: { onSyncFailure: (e) => failures.push(e) } });
    // The spool's fdatasync fails as a full or dying disk makes it fail.
    const broken = new MessageStore(failing, { spool: { fdatasync: (_fd, done) => done(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })) } });
    await expect(broken.put(envelope, body)).rejects.toMatchObject({ code: 'HISP_IO', transient: true });
    expect(failures.map((e) => e.message)).toEqual(['EIO: i/o error, fdatasync']);
    // Nothing may be acknowledged any more, not even a row without a body.
    await expect(failing.batch(() => 1)).rejects.toThrow(/until hisp restarts/);
    expect(broken.has('x')).toBe(false);
    await broken.close();
    await failing.close();
  });

  it('commits a row only after the spool sync that covers its body ended', async () => {
    let release: (() => void) | undefined;
    const slow = new MessageStore(db, {
      spool: { fdatasync: (fd, done) => (release = () => fdatasync(fd, done)) },
    });
    const put = slow.put(envelope, body);
    while (release === undefined) await new Promise((r) => setTimeout(r, 1));
    await new Promise((r) => setTimeout(r, 20));
    // Written, not yet synced: no row refers to it.
    expect(db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(0);
    release();
    const stored = await put;
    expect(slow.has(stored.queueId)).toBe(true);
    await slow.close();
  });

  it('delete() of a spooled message overwrites its body in the spool', async () => {
    const stored = await store.put(envelope, body);
    const segment = join(dir, 'spool', '0000000001.spool');
    expect(readFileSync(segment).includes(body)).toBe(true);
    expect(await store.delete(stored.queueId)).toBe(true);
    expect(readFileSync(segment).includes(body)).toBe(false);
    expect(readFileSync(segment).every((x) => x === 0)).toBe(true);
  });

  it('a spooled body whose row fails to commit is overwritten; one whose commit may be on disk (its log sync failed) is kept', async () => {
    db.sqlite
      .prepare("INSERT INTO messages (queue_id, direction, mail_from, rcpt_to, received_at, size) VALUES ('taken', 'outbound', '', '[]', 0, 0)")
      .run();
    const clashing = new MessageStore(db, { newId: () => 'taken' });
    await expect(clashing.put(envelope, body)).rejects.toMatchObject({ code: 'HISP_IO' });
    const segment = join(dir, 'spool', '0000000001.spool');
    expect(readFileSync(segment).includes(body)).toBe(false);
    await clashing.close();

    // The same store over a group commit whose WAL sync fails: the row is committed (it may survive
    // a crash), so its body must stay where the row says.
    let n = 0;
    const failingSync = new CommitBatcher(db.sqlite, { syncLog: (done) => done(new Error('EIO: i/o error, fdatasync')) });
    const view = Object.create(db, { batch: { value: <T>(op: () => T) => failingSync.run(op) } }) as HispDatabase;
    const unsynced = new MessageStore(view, { newId: () => `unsynced${++n}` });
    await expect(unsynced.put(envelope, body)).rejects.toMatchObject({ code: 'HISP_IO' });
    expect(db.sqlite.prepare("SELECT count(*) FROM messages WHERE queue_id = 'unsynced1'").pluck().get()).toBe(1);
    expect(await store.readBody('unsynced1')).toEqual(body);
    await unsynced.close();
  });

  it('setAside() writes over a leftover file of an attempt cut short, gives one caller at a time the set-aside, and abandon() removes the copy', async () => {
    const stored = await store.put(envelope, body);
    writeFileSync(store.bodyPath(stored.queueId), 'half a copy from before a crash');
    const aside = await store.setAside(stored.queueId, body);
    expect(aside).toBeDefined();
    expect(readFileSync(store.bodyPath(stored.queueId))).toEqual(body);
    // A second recipient refused meanwhile: the first caller does it.
    expect(await store.setAside(stored.queueId, body)).toBeUndefined();
    // The quarantine commit failed (nothing committed): the copy goes, the body stays spooled.
    await aside!.abandon(new Error('the quarantine commit failed'));
    expect(existsSync(store.bodyPath(stored.queueId))).toBe(false);
    expect(await new MessageStore(db).readBody(stored.queueId)).toEqual(body);
    // And it can be set aside again.
    const again = await store.setAside(stored.queueId, body);
    await db.batch(() => again!.commit());
    await again!.after();
    expect(readFileSync(join(dir, 'spool', '0000000001.spool')).includes(body)).toBe(false);
    expect(await new MessageStore(db).readBody(stored.queueId)).toEqual(body);
  });

  it('setAside() moves a spooled body to a file of its own (a quarantined message), and erases the spooled copy after the commit', async () => {
    const stored = await store.put(envelope, body);
    const aside = await store.setAside(stored.queueId, body);
    expect(aside).toBeDefined();
    expect(readFileSync(store.bodyPath(stored.queueId))).toEqual(body);
    await db.batch(() => aside!.commit());
    await aside!.after();
    expect(readFileSync(join(dir, 'spool', '0000000001.spool')).includes(body)).toBe(false);
    expect(await new MessageStore(db).readBody(stored.queueId)).toEqual(body);
    // Once set aside, not again.
    expect(await store.setAside(stored.queueId, body)).toBeUndefined();
    expect(await store.delete(stored.queueId)).toBe(true);
    expect(existsSync(store.bodyPath(stored.queueId))).toBe(false);
  });

  it('delete() removes the row and the file; a second delete finds nothing', async () => {
    for (const s of [store, files]) {
      const stored = await s.put(envelope, body);
      expect(await s.delete(stored.queueId)).toBe(true);
      expect(s.get(stored.queueId)).toBeUndefined();
      expect(existsSync(s.bodyPath(stored.queueId))).toBe(false);
      expect(await s.delete(stored.queueId)).toBe(false);
      await expect(s.readBody(stored.queueId)).rejects.toBeInstanceOf(HispError);
    }
  });

  it('sweepOrphans() removes only old files that no row refers to', async () => {
    const kept = await files.put(envelope, body);
    const orphan = await files.writeBody(body);
    writeFileSync(join(files.dir, 'README'), 'not a body');
    clock = Date.now() + 10; // the orphan's mtime is now: too young to sweep
    expect(await files.sweepOrphans(60_000)).toBe(0);
    clock = Date.now() + 120_000;
    expect(await files.sweepOrphans(60_000)).toBe(1);
    expect(readdirSync(files.dir).sort()).toEqual(['README', `${kept.queueId}.eml`].sort());
    expect(existsSync(files.bodyPath(orphan.queueId))).toBe(false);
  });

  it('bodyPath() refuses ids that could leave the messages folder', () => {
    for (const bad of ['../hisp.sqlite', 'a/b', '', 'x'.repeat(65)]) {
      expect(() => store.bodyPath(bad)).toThrow(HispError);
    }
  });

  it('normalizeMessageId strips brackets and blanks', () => {
    expect(normalizeMessageId(' <a@b> ')).toBe('a@b');
    expect(normalizeMessageId('a@b')).toBe('a@b');
    expect(normalizeMessageId('')).toBeNull();
    expect(normalizeMessageId(undefined)).toBeNull();
  });
});

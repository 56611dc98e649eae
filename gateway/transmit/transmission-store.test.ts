// The transmissions table across migration 14: a database of migration 13 with transmissions (one
// whose delivery failed) upgrades; its rows keep their history, the rule "sent once" then covers
// the rows not superseded, and the audit trigger still finds a message's transmission by queue_id.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../audit/audit-log.js';
import { SqliteQueue } from '../queue/sqlite-queue.js';
import { HispDatabase, openDatabase } from '../store/database.js';
import { HISP_MIGRATIONS } from '../store/schema.js';
import { TransmissionStore, type Transmission } from './transmission-store.js';

const T0 = Date.UTC(2026, 11, 8, 12);
const SHA = 'c'.repeat(64);
const PATIENT = '2.16.840.1.113883.19.5|MRN-1';
const body = Buffer.from('From: records@hospital.example\r\nTo: jane@phr.example\r\nSubject: x\r\n\r\nbody\r\n');
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-transmissions-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A message as TransmitService sends one, its transmission row written in its commit by `write` (raw SQL at migration 13, the store after). */
function send(db: HispDatabase, id: string, write: (queueId: string) => void): Promise<string> {
  return new SqliteQueue(db, { now: () => T0 }).enqueue(
    { direction: 'outbound', mailFrom: 'records@hospital.example', recipients: ['jane@phr.example'], submittedBy: 'api:k1', messageId: `<${id}@hospital.example>`, meta: { patientDirected: true, transmission: id } },
    body,
    { withinCommit: (m) => write(m.queueId) },
  );
}

/** The relay's answer for the one message waiting: no certificate (what a worker records, gateway/queue/). */
async function fail(db: HispDatabase): Promise<void> {
  const queue = new SqliteQueue(db, { now: () => T0 });
  const [d] = await queue.lease(10, 'w1', 60_000);
  await queue.fail(d!, { code: 554, enhanced: '5.7.5', text: 'no certificate [HISP_DISCOVERY_NO_CERT]', reason: 'no-certificate' });
}

const row = (id: string, queueId: string): Transmission => ({
  id,
  patientKey: PATIENT,
  recordId: 'rec_1',
  authorizationId: 'auth_1',
  destination: 'jane@phr.example',
  sha256: SHA,
  trigger: 'discharge',
  status: 'queued',
  reason: null,
  queueId,
  messageId: `<${id}@hospital.example>`,
  createdAt: T0,
  resentBy: null,
});

describe('migration 14: a superseded transmission no longer counts as sent', () => {
  it('a database of migration 13 with transmissions upgrades: history kept, one re-send allowed, never two; the audit chain whole', async () => {
    const old = HispDatabase.open({ dataDir: dir, migrations: HISP_MIGRATIONS.slice(0, 13) });
    const insert13 = old.sqlite.prepare(
      `INSERT INTO transmissions (id, patient_key, record_id, authorization_id, destination, sha256, trigger, status, reason, queue_id, message_id, created_at)
       VALUES (@id, @patientKey, @recordId, @authorizationId, @destination, @sha256, @trigger, @status, @reason, @queueId, @messageId, @createdAt)`,
    );
    const oldQueue = await send(old, 'tx_1', (queueId) => {
      const { resentBy: _resentBy, ...at13 } = row('tx_1', queueId);
      insert13.run(at13);
    });
    // Its delivery failed before the upgrade (the message.failed entry finds the row by queue_id).
    await fail(old);
    await old.close();

    const db = openDatabase({ dataDir: dir });
    try {
      expect(db.schemaVersion).toBe(HISP_MIGRATIONS.length);
      const store = new TransmissionStore(db.sqlite);
      expect(store.list(PATIENT, ['auth_1'], 0, 10).transmissions).toMatchObject([{ id: 'tx_1', status: 'queued', queueId: oldQueue, resentBy: null }]);
      expect(store.lastQueued(PATIENT, 'jane@phr.example', SHA)).toEqual({ id: 'tx_1', queueId: oldQueue });

      // Not superseded, the old row still holds the destination: a second queued row is refused.
      await expect(send(db, 'tx_2', (queueId) => store.insert(row('tx_2', queueId)))).rejects.toThrow(/UNIQUE/);
      // Superseded in the re-send's commit: it goes; the rule then holds for the new row.
      const newQueue = await send(db, 'tx_2', (queueId) => {
        expect(store.supersede('tx_1', 'tx_2')).toBe(true);
        store.insert(row('tx_2', queueId));
      });
      expect(store.lastQueued(PATIENT, 'jane@phr.example', SHA)).toEqual({ id: 'tx_2', queueId: newQueue });
      expect(store.supersede('tx_1', 'tx_3')).toBe(false);
      await expect(send(db, 'tx_3', (queueId) => store.insert(row('tx_3', queueId)))).rejects.toThrow(/UNIQUE/);
      expect(store.list(PATIENT, ['auth_1'], 0, 10).transmissions.map((t) => [t.id, t.queueId, t.resentBy])).toEqual([
        ['tx_1', oldQueue, 'tx_2'],
        ['tx_2', newQueue, null],
      ]);

      // Each message's outcome names its own transmission and patient (the trigger of migration 13
      // finds the row by queue_id). message.queued has none here: it fires before the row is written
      // and reads the authorization named in the meta, which this test does not store.
      await fail(db);
      const audit = new AuditLog(db.sqlite, () => T0);
      expect(audit.list({ action: 'message.', limit: 10 }).entries.map((e) => [e.action, e.object.id, e.patientRef, e.detail.transmission])).toEqual([
        ['message.queued', oldQueue, null, undefined],
        ['message.failed', oldQueue, PATIENT, 'tx_1'],
        ['message.queued', newQueue, null, undefined],
        ['message.failed', newQueue, PATIENT, 'tx_2'],
      ]);
      expect(audit.verify()).toMatchObject({ ok: true, entries: 4 });
    } finally {
      await db.close();
    }
  });
});

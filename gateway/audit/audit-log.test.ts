// The audit log (issue 16, "Audit"): entries chained by hash, appended in the commit of what they
// record (message events by the outbox's triggers, API keys by their store), and `verify` finding
// an entry edited, removed or cut off the end of the database file.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteQueue } from '../queue/sqlite-queue.js';
import { ApiKeyStore } from '../store/api-key-store.js';
import { HispDatabase, openDatabase } from '../store/database.js';
import { HISP_MIGRATIONS } from '../store/schema.js';
import { TrackingStore } from '../store/tracking-store.js';
import { AuthorizationStore, patientKey, type Authorization } from '../transmit/authorization-store.js';
import { TransmissionStore } from '../transmit/transmission-store.js';
import { GENESIS_HASH } from './audit-chain.js';
import { AuditLog, type AuditRecord } from './audit-log.js';

let dir: string;
let db: HispDatabase;
let audit: AuditLog;
const T0 = Date.UTC(2026, 11, 7, 9);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-audit-'));
  db = openDatabase({ dataDir: dir });
  audit = new AuditLog(db.sqlite, () => T0);
});
afterEach(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

const granted = (n: number): AuditRecord => ({
  actor: { kind: 'api-key', id: 'k1' },
  action: 'authorization.granted',
  object: { kind: 'authorization', id: `auth_${n}` },
  outcome: 'success',
  patientRef: 'MRN-1',
  detail: { destinations: [`patient${n}@phr.example`] },
});

/** The database file as someone with the file would edit it: a connection of its own, without hisp's triggers. */
function tamper(sql: string): void {
  const raw = new BetterSqlite3(join(dir, 'hisp.sqlite'));
  try {
    raw.exec('DROP TRIGGER IF EXISTS audit_log_append_only_update; DROP TRIGGER IF EXISTS audit_log_append_only_delete;');
    raw.exec(sql);
  } finally {
    raw.close();
  }
}

describe('AuditLog', () => {
  it('chains every entry to the one before: seq 1, 2, 3…, the first after 64 zeros; verify finds it whole', () => {
    const entries = [1, 2, 3].map((n) => audit.append(granted(n)));
    expect(entries.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(entries[0]!.prevHash).toBe(GENESIS_HASH);
    expect(entries[1]!.prevHash).toBe(entries[0]!.hash);
    expect(entries[2]!.prevHash).toBe(entries[1]!.hash);
    expect(entries[0]).toMatchObject({ at: T0, actor: { kind: 'api-key', id: 'k1' }, action: 'authorization.granted', patientRef: 'MRN-1', detail: { destinations: ['patient1@phr.example'] } });
    expect(audit.verify()).toEqual({ ok: true, entries: 3, head: { seq: 3, hash: entries[2]!.hash, at: T0 } });
  });

  it('is append-only through SQL', () => {
    audit.append(granted(1));
    expect(() => db.sqlite.prepare("UPDATE audit_log SET action = 'x'").run()).toThrow(/append-only/);
    expect(() => db.sqlite.prepare('DELETE FROM audit_log').run()).toThrow(/append-only/);
  });

  it('verify finds an entry edited in the database file, one removed from the middle, and entries cut off the end', () => {
    for (let n = 1; n <= 5; n++) audit.append(granted(n));
    tamper("UPDATE audit_log SET outcome = 'failure' WHERE seq = 3");
    expect(audit.verify()).toMatchObject({ ok: false, entries: 2, problem: { seq: 3, reason: expect.stringMatching(/changed/) as unknown } });
    tamper("UPDATE audit_log SET outcome = 'success' WHERE seq = 3");
    expect(audit.verify().ok).toBe(true);
    // Recomputing the edited entry's own hash does not help: the next one points at the old hash.
    tamper("UPDATE audit_log SET detail = '{}', hash = 'f' || substr(hash, 2) WHERE seq = 2");
    expect(audit.verify()).toMatchObject({ ok: false, problem: { seq: 2 } });
  });

  it('verify finds a removed entry and a cut-off end', () => {
    for (let n = 1; n <= 5; n++) audit.append(granted(n));
    tamper('DELETE FROM audit_log WHERE seq = 5');
    expect(audit.verify()).toMatchObject({ ok: false, entries: 4, problem: { seq: 5, reason: expect.stringMatching(/cut off the end/) as unknown } });
    // An entry appended after the cut does not hide it: its seq leaves the gap.
    audit.append(granted(6));
    expect(audit.verify()).toMatchObject({ ok: false, problem: { seq: 5, reason: expect.stringMatching(/missing/) as unknown } });
    tamper('DELETE FROM audit_log WHERE seq = 2');
    expect(audit.verify()).toMatchObject({ ok: false, problem: { seq: 2 } });
  });

  it('lists by action family, patient, object and time, a page at a time', () => {
    for (let n = 1; n <= 3; n++) audit.append(granted(n));
    audit.append({ ...granted(4), action: 'authorization.revoked', patientRef: 'MRN-2', at: T0 + 1000 });
    audit.append({ actor: { kind: 'operator', id: 'root' }, action: 'api-key.created', object: { kind: 'api-key', id: 'k2' }, outcome: 'success' });
    expect(audit.list({ action: 'authorization.', limit: 10 }).entries.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(audit.list({ action: 'authorization.revoked', limit: 10 }).entries.map((e) => e.seq)).toEqual([4]);
    expect(audit.list({ patientRef: 'MRN-2', limit: 10 }).entries.map((e) => e.seq)).toEqual([4]);
    expect(audit.list({ objectKind: 'api-key', objectId: 'k2', limit: 10 }).entries.map((e) => e.action)).toEqual(['api-key.created']);
    expect(audit.list({ since: T0 + 1, limit: 10 }).entries.map((e) => e.seq)).toEqual([4]);
    const first = audit.list({ limit: 2 });
    expect(first.entries.map((e) => e.seq)).toEqual([1, 2]);
    expect(audit.list({ after: first.nextCursor!, limit: 10 })).toMatchObject({ nextCursor: null, entries: [{ seq: 3 }, { seq: 4 }, { seq: 5 }] });
  });

  it('every message event is an entry, in its commit, with who did it: the API key or SMTP user that submitted, hisp for the relay', async () => {
    const queue = new SqliteQueue(db);
    const body = Buffer.from('From: a@hospital.example\r\nTo: p@phr.example\r\nSubject: x\r\n\r\nbody\r\n');
    const viaApi = await queue.enqueue({ mailFrom: 'doctor@hospital.example', recipients: ['p@phr.example'], direction: 'outbound', submittedBy: 'api:0123456789abcdef', messageId: '<m1@hospital.example>' }, body);
    const viaSmtp = await queue.enqueue({ mailFrom: 'nurse@hospital.example', recipients: ['q@phr.example'], direction: 'outbound', submittedBy: 'nurse@hospital.example' }, body);
    const entries = audit.list({ action: 'message.', limit: 10 }).entries;
    expect(entries.map((e) => [e.action, e.actor, e.object, e.outcome])).toEqual([
      ['message.queued', { kind: 'api-key', id: '0123456789abcdef' }, { kind: 'message', id: viaApi }, 'success'],
      ['message.queued', { kind: 'smtp-user', id: 'nurse@hospital.example' }, { kind: 'message', id: viaSmtp }, 'success'],
    ]);
    expect(entries[0]!.detail).toMatchObject({ recipient: 'p@phr.example', address: 'doctor@hospital.example', data: { state: 'queued', messageId: 'm1@hospital.example' } });
    // The delivery failing: an entry by hisp, outcome failure.
    const delivery = (await queue.get(viaApi))!.deliveries[0]!;
    await db.batch(() => db.sqlite.prepare("UPDATE deliveries SET state = 'failed', failure_reason = 'untrusted', finished_at = ? WHERE id = ?").run(T0, delivery.id));
    expect(audit.list({ action: 'message.failed', limit: 10 }).entries).toMatchObject([{ actor: { kind: 'system', id: 'hisp' }, outcome: 'failure', object: { id: viaApi } }]);
    expect(audit.verify()).toMatchObject({ ok: true, entries: 3 });
    // One statement changing two deliveries (hisp queue bounce): two entries, seq on, the chain whole.
    const two = await queue.enqueue({ mailFrom: 'doctor@hospital.example', recipients: ['a@phr.example', 'b@phr.example'], direction: 'outbound', submittedBy: 'api:k' }, body);
    await db.batch(() => db.sqlite.prepare("UPDATE deliveries SET state = 'failed', failure_reason = 'rejected', finished_at = ? WHERE queue_id = ?").run(T0, two));
    expect(audit.list({ objectId: two, limit: 10 }).entries.map((e) => [e.seq, e.action])).toEqual([
      [4, 'message.queued'],
      [5, 'message.queued'],
      [6, 'message.failed'],
      [7, 'message.failed'],
    ]);
    expect(audit.verify()).toMatchObject({ ok: true, entries: 7 });
  });

  it('API keys created and revoked are entries, never with the key', async () => {
    const keys = new ApiKeyStore(db);
    const { key, token } = await keys.create({ name: 'ehr', actions: ['send'], sendAs: ['@hospital.example'] }, T0, { kind: 'operator', id: 'alice' });
    await keys.revoke(key.id, T0 + 1, { kind: 'operator', id: 'bob' });
    await keys.revoke(key.id, T0 + 2, { kind: 'operator', id: 'bob' }); // no change: no entry
    const entries = audit.list({ objectKind: 'api-key', limit: 10 }).entries;
    expect(entries.map((e) => [e.action, e.actor.id, e.at])).toEqual([
      ['api-key.created', 'alice', T0],
      ['api-key.revoked', 'bob', T0 + 1],
    ]);
    expect(JSON.stringify(entries)).not.toContain(token.slice(22));
  });

  it('two connections (the gateway and a command) append to one chain', () => {
    const other = openDatabase({ dataDir: dir });
    try {
      const second = new AuditLog(other.sqlite, () => T0);
      for (let n = 0; n < 10; n++) (n % 2 === 0 ? audit : second).append(granted(n));
      expect(audit.verify()).toMatchObject({ ok: true, entries: 10 });
    } finally {
      other.sqlite.close();
    }
  });
});

describe('the message entries of a Blue Button+ transmission carry its patient (migration 13)', () => {
  const body = Buffer.from('From: records@hospital.example\r\nTo: phr@phr.example\r\nSubject: x\r\n\r\nbody\r\n');
  const MINUTE = 60_000;

  const authorization = (id: string, patientRef: string, assigningAuthority: string | null): Authorization => ({
    id,
    // The form the application's entries take (TransmitService): the trigger must write the same.
    patientKey: patientKey(patientRef, assigningAuthority),
    patientRef,
    assigningAuthority,
    patient: { name: 'Isabella Jones', birthDate: null },
    from: 'records@hospital.example',
    dataHolder: { name: 'Example Hospital' },
    destinations: [{ address: 'phr@phr.example', package: 'mime', humanReadable: true, requestTxt: false }],
    frequency: 'on-update',
    intervalMinutes: null,
    grantedBy: { kind: 'patient', name: null },
    method: 'portal',
    consent: { version: '1', sha256: 'ab'.repeat(32) },
    expiresAt: null,
    createdAt: T0,
    createdBy: 'k1',
    revokedAt: null,
    revokedBy: null,
    fulfilledAt: null,
    fulfilledSha256: null,
  });

  /** A message queued as TransmitService.push queues one: the meta naming the transmission, its row in the message's commit. */
  async function transmit(queue: SqliteQueue, a: Authorization, txId: string, messageId: string): Promise<string> {
    const transmissions = new TransmissionStore(db.sqlite);
    return queue.enqueue(
      {
        direction: 'outbound',
        mailFrom: a.from,
        recipients: ['phr@phr.example'],
        submittedBy: 'api:k1',
        messageId: `<${messageId}>`,
        meta: { patientDirected: true, transmission: txId, authorization: a.id },
      },
      body,
      {
        withinCommit: (m) =>
          transmissions.insert({
            id: txId,
            patientKey: a.patientKey,
            recordId: 'rec_1',
            authorizationId: a.id,
            destination: 'phr@phr.example',
            sha256: txId.padEnd(64, '0'),
            trigger: 'discharge',
            status: 'queued',
            reason: null,
            queueId: m.queueId,
            messageId,
            createdAt: T0,
            resentBy: null,
          }),
      },
    );
  }

  it('queued, relayed, processed, dispatched and failed list under the patient as `authority|ref` (or the ref alone), with the transmission; other messages have none; the chain verifies', async () => {
    let clock = T0;
    const queue = new SqliteQueue(db, { now: () => clock });
    const tracking = new TrackingStore(db);
    const withAuthority = authorization('auth_a', 'MRN-7', '2.16.840.1.113883.19.5');
    const plain = authorization('auth_b', 'MRN-8', null);
    await db.batch(() => {
      new AuthorizationStore(db.sqlite).insert(withAuthority);
      new AuthorizationStore(db.sqlite).insert(plain);
    });
    const sent = await transmit(queue, withAuthority, 'tx_1', 'm1@hospital.example');
    const failing = await transmit(queue, plain, 'tx_2', 'm2@hospital.example');
    const other = await queue.enqueue({ direction: 'outbound', mailFrom: 'doctor@hospital.example', recipients: ['phr@phr.example'], submittedBy: 'api:k1', messageId: '<m3@hospital.example>' }, body);

    const leased = await queue.lease(10, 'w1', MINUTE);
    clock += MINUTE;
    await db.batch(() => {
      for (const d of leased.filter((l) => l.queueId !== failing)) {
        queue.deliveries.complete(d, { code: 250, text: 'queued' }, clock);
        tracking.track({ queueId: d.queueId, messageId: d.queueId === sent ? '<m1@hospital.example>' : '<m3@hospital.example>', recipient: d.recipient, sender: 'records@hospital.example', sentAt: new Date(clock), processedTimeoutMs: MINUTE, dispatchedTimeoutMs: MINUTE, dispatchedRequested: true });
      }
      queue.deliveries.fail(leased.find((l) => l.queueId === failing)!, { code: 550, enhanced: '5.7.1', text: 'untrusted' }, clock);
    });
    for (const [kind, id] of [['processed', 'm1'], ['dispatched', 'm1'], ['dispatched', 'm3']] as const) {
      clock += MINUTE;
      await db.batch(() => tracking.record(`${id}@hospital.example`, 'phr@phr.example', kind, new Date(clock), undefined, { messageId: `<${kind}-${id}@phr.example>`, via: 'mdn' }));
    }

    const patient = audit.list({ patientRef: '2.16.840.1.113883.19.5|MRN-7', limit: 10 }).entries;
    expect(patient.map((e) => [e.action, e.object, e.outcome, e.detail.transmission])).toEqual([
      ['message.queued', { kind: 'message', id: sent }, 'success', 'tx_1'],
      ['message.relayed', { kind: 'message', id: sent }, 'success', 'tx_1'],
      ['message.processed', { kind: 'message', id: sent }, 'success', 'tx_1'],
      ['message.dispatched', { kind: 'message', id: sent }, 'success', 'tx_1'],
    ]);
    // Only the reference the authorization was given with: MRN-7 alone is another patient.
    expect(audit.list({ patientRef: 'MRN-7', limit: 10 }).entries).toEqual([]);
    expect(audit.list({ patientRef: 'MRN-8', limit: 10 }).entries.map((e) => [e.action, e.outcome, e.detail.transmission])).toEqual([
      ['message.queued', 'success', 'tx_2'],
      ['message.failed', 'failure', 'tx_2'],
    ]);
    const unrelated = audit.list({ objectId: other, limit: 10 }).entries;
    expect(unrelated.map((e) => [e.action, e.patientRef, 'transmission' in e.detail])).toEqual([
      ['message.queued', null, false],
      ['message.relayed', null, false],
      ['message.dispatched', null, false],
    ]);
    expect(audit.verify()).toMatchObject({ ok: true, entries: 9 });
  });

  it('a message naming an authorization in its meta that does not exist gets no patient', async () => {
    const queue = new SqliteQueue(db);
    const id = await queue.enqueue({ direction: 'outbound', mailFrom: 'a@hospital.example', recipients: ['p@phr.example'], submittedBy: 'api:k1', meta: { transmission: 'tx_9', authorization: 'auth_gone' } }, body);
    expect(audit.list({ objectId: id, limit: 10 }).entries.map((e) => [e.patientRef, e.detail.transmission])).toEqual([[null, undefined]]);
  });

  it('a database of migration 12 upgrades with its chain whole, and appends on it', async () => {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
    dir = mkdtempSync(join(tmpdir(), 'hisp-audit-'));
    const old = HispDatabase.open({ dataDir: dir, migrations: HISP_MIGRATIONS.slice(0, 12) });
    const before = await new SqliteQueue(old).enqueue({ direction: 'outbound', mailFrom: 'a@hospital.example', recipients: ['p@phr.example'], submittedBy: 'api:k1' }, body);
    new AuditLog(old.sqlite, () => T0).append(granted(1));
    await old.close();
    db = openDatabase({ dataDir: dir });
    audit = new AuditLog(db.sqlite, () => T0);
    expect(db.schemaVersion).toBe(HISP_MIGRATIONS.length);
    expect(audit.verify()).toMatchObject({ ok: true, entries: 2 });
    const a = authorization('auth_a', 'MRN-7', null);
    await db.batch(() => new AuthorizationStore(db.sqlite).insert(a));
    const after = await transmit(new SqliteQueue(db), a, 'tx_1', 'm1@hospital.example');
    expect(audit.list({ action: 'message.', limit: 10 }).entries.map((e) => [e.object.id, e.patientRef])).toEqual([
      [before, null],
      [after, 'MRN-7'],
    ]);
    expect(audit.verify()).toMatchObject({ ok: true, entries: 3 });
  });
});

describe('a message received is an entry', () => {
  it('message.received: by the remote sender (lowercased), of the message, success, without a patient; the chain verifies', async () => {
    const queue = new SqliteQueue(db);
    const id = await queue.enqueue({ direction: 'inbound', mailFrom: 'Doctor@Hospital.example', recipients: ['Patient@PHR.example'], messageId: '<in1@hospital.example>' }, Buffer.from('Subject: x\r\n\r\nbody\r\n'));
    // Queued inbound: no entry yet (the outbox announces the delivery to the mailbox).
    expect(audit.list({ objectId: id, limit: 10 }).entries).toEqual([]);
    const [d] = await queue.lease(1, 'r1', 60_000, 'inbound');
    await db.batch(() => queue.deliveries.complete(d!, { code: 250, text: 'delivered' }, T0));
    const entries = audit.list({ objectId: id, limit: 10 }).entries;
    expect(entries.map((e) => [e.action, e.actor, e.object, e.outcome, e.patientRef, e.at])).toEqual([
      ['message.received', { kind: 'remote', id: 'doctor@hospital.example' }, { kind: 'message', id }, 'success', null, T0],
    ]);
    expect(entries[0]!.detail).toMatchObject({ recipient: 'Patient@PHR.example', address: 'patient@phr.example', data: { state: 'received', messageId: 'in1@hospital.example', from: 'Doctor@Hospital.example' } });
    expect(audit.verify()).toMatchObject({ ok: true, entries: 1 });
  });
});

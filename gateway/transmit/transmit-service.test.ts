// TransmitService on a real store and queue: authorizations checked and recorded, records pushed to
// each destination once, revocation and expiry, the audit entries committed with what they record.
import { parseDirectContext } from '../documents/direct-context.js';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simpleParser } from 'mailparser';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hispError, hispRejection } from '../../test/helpers/hisp-error.js';
import { AuditLog } from '../audit/audit-log.js';
import { createLogger } from '../core/logger.js';
import { EventOutbox } from '../events/event-outbox.js';
import { MessageTracker } from '../events/message-tracker.js';
import type { GatewayContext } from '../flows/gateway-context.js';
import { MessageSender, type DocumentTools, type XdmSubmission } from '../flows/send-message.js';
import type { RecipientVerdict, validateRecipients } from '../flows/validate-recipients.js';
import { SqliteQueue } from '../queue/sqlite-queue.js';
import { HispDatabase } from '../store/database.js';
import { TransmitService, type AuthorizationInput, type RecordInput, type TransmitActor } from './transmit-service.js';

const T0 = Date.UTC(2026, 11, 7, 12);
const log = createLogger({ level: 'silent' });
let dir: string;
let db: HispDatabase;
let queue: SqliteQueue;
let clock: number;
let audit: AuditLog;
let service: TransmitService;
let verdicts: Map<string, RecipientVerdict>;
let renderFails: Set<number>;
let renders: number;
/** What each XDM package was asked to say of its SubmissionSet (the real packing: gateway/documents/document-tools.test.ts). */
const packed: (XdmSubmission | undefined)[] = [];

const tools: DocumentTools = {
  renderCcda: () => {
    renders++;
    if (renderFails.has(renders)) throw new Error('disk gone');
    return '<!DOCTYPE html><html><body><h1>Discharge summary</h1></body></html>';
  },
  packXdm: (_docs, file, submission) => {
    packed.push(submission);
    writeFileSync(file, Buffer.from('PK\u0005\u0006' + '\u0000'.repeat(18), 'latin1'));
    return Promise.resolve();
  },
};

const fakeValidate: typeof validateRecipients = (addresses) =>
  Promise.resolve(addresses.map((address) => {
    const verdict = verdicts.get(address) ?? 'trusted';
    return { address, verdict, ...(verdict === 'trusted' ? {} : { code: 'HISP_DISCOVERY_NO_CERT' as const, reason: `${verdict} in this test` }) };
  }));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-transmit-'));
  mkdirSync(join(dir, 'incoming'));
  db = HispDatabase.open({ dataDir: dir });
  clock = T0;
  queue = new SqliteQueue(db, { now: () => clock });
  verdicts = new Map();
  renderFails = new Set();
  renders = 0;
  const ctx = {
    config: { hostname: 'hisp.hospital.example' },
    registry: { isLocalDomain: (d: string) => d === 'hospital.example', domainConfig: () => ({ mdn: { requestFinalDelivery: true } }) },
    db,
    queue,
    logger: log,
    now: () => clock,
    wake: () => undefined,
  };
  const sender = new MessageSender(ctx as unknown as GatewayContext, tools, join(dir, 'incoming'));
  audit = new AuditLog(db.sqlite, () => clock);
  service = new TransmitService({
    db,
    sender,
    tracker: new MessageTracker(db, queue, new EventOutbox(db)),
    audit,
    checks: ctx as unknown as GatewayContext,
    now: () => clock,
    validate: fakeValidate,
  });
});

afterEach(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

const ehr: TransmitActor = { keyId: 'key_ehr', sendAs: ['@hospital.example'], client: '127.0.0.1' };
const other: TransmitActor = { keyId: 'key_other', sendAs: ['@clinic.example'], client: '127.0.0.1' };
const jane = { patientRef: 'MRN-1', assigningAuthority: '2.16.840.1.113883.19.5' };

function grant(over: Partial<AuthorizationInput> = {}): AuthorizationInput {
  return {
    patient: { name: 'Jane Doe', birthDate: '1970-01-02' },
    from: 'records@hospital.example',
    dataHolder: { name: 'Example Hospital' },
    destinations: [{ address: 'jane@phr.example', requestTxt: true }, { address: 'Jane.Backup@PHR2.example', package: 'xdm', humanReadable: false }],
    frequency: 'on-update',
    grantedBy: { kind: 'patient' },
    method: 'portal',
    consent: { version: 'v3', sha256: 'a'.repeat(64) },
    ...over,
  };
}

function record(text = 'discharge', trigger: RecordInput['trigger'] = 'discharge'): RecordInput {
  return {
    document: { filename: 'summary.xml', contentType: 'application/xml', kind: 'ccda', content: Buffer.from(`<ClinicalDocument xmlns="urn:hl7-org:v3"><title>${text}</title></ClinicalDocument>`) },
    trigger,
    madeAt: T0 - 60_000,
  };
}

const actions = (patientRef: string) => audit.list({ patientRef, limit: 100 }).entries.map((e) => [e.action, e.outcome]);

describe('authorizations', () => {
  it('refuses an authorization with a destination that is not trusted: each verdict and reason, nothing recorded', async () => {
    verdicts.set('jane.backup@phr2.example', 'untrusted');
    const err = await hispRejection(service.authorize(jane, grant(), ehr));
    expect(err.code).toBe('HISP_TRANSMIT_DESTINATION_REFUSED');
    expect(err.transient).toBe(false);
    expect(err.details?.destinations).toEqual([{ address: 'jane.backup@phr2.example', verdict: 'untrusted', code: 'HISP_DISCOVERY_NO_CERT', reason: 'untrusted in this test' }]);
    expect(hispError(() => service.list(jane, ehr)).code).toBe('HISP_TRANSMIT_UNKNOWN_PATIENT');
    expect(audit.list({ limit: 10 }).entries).toEqual([]);
  });

  it('a destination to try later is a transient refusal, with a Retry-After', async () => {
    verdicts.set('jane@phr.example', 'try-later');
    const err = await hispRejection(service.authorize(jane, grant(), ehr));
    expect(err.transient).toBe(true);
    expect(err.details?.retryAfter).toBe(60);
  });

  it('records a trusted authorization with its audit entry; revoking is prospective, once, and keeps it listed', async () => {
    const a = await service.authorize(jane, grant(), ehr);
    expect(a).toMatchObject({ patientKey: '2.16.840.1.113883.19.5|MRN-1', from: 'records@hospital.example', revokedAt: null, createdAt: T0 });
    expect(a.destinations.map((d) => [d.address, d.package, d.humanReadable, d.requestTxt])).toEqual([
      ['jane@phr.example', 'mime', true, true],
      ['jane.backup@phr2.example', 'xdm', false, false],
    ]);
    clock += 1000;
    const revoked = await service.revoke(jane, a.id, ehr);
    expect(revoked).toMatchObject({ revokedAt: T0 + 1000, revokedBy: 'key_ehr' });
    clock += 1000;
    expect(await service.revoke(jane, a.id, ehr)).toMatchObject({ revokedAt: T0 + 1000 });
    expect(service.list(jane, ehr).map((x) => x.id)).toEqual([a.id]);
    expect(actions(a.patientKey)).toEqual([
      ['authorization.granted', 'success'],
      ['authorization.revoked', 'success'],
    ]);
    expect(() => db.sqlite.prepare('DELETE FROM transmit_authorizations').run()).toThrow(/never deleted/);
  });

  it('a key sees only the authorizations sent from its scopes; the same ref under another authority is another patient', async () => {
    const a = await service.authorize(jane, grant(), ehr);
    expect(hispError(() => service.list(jane, other)).code).toBe('HISP_TRANSMIT_UNKNOWN_PATIENT');
    expect(hispError(() => service.get(jane, a.id, other)).code).toBe('HISP_TRANSMIT_UNKNOWN_AUTHORIZATION');
    expect(hispError(() => service.get({ patientRef: 'MRN-1' }, a.id, ehr)).code).toBe('HISP_TRANSMIT_UNKNOWN_AUTHORIZATION');
    expect((await hispRejection(service.revoke(jane, a.id, other))).code).toBe('HISP_TRANSMIT_UNKNOWN_AUTHORIZATION');
  });
});

describe('pushing records', () => {
  it('sends one message per destination with the BB+ sentence, request.txt where asked, its package; the same document never twice', async () => {
    const a = await service.authorize(jane, grant(), ehr);
    clock += 60_000;
    const first = await service.push(jane, record(), ehr, log);
    expect(first.transmissions.map((t) => [t.destination, t.status, t.authorizationId])).toEqual([
      ['jane@phr.example', 'queued', a.id],
      ['jane.backup@phr2.example', 'queued', a.id],
    ]);
    const [toJane, toBackup] = first.transmissions.map((t) => t.queueId!);
    const mail = await simpleParser(await queue.body(toJane!));
    expect(mail.text?.trim()).toBe('This message was sent by Example Hospital at the request of Jane Doe.');
    expect(mail.attachments.map((p) => [p.filename, p.contentType])).toEqual([
      ['summary.xml', 'application/xml'],
      ['summary.html', 'text/html'],
      ['request.txt', 'text/plain'],
      ['metadata.txt', 'text/plain'],
    ]);
    // Direct Context from the authorization: the type of what goes, the patient's date of birth when known.
    expect(parseDirectContext(mail.attachments[3]!.content)).toMatchObject({ version: '1.1', type: { category: 'general', action: 'report' } });
    expect(mail.attachments[2]!.content.toString()).toBe('Destination: jane@phr.example\r\nPatient: Jane Doe\r\nData-holder: Example Hospital\r\nRecurring: Yes\r\n');
    expect(queue.messages.get(toJane!)?.meta).toMatchObject({ patientDirected: true, transmission: first.transmissions[0]!.id });
    const backup = await simpleParser(await queue.body(toBackup!));
    expect(backup.attachments.map((p) => p.filename)).toEqual(['XDM.zip', 'metadata.txt']);
    // The XDM package's SubmissionSet names the patient (the authority is an OID), the title and the recipient.
    expect(packed.at(-1)).toEqual({ patientId: 'MRN-1^^^&2.16.840.1.113883.19.5&ISO', title: 'Health information from Example Hospital', intendedRecipients: ['jane.backup@phr2.example'] });

    clock += 60_000;
    const again = await service.push(jane, record(), ehr, log);
    expect(again.sha256).toBe(first.sha256);
    expect(again.transmissions.map((t) => [t.destination, t.status, t.reason, t.queueId])).toEqual([
      ['jane@phr.example', 'skipped', 'duplicate', null],
      ['jane.backup@phr2.example', 'skipped', 'duplicate', null],
    ]);
    expect(messageCount()).toBe(2);

    const next = await service.push(jane, record('new result', 'new-result'), ehr, log);
    expect(next.transmissions.map((t) => t.status)).toEqual(['queued', 'queued']);
    expect(actions(a.patientKey)).toEqual([
      ['authorization.granted', 'success'],
      ['record.received', 'success'],
      ['transmission.queued', 'success'],
      ['transmission.queued', 'success'],
      ['record.received', 'success'],
      ['transmission.skipped', 'success'],
      ['transmission.skipped', 'success'],
      ['record.received', 'success'],
      ['transmission.queued', 'success'],
      ['transmission.queued', 'success'],
    ]);
  });

  it('the history lists every transmission, a page at a time, with its delivery as tracked', async () => {
    await service.authorize(jane, grant(), ehr);
    await service.push(jane, record(), ehr, log);
    await service.push(jane, record(), ehr, log);
    const page = await service.history(jane, ehr, 0, 3);
    expect(page.transmissions.map((t) => [t.status, t.delivery?.state ?? null])).toEqual([
      ['queued', 'queued'],
      ['queued', 'queued'],
      ['skipped', null],
    ]);
    const rest = await service.history(jane, ehr, page.nextCursor!, 3);
    expect(rest).toMatchObject({ transmissions: [{ status: 'skipped', reason: 'duplicate' }], nextCursor: null });
    expect(hispError(() => service.list(jane, other)).code).toBe('HISP_TRANSMIT_UNKNOWN_PATIENT');
    expect((await hispRejection(service.history(jane, other, 0, 10))).code).toBe('HISP_TRANSMIT_UNKNOWN_PATIENT');
  });

  it('after revocation a push is 409 with the revocation time, audited as a failure, and nothing is sent', async () => {
    const a = await service.authorize(jane, grant(), ehr);
    clock += 5000;
    await service.revoke(jane, a.id, ehr);
    clock += 5000;
    const err = await hispRejection(service.push(jane, record(), ehr, log));
    expect(err.code).toBe('HISP_TRANSMIT_REVOKED');
    expect(err.details?.revokedAt).toBe(new Date(T0 + 5000).toISOString());
    expect(messageCount()).toBe(0);
    expect(actions(a.patientKey).at(-1)).toEqual(['record.refused', 'failure']);
  });

  it('unknown patient: 404; a once-authorization sends once; an expired one sends nothing', async () => {
    expect((await hispRejection(service.push(jane, record(), ehr, log))).code).toBe('HISP_TRANSMIT_UNKNOWN_PATIENT');
    await service.authorize(jane, grant({ frequency: 'once', destinations: [{ address: 'jane@phr.example', requestTxt: true }], expiresAt: T0 + 3_600_000 }), ehr);
    const first = await service.push(jane, record(), ehr, log);
    expect(first.transmissions.map((t) => t.status)).toEqual(['queued']);
    const mail = await simpleParser(await queue.body(first.transmissions[0]!.queueId!));
    expect(mail.attachments.find((p) => p.filename === 'request.txt')?.content.toString()).toContain('Recurring: No\r\n');
    expect((await hispRejection(service.push(jane, record('later'), ehr, log))).code).toBe('HISP_TRANSMIT_NOT_AUTHORIZED');
    // The same document again: the once-authorization it fulfilled answers, as a duplicate.
    expect((await service.push(jane, record(), ehr, log)).transmissions.map((t) => t.reason)).toEqual(['duplicate']);

    const bob = { patientRef: 'MRN-2' };
    await service.authorize(bob, grant({ expiresAt: T0 + 1000 }), ehr);
    clock = T0 + 1000;
    expect((await hispRejection(service.push(bob, record(), ehr, log))).code).toBe('HISP_TRANSMIT_NOT_AUTHORIZED');
  });

  it('an interval holds back a destination sent to within it', async () => {
    await service.authorize(jane, grant({ intervalMinutes: 60, destinations: [{ address: 'jane@phr.example' }] }), ehr);
    expect((await service.push(jane, record('a'), ehr, log)).transmissions[0]).toMatchObject({ status: 'queued' });
    clock += 59 * 60_000;
    expect((await service.push(jane, record('b'), ehr, log)).transmissions[0]).toMatchObject({ status: 'skipped', reason: 'interval' });
    clock += 60_000;
    expect((await service.push(jane, record('c'), ehr, log)).transmissions[0]).toMatchObject({ status: 'queued' });
  });

  it('two pushes of the same document at once: one message per destination, the other answered as a duplicate', async () => {
    await service.authorize(jane, grant({ destinations: [{ address: 'jane@phr.example' }] }), ehr);
    const [x, y] = await Promise.all([service.push(jane, record(), ehr, log), service.push(jane, record(), ehr, log)]);
    expect([x.transmissions[0]!.status, y.transmissions[0]!.status].sort()).toEqual(['queued', 'skipped']);
    expect([x, y].flatMap((p) => p.transmissions.map((t) => t.reason)).filter(Boolean)).toEqual(['duplicate']);
    expect(messageCount()).toBe(1);
  });

  it('a push that fails midway leaves the destinations reached recorded; pushed again, only the others get it', async () => {
    await service.authorize(jane, grant({ destinations: [{ address: 'jane@phr.example' }, { address: 'jane@phr2.example' }] }), ehr);
    renderFails.add(2);
    await expect(service.push(jane, record(), ehr, log)).rejects.toThrow(/disk gone/);
    expect(messageCount()).toBe(1);
    const retry = await service.push(jane, record(), ehr, log);
    expect(retry.transmissions.map((t) => [t.destination, t.status])).toEqual([
      ['jane@phr.example', 'skipped'],
      ['jane@phr2.example', 'queued'],
    ]);
    expect(messageCount()).toBe(2);
  });
});

function messageCount(): number {
  return db.sqlite.prepare<[], { n: number }>('SELECT count(*) AS n FROM messages').get()!.n;
}

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
import { MessageSender, type DocumentTools, type SendRequest, type SendResult, type XdmSubmission } from '../flows/send-message.js';
import type { RecipientVerdict, validateRecipients } from '../flows/validate-recipients.js';
import type { FailureReason } from '../events/failure-reason.js';
import { SqliteQueue } from '../queue/sqlite-queue.js';
import { HispDatabase } from '../store/database.js';
import { TrackingStore } from '../store/tracking-store.js';
import { PUSH_CONCURRENCY, TransmitService, type AuthorizationInput, type RecordInput, type TransmitActor } from './transmit-service.js';
import type { Transmission } from './transmission-store.js';

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
/** Runs around each message the service sends (the real MessageSender inside): how a test lands a revocation mid-push. */
let around: ((request: SendRequest, send: () => Promise<SendResult>) => Promise<SendResult>) | undefined;
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
  around = undefined;
  const ctx = {
    config: { hostname: 'hisp.hospital.example' },
    registry: { isLocalDomain: (d: string) => d === 'hospital.example', domainConfig: () => ({ mdn: { requestFinalDelivery: true } }) },
    db,
    queue,
    logger: log,
    now: () => clock,
    wake: () => undefined,
  };
  const real = new MessageSender(ctx as unknown as GatewayContext, tools, join(dir, 'incoming'));
  const sender = { send: (...args: Parameters<MessageSender['send']>) => (around ? around(args[0], () => real.send(...args)) : real.send(...args)) } as unknown as MessageSender;
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

// The service's own entries; the messages' (message.queued…, written by the outbox trigger with the
// patient since migration 13) are asserted in gateway/audit/audit-log.test.ts and the e2e story.
const actions = (patientRef: string) =>
  audit
    .list({ patientRef, limit: 100 })
    .entries.filter((e) => !e.action.startsWith('message.'))
    .map((e) => [e.action, e.outcome]);

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
    expect(packed.at(-1)).toEqual({
      patientId: 'MRN-1^^^&2.16.840.1.113883.19.5&ISO',
      title: 'Health information from Example Hospital',
      intendedRecipients: ['jane.backup@phr2.example'],
      // The DocumentEntries' sourcePatientInfo: the date of birth the authorization gave (its Direct Context).
      patient: { dateOfBirth: '1970-01-02' },
    });

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

describe('authorizations changing while a push runs', () => {
  const two = [{ address: 'jane@phr.example' }, { address: 'jane@phr2.example' }];

  /** The first destination's message goes, then `between` runs; the second's commits only after it (it passed the check before composing). */
  function betweenDestinations(between: () => Promise<unknown>): void {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    around = async (request, send) => {
      if (request.to?.[0] !== 'jane@phr.example') {
        await gate;
        return send();
      }
      const result = await send();
      await between();
      release();
      return result;
    };
  }

  it('a revocation landing mid-push: the destinations not yet committed get nothing (skipped: revoked), on record; the next push is 409', async () => {
    const a = await service.authorize(jane, grant({ destinations: two }), ehr);
    clock += 1000;
    betweenDestinations(() => service.revoke(jane, a.id, ehr));
    const pushed = await service.push(jane, record(), ehr, log);
    expect(pushed.transmissions.map((t) => [t.destination, t.status, t.reason, t.authorizationId])).toEqual([
      ['jane@phr.example', 'queued', null, a.id],
      ['jane@phr2.example', 'skipped', 'revoked', a.id],
    ]);
    expect(pushed.transmissions[1]!.queueId).toBeNull();
    expect(messageCount()).toBe(1);
    // What went before the revocation stays on record; what did not go says why.
    expect((await service.history(jane, ehr, 0, 10)).transmissions.map((t) => [t.destination, t.status, t.reason])).toEqual([
      ['jane@phr.example', 'queued', null],
      ['jane@phr2.example', 'skipped', 'revoked'],
    ]);
    expect(actions(a.patientKey)).toEqual([
      ['authorization.granted', 'success'],
      ['record.received', 'success'],
      ['transmission.queued', 'success'],
      ['authorization.revoked', 'success'],
      ['transmission.skipped', 'success'],
    ]);
    around = undefined;
    expect((await hispRejection(service.push(jane, record('next'), ehr, log))).code).toBe('HISP_TRANSMIT_REVOKED');
  });

  it('revoked before any message commits: nothing goes, and the destinations beyond those composing at once are not even composed', async () => {
    const many = Array.from({ length: PUSH_CONCURRENCY + 1 }, (_, i) => ({ address: `jane${i}@phr.example` }));
    const a = await service.authorize(jane, grant({ destinations: many }), ehr);
    let revoked = false;
    around = async (_request, send) => {
      if (!revoked) {
        revoked = true;
        await service.revoke(jane, a.id, ehr);
      }
      return send();
    };
    const pushed = await service.push(jane, record(), ehr, log);
    expect(pushed.transmissions.map((t) => t.reason)).toEqual(many.map(() => 'revoked'));
    expect(messageCount()).toBe(0);
    // Those composed at once are rolled back in their commits; the last saw the revocation before composing.
    expect(renders).toBe(PUSH_CONCURRENCY);
  });

  it('an authorization that expires mid-push sends nothing more: skipped, expired', async () => {
    await service.authorize(jane, grant({ destinations: two, expiresAt: T0 + 60_000 }), ehr);
    betweenDestinations(() => {
      clock = T0 + 60_000;
      return Promise.resolve();
    });
    const pushed = await service.push(jane, record(), ehr, log);
    expect(pushed.transmissions.map((t) => [t.status, t.reason])).toEqual([
      ['queued', null],
      ['skipped', 'expired'],
    ]);
    expect(messageCount()).toBe(1);
  });

  it('a once-authorization under two pushes of different documents at once: one document goes, to every destination; the other push is skipped: fulfilled', async () => {
    const o = await service.authorize(jane, grant({ frequency: 'once', destinations: two }), ehr);
    const [x, y] = await Promise.all([service.push(jane, record('one'), ehr, log), service.push(jane, record('two'), ehr, log)]);
    const outcomes = [x, y].map((p) => p.transmissions.map((t) => `${t.status}:${t.reason ?? ''}`));
    expect(outcomes.sort()).toEqual([
      ['queued:', 'queued:'],
      ['skipped:fulfilled', 'skipped:fulfilled'],
    ]);
    const winner = x.transmissions[0]!.status === 'queued' ? x : y;
    expect(messageCount()).toBe(2);
    expect(service.get(jane, o.id, ehr)).toMatchObject({ fulfilledSha256: winner.sha256 });
    const queued = db.sqlite.prepare<[], { sha256: string }>("SELECT sha256 FROM transmissions WHERE status = 'queued'").all();
    expect(queued.map((r) => r.sha256)).toEqual([winner.sha256, winner.sha256]);
  });

  it('a once-authorization is fulfilled only by a message sent: held back under an older authorization’s interval, the destination gets it under the once one', async () => {
    const a = await service.authorize(jane, grant({ intervalMinutes: 60, destinations: [{ address: 'jane@phr.example' }] }), ehr);
    expect((await service.push(jane, record('a'), ehr, log)).transmissions).toMatchObject([{ status: 'queued', authorizationId: a.id }]);
    clock += 60_000;
    const o = await service.authorize(jane, grant({ frequency: 'once', destinations: [{ address: 'jane@phr.example' }] }), ehr);
    clock += 9 * 60_000;
    const b = await service.push(jane, record('b'), ehr, log);
    expect(b.transmissions).toMatchObject([{ status: 'queued', authorizationId: o.id }]);
    expect(messageCount()).toBe(2);
    expect(service.get(jane, o.id, ehr)).toMatchObject({ fulfilledAt: clock, fulfilledSha256: b.sha256 });
    // Still within the interval, the once-authorization spent: held back, under the older one.
    clock += 60_000;
    expect((await service.push(jane, record('c'), ehr, log)).transmissions).toMatchObject([{ status: 'skipped', reason: 'interval', authorizationId: a.id }]);
    expect(messageCount()).toBe(2);
  });

  it('a once-authorization whose destination already had the document is fulfilled; one revoked mid-push is not', async () => {
    await service.authorize(jane, grant({ destinations: [{ address: 'jane@phr.example' }] }), ehr);
    const first = await service.push(jane, record(), ehr, log);
    const o = await service.authorize(jane, grant({ frequency: 'once', destinations: [{ address: 'jane@phr.example' }] }), ehr);
    expect((await service.push(jane, record(), ehr, log)).transmissions).toMatchObject([{ status: 'skipped', reason: 'duplicate' }]);
    expect(service.get(jane, o.id, ehr)).toMatchObject({ fulfilledSha256: first.sha256 });

    const bob = { patientRef: 'MRN-2' };
    const ob = await service.authorize(bob, grant({ frequency: 'once', destinations: [{ address: 'bob@phr.example' }] }), ehr);
    around = async (_request, send) => {
      await service.revoke(bob, ob.id, ehr);
      return send();
    };
    expect((await service.push(bob, record(), ehr, log)).transmissions).toMatchObject([{ status: 'skipped', reason: 'revoked' }]);
    expect(service.get(bob, ob.id, ehr)).toMatchObject({ fulfilledAt: null, revokedAt: T0 });
  });

  it('the 409 after a revocation holds when the others have expired or are fulfilled, with the latest revocation and expiry', async () => {
    const a = await service.authorize(jane, grant({ destinations: [{ address: 'jane@phr.example' }] }), ehr);
    await service.authorize(jane, grant({ destinations: [{ address: 'jane@phr2.example' }], expiresAt: T0 + 60_000 }), ehr);
    await service.authorize(jane, grant({ frequency: 'once', destinations: [{ address: 'jane@phr3.example' }] }), ehr);
    await service.push(jane, record(), ehr, log);
    clock = T0 + 30_000;
    await service.revoke(jane, a.id, ehr);
    clock = T0 + 90_000;
    const err = await hispRejection(service.push(jane, record('later'), ehr, log));
    expect(err.code).toBe('HISP_TRANSMIT_REVOKED');
    expect(err.details).toEqual({ revokedAt: new Date(T0 + 30_000).toISOString(), expiredAt: new Date(T0 + 60_000).toISOString() });
    expect(err.message).toMatch(/1 revoked .*1 expired .*1 sent once/);
    expect(audit.list({ patientRef: a.patientKey, limit: 100 }).entries.at(-1)).toMatchObject({ action: 'record.refused', detail: { code: 'HISP_TRANSMIT_REVOKED', expiredAt: new Date(T0 + 60_000).toISOString() } });

    const bob = { patientRef: 'MRN-2' };
    await service.authorize(bob, grant({ expiresAt: T0 + 120_000 }), ehr);
    clock = T0 + 120_000;
    const expired = await hispRejection(service.push(bob, record(), ehr, log));
    expect([expired.code, expired.details]).toEqual(['HISP_TRANSMIT_NOT_AUTHORIZED', { expiredAt: new Date(T0 + 120_000).toISOString() }]);
  });
});

describe('sending again after a delivery that surely failed', () => {
  const HOUR = 3_600_000;
  const phr = [{ address: 'jane@phr.example' }];

  /** The relay's answer for transmission t's message (what a worker records, gateway/queue/): failed with a reason, or relayed and tracked for its MDNs. */
  async function relay(t: Transmission, outcome: FailureReason | 'relayed'): Promise<void> {
    const leased = await queue.lease(100, 'w1', 60_000);
    const d = leased.find((x) => x.queueId === t.queueId)!;
    for (const x of leased) if (x !== d) await queue.release(x);
    if (outcome !== 'relayed') {
      await queue.fail(d, { code: 554, enhanced: '5.7.1', text: `refused in this test (${outcome})`, reason: outcome });
      return;
    }
    await db.batch(() => {
      queue.deliveries.complete(d, { code: 250, text: 'ok' }, clock);
      new TrackingStore(db).track({ queueId: d.queueId, messageId: t.messageId!, recipient: t.destination, sender: 'records@hospital.example', sentAt: new Date(clock), processedTimeoutMs: HOUR, dispatchedTimeoutMs: HOUR, dispatchedRequested: true });
    });
  }

  /** An MDN (or DSN) for transmission t's message, or its pending time-out firing. */
  async function notify(t: Transmission, what: 'processed' | 'dispatched' | 'failure-mdn' | 'dsn' | 'timeout'): Promise<void> {
    const tracking = new TrackingStore(db);
    if (what === 'timeout') {
      clock += 2 * HOUR;
      const due = tracking.dueTimeouts(new Date(clock)).find((x) => x.entry.queueId === t.queueId)!;
      await db.batch(() => tracking.markTimedOut(due.id, new Date(clock)));
      return;
    }
    const kind = what === 'failure-mdn' || what === 'dsn' ? 'failed' : what;
    await db.batch(() => tracking.record(t.messageId!, t.destination, kind, new Date(clock), undefined, { messageId: `<${what}-${t.id}@phr.example>`, via: what === 'dsn' ? 'dsn' : 'mdn' }));
  }

  it('no certificate: the same document pushed again goes as a new message; the history keeps both, the old one failed and superseded', async () => {
    const a = await service.authorize(jane, grant({ destinations: phr }), ehr);
    const [first] = (await service.push(jane, record(), ehr, log)).transmissions;
    await relay(first!, 'no-certificate');
    const [again] = (await service.push(jane, record(), ehr, log)).transmissions;
    expect(again).toMatchObject({ status: 'queued', reason: null, destination: 'jane@phr.example' });
    expect(again!.queueId).not.toBe(first!.queueId);
    expect(messageCount()).toBe(2);
    // The new message is on its way: a third push of it is a duplicate.
    expect((await service.push(jane, record(), ehr, log)).transmissions[0]).toMatchObject({ status: 'skipped', reason: 'duplicate' });
    expect(messageCount()).toBe(2);

    const history = (await service.history(jane, ehr, 0, 10)).transmissions;
    expect(history.map((t) => [t.id, t.status, t.reason, t.delivery?.state ?? null, t.delivery?.reason ?? null, t.resentBy])).toEqual([
      [first!.id, 'queued', null, 'failed', 'no-certificate', again!.id],
      [again!.id, 'queued', null, 'queued', null, null],
      [expect.any(String), 'skipped', 'duplicate', null, null, null],
    ]);
    // The re-send is a transmission.queued entry like any other, naming the one it re-sends.
    const queued = audit.list({ patientRef: a.patientKey, limit: 100 }).entries.filter((e) => e.action === 'transmission.queued');
    expect(queued.map((e) => [e.object.id, e.detail.resends ?? null])).toEqual([
      [first!.id, null],
      [again!.id, first!.id],
    ]);
  });

  it('every reason that proves non-delivery sends again; an operator bounce, the time-outs and a dispatched MDN do not', async () => {
    const cases: [string, (t: Transmission) => Promise<void>, 'queued' | 'skipped'][] = [
      ['untrusted', (t) => relay(t, 'untrusted'), 'queued'],
      ['no-route', (t) => relay(t, 'no-route'), 'queued'],
      ['rejected', (t) => relay(t, 'rejected'), 'queued'],
      ['expired', (t) => relay(t, 'expired'), 'queued'],
      ['failure-mdn', async (t) => (await relay(t, 'relayed'), await notify(t, 'processed'), await notify(t, 'failure-mdn')), 'queued'],
      ['dsn', async (t) => (await relay(t, 'relayed'), await notify(t, 'dsn')), 'queued'],
      ['bounced', async (t) => void (await queue.bounce(t.queueId!, 'wrong patient')), 'skipped'],
      ['processed-timeout', async (t) => (await relay(t, 'relayed'), await notify(t, 'timeout')), 'skipped'],
      ['dispatched-timeout', async (t) => (await relay(t, 'relayed'), await notify(t, 'processed'), await notify(t, 'timeout')), 'skipped'],
      // A late dispatched MDN after the time-out: it arrived after all.
      ['processed-timeout', async (t) => (await relay(t, 'relayed'), await notify(t, 'timeout'), await notify(t, 'dispatched')), 'skipped'],
      // A failed MDN after the dispatched one contradicts a final answer: it changes nothing.
      ['dispatched', async (t) => (await relay(t, 'relayed'), await notify(t, 'dispatched'), await notify(t, 'failure-mdn')), 'skipped'],
    ];
    for (const [i, [reason, fail, expected]] of cases.entries()) {
      const patient = { patientRef: `MRN-${i}` };
      await service.authorize(patient, grant({ destinations: phr }), ehr);
      const [first] = (await service.push(patient, record(), ehr, log)).transmissions;
      await fail(first!);
      const [before] = (await service.history(patient, ehr, 0, 1)).transmissions;
      expect([i, before!.delivery?.reason ?? before!.delivery?.state]).toEqual([i, reason]);
      const [again] = (await service.push(patient, record(), ehr, log)).transmissions;
      expect([i, reason, again!.status, again!.reason]).toEqual([i, reason, expected, expected === 'queued' ? null : 'duplicate']);
    }
  });

  it('two pushes re-sending at once: one message goes, the other is a duplicate', async () => {
    await service.authorize(jane, grant({ destinations: phr }), ehr);
    const [first] = (await service.push(jane, record(), ehr, log)).transmissions;
    await relay(first!, 'no-certificate');
    const both = await Promise.all([service.push(jane, record(), ehr, log), service.push(jane, record(), ehr, log)]);
    expect(both.map((p) => `${p.transmissions[0]!.status}:${p.transmissions[0]!.reason ?? ''}`).sort()).toEqual(['queued:', 'skipped:duplicate']);
    expect(messageCount()).toBe(2);
    expect(db.sqlite.prepare("SELECT count(*) FROM transmissions WHERE status = 'queued' AND resent_by IS NULL").pluck().get()).toBe(1);
  });

  it('a once-authorization fulfilled by a document that never arrived sends that document again, and no other', async () => {
    await service.authorize(jane, grant({ frequency: 'once', destinations: phr }), ehr);
    const [first] = (await service.push(jane, record(), ehr, log)).transmissions;
    await relay(first!, 'expired');
    expect((await service.push(jane, record(), ehr, log)).transmissions[0]).toMatchObject({ status: 'queued' });
    expect((await hispRejection(service.push(jane, record('later'), ehr, log))).code).toBe('HISP_TRANSMIT_NOT_AUTHORIZED');
    expect(messageCount()).toBe(2);
  });
});

function messageCount(): number {
  return db.sqlite.prepare<[], { n: number }>('SELECT count(*) AS n FROM messages').get()!.n;
}

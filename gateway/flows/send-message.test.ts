import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simpleParser } from 'mailparser';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hispRejection } from '../../test/helpers/hisp-error.js';
import { createLogger } from '../core/logger.js';
import { EventOutbox } from '../events/event-outbox.js';
import { SqliteQueue } from '../queue/sqlite-queue.js';
import { HispDatabase } from '../store/database.js';
import type { GatewayContext } from './gateway-context.js';
import { MessageSender, requestHash, type DocumentTools, type SendRequest, type XdmSubmission } from './send-message.js';

const T0 = Date.UTC(2026, 11, 7, 12);
const log = createLogger({ level: 'silent' });
let dir: string;
let incoming: string;
let db: HispDatabase;
let clock: number;
let queue: SqliteQueue;
let woken = 0;
const rendered: Buffer[] = [];
const packed: string[][] = [];
const submissions: (XdmSubmission | undefined)[] = [];

const tools: DocumentTools = {
  renderCcda: (doc) => {
    rendered.push(doc);
    return '<!DOCTYPE html><html><body><h1>Summary</h1></body></html>';
  },
  packXdm: (docs, file, submission) => {
    packed.push(docs.map((d) => d.filename));
    submissions.push(submission);
    writeFileSync(file, Buffer.from('PK\u0005\u0006' + '\u0000'.repeat(18), 'latin1'));
    return Promise.resolve();
  },
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-send-'));
  incoming = join(dir, 'incoming');
  mkdirSync(incoming);
  db = HispDatabase.open({ dataDir: dir });
  clock = T0;
  queue = new SqliteQueue(db, { now: () => clock });
  woken = 0;
  rendered.length = 0;
  packed.length = 0;
  submissions.length = 0;
});

afterEach(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

function sender(): MessageSender {
  const ctx = {
    config: { hostname: 'hisp.hospital.example' },
    registry: {
      isLocalDomain: (d: string) => d === 'hospital.example',
      domainConfig: () => ({ mdn: { requestFinalDelivery: true } }),
    },
    db,
    queue,
    logger: log,
    now: () => clock,
    wake: () => void woken++,
  };
  return new MessageSender(ctx as unknown as GatewayContext, tools, incoming);
}

const ccda = Buffer.from('<ClinicalDocument xmlns="urn:hl7-org:v3"/>');
const request: SendRequest = {
  from: 'doctor@hospital.example',
  to: ['patient@phr.example'],
  cc: ['Patient@PHR.example', 'nurse@clinic.example'],
  subject: 'Discharge summary',
  text: 'This message was sent by Example Hospital at the request of Jane Doe.',
  documents: [{ filename: 'summary.xml', contentType: 'application/xml', kind: 'ccda', content: ccda }],
};
const actor = { apiKeyId: 'k1', client: '127.0.0.1' };

describe('MessageSender', () => {
  it('stores the composed message with one delivery per recipient before it answers; the C-CDA goes with its rendering', async () => {
    const result = await sender().send(request, actor, log);
    expect(result.recipients).toEqual([
      { address: 'patient@phr.example', state: 'queued' },
      { address: 'nurse@clinic.example', state: 'queued' },
    ]);
    const stored = await queue.get(result.id);
    expect(stored?.deliveries.map((d) => d.state)).toEqual(['queued', 'queued']);
    expect(stored).toMatchObject({ mailFrom: 'doctor@hospital.example', submittedBy: 'api:k1', messageId: result.messageId });
    expect(woken).toBe(1);
    const parsed = await simpleParser(await queue.body(result.id));
    expect(parsed.messageId).toBe(`<${result.messageId}>`);
    expect(parsed.headers.get('disposition-notification-options')).toBe('X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true');
    expect(parsed.attachments.map((a) => [a.filename, a.contentType])).toEqual([
      ['summary.xml', 'application/xml'],
      ['summary.html', 'text/html'],
    ]);
    expect(rendered).toHaveLength(1);
    expect(new EventOutbox(db).after(0, { sent: ['@hospital.example'], received: [] }).map((e) => e.type)).toEqual(['message.queued', 'message.queued']);
    expect(readdirSync(incoming)).toEqual([]);
  });

  it('composes a small send in memory and a large one or one with a file part into a file: the same document arrives, nothing stays in incoming', async () => {
    const s = sender();
    const small = randomBytes(64 * 1024);
    const large = randomBytes(1024 * 1024 + 1);
    const onDisk = join(dir, 'upload.bin');
    writeFileSync(onDisk, small);
    const sends: [SendRequest['documents'], Buffer][] = [
      [[{ filename: 'scan.bin', contentType: 'application/octet-stream', kind: 'other', content: small }], small],
      [[{ filename: 'scan.bin', contentType: 'application/octet-stream', kind: 'other', content: large }], large],
      [[{ filename: 'scan.bin', contentType: 'application/octet-stream', kind: 'other', content: { path: onDisk } }], small],
    ];
    for (const [documents, octets] of sends) {
      const result = await s.send({ ...request, documents }, actor, log);
      const parsed = await simpleParser(await queue.body(result.id));
      expect(parsed.attachments.map((a) => [a.filename, a.content.equals(octets)])).toEqual([['scan.bin', true]]);
      expect(readdirSync(incoming)).toEqual([]);
    }
  });

  it('package xdm: one zip holding the documents, and XDM/1.0/DDM in the Subject; humanReadable false: no rendering', async () => {
    const result = await sender().send({ ...request, package: 'xdm', humanReadable: false, finalDelivery: false }, actor, log);
    const parsed = await simpleParser(await queue.body(result.id));
    expect(parsed.subject).toBe('Discharge summary XDM/1.0/DDM');
    expect(parsed.attachments.map((a) => [a.filename, a.contentType])).toEqual([['XDM.zip', 'application/zip']]);
    expect(packed).toEqual([['summary.xml']]);
    expect(rendered).toHaveLength(0);
    expect(parsed.headers.has('disposition-notification-options')).toBe(false);
  });

  it('package xdm: the SubmissionSet from the send (title, patient id, recipients) and the Direct Context patient for sourcePatientInfo', async () => {
    const patient = { givenName: 'Ada', surname: 'Lovelace', dateOfBirth: '1815-12-10', gender: 'F' };
    await sender().send({ ...request, package: 'xdm', humanReadable: false, xdm: { title: 'Records', patientId: '1^^^&2.16.840.1.113883.19.5&ISO' }, context: { patient } }, actor, log);
    expect(submissions).toEqual([{ title: 'Records', patientId: '1^^^&2.16.840.1.113883.19.5&ISO', intendedRecipients: ['patient@phr.example', 'nurse@clinic.example'], patient }]);
  });

  it('refuses a sender outside the local domains and requests without a valid recipient, storing nothing', async () => {
    expect((await hispRejection(sender().send({ ...request, from: 'doctor@elsewhere.example' }, actor, log))).code).toBe('HISP_SMTP_SENDER_NOT_ALLOWED');
    expect((await hispRejection(sender().send({ ...request, to: ['not an address'], cc: [] }, actor, log))).code).toBe('HISP_API_INVALID_REQUEST');
    expect((await hispRejection(sender().send({ ...request, to: [], cc: [] }, actor, log))).code).toBe('HISP_API_INVALID_REQUEST');
    expect(db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(0);
  });

  it('Idempotency-Key: the same request answers the first response, another request 422, concurrent duplicates store one message', async () => {
    const s = sender();
    const key = { key: 'order-1', requestHash: requestHash([JSON.stringify(request), ccda]) };
    const first = await s.send(request, actor, log, key);
    const again = await s.send(request, actor, log, key);
    expect(again).toEqual(first);
    const other = { key: 'order-1', requestHash: requestHash([JSON.stringify({ ...request, subject: 'x' }), ccda]) };
    expect((await hispRejection(s.send({ ...request, subject: 'x' }, actor, log, other))).code).toBe('HISP_API_IDEMPOTENCY_CONFLICT');
    // Another key's holder has its own key space.
    expect((await s.send(request, { ...actor, apiKeyId: 'k2' }, log, key)).id).not.toBe(first.id);

    const concurrent = { key: 'order-2', requestHash: 'h2' };
    const results = await Promise.all(Array.from({ length: 8 }, () => s.send(request, actor, log, concurrent)));
    expect(new Set(results.map((r) => r.id)).size).toBe(1);
    expect(db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(3);

    // After 24 h the key is free again.
    clock += 24 * 3_600_000 + 1;
    expect((await s.send(request, actor, log, key)).id).not.toBe(first.id);
    expect(s.purge()).toBe(2);
  });
});

// The API mailboxes in process (issue 15, "Receive"): messages put in the mailbox store the
// services read (a MailboxStore on the context's database), then listed (cursor, state), read
// (sender, security, parts, C-CDA header), their parts taken as bytes and rendered (the C-CDA as a
// page under its Content-Security-Policy), and acknowledged (once; again changes nothing); and the
// key's scopes: another mailbox's message is 404, a key without receive or that mailbox 403.
// Responses are checked against /openapi.json by the ApiClient.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { apiServerPerTest, TEST_DOMAIN, type ApiTestContext } from '../../../test/helpers/api-context.js';
import type { ApiClient } from '../../../test/helpers/api-client.js';
import { cdaDocument, section } from '../../../test/helpers/ccda-documents.js';
import { MailboxStore } from '../../mailbox/mailbox-store.js';

const server = apiServerPerTest();
const PATIENT = `patient@${TEST_DOMAIN}`;
const OTHER = `other@${TEST_DOMAIN}`;
const CCDA = Buffer.from(cdaDocument({ title: 'Summary of care for Ada', sections: [section('<paragraph>Allergies: none known.</paragraph>', 'Allergies')] }));
const NOTE = Buffer.from('<?xml version="1.0"?><note><to>Ada</to></note>');
const PDF = Buffer.from('%PDF-1.4\n% a letter\n');
const security = {
  sender: 'doctor@clinic.example',
  signers: [{ subject: 'CN=doctor@clinic.example', sha256: 'ab'.repeat(32), binding: 'address', anchor: { subject: 'CN=Clinic CA', sha256: 'cd'.repeat(32), bundle: null } }],
  algorithms: { cipher: 'aes256-cbc', keyTransport: 'rsa-oaep-sha256', digest: 'sha256' },
};

/** A received message as the inbound flow writes it: text, then a C-CDA, an XML note that is no CDA, and a PDF. */
function mime(n: number, to: string): Buffer {
  const b = 'b-mailbox-test';
  const attachment = (name: string, type: string, bytes: Buffer) =>
    `--${b}\r\nContent-Type: ${type}; name="${name}"\r\nContent-Disposition: attachment; filename="${name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n${bytes.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`;
  return Buffer.from(
    `From: Doctor <doctor@clinic.example>\r\nTo: ${to}\r\nSubject: Results ${n}\r\nMessage-ID: <m${n}@clinic.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="${b}"\r\n\r\n` +
      `--${b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour results, message ${n}.\r\n` +
      attachment('CCDA.xml', 'application/xml', CCDA) +
      attachment('note.xml', 'application/xml', NOTE) +
      attachment('letter.pdf', 'application/pdf', PDF) +
      `--${b}--\r\n`,
  );
}

let deliveries = 0;
async function deliver(t: ApiTestContext, mailbox: string, n: number): Promise<string> {
  const store = new MailboxStore(t.db, t.ctx.now);
  const entry = await store.deliver({
    deliveryId: `d-${++deliveries}`,
    mailbox,
    queueId: `q-${deliveries}`,
    mailFrom: 'doctor@clinic.example',
    messageId: `m${n}@clinic.example`,
    receivedAt: new Date(Date.UTC(2026, 11, 7, 12, 0, n)),
    message: mime(n, mailbox),
    security,
    dispatchedRequested: false,
  });
  return entry.id;
}

interface ListItem {
  id: string;
  from: string;
  messageId: string | null;
  receivedAt: string;
  size: number;
  acknowledgedAt: string | null;
}
interface Listing {
  messages: ListItem[];
  nextCursor: string | null;
}

async function list(client: ApiClient, key: string, query = '', mailbox = PATIENT): Promise<Listing> {
  const r = await client.request('GET', `/v1/mailboxes/${mailbox}/messages${query}`, { key });
  expect(r.status, r.text).toBe(200);
  return r.body as Listing;
}

async function start() {
  const { client, t } = await server.start();
  const token = (await t.key({ actions: ['receive'], sendAs: [], mailboxes: [PATIENT] })).token;
  return { client, t, token };
}

describe('the API mailboxes', () => {
  it('lists a mailbox oldest first, a page at a time; waiting by default, acknowledged or all on request', async () => {
    const { client, t, token } = await start();
    const ids = [await deliver(t, PATIENT, 1), await deliver(t, OTHER, 2), await deliver(t, PATIENT, 3), await deliver(t, 'Patient@Hospital.Test', 4)];
    const mine = [ids[0], ids[2], ids[3]];

    const all = await list(client, token);
    expect(all.messages.map((m) => m.id)).toEqual(mine);
    expect(all.messages[0]).toEqual({ id: ids[0], from: 'doctor@clinic.example', messageId: 'm1@clinic.example', receivedAt: '2026-12-07T12:00:01.000Z', size: mime(1, PATIENT).length, acknowledgedAt: null });
    expect(all.nextCursor).toBeNull();

    const first = await list(client, token, '?limit=2');
    expect(first.messages.map((m) => m.id)).toEqual(mine.slice(0, 2));
    expect(first.nextCursor).not.toBeNull();
    const second = await list(client, token, `?limit=2&cursor=${first.nextCursor}`);
    expect(second).toMatchObject({ messages: [{ id: ids[3] }], nextCursor: null });
    // The address in another case is the same mailbox.
    expect((await list(client, token, '', 'PATIENT@hospital.test')).messages.map((m) => m.id)).toEqual(mine);

    expect((await client.request('POST', `/v1/mailboxes/${PATIENT}/messages/${ids[2]}/ack`, { key: token })).status).toBe(200);
    expect((await list(client, token)).messages.map((m) => m.id)).toEqual([ids[0], ids[3]]);
    const acked = await list(client, token, '?state=acknowledged');
    expect(acked.messages.map((m) => [m.id, typeof m.acknowledgedAt])).toEqual([[ids[2], 'string']]);
    expect((await list(client, token, '?state=all')).messages.map((m) => m.id)).toEqual(mine);

    for (const query of ['?state=read', '?cursor=-1', '?limit=abc', '?after=1']) {
      expect((await client.request('GET', `/v1/mailboxes/${PATIENT}/messages${query}`, { key: token })).body, query).toMatchObject({ status: 400, code: 'HISP_API_INVALID_REQUEST' });
    }
  });

  it('reads a message: sender, subject, security, each part with its size and SHA-256, the C-CDA header', async () => {
    const { client, t, token } = await start();
    const id = await deliver(t, PATIENT, 1);
    const r = await client.request('GET', `/v1/mailboxes/${PATIENT}/messages/${id}`, { key: token });
    expect(r.status).toBe(200);
    const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect(r.body).toMatchObject({
      id,
      from: 'doctor@clinic.example',
      to: [PATIENT],
      subject: 'Results 1',
      receivedAt: '2026-12-07T12:00:01.000Z',
      acknowledgedAt: null,
      security: { signer: 'CN=doctor@clinic.example', fingerprint: 'ab'.repeat(32), binding: 'address', anchor: { subject: 'CN=Clinic CA', sha256: 'cd'.repeat(32), bundle: null }, algorithms: security.algorithms },
      parts: [
        { id: 'text', contentType: 'text/plain', filename: null },
        { id: 'p1', contentType: 'application/xml', filename: 'CCDA.xml', size: CCDA.length, sha256: sha256(CCDA) },
        { id: 'p2', contentType: 'application/xml', filename: 'note.xml', size: NOTE.length, sha256: sha256(NOTE) },
        { id: 'p3', contentType: 'application/pdf', filename: 'letter.pdf', size: PDF.length, sha256: sha256(PDF) },
      ],
      ccda: { title: 'Summary of care for Ada' },
    });
    expect(r.body).not.toHaveProperty('xdm');
  });

  it('serves a part’s bytes as a download, and renders a C-CDA part as a page under its CSP; a part that is no C-CDA is 422', async () => {
    const { client, t, token } = await start();
    const id = await deliver(t, PATIENT, 1);
    const base = `/v1/mailboxes/${PATIENT}/messages/${id}/parts`;

    const pdf = await client.request('GET', `${base}/p3`, { key: token });
    expect(pdf.status).toBe(200);
    expect(pdf.headers['content-type']).toMatch(/^application\/pdf/);
    expect(pdf.headers['content-disposition']).toBe('attachment; filename="letter.pdf"');
    expect(pdf.headers['x-content-type-options']).toBe('nosniff');
    expect(pdf.text).toBe(PDF.toString());
    const xml = await client.request('GET', `${base}/p1`, { key: token });
    expect(xml.text).toBe(CCDA.toString());
    expect((await client.request('GET', `${base}/text`, { key: token })).text).toContain('Your results, message 1.');

    const page = await client.request('GET', `${base}/p1/rendered`, { key: token });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    const csp = page.headers['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'none'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain('sandbox');
    expect(page.text).toMatch(/<meta http-equiv="Content-Security-Policy" content="[^"]*script-src 'none'/);
    expect(page.text).toContain('Summary of care for Ada');
    expect(page.text).toContain('Allergies: none known.');
    expect(page.text).not.toMatch(/<script/i);

    const note = await client.request('GET', `${base}/p2/rendered`, { key: token });
    expect(note.body).toMatchObject({ status: 422, code: 'HISP_CDA_INVALID' });
    // A PDF is not XML at all: refused as such, a 4xx problem too.
    const notXml = await client.request('GET', `${base}/p3/rendered`, { key: token });
    expect(notXml.status).toBeGreaterThanOrEqual(400);
    expect(notXml.status).toBeLessThan(500);
  });

  it('acknowledges once: a repeat answers the first time and sends nothing; the message shows it', async () => {
    const { client, t, token } = await start();
    const id = await deliver(t, PATIENT, 1);
    const first = await client.request('POST', `/v1/mailboxes/${PATIENT}/messages/${id}/ack`, { key: token });
    expect(first.status).toBe(200);
    const ack = first.body as { id: string; acknowledgedAt: string; dispatchedMdn: boolean };
    expect(ack).toMatchObject({ id, dispatchedMdn: false });
    const again = await client.request('POST', `/v1/mailboxes/${PATIENT}/messages/${id}/ack`, { key: token });
    expect(again.body).toEqual(ack);
    expect((await client.request('GET', `/v1/mailboxes/${PATIENT}/messages/${id}`, { key: token })).body).toMatchObject({ acknowledgedAt: ack.acknowledgedAt });
    expect(t.logs()).toContain('"first":false');
  });

  it('another mailbox’s message, a message or part that does not exist: 404; a malformed id or part: 400', async () => {
    const { client, t, token } = await start();
    const mine = await deliver(t, PATIENT, 1);
    const theirs = await deliver(t, OTHER, 2);
    const missing = `msg_${'0'.repeat(24)}`;
    for (const path of [
      `/v1/mailboxes/${PATIENT}/messages/${theirs}`,
      `/v1/mailboxes/${PATIENT}/messages/${theirs}/parts/p1`,
      `/v1/mailboxes/${PATIENT}/messages/${theirs}/parts/p1/rendered`,
      `/v1/mailboxes/${PATIENT}/messages/${missing}`,
      `/v1/mailboxes/${PATIENT}/messages/${mine}/parts/p9`,
      `/v1/mailboxes/${PATIENT}/messages/${mine}/parts/html`,
      `/v1/mailboxes/${PATIENT}/messages/${mine}/parts/p9/rendered`,
    ]) {
      expect((await client.request('GET', path, { key: token })).body, path).toMatchObject({ status: 404, code: 'HISP_NOT_FOUND' });
    }
    expect((await client.request('POST', `/v1/mailboxes/${PATIENT}/messages/${theirs}/ack`, { key: token })).status).toBe(404);
    // The other mailbox's message was not acknowledged by that attempt.
    const otherKey = (await t.key({ actions: ['receive'], sendAs: [], mailboxes: [OTHER] })).token;
    expect((await list(client, otherKey, '', OTHER)).messages.map((m) => m.id)).toEqual([theirs]);

    for (const path of [`/v1/mailboxes/${PATIENT}/messages/nope`, `/v1/mailboxes/${PATIENT}/messages/${mine}/parts/p1.xml`, `/v1/mailboxes/not-an-address/messages`]) {
      expect((await client.request('GET', path, { key: token })).status, path).toBe(400);
    }
  });

  it('a key without receive, or without that mailbox, is 403 on every route', async () => {
    const { client, t } = await start();
    const id = await deliver(t, PATIENT, 1);
    const sender = (await t.key({ actions: ['send', 'status'], sendAs: [`@${TEST_DOMAIN}`], mailboxes: [PATIENT] })).token;
    const elsewhere = (await t.key({ actions: ['receive'], sendAs: [], mailboxes: [OTHER, '@phr.example'] })).token;
    const routes: [string, string][] = [
      ['GET', `/v1/mailboxes/${PATIENT}/messages`],
      ['GET', `/v1/mailboxes/${PATIENT}/messages/${id}`],
      ['GET', `/v1/mailboxes/${PATIENT}/messages/${id}/parts/p1`],
      ['GET', `/v1/mailboxes/${PATIENT}/messages/${id}/parts/p1/rendered`],
      ['POST', `/v1/mailboxes/${PATIENT}/messages/${id}/ack`],
    ];
    for (const key of [sender, elsewhere]) {
      for (const [method, path] of routes) {
        expect((await client.request(method, path, { key })).body, `${method} ${path}`).toMatchObject({ status: 403, code: 'HISP_API_FORBIDDEN' });
      }
    }
    // Nothing was acknowledged by the refused requests.
    const reader = (await t.key({ actions: ['receive'], sendAs: [], mailboxes: [`@${TEST_DOMAIN}`] })).token;
    expect((await list(client, reader)).messages.map((m) => m.acknowledgedAt)).toEqual([null]);
    expect((await client.request('GET', `/v1/mailboxes/${PATIENT}/messages`)).status).toBe(401);
  });
});

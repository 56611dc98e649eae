// POST /v1/messages, GET /v1/messages/{id}, GET /v1/messages in process: what is stored (the
// queue of SMTP submission), the idempotency rules, the scopes, every bad request a 4xx problem,
// and the multipart intake streamed to disk. Responses are checked against /openapi.json.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { apiServerPerTest, TEST_DOMAIN, type ApiTestContext } from '../../../test/helpers/api-context.js';
import type { ApiClient } from '../../../test/helpers/api-client.js';
import { vectorGroup } from '../../../test/helpers/vectors.js';
import { parseDirectContext } from '../../documents/direct-context.js';

const ett = vectorGroup('ett', ['cda-samples/CCDA_Ambulatory.xml']);
const server = apiServerPerTest();
const FROM = `doctor@${TEST_DOMAIN}`;

async function start(): Promise<{ client: ApiClient; t: ApiTestContext; token: string }> {
  const { client, t } = await server.start();
  return { client, t, token: (await t.key()).token };
}

const ccda = () => ett.read('cda-samples/CCDA_Ambulatory.xml');
const send = (extra: Record<string, unknown> = {}) => ({
  from: FROM,
  to: ['patient@phr.example'],
  subject: 'Your summary of care',
  text: 'This message was sent by Example Hospital at the request of Jane Doe.',
  documents: [{ filename: 'CCDA_Ambulatory.xml', contentType: 'application/xml', kind: 'ccda', content: ccda().toString('base64') }],
  ...extra,
});

interface Sent {
  id: string;
  messageId: string;
  recipients: { address: string; state: string }[];
}

describe.skipIf(!ett.present)(ett.title('POST /v1/messages'), () => {
  it('202 once stored: the C-CDA as application/xml with its rendering for people, one queued delivery per recipient, its status at once', async () => {
    const { client, t, token } = await start();
    const r = await client.request('POST', '/v1/messages', { key: token, json: send({ cc: ['nurse@clinic.example'], clientRef: 'order-42' }) });
    expect(r.status).toBe(202);
    const sent = r.body as Sent;
    expect(sent.recipients).toEqual([
      { address: 'patient@phr.example', state: 'queued' },
      { address: 'nurse@clinic.example', state: 'queued' },
    ]);
    const stored = await t.queue.get(sent.id);
    expect(stored?.deliveries.map((d) => [d.recipient, d.state])).toEqual([
      ['patient@phr.example', 'queued'],
      ['nurse@clinic.example', 'queued'],
    ]);
    const mail = await simpleParser(await t.queue.body(sent.id));
    expect(mail.messageId).toBe(`<${sent.messageId}>`);
    expect(mail.attachments.map((a) => [a.filename, a.contentType])).toEqual([
      ['CCDA_Ambulatory.xml', 'application/xml'],
      ['CCDA_Ambulatory.html', 'text/html'],
    ]);
    expect(mail.attachments[0]?.content.equals(ccda())).toBe(true);
    // The ETT sample is 7bit data already (US-ASCII, CRLF lines): it goes as it is, not in base64.
    expect(mail.attachments[0]?.headers.get('content-transfer-encoding')).toBe('7bit');

    const status = await client.request('GET', `/v1/messages/${sent.id}`, { key: token });
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({ id: sent.id, from: FROM, clientRef: 'order-42', submittedVia: 'api', recipients: [{ address: 'patient@phr.example', state: 'queued' }, { state: 'queued' }] });
    const list = await client.request('GET', '/v1/messages?state=queued&limit=10', { key: token });
    expect((list.body as { messages: { id: string }[] }).messages.map((m) => m.id)).toEqual([sent.id]);
  });

  it('context: the Direct Context goes as the X-Direct-Context header and its metadata.txt part; a bad one is 400', async () => {
    const { client, t, token } = await start();
    const context = { patientId: [{ authority: '2.16.840.1.113883.19.5', id: 'MRN-1' }], type: { category: 'general', action: 'report' }, purpose: 'treatment', patient: { givenName: 'Jane', surname: 'Doe' } };
    const r = await client.request('POST', '/v1/messages', { key: token, json: send({ documents: [], context }) });
    expect(r.status).toBe(202);
    const raw = (await t.queue.body((r.body as Sent).id)).toString('latin1');
    const cid = /^X-Direct-Context: (<[^>]+>)\r$/m.exec(raw)?.[1];
    expect(cid).toBeDefined();
    const mail = await simpleParser(raw);
    const part = mail.attachments.find((a) => a.contentId === cid);
    expect(part?.filename).toBe('metadata.txt');
    expect(parseDirectContext(part!.content)).toMatchObject({ version: '1.1', id: expect.stringMatching(/^[0-9a-f-]{36}$/) as unknown, ...context });
    for (const bad of [{ purpose: 'curiosity' }, { type: { category: 'dentistry', action: 'report' } }, { patient: { surname: 'Doe; givenName=Eve' } }, { patientId: [{ authority: 'hospital', id: '1' }] }, { other: 'x' }]) {
      expect((await client.request('POST', '/v1/messages', { key: token, json: send({ documents: [], context: bad }) })).status, JSON.stringify(bad)).toBe(400);
    }
  });

  it('Idempotency-Key: the same body answers the first response, another body 422, concurrent duplicates store one message', async () => {
    const { client, t, token } = await start();
    const headers = { 'idempotency-key': 'order-7' };
    const first = await client.request('POST', '/v1/messages', { key: token, json: send(), headers });
    const again = await client.request('POST', '/v1/messages', { key: token, json: send(), headers });
    expect(again.status).toBe(202);
    expect(again.body).toEqual(first.body);
    const other = await client.request('POST', '/v1/messages', { key: token, json: send({ subject: 'something else' }), headers });
    expect(other.status).toBe(422);
    expect(other.body).toMatchObject({ code: 'HISP_API_IDEMPOTENCY_CONFLICT' });
    // Another document alone is another body (its base64 is read as octets, never a string: json-body.ts).
    const edited = Buffer.concat([ccda(), Buffer.from('<!-- v2 -->\r\n')]).toString('base64');
    const otherDocument = await client.request('POST', '/v1/messages', { key: token, json: send({ documents: [{ filename: 'CCDA_Ambulatory.xml', contentType: 'application/xml', kind: 'ccda', content: edited }] }), headers });
    expect(otherDocument.status).toBe(422);
    const burst = await Promise.all(Array.from({ length: 6 }, () => client.request('POST', '/v1/messages', { key: token, json: send(), headers: { 'idempotency-key': 'order-8' } })));
    expect(new Set(burst.map((r) => (r.body as Sent).id)).size).toBe(1);
    expect(t.db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(2);
  });

  it('every bad request is a 4xx problem with its code, and stores nothing', async () => {
    const { client, t, token } = await start();
    const cases: [unknown, number, string][] = [
      [send({ surprise: true }), 400, 'HISP_API_INVALID_REQUEST'],
      [send({ to: [] }), 400, 'HISP_API_INVALID_REQUEST'],
      [send({ to: ['not an address'] }), 400, 'HISP_API_INVALID_REQUEST'],
      [send({ documents: [{ filename: 'a.xml', contentType: 'application/xml', kind: 'ccda', content: '!!!' }] }), 400, 'HISP_API_INVALID_REQUEST'],
      // base64url's alphabet, and line breaks (ajv-formats' own `byte` let these through).
      [send({ documents: [{ filename: 'a.xml', contentType: 'application/xml', kind: 'ccda', content: 'PGE-_z4K' }] }), 400, 'HISP_API_INVALID_REQUEST'],
      [send({ documents: [{ filename: 'a.xml', contentType: 'application/xml', kind: 'ccda', content: 'PGEv\nPg==' }] }), 400, 'HISP_API_INVALID_REQUEST'],
      [send({ documents: [{ filename: '../a.xml', contentType: 'application/xml', kind: 'ccda', content: '' }] }), 400, 'HISP_API_INVALID_REQUEST'],
      [send({ documents: [{ filename: 'a.xml', contentType: 'application/xml', kind: 'ccda', content: Buffer.from('<note/>').toString('base64') }] }), 422, 'HISP_CDA_INVALID'],
      [send({ from: 'doctor@elsewhere.example' }), 403, 'HISP_API_FORBIDDEN'],
    ];
    for (const [body, status, code] of cases) {
      const r = await client.request('POST', '/v1/messages', { key: token, json: body });
      expect({ status: r.status, code: (r.body as { code: string }).code }).toEqual({ status, code });
    }
    expect((await client.request('POST', '/v1/messages', { key: token, body: 'x', contentType: 'text/plain' })).status).toBe(415);
    expect(t.db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(0);
  });

  it('a key used outside its scope is 403: another action, another sender; another key’s message is not found', async () => {
    const { client, t, token } = await start();
    const readOnly = (await t.key({ actions: ['status'] })).token;
    expect((await client.request('POST', '/v1/messages', { key: readOnly, json: send() })).status).toBe(403);
    const narrow = (await t.key({ actions: ['send', 'status'], sendAs: [`nurse@${TEST_DOMAIN}`] })).token;
    expect((await client.request('POST', '/v1/messages', { key: narrow, json: send() })).body).toMatchObject({ code: 'HISP_API_FORBIDDEN' });
    const sent = (await client.request('POST', '/v1/messages', { key: token, json: send() })).body as Sent;
    expect((await client.request('GET', `/v1/messages/${sent.id}`, { key: narrow })).status).toBe(404);
    expect((await client.request('GET', `/v1/messages/${sent.id}`, { key: readOnly })).status).toBe(200);
  });

  it('multipart/form-data: the documents are streamed to disk as files, described by the message field; the files do not stay', async () => {
    const { client, t, token } = await start();
    const boundary = '----hisp-test-boundary';
    const meta = { from: FROM, to: ['patient@phr.example'], subject: 'Records', text: 'See attached.', package: 'both', documents: [{ kind: 'ccda' }, { kind: 'pdf', contentType: 'application/pdf' }] };
    const pdf = Buffer.from('%PDF-1.4 test\n');
    const body = Buffer.concat([
      // As curl -F 'message=@m.json;type=application/json' sends it: the field arrives parsed.
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="message"\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(meta)}\r\n`),
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="document"; filename="CCDA_Ambulatory.xml"\r\nContent-Type: text/xml\r\n\r\n`),
      ccda(),
      Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="document"; filename="letter.pdf"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      pdf,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const r = await client.request('POST', '/v1/messages', { key: token, body, contentType: `multipart/form-data; boundary=${boundary}` });
    expect(r.status).toBe(202);
    const mail = await simpleParser(await t.queue.body((r.body as Sent).id));
    expect(mail.subject).toBe('Records XDM/1.0/DDM');
    expect(mail.attachments.map((a) => [a.filename, a.contentType])).toEqual([
      ['CCDA_Ambulatory.xml', 'application/xml'],
      ['letter.pdf', 'application/pdf'],
      ['CCDA_Ambulatory.html', 'text/html'],
      ['XDM.zip', 'application/zip'],
    ]);
    expect(mail.attachments[1]?.content.equals(pdf)).toBe(true);
    // Checked as it streamed to disk: the C-CDA goes as it is, the PDF (a bare LF) in base64.
    expect(mail.attachments.slice(0, 2).map((a) => [a.headers.get('content-transfer-encoding'), a.content.equals([ccda(), pdf][mail.attachments.indexOf(a)]!)])).toEqual([
      ['7bit', true],
      ['base64', true],
    ]);
    // The status shows the Subject as it went, XDM/1.0/DDM included.
    expect((await client.request('GET', `/v1/messages/${(r.body as Sent).id}`, { key: token })).body).toMatchObject({ subject: 'Records XDM/1.0/DDM' });
    expect(readdirSync(join(t.ctx.config.dataDir, 'incoming'))).toEqual([]);

    const unknownField = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--${boundary}--\r\n`);
    const bad = await client.request('POST', '/v1/messages', { key: token, body: unknownField, contentType: `multipart/form-data; boundary=${boundary}` });
    expect(bad.status).toBe(400);
  });
});

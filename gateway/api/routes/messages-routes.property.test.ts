// The intake of POST /v1/messages under hostile input (issue 15, "Proven": property tests of the
// multipart and JSON intake). JSON: random JSON values, bodies near the schema (stray fields, wrong
// types, huge strings, bad base64), random bytes and deep nesting as application/json. Multipart
// (RFC 7578): random and malformed bodies (missing or wrong boundaries, parts without names,
// duplicate `message` fields, a `message` that is not JSON or does not match, files before the
// field, too many files, a file over the size limit, CRLF injected into part headers), random bytes under a multipart type.
// Every answer is a 202 or a 4xx problem matching /openapi.json (the ApiClient checks), never a
// 500, never a hang, and no upload is left in <dataDir>/incoming/ afterwards.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { apiServerPerFile, TEST_DOMAIN } from '../../../test/helpers/api-context.js';
import type { ApiResponse } from '../../../test/helpers/api-client.js';
import { SEND_LIMITS } from '../../flows/send-message.js';
import { SEND_BODY_LIMITS } from './messages-routes.js';

const server = apiServerPerFile({ api: { rateLimit: { perKeyPerMinute: 1_000_000 } } });
const incoming = () => join(server.t.ctx.config.dataDir, 'incoming');

const FROM = `doctor@${TEST_DOMAIN}`;
const storedMessages = () => server.t.db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get() as number;

/**
 * Waits (at most 2 s) for the incoming folder to be empty: an upload is removed as its request
 * ends, which for a 202 is just after the answer went out.
 */
async function incomingEmpty(): Promise<void> {
  const deadline = Date.now() + 2_000;
  while (readdirSync(incoming()).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  expect(readdirSync(incoming())).toEqual([]);
}

/** One request, which must be answered within 10 s by a 202 or a 4xx problem, as /openapi.json says; no upload stays behind. */
async function post(body: string | Buffer, contentType: string): Promise<ApiResponse> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no answer within 10 s')), 10_000)));
  try {
    const r = await Promise.race([server.client.request('POST', '/v1/messages', { key: server.token, body, contentType }), hang]);
    expect(r.status === 202 || (r.status >= 400 && r.status < 500), `${r.status} ${r.text.slice(0, 300)}`).toBe(true);
    if (r.status >= 400) expect((r.body as { status: number }).status).toBe(r.status);
    await incomingEmpty();
    return r;
  } finally {
    clearTimeout(timer);
  }
}

const postJson = (body: string | Buffer) => post(body, 'application/json');

/** Mostly what the schema declares, sometimes anything at all. */
const mostly = <T>(valid: fc.Arbitrary<T>) => fc.oneof({ arbitrary: valid, weight: 12 }, { arbitrary: fc.anything({ maxDepth: 3 }), weight: 1 });
/** Now and then a field the schema does not declare (undefined vanishes from the JSON). */
const stray = fc.oneof({ arbitrary: fc.constant(undefined), weight: 7 }, { arbitrary: fc.anything({ maxDepth: 2 }), weight: 1 });
/** Usually `valid`, sometimes one of the values the schema refuses. */
const usually = <T, U>(valid: fc.Arbitrary<T>, refused: fc.Arbitrary<U>) => fc.oneof({ arbitrary: valid, weight: 6 }, { arbitrary: refused, weight: 1 });
const recipient = fc.oneof({ arbitrary: fc.constantFrom('patient@phr.example', 'nurse@clinic.example', 'Doc@Other.Example'), weight: 20 }, { arbitrary: fc.string({ maxLength: 40 }), weight: 1 });
const base64 = fc.oneof(
  { arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('base64')), weight: 6 },
  { arbitrary: fc.constantFrom('!!!', 'QUJD=A', '====', 'QQ==QQ==', 'a b', '\u00e9t\u00e9', 'QUJD\n'), weight: 1 },
);
const documentArb = fc.record(
  {
    filename: mostly(usually(fc.constantFrom('letter.pdf', 'notes.txt', 'a.bin'), fc.constantFrom('../etc/passwd', 'a\\b', 'with\u0000nul', '', 'x'.repeat(256)))),
    contentType: mostly(usually(fc.constantFrom('application/pdf', 'text/plain', 'application/octet-stream'), fc.constantFrom('nota type', 'a/b/c'))),
    kind: mostly(usually(fc.constantFrom('pdf', 'other', 'fhir'), fc.constant('script'))),
    content: mostly(base64),
    stray,
  },
  { requiredKeys: ['filename', 'contentType', 'kind', 'content'] },
);
/** A send near the schema: each field mostly valid, now and then of another type or out of bounds; a stray field now and then. */
const nearSchema = fc.record(
  {
    from: mostly(usually(fc.constantFrom(FROM, `DOCTOR@${TEST_DOMAIN.toUpperCase()}`), fc.constantFrom('doctor@elsewhere.example', 'not an address'))),
    to: mostly(fc.array(recipient, { minLength: 1, maxLength: 4 })),
    cc: mostly(fc.array(recipient, { maxLength: 3 })),
    subject: mostly(usually(fc.string({ maxLength: 60 }), fc.constant('s'.repeat(999)))),
    text: mostly(fc.string({ maxLength: 200 })),
    html: mostly(fc.string({ maxLength: 100 })),
    package: mostly(usually(fc.constantFrom('mime', 'xdm', 'both'), fc.constant('zip'))),
    humanReadable: mostly(fc.boolean()),
    finalDelivery: mostly(usually(fc.boolean(), fc.constant('true'))),
    clientRef: mostly(usually(fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 30 }), fc.constantFrom('r'.repeat(201), 'tab\there'))),
    documents: mostly(fc.array(documentArb, { maxLength: 3 })),
    stray,
  },
  { requiredKeys: ['from', 'to', 'subject', 'text'] },
);

describe('POST /v1/messages: the JSON intake under hostile input', () => {
  it('any JSON value: a 4xx problem (nothing random is a send), nothing stored', async () => {
    const before = storedMessages();
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 6 }), async (value) => {
        const r = await postJson(JSON.stringify(value) ?? 'null');
        expect(r.status).toBeGreaterThanOrEqual(400);
      }),
      { numRuns: 200 },
    );
    expect(storedMessages()).toBe(before);
  });

  it('bodies near the schema: 202 only for a body every field of which is as declared, then stored; else a 4xx, nothing stored', async () => {
    const statuses = new Set<number>();
    await fc.assert(
      fc.asyncProperty(nearSchema, async (value) => {
        const text = JSON.stringify(value);
        const before = storedMessages();
        const r = await postJson(text);
        statuses.add(r.status);
        if (r.status === 202) {
          // What was sent (undefined members vanish in JSON): no stray field, none of the out-of-range values.
          const sent = JSON.parse(text) as Record<string, unknown>;
          expect(Object.keys(sent)).not.toContain('stray');
          expect(typeof sent.subject === 'string' && sent.subject.length <= 998).toBe(true);
          const id = (r.body as { id: string }).id;
          // One delivery per recipient (the same address twice, in any case, is one).
          const lower = (list: readonly string[]) => [...new Set(list.map((a) => a.toLowerCase()))].sort();
          const deliveries = (await server.t.queue.get(id))?.deliveries.map((d) => d.recipient) ?? [];
          expect(lower(deliveries)).toEqual(lower([...(sent.to as string[]), ...((sent.cc as string[] | undefined) ?? [])]));
          expect(storedMessages()).toBe(before + 1);
        } else {
          expect(storedMessages()).toBe(before);
        }
      }),
      { numRuns: 250 },
    );
    // Both fates were reached: the property says something about accepted bodies too.
    expect(statuses).toContain(202);
    expect(statuses).toContain(400);
  });

  it('random bytes, deep nesting and prototype keys as application/json: a 4xx problem', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 2000 }), async (bytes) => {
        const r = await postJson(Buffer.from(bytes));
        expect(r.status).toBeGreaterThanOrEqual(400);
      }),
      { numRuns: 150 },
    );
    const valid = { from: FROM, to: ['patient@phr.example'], subject: 's', text: 't' };
    const hostile = [
      '['.repeat(100_000),
      `${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}`,
      JSON.stringify({ ...valid, documents: 'x' }).replace('"x"', `${'['.repeat(20_000)}${']'.repeat(20_000)}`),
      JSON.stringify(valid).replace('{', '{"__proto__":{"admin":true},'),
      JSON.stringify(valid).replace('{', '{"constructor":{"prototype":{"admin":true}},'),
      '',
      '{"from":',
    ];
    for (const body of hostile) expect((await postJson(body)).status, body.slice(0, 40)).toBe(400);
  });

  it('huge strings: a field over its bound is 400; a body over the route’s limit is 413', async () => {
    const valid = { from: FROM, to: ['patient@phr.example'], subject: 's', text: 't' };
    expect((await postJson(JSON.stringify({ ...valid, text: 'x'.repeat(1024 * 1024 + 1) }))).body).toMatchObject({ status: 400, code: 'HISP_API_INVALID_REQUEST' });
    expect((await postJson(JSON.stringify({ ...valid, to: Array.from({ length: SEND_LIMITS.recipients + 1 }, (_, i) => `p${i}@phr.example`) }))).status).toBe(400);
    const huge = await postJson(JSON.stringify({ ...valid, documents: [{ filename: 'big.bin', contentType: 'application/octet-stream', kind: 'other', content: 'A'.repeat(17 * 1024 * 1024) }] }));
    expect(huge.body).toMatchObject({ status: 413, code: 'HISP_API_PAYLOAD_TOO_LARGE' });
  });
});

// ---------------------------------------------------------------------------------------------
// multipart/form-data (RFC 7578; boundaries and part headers per RFC 2046 §5.1.1)

interface Part {
  /** Content-Disposition's name; undefined: a part without one. */
  name?: string;
  filename?: string;
  contentType?: string;
  /** Raw header lines added to the part (CRLF injection, junk). */
  extraHeaders?: string;
  content: string | Buffer;
}

const BOUNDARY = 'hisp-prop-boundary-7d3f';
const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`;

/** A multipart body as a client writes it (or, with `close: false`, one cut short before its last boundary). */
function multipartBody(parts: readonly Part[], boundary = BOUNDARY, close = true): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    let disposition = 'Content-Disposition: form-data';
    if (p.name !== undefined) disposition += `; name="${p.name}"`;
    if (p.filename !== undefined) disposition += `; filename="${p.filename}"`;
    const headers = [disposition, ...(p.contentType !== undefined ? [`Content-Type: ${p.contentType}`] : []), ...(p.extraHeaders !== undefined ? [p.extraHeaders] : [])];
    chunks.push(Buffer.from(`--${boundary}\r\n${headers.join('\r\n')}\r\n\r\n`), Buffer.isBuffer(p.content) ? p.content : Buffer.from(p.content), Buffer.from('\r\n'));
  }
  if (close) chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

const validMessage = (extra: Record<string, unknown> = {}) => JSON.stringify({ from: FROM, to: ['patient@phr.example'], subject: 'Records', text: 'See attached.', ...extra });
const messagePart = (content = validMessage()): Part => ({ name: 'message', content });
const filePart = (content: string | Buffer = '%PDF-1.4 test\n', filename = 'letter.pdf'): Part => ({ name: 'document', filename, contentType: 'application/pdf', content });

const messageContent = fc.oneof(
  { arbitrary: fc.constant(validMessage()), weight: 4 },
  { arbitrary: nearSchema.map((v) => JSON.stringify(v)), weight: 3 },
  { arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? 'null'), weight: 1 },
  { arbitrary: fc.string({ maxLength: 200 }), weight: 1 },
);
const partArb: fc.Arbitrary<Part> = fc.record(
  {
    name: fc.oneof({ arbitrary: fc.constantFrom('message', 'document'), weight: 6 }, { arbitrary: fc.constantFrom('other', '', 'Message', 'document\r\nX-Injected: 1'), weight: 1 }, { arbitrary: fc.constant(undefined), weight: 1 }),
    filename: fc.option(fc.oneof(fc.constantFrom('letter.pdf', 'CCDA.xml', 'bundle.zip', '../../etc/passwd', 'a"b.txt', 'x\r\nContent-Type: text/html'), fc.string({ maxLength: 30 })), { nil: undefined }),
    contentType: fc.option(fc.constantFrom('application/pdf', 'text/plain; charset=utf-8', 'application/zip', '', 'nonsense', `multipart/mixed; boundary=${BOUNDARY}`), { nil: undefined }),
    extraHeaders: fc.option(fc.constantFrom('Content-Transfer-Encoding: base64', 'X-Junk: \u0000\u0001', `Content-Disposition: form-data; name="message"`, 'no colon here', ' folded: line'), { nil: undefined }),
    content: fc.oneof(messageContent, fc.uint8Array({ maxLength: 1500 }).map((b) => Buffer.from(b)), fc.constant(`--${BOUNDARY}`)),
  },
  { requiredKeys: ['content'] },
);

/** A form shaped as the API wants it (the message field, then document files), its parts random within that shape. */
const shapedForm: fc.Arbitrary<Part[]> = fc
  .tuple(
    messageContent,
    fc.array(
      fc.record({
        filename: fc.option(fc.oneof(fc.constantFrom('letter.pdf', 'notes.txt', 'bundle.zip'), fc.string({ maxLength: 20 })), { nil: undefined }),
        contentType: fc.option(fc.constantFrom('application/pdf', 'text/plain', 'application/octet-stream', 'nonsense'), { nil: undefined }),
        content: fc.uint8Array({ maxLength: 1500 }).map((b) => Buffer.from(b)),
      }),
      { maxLength: 4 },
    ),
  )
  .map(([message, files]) => [messagePart(message), ...files.map((f) => ({ name: 'document', ...f }))]);

describe('POST /v1/messages: the multipart intake under hostile input', () => {
  it('a well-formed multipart send is taken (the property’s control)', async () => {
    const r = await post(multipartBody([messagePart(validMessage({ documents: [{ kind: 'pdf' }] })), filePart()]), MULTIPART);
    expect(r.status).toBe(202);
  });

  it('random parts in any order, the last boundary sometimes missing: 202 or a 4xx problem, nothing left in incoming/', async () => {
    const statuses = new Set<number>();
    await fc.assert(
      fc.asyncProperty(fc.oneof(shapedForm, fc.array(partArb, { maxLength: 6 })), fc.boolean(), async (parts, close) => {
        const r = await post(multipartBody(parts, BOUNDARY, close), MULTIPART);
        statuses.add(r.status);
      }),
      { numRuns: 250 },
    );
    expect(statuses).toContain(202);
    expect(statuses).toContain(400);
  });

  it('random bytes, and a valid body under a wrong or missing boundary: a 4xx problem', async () => {
    const types = fc.constantFrom(MULTIPART, 'multipart/form-data', 'multipart/form-data; boundary=', 'multipart/form-data; boundary=other', `multipart/form-data; boundary="${BOUNDARY}"; boundary=x`, `multipart/form-data; boundary=${'b'.repeat(200)}`);
    const valid = multipartBody([messagePart(), filePart()]);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 3000 }), types, async (bytes, type) => {
        expect((await post(Buffer.from(bytes), type)).status).toBeGreaterThanOrEqual(400);
      }),
      { numRuns: 150 },
    );
    for (const type of ['multipart/form-data', 'multipart/form-data; boundary=', 'multipart/form-data; boundary=other']) {
      expect((await post(valid, type)).status, type).toBeGreaterThanOrEqual(400);
    }
    expect((await post(Buffer.alloc(0), MULTIPART)).status).toBe(400);
    // The right boundary in the body, another one declared: no part is found.
    expect((await post(multipartBody([messagePart(), filePart()], 'other-boundary'), MULTIPART)).status).toBe(400);
  });

  it('each malformed form is a 4xx problem with its code, and stores nothing', async () => {
    const before = storedMessages();
    const cases: [string, Part[], number][] = [
      ['no parts', [], 400],
      ['no message field', [filePart()], 400],
      ['a field without a name', [{ content: validMessage() }], 400],
      ['a field of another name', [{ name: 'meta', content: validMessage() }], 400],
      ['two message fields', [messagePart(), messagePart()], 413],
      ['a message that is not JSON', [messagePart('{from: doctor}')], 400],
      ['a message that does not match', [messagePart(validMessage({ to: 'patient@phr.example' }))], 400],
      ['a message with a stray field', [messagePart(validMessage({ bcc: ['x@y.example'] }))], 400],
      ['a message whose documents have content', [messagePart(validMessage({ documents: [{ kind: 'pdf', content: 'QQ==' }] })), filePart()], 400],
      ['more documents described than sent', [messagePart(validMessage({ documents: [{ kind: 'pdf' }, { kind: 'pdf' }] })), filePart()], 400],
      ['a file part of another name', [messagePart(), { ...filePart(), name: 'attachment' }], 400],
      ['a file part without a name', [messagePart(), { ...filePart(), name: undefined }], 400],
      ['a file before the message field', [filePart(), messagePart()], 400],
      ['too many files', [messagePart(), ...Array.from({ length: SEND_LIMITS.documents + 1 }, () => filePart())], 413],
      ['a sender outside the key', [messagePart(validMessage({ from: 'doctor@elsewhere.example' })), filePart()], 403],
    ];
    for (const [what, parts, status] of cases) {
      const r = await post(multipartBody(parts), MULTIPART);
      expect({ what, status: r.status }).toEqual({ what, status });
    }
    expect(storedMessages()).toBe(before);
  });

  it('a file over the size limit, streamed in: 413, and its partial upload removed', async () => {
    // The limit is a constant of the route: the body is streamed (never whole in this test's memory either).
    const size = SEND_BODY_LIMITS.fileBytes + 1;
    const chunk = Buffer.alloc(1024 * 1024, 0x41);
    function* body(): Generator<Buffer> {
      yield multipartBody([messagePart(validMessage({ documents: [{ kind: 'other' }] }))], BOUNDARY, false);
      yield Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="document"; filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`);
      for (let sent = 0; sent < size; sent += chunk.length) yield sent + chunk.length <= size ? chunk : chunk.subarray(0, size - sent);
      yield Buffer.from(`\r\n--${BOUNDARY}--\r\n`);
    }
    const before = storedMessages();
    const res = await server.app.inject({ method: 'POST', url: '/v1/messages', headers: { authorization: `Bearer ${server.token}`, 'content-type': MULTIPART }, payload: Readable.from(body()) });
    const r = { status: res.statusCode, headers: Object.fromEntries(Object.entries(res.headers).map(([k, v]) => [k, String(v)])), text: res.body, body: JSON.parse(res.body) as unknown };
    server.client.check('POST', '/v1/messages', r);
    expect(r.body).toMatchObject({ status: 413, code: 'HISP_API_PAYLOAD_TOO_LARGE', detail: `a document is larger than ${SEND_BODY_LIMITS.fileBytes} octets` });
    await incomingEmpty();
    expect(storedMessages()).toBe(before);
  });

  it('CRLF in a file name (RFC 2231 or percent-encoded), a part’s headers or the Subject cannot add a header to the message sent', async () => {
    const bcc = /^(Bcc|X-Injected):/im;
    const described = validMessage({ documents: [{ kind: 'other' }] });
    const forms: Part[][] = [
      // busboy decodes RFC 2231 (filename*=) and percent-encoded names: the CRLF reaches the server.
      [messagePart(described), { name: 'document', extraHeaders: "Content-Disposition: form-data; name=\"document\"; filename*=UTF-8''a.txt%0D%0ABcc%3A%20spy%40evil.example", content: 'hello' }],
      [messagePart(described), filePart('hello', 'a.txt%0D%0AX-Injected: 1')],
      [messagePart(described), { ...filePart('hello', 'a.txt'), contentType: 'text/plain\r\nX-Injected: 1' }],
      [messagePart(validMessage({ subject: 'Records\r\nBcc: spy@evil.example', documents: [{ kind: 'other', filename: 'b.txt' }] })), filePart('hello', 'b.txt')],
    ];
    for (const parts of forms) {
      const r = await post(multipartBody(parts), MULTIPART);
      if (r.status !== 202) continue;
      const stored = (await server.t.queue.body((r.body as { id: string }).id)).toString('latin1');
      const headers = stored.slice(0, stored.indexOf('\r\n\r\n'));
      expect(headers).not.toMatch(bcc);
      // No part's own headers carry it either: each part's header block is what the composer wrote.
      for (const block of stored.split(/\r\n--/).map((p) => p.slice(0, p.indexOf('\r\n\r\n')))) expect(block).not.toMatch(bcc);
    }
    // The same Subject through JSON: encoded, never a header line of its own.
    const r = await postJson(JSON.stringify({ from: FROM, to: ['patient@phr.example'], subject: 'Records\r\nBcc: spy@evil.example', text: 'x' }));
    expect(r.status).toBe(202);
    const stored = (await server.t.queue.body((r.body as { id: string }).id)).toString('latin1');
    expect(stored.slice(0, stored.indexOf('\r\n\r\n'))).not.toMatch(bcc);
  });
});

import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import multipart, { type MultipartFile } from '@fastify/multipart';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { FastifyRequest } from 'fastify';
import { HispError, isHispError } from '../../core/errors.js';
import { FAILURE_REASONS } from '../../events/failure-reason.js';
import { CONTEXT_ACTIONS, CONTEXT_CATEGORIES, CONTEXT_PATIENT_PARAMETERS, CONTEXT_PURPOSES } from '../../documents/direct-context.js';
import { SevenBitScan } from '../../mime/seven-bit.js';
import type { RecipientState } from '../../events/message-status.js';
import { requestHash, SEND_LIMITS, type SendDocument, type SendRequest } from '../../flows/send-message.js';
import { requireAction, requireSendAs } from '../api-authorization.js';
import { Closed, decodeBase64Member, DirectAddressSchema } from '../api-schemas.js';
import { jsonText } from '../json-body.js';
import type { ApiApp, ApiContext } from '../api-server.js';

/** Bounds of a send (issue 14's rule: every intake bounded). */
export const SEND_BODY_LIMITS = {
  /** A JSON body, documents in base64 inside it: held in memory, so kept modest. */
  jsonBytes: 16 * 1024 * 1024,
  /** One file of a multipart body: streamed to disk as it arrives, never whole in memory. */
  fileBytes: 64 * 1024 * 1024,
  /** The metadata field of a multipart body. */
  messageFieldBytes: 1024 * 1024,
} as const;

const KindSchema = Type.Union([Type.Literal('ccda'), Type.Literal('pdf'), Type.Literal('xdm'), Type.Literal('fhir'), Type.Literal('other')], {
  description: 'What the document is: ccda goes as application/xml with its rendering for people (R-BB-6), xdm as application/zip (with XDM/1.0/DDM in the Subject).',
});
const FilenameSchema = Type.String({ minLength: 1, maxLength: 255, pattern: '^[^/\\\\\\u0000-\\u001f]+$', description: 'The file name the document goes by (no folders).' });
const ContentTypeSchema = Type.String({ minLength: 3, maxLength: 127, pattern: '^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$', description: 'Its media type (type/subtype).' });

/** Printable US-ASCII without the separators of the metadata part's values (`;`, `=`, line breaks). */
const ContextValue = Type.String({ minLength: 1, maxLength: 200, pattern: '^[\\x20-\\x3a\\x3c\\x3e-\\x7e]+$' });

/**
 * Direct Context (the Direct Project's Implementation Guide for Expressing Context in Direct
 * Messaging, 1.1): written as the X-Direct-Context header and its metadata.txt part
 * (gateway/documents/direct-context.ts).
 */
const ContextSchema = Closed(
  {
    id: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[\\x21-\\x7e]+$', description: 'Unique to the transaction (§3.2); default a new UUID.' })),
    patientId: Type.Optional(
      Type.Array(Closed({ authority: Type.String({ maxLength: 64, pattern: '^[0-2](\\.(0|[1-9][0-9]*))+$', description: 'The assigning authority’s OID.' }), id: ContextValue }), { minItems: 1, maxItems: 20 }),
    ),
    type: Type.Optional(
      Closed({ category: Type.Union(CONTEXT_CATEGORIES.map((c) => Type.Literal(c))), action: Type.Union(CONTEXT_ACTIONS.map((a) => Type.Literal(a))) }),
    ),
    purpose: Type.Optional(Type.Union(CONTEXT_PURPOSES.map((p) => Type.Literal(p)))),
    patient: Type.Optional(Closed(Object.fromEntries(CONTEXT_PATIENT_PARAMETERS.map((p) => [p, Type.Optional(ContextValue)])))),
  },
  { description: 'Direct Context of the message: the X-Direct-Context header and its metadata.txt part (patient ids, type, purpose, patient matching parameters).' },
);

/** The message fields of a send, the same in JSON and in a multipart body's `message` field. */
const messageFields = {
  from: DirectAddressSchema,
  to: Type.Array(DirectAddressSchema, { minItems: 1, maxItems: SEND_LIMITS.recipients }),
  cc: Type.Optional(Type.Array(DirectAddressSchema, { maxItems: SEND_LIMITS.recipients })),
  subject: Type.String({ maxLength: 998 }),
  text: Type.String({ maxLength: 1024 * 1024 }),
  html: Type.Optional(Type.String({ maxLength: 1024 * 1024 })),
  package: Type.Optional(Type.Union([Type.Literal('mime'), Type.Literal('xdm'), Type.Literal('both')], { description: 'mime (default): documents attached; xdm: one XDM zip; both.' })),
  humanReadable: Type.Optional(Type.Boolean({ description: 'Attach the rendering of each C-CDA as text/html (default: true when a C-CDA is attached).' })),
  finalDelivery: Type.Optional(Type.Boolean({ description: 'Ask for the dispatched MDN (timely and reliable delivery); default: the sending domain’s setting.' })),
  clientRef: Type.Optional(Type.String({ maxLength: 200, pattern: '^[\\x20-\\x7e]*$', description: 'Your own reference, kept with the message and shown in its status.' })),
  context: Type.Optional(ContextSchema),
};

const JsonDocument = Closed({
  filename: FilenameSchema,
  contentType: ContentTypeSchema,
  kind: KindSchema,
  // Checked as it is decoded (decodeBase64Field): a 400 as a schema rule's, without matching a pattern over the whole document.
  content: Type.String({ contentEncoding: 'base64', description: 'The document, base64 (RFC 4648 §4: its alphabet, padded, no line breaks).' }),
});
const SendJsonBody = Closed({ ...messageFields, documents: Type.Optional(Type.Array(JsonDocument, { maxItems: SEND_LIMITS.documents })) });
type SendJson = Static<typeof SendJsonBody>;

/** The `message` field of a multipart send: the same fields, each document's description without its content (the file parts carry it, in order). */
const MultipartDocument = Closed({ filename: Type.Optional(FilenameSchema), contentType: Type.Optional(ContentTypeSchema), kind: Type.Optional(KindSchema) });
const MultipartMessage = Closed({ ...messageFields, documents: Type.Optional(Type.Array(MultipartDocument, { maxItems: SEND_LIMITS.documents })) });
const checkMultipartMessage = TypeCompiler.Compile(MultipartMessage);

export const SendResponse = Type.Object(
  {
    id: Type.String({ description: 'hisp’s id of the message: GET /v1/messages/{id}.' }),
    messageId: Type.String({ description: 'Its Message-ID, without angle brackets.' }),
    recipients: Type.Array(Type.Object({ address: Type.String(), state: Type.Literal('queued') }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

const StateSchema = Type.Union(['queued', 'relayed', 'processed', 'dispatched', 'failed'].map((s) => Type.Literal(s)));
const EvidenceSchema = Type.Record(Type.String(), Type.Union([Type.String(), Type.Null()]), { description: 'What shows it: reply (the remote server’s), mdnMessageId, dsnMessageId.' });
const TransitionSchema = Type.Object(
  {
    state: StateSchema,
    at: Type.String({ format: 'date-time' }),
    reason: Type.Optional(Type.String()),
    detail: Type.Optional(Type.String()),
    evidence: Type.Optional(EvidenceSchema),
    late: Type.Optional(Type.Boolean({ description: 'An MDN after its time-out: recorded; the state stays failed.' })),
  },
  { additionalProperties: false },
);
const RecipientStatusSchema = Type.Object(
  {
    address: Type.String(),
    state: StateSchema,
    reason: Type.Optional(Type.Union(FAILURE_REASONS.map((r) => Type.Literal(r)), { description: 'Why it failed.' })),
    detail: Type.Optional(Type.String()),
    updatedAt: Type.String({ format: 'date-time' }),
    transitions: Type.Array(TransitionSchema),
  },
  { additionalProperties: false },
);
export const MessageViewSchema = Type.Object(
  {
    id: Type.String(),
    messageId: Type.Union([Type.String(), Type.Null()]),
    from: Type.String(),
    subject: Type.Union([Type.String(), Type.Null()]),
    clientRef: Type.Union([Type.String(), Type.Null()]),
    submittedVia: Type.Union([Type.Literal('api'), Type.Literal('smtp')]),
    submittedAt: Type.String({ format: 'date-time' }),
    recipients: Type.Array(RecipientStatusSchema),
  },
  { additionalProperties: false },
);

const IdempotencyHeaders = Type.Object(
  { 'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7e]+$', description: 'A key of yours: the same key and body within 24 h return the first response; another body 422.' })) },
  { additionalProperties: true },
);

/**
 * The multipart form of a send, for /openapi.json: a `message` field (the JSON fields above, each
 * document described without its content) and one `document` file part per document, in order.
 * Not validated as a body: the handler reads the parts as they stream in.
 */
const MultipartForm = Type.Unknown({
  description:
    'multipart/form-data: a field "message" holding the JSON fields of a send (documents described as {filename?, contentType?, kind?}, without content), then one file part named "document" per document, in the same order; files are streamed to disk, never held in memory.',
});

/**
 * Sending (issue 15, "Send"): `POST /v1/messages` (JSON with documents in base64, or
 * multipart/form-data with the documents as files, streamed to disk), `GET /v1/messages/{id}` and
 * `GET /v1/messages`. The service is the queue of SMTP submission (flows/send-message.ts: 202 only
 * once the message and its deliveries are durable); the status comes from the event outbox
 * (events/message-tracker.ts). A key sees the messages of the addresses it may send as.
 */
export async function messagesRoutes(app: ApiApp, ctx: ApiContext): Promise<void> {
  const { sender, tracker } = ctx.services;
  const incoming = join(ctx.config.dataDir, 'incoming');
  // The server keeps only the JSON parser; multipart is parsed in this scope alone.
  await app.register(multipart, {
    limits: { fileSize: SEND_BODY_LIMITS.fileBytes, files: SEND_LIMITS.documents, fields: 1, fieldSize: SEND_BODY_LIMITS.messageFieldBytes, parts: SEND_LIMITS.documents + 1, headerPairs: 100 },
  });

  app.post(
    '/v1/messages',
    {
      bodyLimit: SEND_BODY_LIMITS.jsonBytes,
      // Read as octets, never as strings (json-body.ts): most of a send's body, and over 128 KiB.
      config: { base64Fields: ['/documents/*/content'] },
      schema: {
        summary: 'Send a message: signed, encrypted, its recipients’ certificates discovered, queued and relayed like an SMTP submission',
        description:
          'Answers 202 once the message and one delivery per recipient are durable. Idempotency-Key: the same key and body within 24 h return the first response; another body 422.',
        headers: IdempotencyHeaders,
        body: { content: { 'application/json': { schema: SendJsonBody }, 'multipart/form-data': { schema: MultipartForm } } },
        response: { 202: SendResponse },
      },
    },
    async (request, reply) => {
      const key = requireAction(request, 'send');
      const idempotencyKey = request.headers['idempotency-key'];
      const temp: string[] = [];
      try {
        const { send, hash } = request.isMultipart() ? await readMultipart(request, incoming, temp) : fromJson(request.body as SendJson);
        requireSendAs(request, send.from);
        const result = await sender.send(send, { apiKeyId: key.id, client: request.ip }, request.log, typeof idempotencyKey === 'string' ? { key: idempotencyKey, requestHash: hash() } : undefined);
        return await reply.status(202).send(result);
      } finally {
        await Promise.all(temp.map((f) => rm(f, { force: true })));
      }
    },
  );

  app.get(
    '/v1/messages/:id',
    {
      schema: {
        summary: 'A sent message: each recipient’s state (queued → relayed → processed → dispatched, or failed with a reason), timeline and evidence',
        params: Closed({ id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }) }),
        response: { 200: MessageViewSchema },
      },
    },
    async (request) => {
      const key = requireAction(request, 'status');
      return tracker.get(request.params.id, key.sendAs);
    },
  );

  app.get(
    '/v1/messages',
    {
      schema: {
        summary: 'Sent messages, oldest first, by state and time, a page at a time',
        querystring: Closed({
          state: Type.Optional(StateSchema),
          since: Type.Optional(Type.String({ format: 'date-time', description: 'Submitted at or after (RFC 3339).' })),
          cursor: Type.Optional(Type.String({ maxLength: 200, pattern: '^[A-Za-z0-9_-]+$', description: 'The nextCursor of the previous page.' })),
          limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,3}$', description: '1–100, default 50.' })),
        }),
        response: { 200: Type.Object({ messages: Type.Array(MessageViewSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) }, { additionalProperties: false }) },
      },
    },
    async (request) => {
      const key = requireAction(request, 'status');
      const q = request.query;
      return tracker.list({
        scope: key.sendAs,
        state: q.state as RecipientState | undefined,
        since: q.since === undefined ? undefined : new Date(q.since),
        cursor: q.cursor,
        limit: Math.min(100, Math.max(1, Number(q.limit ?? '50'))),
      });
    },
  );
}

/**
 * A JSON send: the documents decoded, and the hash of the request for its Idempotency-Key, computed
 * only when one is given (serializing and hashing a 100 KB body again took 7 % of the API
 * gateway's main thread in bench/api-bench.ts, for requests that mostly carry no key).
 */
function fromJson(body: SendJson): { send: SendRequest; hash: () => string } {
  const documents: SendDocument[] = (body.documents ?? []).map((d, i) => ({
    filename: d.filename,
    contentType: d.contentType,
    kind: d.kind,
    content: decodeBase64Member(d, 'content', `/documents/${i}/content`),
  }));
  const { documents: _documents, ...fields } = body;
  // The JSON text of the body as parsed, its documents' base64 as sent (jsonText): the same hash as ever.
  return { send: { ...fields, documents }, hash: () => requestHash([jsonText(body)]) };
}

/**
 * A multipart send: the `message` field (validated as the JSON body is, without contents), then
 * each `document` file streamed into the incoming folder, hashed (SHA-256) and counted as it comes:
 * never whole in memory, cut at the file size limit (HISP_API_PAYLOAD_TOO_LARGE).
 */
async function readMultipart(request: FastifyRequest, incoming: string, temp: string[]): Promise<{ send: SendRequest; hash: () => string }> {
  let message: Static<typeof MultipartMessage> | undefined;
  const files: { path: string; filename: string; contentType: string; sha256: string; sevenBit: boolean }[] = [];
  try {
    for await (const part of request.parts()) {
      if (part.type === 'field') {
        if (part.fieldname !== 'message' || message !== undefined) throw new HispError('HISP_API_INVALID_REQUEST', 'a multipart send has one field, "message", before its files');
        let parsed: unknown;
        if (typeof part.value === 'string') {
          try {
            parsed = JSON.parse(part.value);
          } catch {
            throw new HispError('HISP_API_INVALID_REQUEST', 'the "message" field is not valid JSON');
          }
        } else {
          // A field sent with Content-Type: application/json (curl -F 'message=@m.json;type=application/json')
          // arrives parsed by @fastify/multipart (its own secure-json-parse): checked the same way.
          parsed = part.value;
        }
        if (!checkMultipartMessage.Check(parsed)) {
          const first = checkMultipartMessage.Errors(parsed).First();
          throw new HispError('HISP_API_INVALID_REQUEST', `message${first ? ` ${first.path}: ${first.message}` : ' does not match the schema'}`.slice(0, 300));
        }
        message = parsed;
        continue;
      }
      if (part.fieldname !== 'document') throw new HispError('HISP_API_INVALID_REQUEST', `unknown file part ${JSON.stringify(part.fieldname.slice(0, 40))}: documents are parts named "document"`);
      // The form is the message field, then its files (the MultipartForm description): a file
      // before it is refused before anything of it is written to disk.
      if (message === undefined) throw new HispError('HISP_API_INVALID_REQUEST', 'a multipart send has its "message" field before its files');
      files.push(await toDisk(part, incoming, temp));
    }
  } catch (err) {
    if (isHispError(err)) throw err;
    const code = (err as { code?: string }).code ?? '';
    if (code === 'FST_REQ_FILE_TOO_LARGE' || code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') {
      throw new HispError('HISP_API_PAYLOAD_TOO_LARGE', `the multipart body exceeds a limit (${SEND_BODY_LIMITS.fileBytes} octets a file, ${SEND_LIMITS.documents} files, one field)`);
    }
    throw new HispError('HISP_API_INVALID_REQUEST', 'the multipart body cannot be read (RFC 7578)', { cause: err });
  }
  if (!message) throw new HispError('HISP_API_INVALID_REQUEST', 'a multipart send needs its "message" field');
  const described = message.documents ?? [];
  if (described.length > files.length) throw new HispError('HISP_API_INVALID_REQUEST', `message.documents describes ${described.length} documents, but ${files.length} file parts came`);
  const documents: SendDocument[] = files.map((f, i) => {
    const d = described[i] ?? {};
    return {
      filename: d.filename ?? f.filename,
      contentType: d.contentType ?? f.contentType,
      kind: d.kind ?? (/\.zip$/i.test(f.filename) ? 'xdm' : /\.pdf$/i.test(f.filename) ? 'pdf' : 'other'),
      content: { path: f.path },
      sevenBit: f.sevenBit,
    };
  });
  const { documents: _documents, ...fields } = message;
  return { send: { ...fields, documents }, hash: () => requestHash([JSON.stringify(message), ...files.map((f) => f.sha256)]) };
}

/**
 * One file part into the incoming folder (mode 0600), hashed, counted and checked for 7bit data on
 * the way (a 7bit document goes as it is: gateway/mime/message-composer.ts).
 */
async function toDisk(part: MultipartFile, incoming: string, temp: string[]): Promise<{ path: string; filename: string; contentType: string; sha256: string; sevenBit: boolean }> {
  const path = join(incoming, `upload-${randomBytes(12).toString('hex')}`);
  temp.push(path);
  const hash = createHash('sha256');
  const sevenBit = new SevenBitScan();
  const out = createWriteStream(path, { mode: 0o600 });
  try {
    await pipeline(
      part.file,
      new Transform({
        transform(chunk: Buffer, _encoding, done) {
          hash.update(chunk);
          sevenBit.update(chunk);
          done(null, chunk);
        },
      }),
      out,
    );
  } catch (err) {
    // A failed pipeline settles before the file stream it destroyed has opened (so created) and
    // closed its file: the caller's rm could run first and the file appear after it, left behind.
    if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
    throw err;
  }
  // @fastify/multipart ends a file that reached its size limit early, and says so.
  if (part.file.truncated) throw new HispError('HISP_API_PAYLOAD_TOO_LARGE', `a document is larger than ${SEND_BODY_LIMITS.fileBytes} octets`);
  // eslint-disable-next-line no-control-regex -- control characters are what is refused in a file name
  const filename = part.filename && /^[^/\\\u0000-\u001f]{1,255}$/.test(part.filename) ? part.filename : 'document';
  return { path, filename, contentType: part.mimetype || 'application/octet-stream', sha256: hash.digest('hex'), sevenBit: sevenBit.clean };
}

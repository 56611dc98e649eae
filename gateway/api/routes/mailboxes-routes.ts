import { Type } from '@sinclair/typebox';
import { RENDERED_CCDA_CSP, renderCcda } from '../../documents/ccda-renderer.js';
import { requireAction, requireMailbox } from '../api-authorization.js';
import { Closed, DirectAddressSchema } from '../api-schemas.js';
import type { ApiApp, ApiContext } from '../api-server.js';

const PartSchema = Type.Object(
  {
    id: Type.String({ description: 'text, html (the body), or p1, p2… (attachments, in order)' }),
    contentType: Type.String(),
    filename: Type.Union([Type.String(), Type.Null()]),
    size: Type.Integer(),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  },
  { additionalProperties: false },
);

const MessageSchema = Type.Object(
  {
    id: Type.String(),
    from: Type.Union([Type.String(), Type.Null()]),
    to: Type.Array(Type.String()),
    subject: Type.Union([Type.String(), Type.Null()]),
    receivedAt: Type.String({ format: 'date-time' }),
    acknowledgedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    security: Type.Object(
      {
        signer: Type.String({ description: 'The subject of the first trusted signer’s certificate.' }),
        fingerprint: Type.String({ description: 'SHA-256 of that certificate (hex).' }),
        binding: Type.String({ description: 'address or domain (R-CRT-1).' }),
        anchor: Type.Object({ subject: Type.String(), sha256: Type.String(), bundle: Type.Union([Type.String(), Type.Null()]) }, { additionalProperties: false }),
        algorithms: Type.Record(Type.String(), Type.String(), { description: 'cipher, keyTransport, digest.' }),
      },
      { additionalProperties: false },
    ),
    parts: Type.Array(PartSchema),
    xdm: Type.Optional(Type.Object({ submissionSet: Type.Record(Type.String(), Type.Unknown()), documents: Type.Array(Type.Record(Type.String(), Type.Unknown())) }, { additionalProperties: false })),
    ccda: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'The header facts of the C-CDA: title, patient, author, organization, date.' })),
    context: Type.Optional(
      Type.Union(
        [
          Type.Object(
            {
              valid: Type.Literal(true),
              version: Type.String(),
              id: Type.String(),
              patientId: Type.Optional(Type.Array(Type.Object({ authority: Type.String(), id: Type.String() }, { additionalProperties: false }))),
              type: Type.Optional(Type.Object({ category: Type.String(), action: Type.String() }, { additionalProperties: false })),
              purpose: Type.Optional(Type.String()),
              patient: Type.Optional(Type.Record(Type.String(), Type.String())),
              encapsulation: Type.Optional(Type.String()),
              other: Type.Optional(Type.Record(Type.String(), Type.String())),
            },
            { additionalProperties: false },
          ),
          Type.Object({ valid: Type.Literal(false), reason: Type.String() }, { additionalProperties: false }),
        ],
        { description: 'Direct Context (the X-Direct-Context header and the metadata.txt part it names): read, or why it could not be.' },
      ),
    ),
  },
  { additionalProperties: false },
);

const ListItemSchema = Type.Object(
  {
    id: Type.String(),
    from: Type.String({ description: 'The envelope sender.' }),
    messageId: Type.Union([Type.String(), Type.Null()]),
    receivedAt: Type.String({ format: 'date-time' }),
    size: Type.Integer(),
    acknowledgedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  },
  { additionalProperties: false },
);

const MailboxParams = Closed({ address: DirectAddressSchema });
const MessageParams = Closed({ address: DirectAddressSchema, id: Type.String({ pattern: '^msg_[0-9a-f]{24}$' }) });
const PartParams = Closed({ address: DirectAddressSchema, id: Type.String({ pattern: '^msg_[0-9a-f]{24}$' }), pid: Type.String({ pattern: '^(text|html|p[0-9]{1,3})$' }) });

/**
 * Receiving (issue 15, "Receive"): the API mailboxes of the addresses whose delivery is `api`. A
 * PHR lists what waits, reads a message (its signer, parts, C-CDA header, XDM documents), takes the
 * parts, and acknowledges it: its final delivery, which sends the dispatched MDN when the sender
 * asked for one. A key reads only the mailboxes of its scopes; another mailbox's message is 404.
 */
export function mailboxesRoutes(app: ApiApp, ctx: ApiContext): void {
  const { mailboxes } = ctx.services;
  const allow = (request: Parameters<typeof requireMailbox>[0], address: string) => {
    requireAction(request, 'receive');
    requireMailbox(request, address);
  };

  app.get(
    '/v1/mailboxes/:address/messages',
    {
      schema: {
        summary: 'The messages of a mailbox, oldest first: those waiting (default), acknowledged, or all',
        params: MailboxParams,
        querystring: Closed({
          cursor: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })),
          limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,3}$' })),
          state: Type.Optional(Type.Union([Type.Literal('waiting'), Type.Literal('acknowledged'), Type.Literal('all')])),
        }),
        response: { 200: Type.Object({ messages: Type.Array(ListItemSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) }, { additionalProperties: false }) },
      },
    },
    (request) => {
      allow(request, request.params.address);
      const limit = Math.min(500, Math.max(1, Number(request.query.limit ?? '100')));
      return mailboxes.list(request.params.address, Number(request.query.cursor ?? '0'), limit, request.query.state ?? 'waiting');
    },
  );

  app.get('/v1/mailboxes/:address/messages/:id', { schema: { summary: 'One received message: sender, security, parts, C-CDA and XDM', params: MessageParams, response: { 200: MessageSchema } } }, async (request) => {
    allow(request, request.params.address);
    return mailboxes.read(request.params.address, request.params.id);
  });

  app.get(
    '/v1/mailboxes/:address/messages/:id/parts/:pid',
    {
      schema: {
        summary: 'The octets of one part, decoded, with its media type (served as a download)',
        params: PartParams,
        response: { 200: { description: 'The part’s octets, with its Content-Type.', content: { '*/*': { schema: { type: 'string', format: 'binary' } } } } },
      },
    },
    async (request, reply) => {
      allow(request, request.params.address);
      const { part, bytes } = await mailboxes.part(request.params.address, request.params.id, request.params.pid);
      // Served as a download, never interpreted by a browser in the API's origin.
      return reply
        .type(part.contentType)
        .header('content-disposition', `attachment; filename="${(part.filename ?? part.id).replace(/[^\x20-\x7e]|["\\]/g, '_')}"`)
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', "default-src 'none'; sandbox")
        .send(bytes);
    },
  );

  app.get(
    '/v1/mailboxes/:address/messages/:id/parts/:pid/rendered',
    {
      schema: {
        summary: 'A C-CDA part rendered as a safe HTML page (no script runs, no request leaves: the page’s Content-Security-Policy, also sent as a header)',
        params: PartParams,
        response: { 200: { description: 'The page.', content: { 'text/html': { schema: { type: 'string' } } } } },
      },
    },
    async (request, reply) => {
      allow(request, request.params.address);
      const { bytes } = await mailboxes.part(request.params.address, request.params.id, request.params.pid);
      const { html } = renderCcda(bytes);
      return reply
        .type('text/html; charset=utf-8')
        .header('content-security-policy', `${RENDERED_CCDA_CSP}; frame-ancestors 'none'; sandbox`)
        .header('x-content-type-options', 'nosniff')
        .send(html);
    },
  );

  app.post(
    '/v1/mailboxes/:address/messages/:id/ack',
    {
      schema: {
        summary: 'The PHR took the message: its final delivery (the dispatched MDN goes when it was asked for); repeating it changes nothing',
        params: MessageParams,
        response: { 200: Type.Object({ id: Type.String(), acknowledgedAt: Type.String({ format: 'date-time' }), dispatchedMdn: Type.Boolean({ description: 'This acknowledgement sent the dispatched MDN.' }) }, { additionalProperties: false }) },
      },
    },
    async (request) => {
      const key = requireAction(request, 'receive');
      requireMailbox(request, request.params.address);
      const r = await mailboxes.acknowledge(request.params.address, request.params.id, `api:${key.id}`, request.log);
      return { id: request.params.id, ...r };
    },
  );
}

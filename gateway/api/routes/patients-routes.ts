import { Type, type Static } from '@sinclair/typebox';
import { HispError } from '../../core/errors.js';
import { FAILURE_REASONS } from '../../events/failure-reason.js';
import { authorizationStatus, type Authorization } from '../../transmit/authorization-store.js';
import { RECORD_TRIGGERS, SKIP_REASONS } from '../../transmit/transmission-store.js';
import type { PatientId, TransmissionView, TransmitActor } from '../../transmit/transmit-service.js';
import { requireAction, requireSendAs } from '../api-authorization.js';
import { Closed, decodeBase64Member, DirectAddressSchema } from '../api-schemas.js';
import type { ApiApp, ApiContext } from '../api-server.js';
import type { FastifyRequest } from 'fastify';

/** Bounds of the Blue Button+ routes (issue 14's rule: every intake bounded). */
export const TRANSMIT_LIMITS = {
  /** Destinations of one authorization. */
  destinations: 20,
  /** A pushed record's JSON body (its document in base64): held in memory, as a JSON send's is. */
  recordBytes: 16 * 1024 * 1024,
  /** Transmissions per page of the history. */
  pageMax: 500,
} as const;

/** Printable ASCII without space or `|` (the store joins an assigning authority and a reference with it). */
const RefSchema = Type.String({ minLength: 1, maxLength: 200, pattern: '^[\\x21-\\x7b\\x7d\\x7e]+$' });
/** A person's or an organisation's name as written in the sentence and request.txt: no control character can add a line. */
const NameSchema = Type.String({ minLength: 1, maxLength: 200, pattern: '^[^\\u0000-\\u001f\\u007f]+$' });
const InstantSchema = Type.String({ format: 'date-time', description: 'RFC 3339.' });
const PackageSchema = Type.Union([Type.Literal('mime'), Type.Literal('xdm'), Type.Literal('both')]);

const PatientParams = Closed({ patientRef: Type.String({ ...RefSchema, description: "The data holder's own reference of the patient (its MRN)." }) });
const AuthorizationParams = Closed({ patientRef: RefSchema, id: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9_-]+$' }) });
const AuthorityQuery = { assigningAuthority: Type.Optional(Type.String({ ...RefSchema, description: 'The assigning authority the patientRef is of, when the authorization named one.' })) };

const AuthorizationBody = Closed({
  assigningAuthority: AuthorityQuery.assigningAuthority,
  patient: Closed({ name: NameSchema, birthDate: Type.Optional(Type.String({ format: 'date' })) }),
  from: Type.String({ ...DirectAddressSchema, description: "The data holder's Direct address the records go from: one the key may send as." }),
  dataHolder: Closed({ name: NameSchema }),
  destinations: Type.Array(
    Closed({
      address: DirectAddressSchema,
      package: Type.Optional(Type.Union(PackageSchema.anyOf, { description: 'mime (default), xdm or both.' })),
      humanReadable: Type.Optional(Type.Boolean({ description: "The C-CDA's rendering as text/html along (default true)." })),
      requestTxt: Type.Optional(Type.Boolean({ description: 'A request.txt part (default false).' })),
    }),
    { minItems: 1, maxItems: TRANSMIT_LIMITS.destinations },
  ),
  frequency: Type.Union([Type.Literal('once'), Type.Literal('on-update')]),
  interval: Type.Optional(Type.Integer({ minimum: 1, maximum: 525_600, description: 'Minutes: the least time between two sends to a destination; a record pushed sooner is skipped for it (reason interval).' })),
  grantedBy: Closed({ kind: Type.Union([Type.Literal('patient'), Type.Literal('representative'), Type.Literal('staff')]), name: Type.Optional(NameSchema) }),
  method: Type.Union([Type.Literal('portal'), Type.Literal('in-person'), Type.Literal('written')]),
  consent: Closed({ version: Type.String({ minLength: 1, maxLength: 100 }), sha256: Type.String({ pattern: '^[0-9a-fA-F]{64}$', description: 'SHA-256 of the consent text the patient agreed to, hex.' }) }),
  expiresAt: Type.Optional(InstantSchema),
});

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const AuthorizationView = Type.Object(
  {
    id: Type.String(),
    patientRef: Type.String(),
    assigningAuthority: Nullable(Type.String()),
    patient: Type.Object({ name: Type.String(), birthDate: Nullable(Type.String()) }, { additionalProperties: false }),
    from: Type.String(),
    dataHolder: Type.Object({ name: Type.String() }, { additionalProperties: false }),
    destinations: Type.Array(
      Type.Object({ address: Type.String(), package: PackageSchema, humanReadable: Type.Boolean(), requestTxt: Type.Boolean() }, { additionalProperties: false }),
    ),
    frequency: Type.Union([Type.Literal('once'), Type.Literal('on-update')]),
    interval: Nullable(Type.Integer()),
    grantedBy: Type.Object({ kind: Type.String(), name: Nullable(Type.String()) }, { additionalProperties: false }),
    method: Type.String(),
    consent: Type.Object({ version: Type.String(), sha256: Type.String() }, { additionalProperties: false }),
    status: Type.Union([Type.Literal('active'), Type.Literal('revoked'), Type.Literal('expired'), Type.Literal('fulfilled')], {
      description: 'fulfilled: a once-authorization that has sent.',
    }),
    createdAt: InstantSchema,
    expiresAt: Nullable(InstantSchema),
    revokedAt: Nullable(InstantSchema),
    revokedBy: Nullable(Type.String({ description: 'The API key that revoked it.' })),
    fulfilledAt: Nullable(InstantSchema),
  },
  { additionalProperties: false },
);

const RecordBody = Closed({
  assigningAuthority: AuthorityQuery.assigningAuthority,
  document: Closed({
    filename: Type.String({ minLength: 1, maxLength: 255, pattern: '^[^/\\\\\\u0000-\\u001f]+$' }),
    contentType: Type.String({ minLength: 3, maxLength: 127, pattern: '^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$' }),
    kind: Type.Union([Type.Literal('ccda'), Type.Literal('pdf'), Type.Literal('fhir'), Type.Literal('other')], { description: 'ccda: sent as application/xml with its rendering.' }),
    content: Type.String({ contentEncoding: 'base64', minLength: 1, description: 'The document, base64 (RFC 4648 §4).' }),
  }),
  trigger: Type.Union(RECORD_TRIGGERS.map((t) => Type.Literal(t))),
  madeAt: InstantSchema,
  subject: Type.Optional(Type.String({ maxLength: 200, pattern: '^[^\\u0000-\\u001f\\u007f]*$' })),
});

const TransmissionSummary = {
  id: Type.String(),
  authorizationId: Type.String(),
  destination: Type.String(),
  status: Type.Union([Type.Literal('queued'), Type.Literal('skipped')]),
  reason: Type.Optional(
    Type.Union(
      SKIP_REASONS.map((r) => Type.Literal(r)),
      { description: 'Why a skipped destination got nothing: duplicate, interval; revoked, expired or fulfilled when its authorization changed while the push ran.' },
    ),
  ),
  queueId: Type.Optional(Type.String({ description: 'GET /v1/messages/{queueId}.' })),
  messageId: Type.Optional(Type.String()),
};
const PushResponse = Type.Object(
  { recordId: Type.String(), sha256: Type.String(), transmissions: Type.Array(Type.Object(TransmissionSummary, { additionalProperties: false })) },
  { additionalProperties: false },
);

const DeliverySchema = Type.Object(
  {
    state: Type.Union(['queued', 'relayed', 'processed', 'dispatched', 'failed'].map((s) => Type.Literal(s))),
    reason: Type.Optional(Type.Union(FAILURE_REASONS.map((r) => Type.Literal(r)))),
    detail: Type.Optional(Type.String()),
    updatedAt: InstantSchema,
  },
  { additionalProperties: false },
);
const HistoryEntry = Type.Object(
  {
    ...TransmissionSummary,
    recordId: Type.String(),
    sha256: Type.String(),
    trigger: Type.String(),
    createdAt: InstantSchema,
    delivery: Type.Union([DeliverySchema, Type.Null()], { description: 'The message to this destination as tracked now; null when skipped (or purged).' }),
    resentBy: Type.Optional(
      Type.String({ description: 'Its delivery surely failed (no-certificate, untrusted, no-route, rejected, expired, failure-mdn, dsn) and a later push of the same document sent it again: the id of that transmission.' }),
    ),
  },
  { additionalProperties: false },
);

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function authorizationView(a: Authorization, now: number): Static<typeof AuthorizationView> {
  return {
    id: a.id,
    patientRef: a.patientRef,
    assigningAuthority: a.assigningAuthority,
    patient: a.patient,
    from: a.from,
    dataHolder: a.dataHolder,
    destinations: a.destinations,
    frequency: a.frequency,
    interval: a.intervalMinutes,
    grantedBy: a.grantedBy,
    method: a.method,
    consent: a.consent,
    status: authorizationStatus(a, now),
    createdAt: new Date(a.createdAt).toISOString(),
    expiresAt: iso(a.expiresAt),
    revokedAt: iso(a.revokedAt),
    revokedBy: a.revokedBy,
    fulfilledAt: iso(a.fulfilledAt),
  };
}

function summary(t: TransmissionView | Omit<TransmissionView, 'delivery'>) {
  return {
    id: t.id,
    authorizationId: t.authorizationId,
    destination: t.destination,
    status: t.status,
    ...(t.reason !== null ? { reason: t.reason } : {}),
    ...(t.queueId !== null ? { queueId: t.queueId } : {}),
    ...(t.messageId !== null ? { messageId: t.messageId } : {}),
  };
}

function actorOf(request: FastifyRequest, action: 'send' | 'status'): TransmitActor {
  const key = requireAction(request, action);
  return { keyId: key.id, sendAs: key.sendAs, client: request.ip };
}

function instant(value: string, field: string): number {
  const ms = Date.parse(value);
  if (!Number.isFinite(ms)) throw new HispError('HISP_API_INVALID_REQUEST', `body /${field}: not a time`);
  return ms;
}

/**
 * Blue Button+ transmit (issue 16; BB+ "Transmitting Data Using the Direct Protocol", requirements
 * §1.11): a patient's authorizations (given, listed, revoked), the records the EHR pushes (sent to
 * each destination that asked, gateway/transmit/transmit-service.ts) and the patient's history of
 * transmissions. Writes need the `send` action (and, for an authorization, send-as on its `from`);
 * reads need `status`. A key sees the authorizations sent from its send-as scopes, and only those.
 */
export function patientsRoutes(app: ApiApp, ctx: ApiContext): void {
  const service = ctx.services.transmit;
  const base = '/v1/patients/:patientRef';

  app.post(
    `${base}/authorizations`,
    {
      schema: {
        summary: "Record a patient's authorization to send their record to Direct addresses, once or on every update (Blue Button+)",
        description:
          "Each destination is checked as POST /v1/recipients/validate does, under the from domain's policy for a patient-directed send: anything but trusted is 422 with each destination's verdict (503 with Retry-After when discovery failed for now).",
        params: PatientParams,
        body: AuthorizationBody,
        response: { 201: AuthorizationView },
      },
    },
    async (request, reply) => {
      const actor = actorOf(request, 'send');
      const body = request.body;
      requireSendAs(request, body.from);
      const patient: PatientId = { patientRef: request.params.patientRef, assigningAuthority: body.assigningAuthority };
      const a = await service.authorize(
        patient,
        {
          patient: body.patient,
          from: body.from,
          dataHolder: body.dataHolder,
          destinations: body.destinations,
          frequency: body.frequency,
          intervalMinutes: body.interval,
          grantedBy: body.grantedBy,
          method: body.method,
          consent: body.consent,
          expiresAt: body.expiresAt === undefined ? undefined : instant(body.expiresAt, 'expiresAt'),
        },
        actor,
      );
      return reply.status(201).send(authorizationView(a, ctx.now()));
    },
  );

  app.get(
    `${base}/authorizations`,
    {
      schema: {
        summary: "The patient's authorizations, revoked and expired ones too, oldest first",
        params: PatientParams,
        querystring: Closed(AuthorityQuery),
        response: { 200: Type.Object({ authorizations: Type.Array(AuthorizationView) }, { additionalProperties: false }) },
      },
    },
    async (request) => {
      const actor = actorOf(request, 'status');
      const now = ctx.now();
      const list = service.list({ patientRef: request.params.patientRef, assigningAuthority: request.query.assigningAuthority }, actor);
      return Promise.resolve({ authorizations: list.map((a) => authorizationView(a, now)) });
    },
  );

  app.get(
    `${base}/authorizations/:id`,
    { schema: { summary: 'One authorization', params: AuthorizationParams, querystring: Closed(AuthorityQuery), response: { 200: AuthorizationView } } },
    async (request) => {
      const actor = actorOf(request, 'status');
      const a = service.get({ patientRef: request.params.patientRef, assigningAuthority: request.query.assigningAuthority }, request.params.id, actor);
      return Promise.resolve(authorizationView(a, ctx.now()));
    },
  );

  app.delete(
    `${base}/authorizations/:id`,
    {
      schema: {
        summary: 'Revoke an authorization: nothing is sent under it from now on; what was sent stays on record; revoking again changes nothing',
        params: AuthorizationParams,
        querystring: Closed(AuthorityQuery),
        response: { 200: AuthorizationView },
      },
    },
    async (request) => {
      const actor = actorOf(request, 'send');
      const a = await service.revoke({ patientRef: request.params.patientRef, assigningAuthority: request.query.assigningAuthority }, request.params.id, actor);
      return authorizationView(a, ctx.now());
    },
  );

  app.post(
    `${base}/records`,
    {
      bodyLimit: TRANSMIT_LIMITS.recordBytes,
      // The document read as octets, never as a string (json-body.ts).
      config: { base64Fields: ['/document/content'] },
      schema: {
        summary: 'Push a new document of the patient: sent to every destination of every authorization that sends now, each as its own Direct message',
        description:
          'The same document (SHA-256 of its octets) never goes twice to a destination: skipped, reason duplicate; revoked, expired or fulfilled when the authorization changed while the push ran. 404 for a patient without authorization, 409 when none sends now (HISP_TRANSMIT_REVOKED with the latest revokedAt when one is revoked; expiredAt when one has expired).',
        params: PatientParams,
        body: RecordBody,
        response: { 202: PushResponse },
      },
    },
    async (request, reply) => {
      const actor = actorOf(request, 'send');
      const body = request.body;
      const content = decodeBase64Member(body.document, 'content', '/document/content');
      if (content.length === 0) {
        throw new HispError('HISP_API_INVALID_REQUEST', 'body /document/content: an empty document', { details: { errors: [{ in: 'body', path: '/document/content', message: 'an empty document' }] } });
      }
      const outcome = await service.push(
        { patientRef: request.params.patientRef, assigningAuthority: body.assigningAuthority },
        { document: { ...body.document, content }, trigger: body.trigger, madeAt: instant(body.madeAt, 'madeAt'), subject: body.subject },
        actor,
        request.log,
      );
      return reply.status(202).send({ recordId: outcome.recordId, sha256: outcome.sha256, transmissions: outcome.transmissions.map(summary) });
    },
  );

  app.get(
    `${base}/transmissions`,
    {
      schema: {
        summary: "The patient's transmissions, oldest first, each with its delivery as tracked now (dispatched, failed and why…)",
        params: PatientParams,
        querystring: Closed({
          ...AuthorityQuery,
          after: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'The nextCursor of the previous page.' })),
          limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,3}$', description: `1–${TRANSMIT_LIMITS.pageMax}, default 100.` })),
        }),
        response: { 200: Type.Object({ transmissions: Type.Array(HistoryEntry), nextCursor: Type.Union([Type.String(), Type.Null()]) }, { additionalProperties: false }) },
      },
    },
    async (request) => {
      const actor = actorOf(request, 'status');
      const q = request.query;
      const limit = Math.min(TRANSMIT_LIMITS.pageMax, Math.max(1, Number(q.limit ?? '100')));
      const page = await service.history({ patientRef: request.params.patientRef, assigningAuthority: q.assigningAuthority }, actor, Number(q.after ?? '0'), limit);
      return {
        transmissions: page.transmissions.map((t) => ({
          ...summary(t),
          recordId: t.recordId,
          sha256: t.sha256,
          trigger: t.trigger,
          createdAt: new Date(t.createdAt).toISOString(),
          ...(t.resentBy !== null ? { resentBy: t.resentBy } : {}),
          delivery: t.delivery
            ? { state: t.delivery.state, ...(t.delivery.reason ? { reason: t.delivery.reason } : {}), ...(t.delivery.detail ? { detail: t.delivery.detail } : {}), updatedAt: t.delivery.updatedAt }
            : null,
        })),
        nextCursor: page.nextCursor === null ? null : String(page.nextCursor),
      };
    },
  );
}

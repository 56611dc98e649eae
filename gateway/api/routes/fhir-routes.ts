import { patientCx } from '../../documents/xdm-pack.js';
import { randomBytes } from 'node:crypto';
import type { Bundle, BundleEntry, CapabilityStatement, Communication, Task } from '@medplum/fhirtypes';
import { Type } from '@sinclair/typebox';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { HispError, isHispError } from '../../core/errors.js';
import { describeError } from '../../flows/notices.js';
import type { SendDocument } from '../../flows/send-message.js';
import { communicationFor, mailboxMessageId } from '../../fhir/communication-view.js';
import { readMhdBundle, type MhdSubmission } from '../../fhir/mhd-bundle.js';
import { FHIR_MEDIA_TYPE, operationOutcomeForError } from '../../fhir/operation-outcome.js';
import { taskFor } from '../../fhir/task-view.js';
import { addressInScopes } from '../../core/address-scope.js';
import { requireAction, requireMailbox, requireSendAs } from '../api-authorization.js';
import { Closed, DirectAddressSchema } from '../api-schemas.js';
import { asHispError, type ApiApp, type ApiContext } from '../api-server.js';
import { jsonBodyParser } from '../json-body.js';
import { SEND_BODY_LIMITS } from './messages-routes.js';

/** A FHIR resource in a response: open (FHIR has more than this document says), typed by resourceType. */
const resource = (type: string, description: string) =>
  Type.Object({ resourceType: Type.Literal(type) }, { additionalProperties: true, description: `${description} (FHIR R4 ${type}, docs/fhir.md)` });
const fhirBody = (type: string, description: string) => ({ description, content: { [FHIR_MEDIA_TYPE]: { schema: resource(type, description) } } });
const OUTCOME = fhirBody('OperationOutcome', 'What went wrong: one issue per rule broken, its expression the element, the HISP_… code in details');
const ERRORS = { '4xx': OUTCOME, '5xx': OUTCOME };

/** FHIR R4 id (datatypes: [A-Za-z0-9-.]{1,64}); hisp's Task ids are queue ids (hex). */
const IdParams = Closed({ id: Type.String({ pattern: '^[A-Za-z0-9.-]{1,64}$' }) });
const PackageQuery = Type.Union([Type.Literal('mime'), Type.Literal('xdm'), Type.Literal('both')], {
  description: 'How the documents go: xdm (one XDM zip, IHE ITI TF-2b 3.32), mime (each attached), both (default).',
});
/** `_count` of a Communication search (FHIR R4 search §3.1.1.5.6): each message is read to list its parts. */
const COMMUNICATION_PAGE = { default: 20, max: 50 } as const;

/** The CapabilityStatement of /fhir (FHIR R4 CapabilityStatement; ITI-65 as the MHD Document Recipient's transaction). */
const CAPABILITIES: CapabilityStatement = {
  resourceType: 'CapabilityStatement',
  status: 'active',
  date: '2026-12-08',
  kind: 'instance',
  fhirVersion: '4.0.1',
  format: [FHIR_MEDIA_TYPE, 'application/json'],
  implementation: { description: 'hisp: IHE MHD ITI-65 Provide Document Bundle sent as Direct messages (docs/fhir.md)' },
  rest: [
    {
      mode: 'server',
      security: { description: 'Authorization: Bearer hisp_… (an API key, hisp api-key create)' },
      interaction: [{ code: 'transaction', documentation: 'ITI-65 Provide Document Bundle (Minimal Metadata): POST /fhir or /fhir/Bundle' }],
      resource: [
        { type: 'Task', interaction: [{ code: 'read' }, { code: 'search-type' }], searchParam: [{ name: 'focus', type: 'reference' }] },
        { type: 'Communication', interaction: [{ code: 'read' }, { code: 'search-type' }], searchParam: [{ name: 'recipient', type: 'reference', documentation: 'the mailbox address' }, { name: '_count', type: 'number' }] },
      ],
    },
  ],
};

/** A FHIR searchset Bundle (FHIR R4 search §3.1.1.4: Bundle.type searchset, each entry mode match). */
function searchset(resources: readonly (Task | Communication)[], base: string): Bundle {
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    total: resources.length,
    entry: resources.map((r) => ({ fullUrl: `${base}/fhir/${r.resourceType}/${r.id ?? ''}`, resource: r, search: { mode: 'match' } })),
  };
}

/** The base URL of the request (for fullUrl and attachment urls). */
function baseOf(request: FastifyRequest): string {
  return `${request.protocol}://${request.host}`;
}

/**
 * FHIR (issue 16, "FHIR"): IHE MHD ITI-65 Provide Document Bundle (`POST /fhir/Bundle`, and `POST
 * /fhir` as FHIR's transaction at the base), each recipient's delivery as a Task, received
 * messages as Communications. Everything under /fhir answers `application/fhir+json`; every error
 * is an OperationOutcome (FHIR R4 http.html §3.1.0.4) with the status of api/problem-mapping.ts, in
 * this scope's own error and not-found handlers (never RFC 9457 here). Keys and scopes as for
 * /v1: send (and send-as the author) to submit, status for Tasks, receive (and the mailbox) for
 * Communications.
 */
export async function fhirRoutes(app: ApiApp, ctx: ApiContext): Promise<void> {
  await app.register(
    (scope, _options, done) => {
      const fhir = scope as unknown as ApiApp;
      const { sender, tracker, mailboxes, fhirTasks } = ctx.services;
      // FHIR's own JSON media type (FHIR R4 http.html §3.1.0.1.10), with the JSON send's bound.
      // Its Binaries' base64 read as octets, never as strings (api/json-body.ts: the routes' config).
      fhir.addContentTypeParser(FHIR_MEDIA_TYPE, { parseAs: 'buffer', bodyLimit: SEND_BODY_LIMITS.jsonBytes }, jsonBodyParser(fhir));

      const sendOutcome = (err: unknown, request: FastifyRequest, reply: FastifyReply) => {
        const { status, outcome } = operationOutcomeForError(err, request.id);
        if (status >= 500) request.log.error({ err: describeError(err), trace: request.id }, 'internal error');
        else request.log.info({ code: isHispError(err) ? err.code : undefined, status }, 'request refused');
        const retryAfter = isHispError(err) ? err.details?.retryAfter : undefined;
        if (typeof retryAfter === 'number') void reply.header('retry-after', retryAfter);
        return reply.status(status).type(FHIR_MEDIA_TYPE).send(outcome);
      };
      fhir.setErrorHandler((err: FastifyError, request, reply) => {
        const mapped = err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? new HispError('HISP_API_UNSUPPORTED_MEDIA_TYPE', `send ${FHIR_MEDIA_TYPE} (or application/json)`) : asHispError(err);
        return sendOutcome(mapped, request, reply);
      });
      fhir.setNotFoundHandler({ preHandler: fhir.rateLimit() }, (request, reply) =>
        sendOutcome(new HispError('HISP_API_NO_ROUTE', `no FHIR interaction ${request.method} ${(request.url.split('?')[0] ?? '').slice(0, 200)} (docs/fhir.md)`), request, reply),
      );

      const provide = async (request: FastifyRequest<{ Querystring: { package?: 'mime' | 'xdm' | 'both'; finalDelivery?: 'true' | 'false' } }>, reply: FastifyReply) => {
        const key = requireAction(request, 'send');
        const submission = readMhdBundle(request.body);
        const from = senderOf(submission, key.sendAs);
        requireSendAs(request, from);
        const submissionId = randomBytes(12).toString('hex');
        const documentIds = new Map<number, string>();
        for (const d of submission.documents) if (!documentIds.has(d.entry)) documentIds.set(d.entry, `${submissionId}-${documentIds.size + 1}`);
        // Each document's XDM DocumentEntry from its DocumentReference (type, class, format, confidentiality… ITI TF-3 4.5.1).
        const documents: SendDocument[] = submission.documents.map((d) => ({ filename: d.filename, contentType: d.contentType, kind: d.kind, content: d.content, entry: d.documentEntry }));
        const title = submission.title ?? 'Health documents';
        const text = `${title}\r\n\r\nDocuments: ${submission.documents.map((d) => d.filename).join(', ')}\r\n`;
        // One Direct message per intended recipient: each its own delivery, tracked, and its Task.
        for (const recipient of submission.recipients) {
          await sender.send(
            // The dispatched MDN is asked for unless ?finalDelivery=false: a Task is completed by it alone.
            {
              from,
              to: [recipient.address],
              subject: title,
              text,
              documents,
              package: request.query.package ?? 'both',
              finalDelivery: request.query.finalDelivery !== 'false',
              ...(submission.context ? { context: submission.context } : {}),
              // The XDM package from the same metadata: the SubmissionSet's title and patient (List.subject's OID identifier).
              xdm: { title: submission.title, patientId: xdmPatientOf(submission.context) },
            },
            { apiKeyId: key.id, client: request.ip },
            request.log,
            undefined,
            // The Task in the message's own commit: never a message without its Task, nor a Task without its message.
            (queueId) => fhirTasks.add({ queueId, submissionId, recipient: recipient.address, ownerType: recipient.resourceType, patient: submission.patient ?? null, documents: [...documentIds.values()], createdAt: ctx.now() }),
          );
        }
        // ITI TF-2 3.65.4.2.2: a transaction-response Bundle, an entry per request entry, in order.
        const entry: BundleEntry[] = submission.entryTypes.map((type, i) => {
          const id = i === submission.submissionSetEntry ? submissionId : (documentIds.get(i) ?? `${submissionId}-e${i}`);
          return { response: { status: '201 Created', location: `${type}/${id}` } };
        });
        const response: Bundle = { resourceType: 'Bundle', type: 'transaction-response', entry };
        return reply.status(200).type(FHIR_MEDIA_TYPE).send(response);
      };
      const provideSchema = {
        summary: 'IHE MHD ITI-65 Provide Document Bundle (Minimal Metadata): one Direct message per intended recipient',
        querystring: Closed({
          package: Type.Optional(PackageQuery),
          finalDelivery: Type.Optional(
            Type.Union([Type.Literal('true'), Type.Literal('false')], { description: 'Ask for the dispatched MDN (default true: it is what completes a Task; Direct IG for Delivery Notification §3).' }),
          ),
        }),
        body: Type.Unknown({ description: 'A FHIR R4 transaction Bundle: a SubmissionSet List (ihe-intendedRecipient extensions), DocumentReferences, Binaries (docs/fhir.md).' }),
        response: { 200: fhirBody('Bundle', 'The transaction-response: 201 Created and a location per entry, in order'), ...ERRORS },
      };
      const binaries = { base64Fields: ['/entry/*/resource/data'] };
      fhir.post('/Bundle', { bodyLimit: SEND_BODY_LIMITS.jsonBytes, config: binaries, schema: provideSchema }, provide);
      fhir.post('', { bodyLimit: SEND_BODY_LIMITS.jsonBytes, config: binaries, schema: { ...provideSchema, summary: 'The same transaction at the FHIR base (ITI-65 as FHIR transaction)' } }, provide);

      // FHIR R4 http.html §3.1.0.10 (capabilities): what this server does, for clients that ask first. No key needed: it names no data.
      fhir.get(
        '/metadata',
        { config: { public: true }, schema: { summary: 'The FHIR CapabilityStatement of these routes', security: [], response: { 200: fhirBody('CapabilityStatement', 'What /fhir does'), ...ERRORS } } },
        async (_request, reply) => reply.type(FHIR_MEDIA_TYPE).send(CAPABILITIES),
      );

      fhir.get(
        '/Task',
        {
          schema: {
            summary: 'The Tasks of a submission: one per recipient, its status from the message tracking',
            querystring: Closed({ focus: Type.String({ minLength: 1, maxLength: 200, description: 'List/{id} (the SubmissionSet), {id}, or DocumentReference/{id}-{n}' }) }),
            response: { 200: fhirBody('Bundle', 'A searchset of Tasks'), ...ERRORS },
          },
        },
        async (request, reply) => {
          const key = requireAction(request, 'status');
          const m = /^(?:List\/|DocumentReference\/)?([0-9a-f]{24})(?:-\d{1,3})?$/.exec(request.query.focus);
          const tasks: Task[] = [];
          for (const row of m ? fhirTasks.ofSubmission(m[1]!) : []) {
            try {
              tasks.push(taskFor(row, await tracker.get(row.queueId, key.sendAs)));
            } catch (err) {
              // A message of another key's scope, or purged from the queue: not listed.
              if (!isHispError(err) || err.code !== 'HISP_NOT_FOUND') throw err;
            }
          }
          return reply.type(FHIR_MEDIA_TYPE).send(searchset(tasks, baseOf(request)));
        },
      );

      fhir.get('/Task/:id', { schema: { summary: 'One recipient’s delivery as a Task', params: IdParams, response: { 200: fhirBody('Task', 'The Task'), ...ERRORS } } }, async (request, reply) => {
        const key = requireAction(request, 'status');
        const row = fhirTasks.get(request.params.id);
        if (!row) throw new HispError('HISP_NOT_FOUND', 'no such Task');
        return reply.type(FHIR_MEDIA_TYPE).send(taskFor(row, await tracker.get(row.queueId, key.sendAs)));
      });

      fhir.get(
        '/Communication',
        {
          schema: {
            summary: 'Received messages of a mailbox as Communications, oldest first (waiting and acknowledged)',
            querystring: Closed({
              recipient: DirectAddressSchema,
              _count: Type.Optional(Type.String({ pattern: '^[0-9]{1,3}$', description: `1–${COMMUNICATION_PAGE.max}, default ${COMMUNICATION_PAGE.default}` })),
            }),
            response: { 200: fhirBody('Bundle', 'A searchset of Communications'), ...ERRORS },
          },
        },
        async (request, reply) => {
          requireAction(request, 'receive');
          const mailbox = request.query.recipient.replace(/^mailto:/i, '');
          requireMailbox(request, mailbox);
          const count = Math.min(COMMUNICATION_PAGE.max, Math.max(1, Number(request.query._count ?? COMMUNICATION_PAGE.default)));
          const items = mailboxes.list(mailbox, 0, count, 'all').messages;
          const base = baseOf(request);
          const out: Communication[] = [];
          for (const item of items) out.push(communicationFor(await mailboxes.read(mailbox, item.id), mailbox.toLowerCase(), item.messageId, base));
          return reply.type(FHIR_MEDIA_TYPE).send(searchset(out, base));
        },
      );

      fhir.get('/Communication/:id', { schema: { summary: 'One received message as a Communication', params: IdParams, response: { 200: fhirBody('Communication', 'The Communication'), ...ERRORS } } }, async (request, reply) => {
        const key = requireAction(request, 'receive');
        const id = mailboxMessageId(request.params.id);
        const mailbox = id === undefined ? undefined : mailboxes.mailboxOf(id);
        // Another key's mailbox is not found either (its existence is not revealed).
        if (id === undefined || mailbox === undefined || !addressInScopes(key.mailboxes, mailbox)) throw new HispError('HISP_NOT_FOUND', 'no such Communication');
        const entry = mailboxes.entry(mailbox, id);
        const view = await mailboxes.read(mailbox, id);
        return reply.type(FHIR_MEDIA_TYPE).send(communicationFor(view, mailbox, entry.messageId, baseOf(request)));
      });
      done();
    },
    { prefix: '/fhir' },
  );
}

/**
 * Who sends: the SubmissionSet's author (List.source, or ihe-authorOrg) when it has a Direct
 * address; else the key's one send-as address, when it has exactly one; else the Bundle is refused.
 */
function senderOf(submission: MhdSubmission, sendAs: readonly string[]): string {
  if (submission.sender) return submission.sender;
  const addresses = sendAs.filter((s) => !s.startsWith('@'));
  if (addresses.length === 1 && sendAs.length === 1) return addresses[0]!;
  throw new HispError('HISP_FHIR_INVALID', 'List.source: the sender is the SubmissionSet’s author (a Practitioner, PractitionerRole or Organization with an email telecom): none has a Direct address, and the API key sends as more than one', {
    details: { issues: [{ expression: 'List.source', message: 'names no author with a Direct address (email telecom), and the API key may send as more than one address' }] },
  });
}

/** The XDS patientId of the submission's patient: its first identifier under an OID, as CX. */
function xdmPatientOf(context: { patientId?: readonly { authority: string; id: string }[] } | undefined): string | undefined {
  const first = context?.patientId?.[0];
  return first ? patientCx(first.id, first.authority) : undefined;
}

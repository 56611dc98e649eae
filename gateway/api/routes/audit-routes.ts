import { Type } from '@sinclair/typebox';
import { AUDIT_ACTOR_KINDS, type AuditEntry } from '../../audit/audit-log.js';
import { HispError } from '../../core/errors.js';
import { patientKey } from '../../transmit/authorization-store.js';
import { requireAction } from '../api-authorization.js';
import { Closed } from '../api-schemas.js';
import type { ApiApp, ApiContext } from '../api-server.js';

const AuditEntrySchema = Type.Object(
  {
    seq: Type.Integer({ description: 'Its place in the chain (1, 2, 3…): the cursor.' }),
    id: Type.String(),
    at: Type.String({ format: 'date-time' }),
    actor: Type.Object({ kind: Type.Union(AUDIT_ACTOR_KINDS.map((k) => Type.Literal(k))), id: Type.String() }, { additionalProperties: false }),
    action: Type.String({ description: 'e.g. message.queued, message.received, authorization.granted, api-key.revoked' }),
    object: Type.Object({ kind: Type.String(), id: Type.String() }, { additionalProperties: false }),
    outcome: Type.Union([Type.Literal('success'), Type.Literal('failure')]),
    patientRef: Type.Union([Type.String(), Type.Null()]),
    detail: Type.Record(Type.String(), Type.Unknown()),
    prevHash: Type.String({ description: 'The hash of the entry before (64 zeros for the first).' }),
    hash: Type.String({ description: 'SHA-256 over prevHash and this entry (docs/audit.md).' }),
  },
  { additionalProperties: false },
);

function view(e: AuditEntry) {
  return { ...e, at: new Date(e.at).toISOString() };
}

/**
 * The audit log for a data holder's compliance staff (issue 16, "Audit"): `GET /v1/audit`, the
 * entries in the order they were committed, filtered, a page at a time. A key needs the `audit`
 * action, which reads the whole log of this hisp (every domain): give it to compliance, not to an
 * EHR's sending key.
 */
export function auditRoutes(app: ApiApp, ctx: ApiContext): void {
  const log = ctx.services.audit;
  app.get(
    '/v1/audit',
    {
      schema: {
        summary: 'Audit entries: who did what to what, the outcome and when, each chained to the one before by its hash',
        querystring: Closed({
          after: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'The nextCursor of the previous page (a seq).' })),
          since: Type.Optional(Type.String({ format: 'date-time', description: 'At or after (RFC 3339).' })),
          until: Type.Optional(Type.String({ format: 'date-time', description: 'Before (RFC 3339).' })),
          action: Type.Optional(Type.String({ maxLength: 100, pattern: '^[a-z-]+\\.([a-z-]+)?$', description: 'An action, or a family of them ending in a dot (authorization.).' })),
          actor: Type.Optional(Type.String({ maxLength: 320, description: 'The actor’s id (an API key id, an SMTP user, an address).' })),
          objectKind: Type.Optional(Type.String({ maxLength: 40, pattern: '^[a-z-]+$' })),
          objectId: Type.Optional(Type.String({ maxLength: 200 })),
          patientRef: Type.Optional(Type.String({ maxLength: 200 })),
          assigningAuthority: Type.Optional(
            Type.String({ minLength: 1, maxLength: 200, description: 'The assigning authority of patientRef, as the patient’s authorizations name it (/v1/patients/…?assigningAuthority=).' }),
          ),
          limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,3}$', description: '1–500, default 100.' })),
        }),
        response: { 200: Type.Object({ entries: Type.Array(AuditEntrySchema), nextCursor: Type.Union([Type.String(), Type.Null()]) }, { additionalProperties: false }) },
      },
    },
    async (request) => {
      requireAction(request, 'audit');
      const q = request.query;
      if (q.assigningAuthority !== undefined && q.patientRef === undefined) {
        const error = { in: 'querystring', path: '/assigningAuthority', message: 'is the authority of a patientRef: give patientRef too' };
        throw new HispError('HISP_API_INVALID_REQUEST', `querystring ${error.path}: ${error.message}`, { details: { errors: [error] } });
      }
      const page = log.list({
        after: q.after === undefined ? undefined : Number(q.after),
        since: q.since === undefined ? undefined : Date.parse(q.since),
        until: q.until === undefined ? undefined : Date.parse(q.until),
        action: q.action,
        actorId: q.actor,
        objectKind: q.objectKind,
        objectId: q.objectId,
        // The patient as the transmit service keys them (an assigning authority scopes the reference).
        patientRef: q.patientRef === undefined ? undefined : patientKey(q.patientRef, q.assigningAuthority),
        limit: Math.min(500, Math.max(1, Number(q.limit ?? '100'))),
      });
      return Promise.resolve({ entries: page.entries.map(view), nextCursor: page.nextCursor === null ? null : String(page.nextCursor) });
    },
  );
}

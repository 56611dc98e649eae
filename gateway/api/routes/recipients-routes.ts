import { Type, type Static } from '@sinclair/typebox';
import { DirectAddress } from '../../core/direct-address.js';
import { HispError } from '../../core/errors.js';
import type { SendingScope } from '../../flows/recipient-check.js';
import { validateRecipients, type RecipientValidation } from '../../flows/validate-recipients.js';
import { requireAction, requireSendAs } from '../api-authorization.js';
import { Closed, DirectAddressSchema, DomainNameSchema } from '../api-schemas.js';
import type { ApiApp, ApiContext } from '../api-server.js';

/** The bounds of one request (issue 14's rule: every intake bounded in count and time). */
export const VALIDATE_LIMITS = {
  /** Addresses per request. */
  maxAddresses: 50,
  /** Checked at once. */
  concurrency: 8,
  /** The whole request's time; the recipients not decided by then are try-later. */
  timeoutMs: 30_000,
} as const;

const ValidateBody = Closed({
  addresses: Type.Array(DirectAddressSchema, { minItems: 1, maxItems: VALIDATE_LIMITS.maxAddresses, description: 'The recipients to check.' }),
  from: Type.Optional(
    Type.Union([DirectAddressSchema, DomainNameSchema], {
      description: "The sender (an address or a domain the key may send as) whose outgoing anchors and policy apply. Default: the key's first send-as address or domain.",
    }),
  ),
  patientDirected: Type.Optional(
    Type.Boolean({ description: "A patient-directed send (Blue Button+): the sending domain's policy may then accept a certificate without an anchor. Default false." }),
  ),
});

const CertificateSchema = Type.Object(
  {
    fingerprint: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$', description: 'SHA-256 of the DER, hex; absent when the published bytes were not a certificate.' })),
    source: Type.Union([Type.Literal('dns'), Type.Literal('ldap'), Type.Literal('local')], { description: 'DNS CERT, LDAP, or a local domain of this gateway (no discovery).' }),
    binding: Type.Union([Type.Literal('address'), Type.Literal('domain')]),
    subject: Type.Optional(Type.String()),
    notAfter: Type.Optional(Type.String({ format: 'date-time' })),
    accepted: Type.Boolean({ description: 'The gateway would encrypt to it.' }),
    basis: Type.Optional(Type.Union([Type.Literal('anchor'), Type.Literal('blue-button-plus'), Type.Literal('local')], { description: 'Why an accepted certificate is trusted.' })),
    code: Type.Optional(Type.String({ description: 'Why a certificate was rejected: a HISP_… code.' })),
    reason: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

const StepSchema = Type.Object(
  {
    step: Type.Union([Type.Literal('dns-cert'), Type.Literal('ipkix'), Type.Literal('srv'), Type.Literal('ldap')]),
    name: Type.String({ description: 'The DNS owner name, URL or LDAP server asked.' }),
    result: Type.String({ description: 'found, nxdomain, nodata, none, unresolvable, refused, timeout, failed or error' }),
    count: Type.Optional(Type.Integer()),
    detail: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

const RecipientSchema = Type.Object(
  {
    address: Type.String(),
    verdict: Type.Union([Type.Literal('trusted'), Type.Literal('untrusted'), Type.Literal('no-certificate'), Type.Literal('try-later')]),
    code: Type.Optional(Type.String({ description: 'Why it is not trusted: a HISP_… code (docs/errors.md).' })),
    reason: Type.Optional(Type.String()),
    local: Type.Boolean({ description: 'A recipient of a local domain of this gateway: not discovered, its own certificates.' }),
    level: Type.Optional(Type.Union([Type.Literal('dns-address'), Type.Literal('dns-domain'), Type.Literal('ldap-address'), Type.Literal('ldap-domain')])),
    certificates: Type.Array(CertificateSchema),
    steps: Type.Array(StepSchema, { description: 'Each look-up of the discovery, in order (as hisp discover shows them).' }),
  },
  { additionalProperties: false },
);

const ValidateResponse = Type.Object(
  {
    from: Type.String({ description: 'The sender whose anchors and policy were used.' }),
    domain: Type.String({ description: 'Its local domain.' }),
    recipients: Type.Array(RecipientSchema),
  },
  { additionalProperties: false },
);

type RecipientJson = Static<typeof RecipientSchema>;

/** One recipient's answer, as JSON: the verdict, why, the certificates found and the steps. */
function recipientJson(v: RecipientValidation): RecipientJson {
  const c = v.check;
  const why = { ...(v.code ? { code: v.code } : {}), ...(v.reason ? { reason: v.reason } : {}) };
  if (!c) return { address: v.address, verdict: v.verdict, ...why, local: false, certificates: [], steps: [] };
  const certificates = [
    ...c.selected.map((s) => ({
      fingerprint: s.certificate.sha256,
      source: s.source,
      binding: s.binding,
      subject: s.certificate.subject,
      notAfter: s.certificate.notAfter.toISOString(),
      accepted: true,
      basis: s.basis,
    })),
    ...c.rejected.map((r) => ({
      ...(r.sha256 ? { fingerprint: r.sha256 } : {}),
      source: r.source,
      binding: r.binding,
      ...(r.certificate ? { subject: r.certificate.subject, notAfter: r.certificate.notAfter.toISOString() } : {}),
      accepted: false,
      code: r.code,
      reason: r.reason,
    })),
  ];
  return { address: v.address, verdict: v.verdict, ...why, local: c.local, ...(c.level ? { level: c.level } : {}), certificates, steps: c.steps };
}

/**
 * The sender of a validation: `from`, else the key's first send-as scope; the key must be allowed
 * to send as it, and its domain must be one of this gateway's.
 */
function sendingScope(ctx: ApiContext, from: string): SendingScope {
  const domain = from.includes('@') ? DirectAddress.parse(from).domain : from.toLowerCase().replace(/\.$/, '');
  if (!ctx.registry.isLocalDomain(domain)) throw new HispError('HISP_API_INVALID_REQUEST', `from: ${domain} is not a domain of this gateway`);
  return { scope: from.includes('@') ? DirectAddress.parse(from).toString() : domain, domain };
}

/** POST /v1/recipients/validate: a pre-send check of recipients, step by step as `hisp discover` explains it. */
export function recipientsRoutes(app: ApiApp, ctx: ApiContext): void {
  app.post(
    '/v1/recipients/validate',
    {
      schema: {
        summary: "Check recipients before sending: the certificates found, the verdict and why, under the sender's anchors and policy",
        body: ValidateBody,
        response: { 200: ValidateResponse },
      },
    },
    async (request) => {
      const key = requireAction(request, 'validate');
      const first = key.sendAs[0];
      const from = request.body.from ?? (first?.startsWith('@') ? first.slice(1) : first);
      if (from === undefined) throw new HispError('HISP_API_FORBIDDEN', 'this API key has no send-as address or domain to validate for');
      requireSendAs(request, from);
      request.body.addresses.forEach((a, i) => {
        try {
          DirectAddress.parse(a);
        } catch {
          throw new HispError('HISP_API_INVALID_REQUEST', `body /addresses/${i}: not a Direct address`, { details: { errors: [{ in: 'body', path: `/addresses/${i}`, message: 'not a Direct address' }] } });
        }
      });
      const sender = sendingScope(ctx, from);
      const results = await validateRecipients(request.body.addresses, sender, ctx, {
        at: new Date(ctx.now()),
        patientDirected: request.body.patientDirected ?? false,
        timeoutMs: VALIDATE_LIMITS.timeoutMs,
        concurrency: VALIDATE_LIMITS.concurrency,
      });
      return { from: sender.scope, domain: sender.domain, recipients: results.map(recipientJson) };
    },
  );
}

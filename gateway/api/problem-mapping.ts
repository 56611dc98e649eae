import { isHispError, type HispErrorCode } from '../core/errors.js';

/**
 * A problem detail (RFC 9457 §3.1) as the API sends it (`application/problem+json`): `type` is a
 * URI naming the code (§3.1.1: it identifies the problem type; ours resolve to nothing, they are
 * names, and docs/errors.md lists them), `code` the HISP_… code itself (an extension member,
 * §3.2), `trace` the id under which the log has the details of an internal failure.
 */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: HispErrorCode | 'HISP_INTERNAL';
  instance?: string;
  trace?: string;
  /** Extension members (§3.2) a route adds: the fields that failed validation, Retry-After's seconds. */
  [extension: string]: unknown;
}

/** The base of every problem `type` (RFC 9457 §3.1.1: a URI; a tag URI needs no server, RFC 4151). */
export const PROBLEM_TYPE_BASE = 'tag:hisp.dev,2026:problem:';

/**
 * The one table from hisp error codes to HTTP statuses, as `smtp/reply-mapping.ts` is to SMTP
 * replies; the Record type makes a code without a row a compile error, and docs/errors.md lists
 * both (gateway/core/errors.test.ts). 422 (RFC 9110 §15.5.21) is content that was understood but
 * cannot be processed: a document, a certificate, a trust decision; a transient error of such a
 * class is 503 with Retry-After (see {@link httpStatusForError}).
 */
export const HTTP_STATUS_BY_CODE: Readonly<Record<HispErrorCode, number>> = {
  HISP_USAGE: 400,
  HISP_IO: 500,
  HISP_CONFIG_INVALID: 500,
  HISP_NOT_FOUND: 404,
  HISP_AUDIT_BROKEN: 500,
  HISP_KEY_UNREADABLE: 422,
  HISP_KEY_MISMATCH: 422,
  HISP_MIME_MALFORMED: 400,
  HISP_SMIME_NOT_ENCRYPTED: 422,
  HISP_SMIME_NOT_SIGNED: 422,
  HISP_CMS_MALFORMED: 422,
  HISP_CMS_UNSUPPORTED_ALGORITHM: 422,
  HISP_CMS_WEAK_ALGORITHM: 422,
  HISP_CMS_NOT_FOR_RECIPIENT: 422,
  HISP_CMS_DECRYPT_FAILED: 422,
  HISP_SIG_INVALID: 422,
  HISP_SIG_NO_SIGNER_CERT: 422,
  HISP_TRUST_NO_ANCHOR: 422,
  HISP_TRUST_EXPIRED: 422,
  HISP_TRUST_BASIC_CONSTRAINTS: 422,
  HISP_TRUST_KEY_USAGE: 422,
  HISP_TRUST_WEAK_KEY: 422,
  HISP_TRUST_WEAK_SIGNATURE: 422,
  HISP_TRUST_BAD_SIGNATURE: 422,
  HISP_TRUST_BINDING_MISMATCH: 422,
  HISP_TRUST_REVOKED: 422,
  HISP_TRUST_REVOCATION_UNAVAILABLE: 503,
  HISP_TRUST_AIA_FAILED: 503,
  HISP_TRUST_POLICY: 422,
  HISP_BUNDLE_INVALID: 502,
  HISP_BUNDLE_SIGNATURE: 502,
  HISP_BUNDLE_FETCH_FAILED: 502,
  HISP_DISCOVERY_NO_CERT: 422,
  HISP_DISCOVERY_NO_VALID_CERT: 422,
  HISP_DISCOVERY_TEMPORARY: 503,
  HISP_DNS_MALFORMED: 502,
  HISP_RELAY_NO_ROUTE: 422,
  HISP_SMTP_AUTH_REQUIRED: 401,
  HISP_SMTP_AUTH_FAILED: 401,
  HISP_SMTP_TLS_REQUIRED: 403,
  HISP_SMTP_SENDER_NOT_ALLOWED: 403,
  HISP_SMTP_BAD_ADDRESS: 400,
  HISP_SMTP_RELAY_DENIED: 403,
  HISP_SMTP_UNKNOWN_RECIPIENT: 404,
  HISP_SMTP_MESSAGE_TOO_BIG: 413,
  HISP_SMTP_BARE_LINE_END: 400,
  HISP_SMTP_TIMEOUT: 408,
  HISP_SMTP_NUL_OCTET: 400,
  HISP_SMTP_AUTH_TEMPORARY: 429,
  HISP_SMTP_AUTH_TOO_MANY_FAILURES: 429,
  HISP_SMTP_TLS_UNAVAILABLE: 503,
  HISP_SMTP_BUSY: 503,
  HISP_SMTP_TOO_MANY_CONNECTIONS: 429,
  HISP_SMTP_STORAGE_FULL: 507, // insufficient storage (RFC 4918 §11.5)
  HISP_SMTP_RATE_LIMITED: 429,
  HISP_XML_MALFORMED: 400,
  HISP_CDA_INVALID: 422,
  HISP_XDM_MALFORMED: 422,
  HISP_XDM_UNSAFE: 422,
  HISP_XDM_TOO_LARGE: 413,
  HISP_CONTEXT_MALFORMED: 400,
  HISP_API_UNAUTHORIZED: 401,
  HISP_API_FORBIDDEN: 403,
  HISP_API_INVALID_REQUEST: 400,
  HISP_API_UNSUPPORTED_MEDIA_TYPE: 415,
  HISP_API_PAYLOAD_TOO_LARGE: 413,
  HISP_API_IDEMPOTENCY_CONFLICT: 422,
  HISP_API_RATE_LIMITED: 429,
  HISP_API_NO_ROUTE: 404,
  HISP_API_METHOD_NOT_ALLOWED: 405, // RFC 9110 §15.5.6: with an Allow field
  HISP_API_UNAVAILABLE: 503,
  HISP_TRANSMIT_UNKNOWN_PATIENT: 404,
  HISP_TRANSMIT_UNKNOWN_AUTHORIZATION: 404,
  HISP_TRANSMIT_NOT_AUTHORIZED: 409,
  HISP_TRANSMIT_REVOKED: 409,
  HISP_TRANSMIT_DESTINATION_REFUSED: 422,
  HISP_FHIR_INVALID: 422, // FHIR R4 http.html: a resource that violates a profile or a business rule
};

/** Codes whose message is about hisp itself (files, keys, configuration): never shown to a client. */
const INTERNAL: ReadonlySet<HispErrorCode> = new Set<HispErrorCode>(['HISP_IO', 'HISP_CONFIG_INVALID', 'HISP_BUNDLE_INVALID', 'HISP_BUNDLE_SIGNATURE', 'HISP_BUNDLE_FETCH_FAILED', 'HISP_AUDIT_BROKEN']);

/** The status for `err`: the table's; a transient error the table calls 422 is 503 (try later); anything not a HispError 500. */
export function httpStatusForError(err: unknown): number {
  if (!isHispError(err)) return 500;
  const status = HTTP_STATUS_BY_CODE[err.code];
  return err.transient && status === 422 ? 503 : status;
}

/**
 * The problem a client receives for `err`. An internal failure (a file, the configuration,
 * anything not a HispError) names nothing of hisp's insides (issue 14, item 10; RFC 9457 §5):
 * a generic detail and `trace`, the id the log has it under.
 */
export function problemForError(err: unknown, trace: string): Problem {
  const status = httpStatusForError(err);
  if (!isHispError(err)) {
    return { type: `${PROBLEM_TYPE_BASE}HISP_INTERNAL`, title: 'Internal error', status, detail: `internal error (trace ${trace})`, code: 'HISP_INTERNAL', trace };
  }
  const internal = INTERNAL.has(err.code);
  return {
    type: `${PROBLEM_TYPE_BASE}${err.code}`,
    title: titleOf(err.code),
    status,
    detail: internal ? `local error in processing (trace ${trace})` : err.message,
    code: err.code,
    ...(internal ? { trace } : {}),
  };
}

/** `HISP_API_RATE_LIMITED` → `Api rate limited`: a short, stable, human-readable summary (RFC 9457 §3.1.3). */
function titleOf(code: HispErrorCode): string {
  const words = code.replace(/^HISP_/, '').toLowerCase().split('_');
  const text = words.join(' ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}

import { isHispError, type HispErrorCode } from '../core/errors.js';

/** An SMTP reply: basic code (RFC 5321 §4.2) and enhanced status code (RFC 3463). */
export interface SmtpReply {
  code: number;
  enhanced: string;
  text: string;
}

/**
 * The one table from hisp error codes to permanent SMTP replies (RFC 3463 §3 subjects/details);
 * the Record type makes a code without a row a compile error.
 * A transient error takes the 4xx form of the same status (4.y.z), see {@link replyForError}.
 */
export const SMTP_REPLY_BY_CODE: Readonly<Record<HispErrorCode, { code: number; enhanced: string }>> = {
  HISP_USAGE: { code: 501, enhanced: '5.5.4' }, // invalid command arguments
  HISP_IO: { code: 451, enhanced: '4.3.0' }, // local error in processing
  HISP_CONFIG_INVALID: { code: 451, enhanced: '4.3.5' }, // system incorrectly configured
  HISP_NOT_FOUND: { code: 550, enhanced: '5.0.0' }, // operator verbs only (hisp status/queue/quarantine); other undefined status
  HISP_AUDIT_BROKEN: { code: 451, enhanced: '4.3.0' }, // operator verbs only (hisp audit verify): never an SMTP reply
  HISP_KEY_UNREADABLE: { code: 451, enhanced: '4.3.5' },
  HISP_KEY_MISMATCH: { code: 451, enhanced: '4.3.5' },
  HISP_MIME_MALFORMED: { code: 554, enhanced: '5.6.0' }, // other or undefined media error
  HISP_SMIME_NOT_ENCRYPTED: { code: 554, enhanced: '5.7.0' }, // other security status
  HISP_SMIME_NOT_SIGNED: { code: 554, enhanced: '5.7.0' },
  HISP_CMS_MALFORMED: { code: 554, enhanced: '5.6.0' },
  HISP_CMS_UNSUPPORTED_ALGORITHM: { code: 554, enhanced: '5.7.4' }, // security features not supported
  HISP_CMS_WEAK_ALGORITHM: { code: 554, enhanced: '5.7.4' },
  HISP_CMS_NOT_FOR_RECIPIENT: { code: 554, enhanced: '5.7.5' }, // cryptographic failure
  HISP_CMS_DECRYPT_FAILED: { code: 554, enhanced: '5.7.5' },
  HISP_SIG_INVALID: { code: 554, enhanced: '5.7.7' }, // message integrity failure
  HISP_SIG_NO_SIGNER_CERT: { code: 554, enhanced: '5.7.7' },
  HISP_TRUST_NO_ANCHOR: { code: 554, enhanced: '5.7.1' }, // delivery not authorized
  HISP_TRUST_EXPIRED: { code: 554, enhanced: '5.7.1' },
  HISP_TRUST_BASIC_CONSTRAINTS: { code: 554, enhanced: '5.7.1' },
  HISP_TRUST_KEY_USAGE: { code: 554, enhanced: '5.7.1' },
  HISP_TRUST_WEAK_KEY: { code: 554, enhanced: '5.7.1' },
  HISP_TRUST_WEAK_SIGNATURE: { code: 554, enhanced: '5.7.1' },
  HISP_TRUST_BAD_SIGNATURE: { code: 554, enhanced: '5.7.1' },
  HISP_TRUST_BINDING_MISMATCH: { code: 554, enhanced: '5.7.1' },
  HISP_TRUST_REVOKED: { code: 554, enhanced: '5.7.1' },
  HISP_TRUST_REVOCATION_UNAVAILABLE: { code: 451, enhanced: '4.7.5' }, // cryptographic failure, may clear
  HISP_TRUST_AIA_FAILED: { code: 451, enhanced: '4.7.5' },
  HISP_TRUST_POLICY: { code: 554, enhanced: '5.7.1' },
  HISP_BUNDLE_INVALID: { code: 451, enhanced: '4.3.5' }, // system incorrectly configured
  HISP_BUNDLE_SIGNATURE: { code: 451, enhanced: '4.3.5' },
  HISP_BUNDLE_FETCH_FAILED: { code: 451, enhanced: '4.4.3' }, // directory server failure
  HISP_DISCOVERY_NO_CERT: { code: 554, enhanced: '5.7.5' }, // "necessary information such as key was not available"
  HISP_DISCOVERY_NO_VALID_CERT: { code: 554, enhanced: '5.7.1' },
  HISP_DISCOVERY_TEMPORARY: { code: 451, enhanced: '4.4.3' }, // directory server failure (RFC 3463 §3.5)
  HISP_DNS_MALFORMED: { code: 451, enhanced: '4.4.3' },
  HISP_RELAY_NO_ROUTE: { code: 550, enhanced: '5.4.4' }, // unable to route (RFC 3463 §3.5)
  HISP_SMTP_AUTH_REQUIRED: { code: 530, enhanced: '5.7.0' }, // authentication required
  HISP_SMTP_AUTH_FAILED: { code: 535, enhanced: '5.7.8' }, // authentication credentials invalid
  HISP_SMTP_TLS_REQUIRED: { code: 530, enhanced: '5.7.0' }, // must issue STARTTLS first
  HISP_SMTP_SENDER_NOT_ALLOWED: { code: 553, enhanced: '5.7.1' }, // sender not owned by user
  HISP_SMTP_BAD_ADDRESS: { code: 553, enhanced: '5.1.3' }, // bad destination mailbox address syntax
  HISP_SMTP_RELAY_DENIED: { code: 550, enhanced: '5.7.1' }, // relaying denied
  HISP_SMTP_UNKNOWN_RECIPIENT: { code: 550, enhanced: '5.1.1' }, // bad destination mailbox address
  HISP_SMTP_MESSAGE_TOO_BIG: { code: 552, enhanced: '5.3.4' }, // message too big for system
  HISP_SMTP_BARE_LINE_END: { code: 550, enhanced: '5.6.0' }, // other or undefined media error
  HISP_SMTP_TIMEOUT: { code: 451, enhanced: '4.4.2' }, // bad connection
  HISP_SMTP_NUL_OCTET: { code: 554, enhanced: '5.6.0' }, // other or undefined media error
  HISP_SMTP_AUTH_TEMPORARY: { code: 454, enhanced: '4.7.0' }, // temporary authentication failure (RFC 4954 §6)
  HISP_SMTP_AUTH_TOO_MANY_FAILURES: { code: 421, enhanced: '4.7.0' }, // the server closes the channel (RFC 5321 §3.8)
  HISP_SMTP_TLS_UNAVAILABLE: { code: 454, enhanced: '4.7.0' }, // TLS not available due to temporary reason (RFC 3207 §4)
  HISP_SMTP_BUSY: { code: 421, enhanced: '4.3.2' }, // system not accepting network messages
  HISP_SMTP_TOO_MANY_CONNECTIONS: { code: 421, enhanced: '4.7.0' }, // other security or policy status
  HISP_SMTP_RATE_LIMITED: { code: 451, enhanced: '4.7.0' },
  HISP_SMTP_STORAGE_FULL: { code: 452, enhanced: '4.3.1' }, // insufficient system storage; mail system full
  // Documents and the HTTP API: not what an SMTP edge raises today; the rows are what it would say.
  HISP_XML_MALFORMED: { code: 554, enhanced: '5.6.0' }, // other or undefined media error
  HISP_CDA_INVALID: { code: 554, enhanced: '5.6.0' },
  HISP_XDM_MALFORMED: { code: 554, enhanced: '5.6.0' },
  HISP_XDM_UNSAFE: { code: 554, enhanced: '5.6.0' },
  HISP_XDM_TOO_LARGE: { code: 552, enhanced: '5.3.4' }, // message too big for system
  HISP_CONTEXT_MALFORMED: { code: 554, enhanced: '5.6.0' }, // other or undefined media error
  HISP_API_UNAUTHORIZED: { code: 530, enhanced: '5.7.0' },
  HISP_API_FORBIDDEN: { code: 550, enhanced: '5.7.1' },
  HISP_API_INVALID_REQUEST: { code: 501, enhanced: '5.5.4' },
  HISP_API_UNSUPPORTED_MEDIA_TYPE: { code: 554, enhanced: '5.6.1' }, // media not supported
  HISP_API_PAYLOAD_TOO_LARGE: { code: 552, enhanced: '5.3.4' },
  HISP_API_IDEMPOTENCY_CONFLICT: { code: 550, enhanced: '5.0.0' },
  HISP_API_RATE_LIMITED: { code: 451, enhanced: '4.7.0' },
  HISP_API_NO_ROUTE: { code: 500, enhanced: '5.5.1' }, // HTTP only; the nearest SMTP notion: command unrecognized
  HISP_API_METHOD_NOT_ALLOWED: { code: 502, enhanced: '5.5.1' }, // HTTP only; command not implemented
  HISP_FHIR_INVALID: { code: 554, enhanced: '5.6.0' }, // HTTP only; the nearest SMTP notion: content refused
  HISP_API_UNAVAILABLE: { code: 421, enhanced: '4.3.2' }, // HTTP only; system not accepting network messages
  HISP_TRANSMIT_UNKNOWN_PATIENT: { code: 550, enhanced: '5.1.1' }, // HTTP only (Blue Button+ transmit)
  HISP_TRANSMIT_UNKNOWN_AUTHORIZATION: { code: 550, enhanced: '5.1.1' }, // HTTP only (Blue Button+ transmit)
  HISP_TRANSMIT_NOT_AUTHORIZED: { code: 550, enhanced: '5.7.1' }, // HTTP only (Blue Button+ transmit)
  HISP_TRANSMIT_REVOKED: { code: 550, enhanced: '5.7.1' }, // HTTP only (Blue Button+ transmit)
  HISP_TRANSMIT_DESTINATION_REFUSED: { code: 550, enhanced: '5.7.1' }, // HTTP only (Blue Button+ transmit)
};

/** Any error to an SMTP reply; errors that are not HispErrors are local failures (451 4.3.0). */
export function replyForError(err: unknown): SmtpReply {
  if (!isHispError(err)) return { code: 451, enhanced: '4.3.0', text: 'local error in processing' };
  const base = SMTP_REPLY_BY_CODE[err.code];
  const text = asciiReplyText(`${err.message} [${err.code}]`);
  if (err.transient && base.code >= 500) {
    return { code: 451, enhanced: `4${base.enhanced.slice(1)}`, text };
  }
  return { code: base.code, enhanced: base.enhanced, text };
}

/**
 * Codes whose message is about hisp itself, not about what the client sent: a file, a key, the
 * configuration (`cannot create /var/lib/hisp/messages/…: ENOSPC`). A reply to a client names none
 * of that (issue 14, item 10); the log does, under the trace id the reply carries.
 */
const INTERNAL: ReadonlySet<HispErrorCode> = new Set<HispErrorCode>([
  'HISP_USAGE',
  'HISP_IO',
  'HISP_CONFIG_INVALID',
  'HISP_NOT_FOUND',
  'HISP_AUDIT_BROKEN',
  'HISP_KEY_UNREADABLE',
  'HISP_KEY_MISMATCH',
  'HISP_BUNDLE_INVALID',
  'HISP_BUNDLE_SIGNATURE',
  'HISP_BUNDLE_FETCH_FAILED',
]);

/** True when the error's message may name internal detail (see {@link publicReplyForError}). */
export function isInternalError(err: unknown): boolean {
  return !isHispError(err) || INTERNAL.has(err.code);
}

/**
 * The reply an SMTP client hears for `err`: the table's code, and a text that names nothing
 * internal: for an internal error (a failed write, a bad key, anything not a HispError) a generic
 * text with `trace`, the id under which the log has the details.
 */
export function publicReplyForError(err: unknown, trace: string): SmtpReply {
  const reply = replyForError(err);
  if (!isInternalError(err)) return reply;
  const code = isHispError(err) ? ` [${err.code}]` : '';
  return { ...reply, text: `local error in processing (trace ${asciiReplyText(trace)})${code}` };
}

/**
 * A reply text as RFC 5321 §2.4 wants it: US-ASCII without controls (§4.2: textstring is
 * HT, SP and printable US-ASCII). Other characters become '?', line breaks a space; long texts are
 * cut (§4.5.3.1.5: a reply line is at most 512 octets).
 */
export function asciiReplyText(text: string): string {
  const ascii = text
    .replace(/[\r\n]+/g, ' ')
    .replace(/§/g, 'section ')
    .replace(/[^\t\x20-\x7e]/g, '?');
  return ascii.length > 400 ? `${ascii.slice(0, 397)}...` : ascii;
}

/**
 * Typed errors of hisp. Every failure that crosses a module boundary is a {@link HispError} with a
 * stable `HISP_…` code: the CLI prints it, the SMTP edges map it to a reply through the single table
 * in `gateway/smtp/reply-mapping.ts`, the HTTP API to a problem (RFC 9457) through the single table in
 * `gateway/api/problem-mapping.ts`, and docs/errors.md lists it (a test keeps the four in sync).
 */

/** Every error code hisp emits, with a one-line meaning (also the documentation source). */
export const ERROR_CODES = {
  // Input and usage
  HISP_USAGE: 'The command line or API call is malformed (missing or conflicting options).',
  HISP_IO: 'A file could not be read or written.',
  HISP_CONFIG_INVALID: 'The configuration is invalid.',
  HISP_NOT_FOUND: 'What the operator named does not exist: no queued message or quarantine entry with that id.',
  HISP_AUDIT_BROKEN: "The audit log's hash chain is broken: an entry was changed, removed or cut off the end (hisp audit verify names the first).",

  // Key material
  HISP_KEY_UNREADABLE: 'A private key or certificate file could not be parsed (format, password or corruption).',
  HISP_KEY_MISMATCH: 'A private key does not belong to the certificate it is paired with.',

  // MIME structure
  HISP_MIME_MALFORMED: 'The message is not well-formed RFC 5322/MIME (headers, boundaries, line ends).',

  // S/MIME envelope
  HISP_SMIME_NOT_ENCRYPTED: 'The message is not an S/MIME enveloped message; Direct requires encryption.',
  HISP_SMIME_NOT_SIGNED: 'The decrypted content is not signed; Direct requires a signature.',
  HISP_CMS_MALFORMED: 'A CMS (PKCS#7) structure could not be decoded.',
  HISP_CMS_UNSUPPORTED_ALGORITHM: 'A CMS algorithm is unknown or unsupported.',
  HISP_CMS_WEAK_ALGORITHM: 'A CMS algorithm is refused as too weak (3DES, RC2, MD5, SHA-1 without the legacy switch).',
  HISP_CMS_NOT_FOR_RECIPIENT: 'No RecipientInfo of the message matches any of our decryption certificates.',
  HISP_CMS_DECRYPT_FAILED: 'The message could not be decrypted (wrong key, corrupted data or failed authentication).',

  // Signature
  HISP_SIG_INVALID: 'No signature of the message verifies over the signed content.',
  HISP_SIG_NO_SIGNER_CERT: 'The signer certificate is not included in the signature.',

  // Trust
  HISP_TRUST_NO_ANCHOR: 'The certificate does not chain to any configured trust anchor.',
  HISP_TRUST_EXPIRED: 'A certificate in the chain is not valid at the validation time.',
  HISP_TRUST_BASIC_CONSTRAINTS: 'An issuing certificate is not a CA (basicConstraints) or a path length is exceeded.',
  HISP_TRUST_KEY_USAGE: 'A certificate lacks the key usage its role requires.',
  HISP_TRUST_WEAK_KEY: 'A certificate key is too small (RSA keys must be at least 2048 bits).',
  HISP_TRUST_WEAK_SIGNATURE: 'A certificate is signed with a refused algorithm (MD5; SHA-1 without the legacy switch).',
  HISP_TRUST_BAD_SIGNATURE: 'A certificate signature does not verify against its issuer.',
  HISP_TRUST_BINDING_MISMATCH: 'The certificate is not bound to the address (rfc822Name) or its domain (dNSName).',
  HISP_TRUST_REVOKED: 'A certificate in the chain is revoked by its issuer\'s CRL.',
  HISP_TRUST_REVOCATION_UNAVAILABLE: 'The CRL of a certificate could not be fetched or verified and the policy demands one (hard-fail).',
  HISP_TRUST_AIA_FAILED: 'A missing issuer could not be fetched from the AIA caIssuers location.',
  HISP_TRUST_POLICY: 'A certificate does not meet the certificate policy of the domain (key usage, key size, algorithms).',

  // Trust bundles
  HISP_BUNDLE_INVALID: 'A trust bundle is not a certs-only PKCS#7 or CMS-signed bundle.',
  HISP_BUNDLE_SIGNATURE: 'A signed trust bundle does not verify against its configured signer.',
  HISP_BUNDLE_FETCH_FAILED: 'A trust bundle could not be fetched (network, TLS or HTTP error).',

  // Discovery
  HISP_DISCOVERY_NO_CERT: 'No certificate is published for the address or its domain (DNS and LDAP).',
  HISP_DISCOVERY_NO_VALID_CERT: 'Certificates are published for the address, but none is valid and trusted.',
  HISP_DISCOVERY_TEMPORARY: 'Discovery failed for now (DNS time-out or SERVFAIL, LDAP servers failing): try again later.',
  HISP_DNS_MALFORMED: 'A DNS message could not be decoded.',
  HISP_RELAY_NO_ROUTE: 'The recipient domain has no mail route (no such domain, a null MX, or no exchange that resolves).',

  // SMTP edges (submission and inbound listeners)
  HISP_SMTP_AUTH_REQUIRED: 'Authentication required: the submission port takes MAIL only after AUTH (RFC 4954 §6).',
  HISP_SMTP_AUTH_FAILED: 'Authentication credentials invalid (RFC 4954 §6).',
  HISP_SMTP_TLS_REQUIRED: 'The listener requires STARTTLS before MAIL (RFC 3207 §4).',
  HISP_SMTP_SENDER_NOT_ALLOWED: 'The authenticated account may not send as this sender (envelope or From field).',
  HISP_SMTP_BAD_ADDRESS: 'A recipient address is not a valid mailbox (RFC 5321 §4.1.2).',
  HISP_SMTP_RELAY_DENIED: 'The receive port takes mail only for the local domains of this HISP.',
  HISP_SMTP_UNKNOWN_RECIPIENT: 'The address is in a local domain but is not known here.',
  HISP_SMTP_MESSAGE_TOO_BIG: 'The message exceeds the listener\'s size limit (RFC 1870 SIZE).',
  HISP_SMTP_BARE_LINE_END: 'The message contains a bare CR or LF (RFC 5321 §2.3.8); refused before the 250 so that nothing can be smuggled past a lax peer.',
  HISP_SMTP_TIMEOUT: 'The client took too long (the DATA transfer time-out, or one command line); a transfer still going on when it passes is cut with 421 and the connection closed.',
  HISP_SMTP_NUL_OCTET: 'The message contains a NUL octet, which no Internet message may hold (RFC 5322 §2.3, RFC 6152); refused before the 250.',
  HISP_SMTP_AUTH_TEMPORARY: 'Authentication is refused for now: too many failed attempts from this client or for this user name (locked out for a while), or too many checks in progress (RFC 4954 §6, 454 4.7.0).',
  HISP_SMTP_AUTH_TOO_MANY_FAILURES: 'Too many failed authentications on one connection: the connection is closed (421 4.7.0).',
  HISP_SMTP_TLS_UNAVAILABLE: 'STARTTLS was asked for on a listener without a certificate (RFC 3207 §4, 454 4.7.0).',
  HISP_SMTP_BUSY: 'The listener has as many connections as it takes (maxClients): try again later (421 4.3.2).',
  HISP_SMTP_TOO_MANY_CONNECTIONS: 'This client has as many connections open as one client may (perClient.maxConnections): 421 4.7.0.',
  HISP_SMTP_STORAGE_FULL: 'The file system of the data folder has too little free space to take the message now (452 4.3.1); it is dropped as it arrives, never written to the last of the disk.',
  HISP_SMTP_RATE_LIMITED: 'This client sent more messages or octets within the last minute than the listener takes from one client (perClient): try again later (451 4.7.0).',

  // Documents (C-CDA, XDM)
  HISP_XML_MALFORMED: 'An XML document is not well-formed, declares a DTD or an entity, or exceeds the reader\'s bounds (size, depth, element count).',
  HISP_CDA_INVALID: 'The XML document is not an HL7 CDA R2 ClinicalDocument (root element ClinicalDocument in the urn:hl7-org:v3 namespace).',
  HISP_XDM_MALFORMED: 'An XDM package cannot be read: not a zip, a corrupt entry, no METADATA.XML, or metadata that cannot be read (IHE ITI TF-2b 3.32).',
  HISP_XDM_UNSAFE: 'An XDM package holds an entry that could escape its folder or stand for another: a path with .., an absolute or backslash path, a symbolic link, a duplicate name.',
  HISP_XDM_TOO_LARGE: 'An XDM package exceeds the unpacking bounds: number of entries, total uncompressed size, or compression ratio (a zip bomb).',
  HISP_CONTEXT_MALFORMED: "A Direct Context metadata part (X-Direct-Context, metadata.txt) is malformed: a required field missing, a value outside the guide's, or over its bounds.",

  // HTTP API
  HISP_API_UNAUTHORIZED: 'The request carries no API key, or one that is unknown or revoked (HTTP 401).',
  HISP_API_FORBIDDEN: 'The API key may not do this: the action, the sender address or the mailbox is outside its scopes (HTTP 403).',
  HISP_API_INVALID_REQUEST: 'The request does not match the API\'s schema: an unknown field, a wrong type, a missing field, a malformed value (HTTP 400).',
  HISP_API_UNSUPPORTED_MEDIA_TYPE: 'The request body is of a media type the route does not take (HTTP 415).',
  HISP_API_PAYLOAD_TOO_LARGE: 'The request body, a file or a document exceeds the API\'s size limits (HTTP 413).',
  HISP_API_IDEMPOTENCY_CONFLICT: 'The Idempotency-Key was used before with another request body, or its first request is still in progress (HTTP 422 or 409).',
  HISP_API_RATE_LIMITED: 'The API key (or, before a valid key, the client address) made more requests than it may within the minute: try again after Retry-After (HTTP 429).',
  HISP_API_NO_ROUTE: 'No route of the API has this path (HTTP 404): see /openapi.json for the routes.',
  HISP_API_METHOD_NOT_ALLOWED: 'The path exists, but not with this method (HTTP 405; the Allow header lists the methods it takes).',
  HISP_FHIR_INVALID: 'A FHIR resource sent to the /fhir routes breaks a rule of FHIR R4 or of the IHE MHD profile (ITI-65 Provide Document Bundle): the OperationOutcome names the entry and the rule (HTTP 422).',
  HISP_API_UNAVAILABLE: 'The API is stopping and takes no new request: try again after Retry-After, at this or another node (HTTP 503).',
  HISP_TRANSMIT_UNKNOWN_PATIENT: 'No authorization of this patient reference is visible to the API key: an unknown patient (HTTP 404).',
  HISP_TRANSMIT_UNKNOWN_AUTHORIZATION: 'No authorization with this id for this patient is visible to the API key (HTTP 404).',
  HISP_TRANSMIT_NOT_AUTHORIZED: 'The patient has no authorization that sends now: each has expired or, sent once, is fulfilled; the problem carries the latest expiredAt when one has expired (HTTP 409).',
  HISP_TRANSMIT_REVOKED: 'No authorization of the patient sends now and at least one was revoked: nothing is sent after a revocation; the problem carries the latest revokedAt, and the latest expiredAt when another has expired (HTTP 409).',
  HISP_TRANSMIT_DESTINATION_REFUSED: 'A destination of an authorization is not trusted under the sending domain\'s policy for patient-directed sends, or has no certificate; each destination\'s verdict and reason are in the problem (HTTP 422; 503 when discovery failed for now).',
} as const;

export type HispErrorCode = keyof typeof ERROR_CODES;

export interface HispErrorOptions {
  /** True when the same operation may succeed later (time-out, server failure): SMTP 4xx, not 5xx. */
  transient?: boolean;
  cause?: unknown;
  /** Structured, non-secret details for logs and JSON reports. */
  details?: Record<string, unknown>;
}

/** The one error type of hisp: a stable code, a readable one-line reason and a transient flag. */
export class HispError extends Error {
  readonly code: HispErrorCode;
  readonly transient: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: HispErrorCode, message: string, options: HispErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HispError';
    this.code = code;
    this.transient = options.transient ?? false;
    this.details = options.details;
  }

  toJSON(): { code: HispErrorCode; reason: string } {
    return { code: this.code, reason: this.message };
  }
}

export function isHispError(err: unknown): err is HispError {
  return err instanceof HispError;
}

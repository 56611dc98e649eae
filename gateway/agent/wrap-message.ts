import { isAscii } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import type { Certificate } from '../core/certificate.js';
import { HispError } from '../core/errors.js';
import {
  DEFAULT_CIPHER,
  DEFAULT_DIGEST,
  DEFAULT_KEY_TRANSPORT,
  MICALG,
  type KeyTransportName,
  type SendCipher,
  type SigningDigest,
} from './algorithms.js';
import { createEnvelopePieces, type RecipientIdentifierForm } from './create-envelope.js';
import { base64LinesLength, encodeBase64Lines, MimeEntity, toCanonicalCrlf, writeBase64Lines } from '../mime/mime-entity.js';
import { prepareSignedData, signInThreadPool, signNow, type PreparedSignedData, type SigningCredential } from './sign-detached.js';
import { rfc5322Date } from '../core/rfc5322-date.js';

export interface WrapOptions {
  /** One or more signers; each SignerInfo carries its certificate chain. */
  signers: readonly SigningCredential[];
  /** Every certificate to encrypt to, one RecipientInfo each (R-ENC-5). */
  recipients: readonly Certificate[];
  /** Default sha256. SHA-1 is never offered (R-SIG-4). */
  digest?: SigningDigest;
  /** Default aes256-cbc (requirements §5 decision 2). */
  cipher?: SendCipher;
  /** Default rsa-oaep-sha1, the Java RI's default and what .NET Framework peers open (§5 decision 2). */
  keyTransport?: KeyTransportName;
  /** Default issuerAndSerialNumber. */
  recipientIdentifier?: RecipientIdentifierForm;
  /**
   * Outer (unencrypted) Subject. Off (undefined) by default, so the real Subject is copied as peers
   * expect; a string replaces it, so that nothing of the message travels in clear.
   */
  genericSubject?: string;
  /** signingTime attribute; default now. */
  signingTime?: Date;
  /** Domain for a generated Message-ID when the message has none. */
  messageIdDomain?: string;
  /**
   * The caller knows that every line of the message ends in CRLF (it came through an SMTP edge,
   * which refuses bare CR and LF before storing a message): the scan that would turn bare ones into
   * CRLF (RFC 5751 §3.1.1) is skipped. Default false: the message is made canonical.
   */
  canonical?: boolean;
}

export interface WrapResult {
  /** The Direct message: RFC 5322 outer headers and an application/pkcs7-mime body, CRLF. */
  message: Buffer;
  /** Message-ID of the message (the one given, or the one added). */
  messageId: string;
  /** What was added or removed on the way (missing Date/Message-ID added, Bcc dropped). */
  notes: string[];
  /**
   * Octets of `message` before its body. The body after them is hisp's own base64 of the envelope:
   * lines of at most 76 characters of the base64 alphabet, each ending in CRLF (RFC 2045 §6.8), so
   * it needs no SMTP dot-stuffing and has no bare CR or LF; only the header octets can.
   */
  headerLength: number;
}

/** Outer header fields copied from the original (R-FMT-2); others stay inside the envelope only. */
const OUTER_FIELDS = ['from', 'to', 'cc', 'subject', 'date', 'message-id'];

/**
 * Wraps, signs and encrypts an RFC 5322 message the way the Direct Applicability Statement asks:
 * the whole message as message/rfc822 (RFC 5751 §3.1), a detached signature in multipart/signed
 * (RFC 5751 §3.4.3), then enveloped to every recipient certificate (RFC 5751 §3.3), with the outer
 * entity of R-FMT-4 and the outer headers of R-FMT-2.
 */
export function wrapMessage(original: Buffer, options: WrapOptions): WrapResult {
  const prepared = prepareWrap(original, options);
  return prepared.finish(prepared.signedData.assemble(prepared.signedData.requests.map(signNow)));
}

/**
 * {@link wrapMessage} with the signers' private-key operations in libuv's thread pool, so that the
 * relay's event loop goes on serving SMTP sessions meanwhile (the same output).
 */
export async function wrapMessageAsync(original: Buffer, options: WrapOptions): Promise<WrapResult> {
  const prepared = prepareWrap(original, options);
  const signatures = await Promise.all(prepared.signedData.requests.map(signInThreadPool));
  return prepared.finish(prepared.signedData.assemble(signatures));
}

/** Everything up to the signatures, and the rest once they are made. */
function prepareWrap(original: Buffer, options: WrapOptions): { signedData: PreparedSignedData; finish(signature: Buffer): WrapResult } {
  const notes: string[] = [];
  const digest = options.digest ?? DEFAULT_DIGEST;
  const canonical = options.canonical === true ? original : toCanonicalCrlf(original);
  const parsed = MimeEntity.parse(canonical);
  if (!parsed.header('from')) throw new HispError('HISP_MIME_MALFORMED', 'the message has no From field');
  if (!parsed.header('to') && !parsed.header('cc')) {
    throw new HispError('HISP_MIME_MALFORMED', 'the message has no To or Cc field');
  }

  // Bcc must not travel (ETT rule 120): drop it before anything is signed. Missing Date and
  // Message-ID are added as a submission server would (RFC 6409 §8.2, §8.3): Direct tracks
  // MDNs by Message-ID (R-MDN-9).
  const kept = parsed.headers.filter((h) => h.name.toLowerCase() !== 'bcc');
  if (kept.length !== parsed.headers.length) notes.push('Bcc removed');
  const added: string[] = [];
  let messageId = parsed.header('message-id');
  if (!messageId) {
    const domain = options.messageIdDomain ?? domainOf(parsed.header('from') ?? '') ?? 'hisp.invalid';
    messageId = `<${randomBytes(16).toString('hex')}@${domain}>`;
    added.push(`Message-ID: ${messageId}\r\n`);
    notes.push('Message-ID added');
  }
  if (!parsed.header('date')) {
    added.push(`Date: ${rfc5322Date(options.signingTime ?? new Date())}\r\n`);
    notes.push('Date added');
  }
  const addedBytes = Buffer.from(added.join(''), 'latin1');
  // The message is kept as pieces from here on: a 10 MB body is never copied before encryption.
  const inner = [...kept.map((h) => h.raw), addedBytes, CRLF, parsed.body];

  // RFC 2046 §5.2.1: message/rfc822 takes 7bit, 8bit or binary; label 8-bit content honestly.
  const eightBit = inner.some((piece) => !isAscii(piece));
  const signedPart = [
    Buffer.from(`Content-Type: message/rfc822\r\n${eightBit ? 'Content-Transfer-Encoding: 8bit\r\n' : ''}\r\n`),
    ...inner,
  ];
  return {
    signedData: prepareSignedData(signedPart, options.signers, digest, options.signingTime),
    finish: (signature) => finishWrap(signature, signedPart, kept, addedBytes, messageId, notes, digest, options),
  };
}

/** Multipart/signed around the signed part, then the envelope and the outer entity (R-FMT-2, R-FMT-4). */
function finishWrap(
  signature: Buffer,
  signedPart: readonly Buffer[],
  kept: readonly { name: string; raw: Buffer }[],
  addedBytes: Buffer,
  messageId: string,
  notes: string[],
  digest: SigningDigest,
  options: WrapOptions,
): WrapResult {

  const boundary = freshBoundary(signedPart);
  const signedEntity = [
    Buffer.from(
      `Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=${MICALG[digest]};\r\n` +
        ` boundary="${boundary}"\r\n\r\n--${boundary}\r\n`,
    ),
    ...signedPart,
    Buffer.from(
      `\r\n--${boundary}\r\n` +
        'Content-Type: application/pkcs7-signature; name=smime.p7s\r\n' +
        'Content-Transfer-Encoding: base64\r\n' +
        'Content-Disposition: attachment; filename=smime.p7s\r\n\r\n',
    ),
    encodeBase64Lines(signature),
    Buffer.from(`--${boundary}--\r\n`),
  ];

  const cipher = options.cipher ?? DEFAULT_CIPHER;
  const envelope = createEnvelopePieces(signedEntity, options.recipients, {
    cipher,
    keyTransport: options.keyTransport ?? DEFAULT_KEY_TRANSPORT,
    recipientIdentifier: options.recipientIdentifier ?? 'issuerAndSerialNumber',
  });

  const outer: Buffer[] = [];
  for (const name of OUTER_FIELDS) {
    if (name === 'subject' && options.genericSubject !== undefined) {
      outer.push(Buffer.from(`Subject: ${options.genericSubject}\r\n`));
      continue;
    }
    for (const h of kept) if (h.name.toLowerCase() === name) outer.push(h.raw);
  }
  outer.push(addedBytes);
  // RFC 8551 §3.2.2 names AES-GCM envelopes authEnveloped-data; R-FMT-4 fixes the rest of the entity.
  const smimeType = cipher.endsWith('gcm') ? 'authEnveloped-data' : 'enveloped-data';
  outer.push(
    Buffer.from(
      'MIME-Version: 1.0\r\n' +
        `Content-Type: application/pkcs7-mime; smime-type=${smimeType}; name=smime.p7m\r\n` +
        'Content-Transfer-Encoding: base64\r\n' +
        'Content-Disposition: attachment; filename=smime.p7m\r\n\r\n',
    ),
  );
  // One allocation for the whole output; the base64 of the envelope is written straight into it.
  const headLength = outer.reduce((n, b) => n + b.length, 0);
  const envelopeLength = envelope.reduce((n, b) => n + b.length, 0);
  const message = Buffer.allocUnsafe(headLength + base64LinesLength(envelopeLength));
  let o = 0;
  for (const b of outer) o += b.copy(message, o);
  writeBase64Lines(envelope, message, o);
  return { message, messageId, notes, headerLength: headLength };
}

const CRLF = Buffer.from('\r\n');

/** A boundary of US-ASCII without ':' and at most 70 characters (R-FMT-6) absent from the content. */
function freshBoundary(content: readonly Buffer[]): string {
  for (;;) {
    const b = `----=_hisp_${randomBytes(18).toString('hex')}`;
    // 36 random hex digits never collide in practice; checked anyway (RFC 2046 §5.1.1).
    if (content.every((piece) => piece.indexOf(b) === -1)) return b;
  }
}

function domainOf(from: string): string | undefined {
  const m = /@([A-Za-z0-9.-]+)/.exec(from);
  return m?.[1];
}


import type { Certificate } from '../core/certificate.js';
import { HispError, type HispErrorCode } from '../core/errors.js';
import { parseMicalg, type CipherName, type DigestName, type KeyTransportName } from './algorithms.js';
import { decodeBase64, isValidBase64, MimeEntity, splitMultipart, toCanonicalCrlf } from '../mime/mime-entity.js';
import type { EnvelopeFromFile } from './envelope-file.js';
import { openEnvelope, type DecryptionCredential } from './open-envelope.js';
import { verifySignature, type SignerResult } from './verify-signature.js';

export interface UnwrapOptions {
  /** Every private key of the recipient (retired ones too, so certificates can roll over). */
  credentials: readonly DecryptionCredential[];
  /** The SHA-1 legacy switch (requirements §5.7): admits SHA-1 message digests. MD5 never. */
  allowSha1?: boolean;
}

export interface UnwrapResult {
  /** The message the sender signed: the inner RFC 5322 message of a wrapped message, or the outer
   * headers with the signed body of an unwrapped one. */
  message: Buffer;
  /** True when the signed content was message/rfc822 (RFC 5751 §3.1). */
  wrapped: boolean;
  cipher: CipherName;
  keyTransport: KeyTransportName;
  /** The credential that decrypted. */
  recipient: DecryptionCredential;
  /** The decrypted CMS content (the signed entity with its signature), as the sender encrypted it. */
  decrypted: Buffer;
  /** Digest of the first verified signer. */
  digest: DigestName;
  /** Every SignerInfo with its outcome; at least one is verified. */
  signers: SignerResult[];
  /** All certificates the signature carried (candidate intermediates for path building). */
  certificates: Certificate[];
  /** Deviations tolerated on the way (missing outer headers, micalg spelled otherwise, …). */
  warnings: string[];
}

const SIGNATURE_TYPES = new Set(['application/pkcs7-signature', 'application/x-pkcs7-signature']);
const ENVELOPE_TYPES = new Set(['application/pkcs7-mime', 'application/x-pkcs7-mime']);
/** Outer header fields a Direct message must carry (R-FMT-2, ETT rules 114–124). */
const REQUIRED_OUTER = ['from', 'to', 'date', 'message-id', 'mime-version'];

/**
 * Decrypts, verifies and unwraps an incoming Direct message: tolerant in what it accepts (wrapped or
 * not, micalg spellings, x-pkcs7 types, parameters in any order, long base64 lines, missing outer
 * headers) and strict in what it requires (encrypted, signed, signature verifying over the received
 * octets). Trust in the signers is decided by the caller (trust layer), not here.
 */
export function unwrapMessage(raw: Buffer | EnvelopeFromFile, options: UnwrapOptions): UnwrapResult {
  const warnings: string[] = [];
  const fromFile = Buffer.isBuffer(raw) ? undefined : raw;
  const outer = fromFile ? fromFile.outer : MimeEntity.parse(raw as Buffer);
  for (const name of REQUIRED_OUTER) {
    if (!outer.header(name)) warnings.push(`outer header ${name} missing`);
  }
  const ct = outer.contentType();
  const smimeType = (ct.params['smime-type'] ?? '').toLowerCase();
  if (ENVELOPE_TYPES.has(ct.mediaType) && smimeType === 'signed-data') {
    throw new HispError('HISP_SMIME_NOT_ENCRYPTED', 'the message is signed but not encrypted (R-SIG-1)');
  }
  if (!ENVELOPE_TYPES.has(ct.mediaType)) {
    const what = ct.mediaType === 'multipart/signed' ? 'signed but not encrypted' : `${ct.mediaType}, not S/MIME`;
    throw new HispError('HISP_SMIME_NOT_ENCRYPTED', `the message is ${what} (R-SIG-1)`);
  }
  const opened = fromFile
    ? // Decoded from the file by the caller (envelope-file.ts): ours to overwrite.
      withDer(fromFile, 'the enveloped body', (der) => openEnvelope(der, options.credentials, { inPlace: true }))
    : withBody(outer, 'the enveloped body', (der) =>
        // A decoded body is ours to overwrite: decrypt in place (memory bound for large messages).
        openEnvelope(der, options.credentials, { inPlace: der.buffer !== (raw as Buffer).buffer }),
      );

  const signed = MimeEntity.parse(opened.content);
  const sct = signed.contentType();
  const policy = { allowSha1: options.allowSha1 ?? false };
  let verification;
  let signedContent: Buffer;
  if (sct.mediaType === 'multipart/signed') {
    const parts = splitMultipart(signed.body, sct.params.boundary ?? '');
    const [content, sigPart] = parts;
    if (!content || !sigPart) throw new HispError('HISP_MIME_MALFORMED', 'multipart/signed needs two parts');
    if (parts.length !== 2) warnings.push(`multipart/signed has ${parts.length} parts, expected 2`);
    const sigEntity = MimeEntity.parse(sigPart);
    if (!SIGNATURE_TYPES.has(sigEntity.contentType().mediaType)) {
      throw new HispError('HISP_SMIME_NOT_SIGNED', 'the second part of multipart/signed is not a pkcs7-signature');
    }
    verification = withBody(sigEntity, 'the signature part', (der) => verifySignature(der, content, policy));
    signedContent = content;
    const micalg = sct.params.micalg;
    const declared = micalg === undefined ? undefined : parseMicalg(micalg);
    const used = verification.signers.map((s) => s.digest);
    if (micalg === undefined) warnings.push('multipart/signed without micalg');
    else if (declared === undefined || !used.includes(declared as DigestName)) {
      // RFC 5751 §3.4.3.2 asks the receiver to rely on the SignerInfo, not on micalg.
      warnings.push(`micalg=${micalg} does not match the signature digest`);
    }
  } else if (ENVELOPE_TYPES.has(sct.mediaType) && (sct.params['smime-type'] ?? 'signed-data') === 'signed-data') {
    // Opaque signing (RFC 5751 §3.5.2): the content travels inside the SignedData.
    verification = withBody(signed, 'the signed-data body', (der) => verifySignature(der, undefined, policy));
    signedContent = verification.content;
  } else {
    throw new HispError('HISP_SMIME_NOT_SIGNED', `the decrypted content is ${sct.mediaType}, not signed (R-SIG-1)`);
  }

  const good = verification.signers.filter((s) => s.verified);
  if (good.length === 0) throw mostTellingError(verification.signers);

  const entity = MimeEntity.parse(signedContent);
  const wrapped = entity.contentType().mediaType === 'message/rfc822';
  let message: Buffer;
  if (wrapped) {
    message = entity.body;
  } else {
    // Unwrapped (RFC 5751 §3.1 without wrapping): the outer headers describe the message and the
    // signed entity is its content. Fields the signed entity carries itself (some signers put the
    // whole message under the signature without message/rfc822) win over the unsigned outer ones.
    const signedNames = new Set(entity.headers.map((h) => h.name.toLowerCase()));
    const kept = outer.headers.filter((h) => {
      const n = h.name.toLowerCase();
      return !n.startsWith('content-') && n !== 'mime-version' && !signedNames.has(n);
    });
    const mimeVersion = signedNames.has('mime-version') ? [] : [Buffer.from('MIME-Version: 1.0\r\n')];
    message = Buffer.concat([...kept.map((h) => toCanonicalCrlf(h.raw)), ...mimeVersion, signedContent]);
  }
  return {
    message,
    wrapped,
    cipher: opened.cipher,
    keyTransport: opened.keyTransport,
    recipient: opened.recipient,
    decrypted: opened.content,
    digest: good[0]!.digest!,
    signers: verification.signers,
    certificates: verification.certificates,
    warnings,
  };
}

/**
 * Runs `use` on the body octets of an entity, base64-decoded when its Content-Transfer-Encoding says
 * so (or when it plainly is base64 without saying so, as some senders do). When the CMS inside turns
 * out malformed and the base64 itself was not clean, the transfer encoding is reported as the cause.
 */
function withBody<T>(entity: MimeEntity, what: string, use: (der: Buffer) => T): T {
  const cte = (entity.header('content-transfer-encoding') ?? '').trim().toLowerCase();
  let der: Buffer;
  if (cte === 'base64') {
    der = decodeBase64(entity.body);
  } else if (cte === '' || cte === 'binary' || cte === '8bit' || cte === '7bit') {
    der = entity.body[0] === 0x30 ? entity.body : decodeBase64(entity.body);
  } else {
    throw new HispError('HISP_MIME_MALFORMED', `${what} has unsupported Content-Transfer-Encoding ${cte}`);
  }
  try {
    return use(der);
  } catch (e) {
    if (e instanceof HispError && e.code === 'HISP_CMS_MALFORMED' && der !== entity.body && !isValidBase64(entity.body)) {
      throw new HispError('HISP_MIME_MALFORMED', `${what} is not valid base64`);
    }
    throw e;
  }
}

/** When no signer verifies, report the most specific reason (weak algorithm over a bare mismatch). */
/** {@link withBody} for a body its caller decoded from a file. */
function withDer<T>(envelope: EnvelopeFromFile, what: string, use: (der: Buffer) => T): T {
  if (envelope.der === undefined) throw new HispError('HISP_MIME_MALFORMED', `${what} could not be read`);
  try {
    return use(envelope.der);
  } catch (e) {
    if (e instanceof HispError && e.code === 'HISP_CMS_MALFORMED' && envelope.notBase64) throw new HispError('HISP_MIME_MALFORMED', `${what} is not valid base64`);
    throw e;
  }
}

function mostTellingError(signers: SignerResult[]): HispError {
  const order: HispErrorCode[] = ['HISP_CMS_WEAK_ALGORITHM', 'HISP_SIG_NO_SIGNER_CERT', 'HISP_CMS_UNSUPPORTED_ALGORITHM'];
  for (const code of order) {
    const e = signers.find((s) => s.error?.code === code)?.error;
    if (e) return e;
  }
  return signers.find((s) => s.error)?.error ?? new HispError('HISP_SIG_INVALID', 'no signature verifies');
}

import { createCipheriv, createHash, randomBytes, type CipherGCM } from 'node:crypto';
import type { Certificate } from '../core/certificate.js';
import { HispError } from '../core/errors.js';
import { cipherByName, OID, type KeyTransportName, type SendCipher } from './algorithms.js';
import { algorithm } from './asn1.js';
import { ctxConstructed, ctxPrimitive, encode, encodePieces, int, lengthOctets, octets, oid, raw, seq, set, type Der } from './der.js';
import { keyTransportAlgorithm, wrapContentKey } from './key-transport.js';

/** createCipheriv's result: `Cipheriv` in @types/node 22+, `Cipher` before (the un-iv'd createCipher is gone since Node 22). */
type Cipher = ReturnType<typeof createCipheriv>;

export type RecipientIdentifierForm = 'issuerAndSerialNumber' | 'subjectKeyIdentifier';

export interface CreateEnvelopeOptions {
  cipher: SendCipher;
  keyTransport: KeyTransportName;
  /** How each RecipientInfo names its certificate (RFC 5652 §6.2.1); default issuerAndSerialNumber. */
  recipientIdentifier?: RecipientIdentifierForm;
}

/**
 * Encrypts `content` (one buffer or the pieces of one, never concatenated) to every recipient
 * certificate, one KeyTransRecipientInfo each (R-ENC-5): EnvelopedData (RFC 5652 §6) for AES-CBC,
 * AuthEnvelopedData (RFC 5083) with AES-GCM (RFC 5084). Returns the DER ContentInfo, written once
 * into a single buffer: the ciphertext lands there directly from the cipher.
 */
export function createEnvelope(
  content: Buffer | readonly Buffer[],
  recipients: readonly Certificate[],
  options: CreateEnvelopeOptions,
): Buffer {
  return encode(prepareEnvelope(Buffer.isBuffer(content) ? [content] : content, recipients, options));
}

/**
 * The same as a list of buffers in order, for callers that stream it on (wrapMessage base64-encodes
 * it straight into the outgoing message): the ciphertext stays the buffers the cipher returned.
 */
export function createEnvelopePieces(
  content: readonly Buffer[],
  recipients: readonly Certificate[],
  options: CreateEnvelopeOptions,
): Buffer[] {
  return encodePieces(prepareEnvelope(content, recipients, options));
}

/** The envelope as a Der value (length known, written on demand), for callers that embed it. */
export function prepareEnvelope(
  pieces: readonly Buffer[],
  recipients: readonly Certificate[],
  options: CreateEnvelopeOptions,
): Der {
  if (recipients.length === 0) throw new HispError('HISP_USAGE', 'at least one recipient certificate is required');
  const cipher = cipherByName(options.cipher);
  const useSki = (options.recipientIdentifier ?? 'issuerAndSerialNumber') === 'subjectKeyIdentifier';
  const cek = randomBytes(cipher.keyLength);

  const recipientInfos = recipients.map((cert) =>
    seq(
      int(useSki ? 2 : 0), // RFC 5652 §6.2.1: version 0 for issuerAndSerialNumber, 2 for SKI
      useSki ? ctxPrimitive(0, subjectKeyIdentifierOf(cert)) : seq(raw(cert.issuerDer), raw(cert.serialDer)),
      keyTransportAlgorithm(options.keyTransport),
      octets(wrapContentKey(cert.publicKey, options.keyTransport, cek)),
    ),
  );
  const plainLength = pieces.reduce((n, p) => n + p.length, 0);

  if (!cipher.aead) {
    const iv = randomBytes(16);
    const c = createCipheriv(cipher.node, cek, iv);
    const encrypted = new EncryptedContent(c, pieces, plainLength + 16 - (plainLength % 16)); // PKCS#7 padding
    const envelopedData = seq(
      int(useSki ? 2 : 0), // RFC 5652 §6.1: version 2 when any RecipientInfo is not version 0
      set(...recipientInfos),
      seq(oid(OID.data), algorithm(cipher.oid, octets(iv)), encrypted),
    );
    return seq(oid(OID.envelopedData), ctxConstructed(0, envelopedData));
  }

  // RFC 5084 §3.2: 12-octet nonce; hisp writes a 16-octet ICV (aes-ICVlen 16, as OpenSSL does).
  const nonce = randomBytes(12);
  const c = createCipheriv(cipher.node as 'aes-128-gcm', cek, nonce, { authTagLength: 16 });
  const encrypted = new EncryptedContent(c, pieces, plainLength);
  const authEnvelopedData = seq(
    int(0), // RFC 5083 §2.1: version is always 0
    set(...recipientInfos),
    seq(oid(OID.data), algorithm(cipher.oid, seq(octets(nonce), int(16))), encrypted),
    new GcmTag(c),
  );
  return seq(oid(OID.authEnvelopedData), ctxConstructed(0, authEnvelopedData));
}

/**
 * encryptedContent [0] IMPLICIT OCTET STRING, produced by the cipher: one cipher call per plaintext
 * piece, whose output buffer becomes a piece of the encoding as it is (no copy, no garbage).
 */
class EncryptedContent implements Der {
  readonly length: number;
  private readonly header: Buffer;
  constructor(
    private readonly cipher: Cipher,
    private readonly plaintext: readonly Buffer[],
    cipherLength: number,
  ) {
    this.header = Buffer.concat([Buffer.from([0x80]), lengthOctets(cipherLength)]);
    this.length = this.header.length + cipherLength;
  }
  pieces(out: Buffer[]): void {
    out.push(this.header);
    for (const piece of this.plaintext) out.push(this.cipher.update(piece));
    out.push(this.cipher.final());
  }
}

/** mac OCTET STRING of AuthEnvelopedData: the GCM tag, known once the content is written. */
class GcmTag implements Der {
  readonly length = 18;
  constructor(private readonly cipher: CipherGCM) {}
  pieces(out: Buffer[]): void {
    out.push(Buffer.from([0x04, 16]), this.cipher.getAuthTag());
  }
}

/**
 * The subjectKeyIdentifier extension, or, when the certificate has none, method 1 of RFC 5280
 * §4.2.1.2 (SHA-1 of the subjectPublicKey bits) so that `-keyid` style recipients still work.
 */
export function subjectKeyIdentifierOf(cert: Certificate): Buffer {
  if (cert.subjectKeyIdentifier) return cert.subjectKeyIdentifier;
  const spk = cert.structure.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView;
  return createHash('sha1').update(spk).digest();
}

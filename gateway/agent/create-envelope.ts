import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import * as asn1js from 'asn1js';
import type { Certificate } from '../core/certificate.js';
import { HispError } from '../core/errors.js';
import { cipherByName, OID, type KeyTransportName, type SendCipher } from './algorithms.js';
import { algorithm, explicit, implicitPrimitive, int, octets, oid, raw, seq, toDer } from './asn1.js';
import { keyTransportAlgorithm, wrapContentKey } from './key-transport.js';

export type RecipientIdentifierForm = 'issuerAndSerialNumber' | 'subjectKeyIdentifier';

export interface CreateEnvelopeOptions {
  cipher: SendCipher;
  keyTransport: KeyTransportName;
  /** How each RecipientInfo names its certificate (RFC 5652 §6.2.1); default issuerAndSerialNumber. */
  recipientIdentifier?: RecipientIdentifierForm;
}

/**
 * Encrypts `content` to every recipient certificate, one KeyTransRecipientInfo each (R-ENC-5):
 * EnvelopedData (RFC 5652 §6) for AES-CBC, AuthEnvelopedData (RFC 5083) with AES-GCM (RFC 5084).
 * Returns the DER ContentInfo.
 */
export function createEnvelope(content: Buffer, recipients: Certificate[], options: CreateEnvelopeOptions): Buffer {
  if (recipients.length === 0) throw new HispError('HISP_USAGE', 'at least one recipient certificate is required');
  const cipher = cipherByName(options.cipher);
  const form = options.recipientIdentifier ?? 'issuerAndSerialNumber';
  const cek = randomBytes(cipher.keyLength);

  const recipientInfos = recipients.map((cert) => {
    const useSki = form === 'subjectKeyIdentifier';
    const rid = useSki
      ? implicitPrimitive(0, subjectKeyIdentifierOf(cert))
      : seq(raw(cert.issuerDer), raw(serialInteger(cert)));
    return seq(
      int(useSki ? 2 : 0), // RFC 5652 §6.2.1: version 0 for issuerAndSerialNumber, 2 for SKI
      rid,
      keyTransportAlgorithm(options.keyTransport),
      octets(wrapContentKey(cert.publicKey, options.keyTransport, cek)),
    );
  });
  const anySki = form === 'subjectKeyIdentifier';

  if (!cipher.aead) {
    const iv = randomBytes(16);
    const c = createCipheriv(cipher.node, cek, iv);
    const encrypted = Buffer.concat([c.update(content), c.final()]);
    const envelopedData = seq(
      int(anySki ? 2 : 0), // RFC 5652 §6.1: version 2 when any RecipientInfo is not version 0
      new asn1js.Set({ value: recipientInfos }),
      seq(oid(OID.data), algorithm(cipher.oid, octets(iv)), implicitPrimitive(0, encrypted)),
    );
    return toDer(seq(oid(OID.envelopedData), explicit(0, envelopedData)));
  }

  // RFC 5084 §3.2: 12-octet nonce; hisp writes a 16-octet ICV (aes-ICVlen 16, the strongest, as OpenSSL).
  const nonce = randomBytes(12);
  const c = createCipheriv(cipher.node as 'aes-128-gcm', cek, nonce, { authTagLength: 16 });
  const encrypted = Buffer.concat([c.update(content), c.final()]);
  const tag = c.getAuthTag();
  const authEnvelopedData = seq(
    int(0), // RFC 5083 §2.1: version is always 0
    new asn1js.Set({ value: recipientInfos }),
    seq(oid(OID.data), algorithm(cipher.oid, seq(octets(nonce), int(16))), implicitPrimitive(0, encrypted)),
    octets(tag),
  );
  return toDer(seq(oid(OID.authEnvelopedData), explicit(0, authEnvelopedData)));
}

/** The certificate's serial number as a DER INTEGER, copied from the certificate. */
function serialInteger(cert: Certificate): Buffer {
  return toDer(cert.structure.serialNumber);
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

import { createDecipheriv, type KeyObject } from 'node:crypto';
import type { Certificate } from '../core/certificate.js';
import { HispError } from '../core/errors.js';
import { cipherFromOid, OID, type CipherInfo, type CipherName, type KeyTransportName } from './algorithms.js';
import {
  children,
  decodeBer,
  expectSequence,
  isContext,
  isUniversal,
  malformed,
  rawBytes,
  readAlgorithm,
  readInteger,
  readIntegerBytes,
  readOctets,
  readOid,
  TAG,
  type Node,
} from './asn1.js';
import { subjectKeyIdentifierOf } from './create-envelope.js';
import { parseKeyTransportAlgorithm, unwrapContentKey } from './key-transport.js';

/** createDecipheriv's result: `Decipheriv` in @types/node 22+, `Decipher` before. */
type Decipher = ReturnType<typeof createDecipheriv>;

/** A private key and the certificate it decrypts for. */
export interface DecryptionCredential {
  key: KeyObject;
  certificate: Certificate;
}

export interface OpenedEnvelope {
  content: Buffer;
  contentType: 'envelopedData' | 'authEnvelopedData';
  cipher: CipherName;
  keyTransport: KeyTransportName;
  /** The credential whose RecipientInfo opened the message. */
  recipient: DecryptionCredential;
}

interface KeyTransRecipient {
  matches(cert: Certificate): boolean;
  keyTransport: KeyTransportName;
  label: Buffer;
  encryptedKey: Buffer;
}

/**
 * Decrypts a CMS EnvelopedData or AuthEnvelopedData ContentInfo (BER accepted) with whichever of the
 * credentials a KeyTransRecipientInfo names. Errors: HISP_CMS_MALFORMED, HISP_CMS_WEAK_ALGORITHM
 * (3DES, RC2), HISP_CMS_UNSUPPORTED_ALGORITHM, HISP_CMS_NOT_FOR_RECIPIENT, HISP_CMS_DECRYPT_FAILED
 * (one code for a wrong key, bad padding, corrupted ciphertext or a failed GCM tag).
 */
export interface OpenEnvelopeOptions {
  /**
   * Decrypt over the ciphertext inside `der` instead of into a new buffer: the caller owns `der` and
   * will not read it again (unwrapMessage decodes it from base64 itself). Keeps a 10 MB message
   * within the agent's memory bound: no second full-size buffer exists during decryption.
   */
  inPlace?: boolean;
}

export function openEnvelope(
  der: Uint8Array,
  credentials: readonly DecryptionCredential[],
  options: OpenEnvelopeOptions = {},
): OpenedEnvelope {
  const [typeNode, wrapped] = expectSequence(decodeBer(der, 'ContentInfo'), 'ContentInfo');
  const type = readOid(typeNode, 'ContentInfo contentType');
  if (type !== OID.envelopedData && type !== OID.authEnvelopedData) {
    if (type === OID.signedData) {
      throw new HispError('HISP_SMIME_NOT_ENCRYPTED', 'the message is signed but not encrypted (R-SIG-1)');
    }
    throw malformed(`ContentInfo holds ${type}, not EnvelopedData or AuthEnvelopedData`);
  }
  const auth = type === OID.authEnvelopedData;
  if (!isContext(wrapped, 0)) throw malformed('ContentInfo content is not [0]');
  const fields = expectSequence(children(wrapped, 'ContentInfo content')[0], 'EnvelopedData');

  let i = 0;
  readInteger(fields[i++], 'version');
  if (isContext(fields[i], 0)) i++; // originatorInfo
  const riSet = fields[i++];
  if (!isUniversal(riSet, TAG.SET)) throw malformed('recipientInfos is not a SET');
  const eci = expectSequence(fields[i++], 'EncryptedContentInfo');
  let mac: Buffer | undefined;
  if (auth) {
    if (isContext(fields[i], 1)) {
      // authAttrs would be authenticated as AAD (RFC 5083 §2.2); no Direct peer sends them.
      throw new HispError('HISP_CMS_UNSUPPORTED_ALGORITHM', 'AuthEnvelopedData with authAttrs is not supported');
    }
    mac = readOctets(fields[i], 'AuthEnvelopedData mac');
  }

  const recipients = children(riSet, 'recipientInfos').flatMap(parseRecipientInfo);
  const cipherAlg = readAlgorithm(eci[1], 'contentEncryptionAlgorithm');
  const cipher = cipherFromOid(cipherAlg.oid);
  if (cipher.aead !== auth) {
    throw malformed(`${cipher.name} does not belong in ${auth ? 'AuthEnvelopedData' : 'EnvelopedData'}`);
  }
  const encrypted = eci[2] && isContext(eci[2], 0) ? readOctets(eci[2], 'encryptedContent') : undefined;
  if (!encrypted) throw malformed('encryptedContent is absent (detached content is not used by S/MIME)');

  let matched: { r: KeyTransRecipient; c: DecryptionCredential } | undefined;
  for (const r of recipients) {
    const c = credentials.find((cred) => r.matches(cred.certificate));
    if (c) {
      matched = { r, c };
      break;
    }
  }
  if (!matched) {
    throw new HispError(
      'HISP_CMS_NOT_FOR_RECIPIENT',
      `the message is encrypted to ${recipients.length} recipient(s), none of them our certificate(s)`,
    );
  }
  const { r, c } = matched;
  const cek = unwrapContentKey(c.key, r.keyTransport, r.label, r.encryptedKey, cipher.keyLength);
  const content = decryptContent(cipher, cipherAlg.params, cek, encrypted, mac, options.inPlace ?? false);
  return {
    content,
    contentType: auth ? 'authEnvelopedData' : 'envelopedData',
    cipher: cipher.name,
    keyTransport: r.keyTransport,
    recipient: c,
  };
}

function parseRecipientInfo(node: Node): KeyTransRecipient[] {
  // Only KeyTransRecipientInfo (a plain SEQUENCE) is used by Direct; kari/kekri/pwri/ori are skipped.
  if (!isUniversal(node, TAG.SEQUENCE)) return [];
  const [versionNode, rid, algNode, ekNode] = children(node, 'KeyTransRecipientInfo');
  readInteger(versionNode, 'KeyTransRecipientInfo version');
  const { name, label } = parseKeyTransportAlgorithm(readAlgorithm(algNode, 'keyEncryptionAlgorithm'));
  const encryptedKey = readOctets(ekNode, 'encryptedKey');
  let matches: (cert: Certificate) => boolean;
  if (isContext(rid, 0)) {
    const ski = readOctets(rid, 'subjectKeyIdentifier');
    matches = (cert) => subjectKeyIdentifierOf(cert).equals(ski);
  } else {
    const [issuer, serial] = expectSequence(rid, 'IssuerAndSerialNumber');
    if (!issuer) throw malformed('IssuerAndSerialNumber has no issuer');
    const issuerDer = rawBytes(issuer);
    const serialBytes = stripSignZeros(readIntegerBytes(serial, 'serialNumber'));
    matches = (cert) =>
      cert.issuerDer.equals(issuerDer) && stripSignZeros(Buffer.from(cert.serialHex, 'hex')).equals(serialBytes);
  }
  return [{ matches, keyTransport: name, label, encryptedKey }];
}

function stripSignZeros(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

function decryptContent(
  cipher: CipherInfo,
  params: Node | undefined,
  cek: Buffer,
  encrypted: Buffer,
  mac: Buffer | undefined,
  inPlace: boolean,
): Buffer {
  if (!cipher.aead) {
    const iv = readOctets(params, 'AES-CBC IV');
    if (iv.length !== 16) throw malformed('AES-CBC IV is not 16 octets');
    if (encrypted.length === 0 || encrypted.length % 16 !== 0) throw decryptFailed();
    let out: Buffer;
    try {
      // Without auto padding every update returns exactly its input length, which in-place
      // decryption needs; the PKCS#7 padding (RFC 5652 §6.3) is checked and removed below.
      const d = createDecipheriv(cipher.node, cek, iv).setAutoPadding(false);
      out = runDecipher(d, encrypted, inPlace);
    } catch {
      throw decryptFailed();
    }
    const pad = out[out.length - 1]!;
    let bad = pad === 0 || pad > 16 ? 1 : 0;
    for (let i = 1; i <= 16; i++) bad |= i <= pad && out[out.length - i] !== pad ? 1 : 0;
    if (bad) throw decryptFailed();
    return out.subarray(0, out.length - pad);
  }
  // GCMParameters ::= SEQUENCE { aes-nonce OCTET STRING, aes-ICVlen INTEGER DEFAULT 12 } (RFC 5084 §3.2)
  const [nonceNode, icvNode] = expectSequence(params, 'GCMParameters');
  const nonce = readOctets(nonceNode, 'GCM nonce');
  const icvLen = icvNode ? readInteger(icvNode, 'GCM ICV length') : 12;
  if (!mac || mac.length !== icvLen || icvLen < 12 || icvLen > 16 || nonce.length === 0) {
    throw malformed('AuthEnvelopedData MAC length does not match aes-ICVlen');
  }
  try {
    const d = createDecipheriv(cipher.node as 'aes-128-gcm', cek, nonce, { authTagLength: icvLen });
    d.setAuthTag(mac);
    return runDecipher(d, encrypted, inPlace); // final() inside verifies the tag
  } catch {
    throw decryptFailed();
  }
}

const SLICE = 256 * 1024;

/**
 * Runs the decipher over the ciphertext. In place, slices of plaintext overwrite the ciphertext they
 * came from (the cipher keeps its own chaining state), so no full-size output buffer is allocated;
 * otherwise one update returns the whole plaintext.
 */
function runDecipher(d: Decipher, encrypted: Buffer, inPlace: boolean): Buffer {
  if (!inPlace) {
    const out = d.update(encrypted);
    const tail = d.final();
    return tail.length ? Buffer.concat([out, tail]) : out;
  }
  let w = 0;
  for (let i = 0; i < encrypted.length; i += SLICE) {
    const p = d.update(encrypted.subarray(i, i + SLICE));
    if (w + p.length > Math.min(i + SLICE, encrypted.length)) throw new Error('decipher ran ahead of its input');
    w += p.copy(encrypted, w);
  }
  const tail = d.final();
  if (tail.length) throw new Error('unexpected final block in unpadded decryption');
  return encrypted.subarray(0, w);
}

function decryptFailed(): HispError {
  // One message and no cause for every failure, so that nothing, logs included, tells a bad padding
  // from a wrong key or a failed tag: no oracle for the sender (RFC 3218 §2.3).
  return new HispError('HISP_CMS_DECRYPT_FAILED', 'the message could not be decrypted with our key');
}

import { constants, privateDecrypt, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { HispError } from '../core/errors.js';
import { OID, type KeyTransportName } from './algorithms.js';
import { algorithm, children, isContext, isUniversal, readAlgorithm, readOctets, TAG, type AlgorithmIdentifier } from './asn1.js';
import { ctxConstructed, seq, type Der } from './der.js';

/**
 * RSA key transport for KeyTransRecipientInfo (RFC 5652 §6.2.1): PKCS#1 v1.5 (RFC 3370 §4.2.1) and
 * RSAES-OAEP (RFC 3560, parameters per RFC 4055 §4.1).
 */

type OaepHash = 'sha1' | 'sha256';

/** keyEncryptionAlgorithm for the name hisp writes. */
export function keyTransportAlgorithm(name: KeyTransportName): Der {
  switch (name) {
    case 'rsa-pkcs1':
      // RFC 3370 §4.2.1: rsaEncryption with NULL parameters.
      return algorithm(OID.rsaEncryption, 'null');
    case 'rsa-oaep-sha1':
      // RFC 4055 §4.1: all defaults (SHA-1, MGF1-SHA-1, empty label) encode as an empty SEQUENCE,
      // the form the .NET RI writes and Java RI / .NET Framework peers read.
      return algorithm(OID.rsaesOaep, seq());
    case 'rsa-oaep-sha256':
      // hashFunc [0] sha256 and maskGenFunc [1] mgf1(sha256); SHA-2 parameters absent (RFC 5754 §2),
      // exactly what `openssl cms -keyopt rsa_oaep_md:sha256` writes.
      return algorithm(
        OID.rsaesOaep,
        seq(ctxConstructed(0, algorithm(OID.sha256)), ctxConstructed(1, algorithm(OID.mgf1, algorithm(OID.sha256)))),
      );
  }
}

const OAEP_HASH_BY_OID: Record<string, OaepHash> = { [OID.sha1]: 'sha1', [OID.sha256]: 'sha256' };

/** Reads keyEncryptionAlgorithm: rsaEncryption, or rsaesOaep with parameters absent, NULL or explicit. */
export function parseKeyTransportAlgorithm(alg: AlgorithmIdentifier): { name: KeyTransportName; label: Buffer } {
  if (alg.oid === OID.rsaEncryption) return { name: 'rsa-pkcs1', label: Buffer.alloc(0) };
  if (alg.oid !== OID.rsaesOaep) {
    throw new HispError('HISP_CMS_UNSUPPORTED_ALGORITHM', `unsupported key transport algorithm (${alg.oid})`);
  }
  let hash: string = OID.sha1;
  let mgfHash: string = OID.sha1;
  let label: Buffer = Buffer.alloc(0);
  const p = alg.params;
  if (p && !isUniversal(p, TAG.NULL)) {
    for (const field of children(p, 'RSAES-OAEP-params')) {
      const [inner] = children(field, 'RSAES-OAEP-params field');
      if (isContext(field, 0)) hash = readAlgorithm(inner, 'OAEP hashFunc').oid;
      else if (isContext(field, 1)) {
        const mgf = readAlgorithm(inner, 'OAEP maskGenFunc');
        if (mgf.oid !== OID.mgf1) {
          throw new HispError('HISP_CMS_UNSUPPORTED_ALGORITHM', `unsupported OAEP mask generation (${mgf.oid})`);
        }
        mgfHash = readAlgorithm(mgf.params, 'MGF1 hash').oid;
      } else if (isContext(field, 2)) {
        const ps = readAlgorithm(inner, 'OAEP pSourceFunc');
        if (ps.oid !== OID.pSpecified || !isUniversal(ps.params, TAG.OCTET_STRING)) {
          throw new HispError('HISP_CMS_UNSUPPORTED_ALGORITHM', 'unsupported OAEP label source');
        }
        label = readOctets(ps.params, 'OAEP label');
      }
    }
  }
  const h = OAEP_HASH_BY_OID[hash];
  // node:crypto ties the MGF1 hash to the OAEP hash; mixed forms (SHA-256 with MGF1-SHA-1) are refused.
  if (!h || hash !== mgfHash) {
    throw new HispError(
      'HISP_CMS_UNSUPPORTED_ALGORITHM',
      `unsupported RSA-OAEP parameters (hash ${hash}, MGF1 hash ${mgfHash})`,
    );
  }
  return { name: h === 'sha1' ? 'rsa-oaep-sha1' : 'rsa-oaep-sha256', label };
}

/** Encrypts a content-encryption key to a recipient's RSA public key. */
export function wrapContentKey(publicKey: KeyObject, name: KeyTransportName, cek: Buffer): Buffer {
  if (publicKey.asymmetricKeyType !== 'rsa') {
    throw new HispError('HISP_CMS_UNSUPPORTED_ALGORITHM', 'recipient certificate key is not RSA; key transport needs RSA');
  }
  if (name === 'rsa-pkcs1') return publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, cek);
  return publicEncrypt(
    { key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: name === 'rsa-oaep-sha1' ? 'sha1' : 'sha256' },
    cek,
  );
}

/**
 * Recovers the content-encryption key of the expected length. Every failure (bad padding, wrong
 * key, wrong length, malformed input) yields a random key of that length instead of an error, so
 * that the caller goes on to decrypt the content and fails there the same way in every case:
 * the countermeasure of RFC 3218 §2.3.2 against Bleichenbacher-style oracles.
 */
export function unwrapContentKey(
  privateKey: KeyObject,
  name: KeyTransportName,
  label: Buffer,
  encryptedKey: Buffer,
  keyLength: number,
): Buffer {
  const fallback = randomBytes(keyLength);
  if (name === 'rsa-pkcs1') return pkcs1v15Unpad(rawRsaDecrypt(privateKey, encryptedKey), keyLength, fallback);
  try {
    const cek = privateDecrypt(
      {
        key: privateKey,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: name === 'rsa-oaep-sha1' ? 'sha1' : 'sha256',
        ...(label.length ? { oaepLabel: label } : {}),
      },
      encryptedKey,
    );
    return cek.length === keyLength ? cek : fallback;
  } catch {
    return fallback;
  }
}

/**
 * Raw RSA (RSA_NO_PADDING): stock Node 20 refuses PKCS#1 v1.5 private decryption (CVE-2023-46809
 * hardening), so the padding is removed here instead. Input that raw RSA cannot take (wrong length,
 * not below the modulus, not an RSA key) yields an all-zero block, which the unpadding then
 * rejects like any other bad padding.
 */
function rawRsaDecrypt(privateKey: KeyObject, encryptedKey: Buffer): Buffer {
  const k = Math.ceil((privateKey.asymmetricKeyDetails?.modulusLength ?? 0) / 8);
  try {
    const em = privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, encryptedKey);
    if (em.length === k) return em;
    const out = Buffer.alloc(k);
    em.copy(out, Math.max(0, k - em.length));
    return out;
  } catch {
    return Buffer.alloc(Math.max(k, 11));
  }
}

/**
 * Constant-time PKCS#1 v1.5 type 2 unpadding (RFC 8017 §7.2.2) of an encoded message of modulus
 * length k when the message length L is known: EM = 00 || 02 || PS (k-L-3 non-zero octets, at least
 * 8) || 00 || M. No branch depends on the secret bytes; the result is M when the padding is good and
 * `fallback` otherwise, selected with masks.
 */
export function pkcs1v15Unpad(em: Buffer, keyLength: number, fallback: Buffer): Buffer {
  const k = em.length;
  const psEnd = k - keyLength - 1; // index of the 00 separator
  // Public sizes: a modulus too short for L plus 11 octets of padding can never be valid.
  if (psEnd < 10 || fallback.length !== keyLength) return fallback;
  let bad = em[0]! | (em[1]! ^ 0x02) | em[psEnd]!;
  for (let i = 2; i < psEnd; i++) {
    // (x - 1) >> 8 is all ones exactly when x == 0 (x in 0..255): flags a zero octet in PS.
    bad |= ((em[i]! - 1) >> 8) & 0xff;
  }
  // mask = 0xff when bad == 0 (padding good), 0x00 otherwise.
  const mask = ((bad - 1) >> 8) & 0xff;
  const out = Buffer.allocUnsafe(keyLength);
  for (let i = 0; i < keyLength; i++) {
    out[i] = (em[psEnd + 1 + i]! & mask) | (fallback[i]! & ~mask & 0xff);
  }
  return out;
}

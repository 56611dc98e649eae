import { HispError } from '../core/errors.js';

/**
 * The algorithms of the security agent: names used on the command line and in reports, with their
 * OIDs. Strength decisions live here so that every path (sign, verify, encrypt, decrypt) refuses the
 * same things: 3DES and RC2 never (R-ENC-3), MD5 never, SHA-1 only behind the legacy switch
 * (requirements §5.1/§5.7).
 */

export const OID = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  envelopedData: '1.2.840.113549.1.7.3',
  authEnvelopedData: '1.2.840.113549.1.9.16.1.23', // RFC 5083 §1
  // signed attributes (RFC 5652 §11, RFC 6211)
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
  cmsAlgorithmProtection: '1.2.840.113549.1.9.52',
  smimeCapabilities: '1.2.840.113549.1.9.15',
  // digests
  md5: '1.2.840.113549.2.5',
  sha1: '1.3.14.3.2.26',
  sha224: '2.16.840.1.101.3.4.2.4',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
  // signatures
  rsaEncryption: '1.2.840.113549.1.1.1',
  md5WithRSA: '1.2.840.113549.1.1.4',
  sha1WithRSA: '1.2.840.113549.1.1.5',
  sha256WithRSA: '1.2.840.113549.1.1.11',
  sha384WithRSA: '1.2.840.113549.1.1.12',
  sha512WithRSA: '1.2.840.113549.1.1.13',
  sha224WithRSA: '1.2.840.113549.1.1.14',
  rsassaPss: '1.2.840.113549.1.1.10',
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSHA1: '1.2.840.10045.4.1',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  ecdsaWithSHA384: '1.2.840.10045.4.3.3',
  ecdsaWithSHA512: '1.2.840.10045.4.3.4',
  // key transport
  rsaesOaep: '1.2.840.113549.1.1.7',
  mgf1: '1.2.840.113549.1.1.8',
  pSpecified: '1.2.840.113549.1.1.9',
  // content encryption
  aes128CBC: '2.16.840.1.101.3.4.1.2',
  aes192CBC: '2.16.840.1.101.3.4.1.22',
  aes256CBC: '2.16.840.1.101.3.4.1.42',
  aes128GCM: '2.16.840.1.101.3.4.1.6',
  aes192GCM: '2.16.840.1.101.3.4.1.26',
  aes256GCM: '2.16.840.1.101.3.4.1.46',
  desEDE3CBC: '1.2.840.113549.3.7',
  desCBC: '1.3.14.3.2.7',
  rc2CBC: '1.2.840.113549.3.2',
} as const;

// ---------------------------------------------------------------- digests

export type DigestName = 'sha1' | 'sha256' | 'sha384' | 'sha512';
/** Digests hisp signs with: never SHA-1 (R-SIG-4). */
export const SIGNING_DIGESTS = ['sha256', 'sha384', 'sha512'] as const;
export type SigningDigest = (typeof SIGNING_DIGESTS)[number];

const DIGEST_BY_OID: Record<string, DigestName> = {
  [OID.sha1]: 'sha1',
  [OID.sha256]: 'sha256',
  [OID.sha384]: 'sha384',
  [OID.sha512]: 'sha512',
};
export const DIGEST_OID: Record<DigestName, string> = {
  sha1: OID.sha1,
  sha256: OID.sha256,
  sha384: OID.sha384,
  sha512: OID.sha512,
};

/** micalg values of RFC 5751 §3.4.3.2 (RFC 8551 §3.5.3.2 keeps them). */
export const MICALG: Record<DigestName, string> = {
  sha1: 'sha-1',
  sha256: 'sha-256',
  sha384: 'sha-384',
  sha512: 'sha-512',
};

/**
 * Reads a micalg parameter tolerantly: `sha-256` as RFC 5751 writes it and `sha256` as the Java RI
 * writes it. Returns undefined for values we do not know (the signature itself decides then).
 */
export function parseMicalg(value: string): DigestName | 'md5' | undefined {
  const v = value.trim().toLowerCase().replace(/^"|"$/g, '').split(',')[0]?.trim() ?? '';
  const m: Record<string, DigestName | 'md5'> = {
    'sha-1': 'sha1', sha1: 'sha1', 'sha-256': 'sha256', sha256: 'sha256', 'sha-384': 'sha384',
    sha384: 'sha384', 'sha-512': 'sha512', sha512: 'sha512', md5: 'md5',
  };
  return m[v];
}

export interface DigestPolicy {
  /** Admit SHA-1 (never MD5): the legacy switch of requirements §5.7. */
  allowSha1: boolean;
}

/** Maps a digest OID to its name under the policy; throws HISP_CMS_WEAK_ALGORITHM / UNSUPPORTED. */
export function digestFromOid(oid: string, policy: DigestPolicy, what: string): DigestName {
  if (oid === OID.md5) throw new HispError('HISP_CMS_WEAK_ALGORITHM', `${what} uses MD5, which is never accepted`);
  const name = DIGEST_BY_OID[oid];
  if (!name) throw new HispError('HISP_CMS_UNSUPPORTED_ALGORITHM', `${what} uses an unsupported digest (${oid})`);
  if (name === 'sha1' && !policy.allowSha1) {
    throw new HispError(
      'HISP_CMS_WEAK_ALGORITHM',
      `${what} uses SHA-1, refused unless the legacy SHA-1 switch is on (--allow-sha1)`,
    );
  }
  return name;
}

// ---------------------------------------------------------------- signature algorithms

export type SignatureKind = 'rsa' | 'ecdsa';

interface SignatureAlgorithmInfo {
  kind: SignatureKind;
  /** The digest fixed by the OID; undefined for rsaEncryption / id-ecPublicKey where SignerInfo.digestAlgorithm decides. */
  digest?: DigestName | 'md5';
}

const SIGNATURE_BY_OID: Record<string, SignatureAlgorithmInfo> = {
  [OID.rsaEncryption]: { kind: 'rsa' },
  [OID.md5WithRSA]: { kind: 'rsa', digest: 'md5' },
  [OID.sha1WithRSA]: { kind: 'rsa', digest: 'sha1' },
  [OID.sha256WithRSA]: { kind: 'rsa', digest: 'sha256' },
  [OID.sha384WithRSA]: { kind: 'rsa', digest: 'sha384' },
  [OID.sha512WithRSA]: { kind: 'rsa', digest: 'sha512' },
  [OID.ecPublicKey]: { kind: 'ecdsa' },
  [OID.ecdsaWithSHA1]: { kind: 'ecdsa', digest: 'sha1' },
  [OID.ecdsaWithSHA256]: { kind: 'ecdsa', digest: 'sha256' },
  [OID.ecdsaWithSHA384]: { kind: 'ecdsa', digest: 'sha384' },
  [OID.ecdsaWithSHA512]: { kind: 'ecdsa', digest: 'sha512' },
};

export function signatureAlgorithmFromOid(oid: string): SignatureAlgorithmInfo {
  const info = SIGNATURE_BY_OID[oid];
  if (!info) {
    throw new HispError('HISP_CMS_UNSUPPORTED_ALGORITHM', `unsupported signature algorithm (${oid})`);
  }
  return info;
}

/** The signatureAlgorithm OID hisp writes into a SignerInfo (RFC 5754 §3.2, §3.3). */
export function signatureOid(kind: SignatureKind, digest: SigningDigest): string {
  if (kind === 'ecdsa') {
    return { sha256: OID.ecdsaWithSHA256, sha384: OID.ecdsaWithSHA384, sha512: OID.ecdsaWithSHA512 }[digest];
  }
  return { sha256: OID.sha256WithRSA, sha384: OID.sha384WithRSA, sha512: OID.sha512WithRSA }[digest];
}

// ---------------------------------------------------------------- content encryption

export const SEND_CIPHERS = ['aes128-cbc', 'aes256-cbc', 'aes128-gcm', 'aes256-gcm'] as const;
export type SendCipher = (typeof SEND_CIPHERS)[number];
export type CipherName = SendCipher | 'aes192-cbc' | 'aes192-gcm';

export interface CipherInfo {
  name: CipherName;
  oid: string;
  /** node:crypto cipher name */
  node: 'aes-128-cbc' | 'aes-192-cbc' | 'aes-256-cbc' | 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm';
  keyLength: number;
  aead: boolean;
}

const CIPHERS: CipherInfo[] = [
  { name: 'aes128-cbc', oid: OID.aes128CBC, node: 'aes-128-cbc', keyLength: 16, aead: false },
  { name: 'aes192-cbc', oid: OID.aes192CBC, node: 'aes-192-cbc', keyLength: 24, aead: false },
  { name: 'aes256-cbc', oid: OID.aes256CBC, node: 'aes-256-cbc', keyLength: 32, aead: false },
  { name: 'aes128-gcm', oid: OID.aes128GCM, node: 'aes-128-gcm', keyLength: 16, aead: true },
  { name: 'aes192-gcm', oid: OID.aes192GCM, node: 'aes-192-gcm', keyLength: 24, aead: true },
  { name: 'aes256-gcm', oid: OID.aes256GCM, node: 'aes-256-gcm', keyLength: 32, aead: true },
];

export function cipherByName(name: CipherName): CipherInfo {
  const c = CIPHERS.find((x) => x.name === name);
  if (!c) throw new HispError('HISP_USAGE', `unknown cipher ${name}`);
  return c;
}

export function cipherFromOid(oid: string): CipherInfo {
  if (oid === OID.desEDE3CBC || oid === OID.desCBC || oid === OID.rc2CBC) {
    const name = oid === OID.rc2CBC ? 'RC2' : oid === OID.desCBC ? 'DES' : '3DES';
    throw new HispError('HISP_CMS_WEAK_ALGORITHM', `content encryption ${name} is refused (R-ENC-3); use AES`);
  }
  const c = CIPHERS.find((x) => x.oid === oid);
  if (!c) throw new HispError('HISP_CMS_UNSUPPORTED_ALGORITHM', `unsupported content encryption algorithm (${oid})`);
  return c;
}

// ---------------------------------------------------------------- key transport

export const KEY_TRANSPORTS = ['rsa-pkcs1', 'rsa-oaep-sha1', 'rsa-oaep-sha256'] as const;
export type KeyTransportName = (typeof KEY_TRANSPORTS)[number];

/** Defaults on send (requirements §5 decision 2). */
export const DEFAULT_CIPHER: SendCipher = 'aes256-cbc';
export const DEFAULT_KEY_TRANSPORT: KeyTransportName = 'rsa-oaep-sha1';
export const DEFAULT_DIGEST: SigningDigest = 'sha256';

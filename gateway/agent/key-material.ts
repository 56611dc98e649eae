/**
 * Reading private keys and certificates: PEM/DER certificates and keys, and PKCS#12 (PFX) files
 * including the legacy ones of the Java and .NET reference implementations.
 *
 * All cryptography runs on `node:crypto` (hashes, HMAC, PBKDF2, AES/3DES, KeyObjects). The single
 * exception is RC2 (`pbeWithSHAAnd40BitRC2-CBC`, the certificate bag cipher of nearly every legacy
 * PFX): OpenSSL 3 only has it in the legacy provider, which Node does not load, so that one block
 * cipher comes from node-forge. The PKCS#12 structure itself is walked here with asn1js so that
 * certificates come out as their original DER bytes and PKCS#8 keys of any type (RSA, EC, …) reach
 * `crypto.createPrivateKey` unchanged.
 *
 * Error messages name the file (`source`) and what went wrong, never a password or key bytes.
 */
import {
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  pbkdf2Sync,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as asn1js from 'asn1js';
import forge from 'node-forge';
import { Certificate } from '../core/certificate.js';
import { looksLikePem, pemBlocks } from '../core/pem.js';
import { HispError } from '../core/errors.js';

export interface PrivateCredential {
  key: KeyObject;
  certificate: Certificate;
  /** Issuers above the leaf, the leaf's issuer first; may be empty. */
  chain: Certificate[];
}

// ---------------------------------------------------------------------------------------------
// Errors

function label(source: string | undefined): string {
  return source ?? 'input';
}

function unreadable(source: string | undefined, what: string, cause?: unknown): HispError {
  return new HispError('HISP_KEY_UNREADABLE', `${label(source)}: ${what}`, {
    details: source === undefined ? {} : { source },
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Runs `fn`; any error that is not already a HispError becomes HISP_KEY_UNREADABLE (no cause attached). */
function guarded<T>(source: string | undefined, what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof HispError) throw err;
    throw unreadable(source, what);
  }
}

// ---------------------------------------------------------------------------------------------
// PEM (gateway/core/pem.ts)

function decodeBase64Strict(b64: string): Buffer | undefined {
  if (b64.length === 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
  return Buffer.from(b64, 'base64');
}

// ---------------------------------------------------------------------------------------------
// Minimal DER/BER helpers

/** Total length (header + content) of the definite-length TLV at the start of `buf`, or undefined. */
function tlvLength(buf: Buffer): number | undefined {
  if (buf.length < 2) return undefined;
  if (((buf[0] ?? 0) & 0x1f) === 0x1f) return undefined; // high tag numbers: not expected here
  const first = buf[1] ?? 0;
  if (first < 0x80) return 2 + first <= buf.length ? 2 + first : undefined;
  const n = first & 0x7f;
  if (n === 0 || n > 4 || buf.length < 2 + n) return undefined;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + (buf[2 + i] ?? 0);
  const total = 2 + n + len;
  return total <= buf.length ? total : undefined;
}

const BER_LIMITS: asn1js.FromBerOptions = { parseEmbedded: false, maxDepth: 64, maxNodes: 100_000 };

type Asn = ReturnType<typeof asn1js.fromBER>['result'];

class Malformed extends Error {}

function parseBer(bytes: Uint8Array): Asn {
  const res = asn1js.fromBER(bytes, BER_LIMITS);
  if (res.offset === -1 || res.result.error !== '') throw new Malformed('ASN.1');
  return res.result;
}

const UNIVERSAL = 1;
const CONTEXT = 3;

function isTag(node: Asn | undefined, tagClass: number, tagNumber: number): boolean {
  return node !== undefined && node.idBlock.tagClass === tagClass && node.idBlock.tagNumber === tagNumber;
}

/** Children of a constructed node (SEQUENCE, SET, [n] EXPLICIT). */
function children(node: Asn | undefined): Asn[] {
  if (node === undefined || !node.idBlock.isConstructed) throw new Malformed('not constructed');
  const value: unknown = (node.valueBlock as { value?: unknown }).value;
  if (!Array.isArray(value)) throw new Malformed('no children');
  return value as Asn[];
}

function sequence(node: Asn | undefined): Asn[] {
  if (!isTag(node, UNIVERSAL, 16)) throw new Malformed('SEQUENCE expected');
  return children(node);
}

function oid(node: Asn | undefined): string {
  if (!(node instanceof asn1js.ObjectIdentifier)) throw new Malformed('OID expected');
  return node.valueBlock.toString();
}

/** Content octets of a primitive or constructed (BER, chunked) string, whatever its tag. */
function octets(node: Asn | undefined): Buffer {
  if (node === undefined) throw new Malformed('octets expected');
  if (!node.idBlock.isConstructed) {
    const view = (node.valueBlock as { valueHexView?: unknown }).valueHexView;
    if (!(view instanceof Uint8Array)) throw new Malformed('octets expected');
    return Buffer.from(view);
  }
  return Buffer.concat(children(node).map((c) => octets(c)));
}

function octetString(node: Asn | undefined): Buffer {
  if (!isTag(node, UNIVERSAL, 4)) throw new Malformed('OCTET STRING expected');
  return octets(node);
}

/** A small non-negative INTEGER (iteration counts, versions, key lengths). */
function smallInteger(node: Asn | undefined): number {
  if (!(node instanceof asn1js.Integer)) throw new Malformed('INTEGER expected');
  const bytes = node.valueBlock.valueHexView;
  if (bytes.length === 0 || bytes.length > 6 || ((bytes[0] ?? 0) & 0x80) !== 0) {
    throw new Malformed('INTEGER out of range');
  }
  let n = 0;
  for (const b of bytes) n = n * 256 + b;
  return n;
}

/** The contents of `[0] EXPLICIT`. */
function explicit0(node: Asn | undefined): Asn {
  if (!isTag(node, CONTEXT, 0)) throw new Malformed('[0] expected');
  const [inner] = children(node);
  if (inner === undefined) throw new Malformed('[0] empty');
  return inner;
}

/** The exact encoding a node was decoded from. */
function encodingOf(node: Asn): Buffer {
  return Buffer.from(node.valueBeforeDecodeView);
}

// ---------------------------------------------------------------------------------------------
// Certificates

const CERTIFICATE_LABELS = new Set(['CERTIFICATE', 'X509 CERTIFICATE', 'TRUSTED CERTIFICATE']);

function parseCertificate(der: Buffer, source: string | undefined): Certificate {
  try {
    return Certificate.fromDer(der);
  } catch (cause) {
    throw unreadable(source, 'not a valid X.509 certificate', cause);
  }
}

/** PEM (one or many CERTIFICATE blocks, other text ignored) or DER. Throws HispError HISP_KEY_UNREADABLE (message names `source`). */
export function readCertificates(bytes: Buffer, source?: string): Certificate[] {
  return guarded(source, 'not a readable certificate', () => {
    if (bytes.length === 0) throw unreadable(source, 'empty certificate file');
    const out: Certificate[] = [];
    if (looksLikePem(bytes)) {
      for (const block of pemBlocks(bytes)) {
        if (!CERTIFICATE_LABELS.has(block.label)) continue;
        const der = decodeBase64Strict(block.base64);
        if (der === undefined) throw unreadable(source, `bad base64 in ${block.label} block`);
        // TRUSTED CERTIFICATE (OpenSSL) appends trust settings after the certificate.
        const len = tlvLength(der);
        if (len === undefined) throw unreadable(source, 'not a valid X.509 certificate');
        out.push(parseCertificate(block.label === 'TRUSTED CERTIFICATE' ? der.subarray(0, len) : der, source));
      }
      if (out.length === 0) throw unreadable(source, 'no CERTIFICATE block in PEM');
      return out;
    }
    // DER: one certificate, or several concatenated.
    let offset = 0;
    while (offset < bytes.length) {
      const rest = bytes.subarray(offset);
      const len = rest[0] === 0x30 ? tlvLength(rest) : undefined;
      if (len === undefined) throw unreadable(source, 'not a PEM or DER certificate');
      out.push(parseCertificate(Buffer.from(rest.subarray(0, len)), source));
      offset += len;
    }
    return out;
  });
}

// ---------------------------------------------------------------------------------------------
// Private keys

const KEY_LABELS = new Set(['PRIVATE KEY', 'RSA PRIVATE KEY', 'EC PRIVATE KEY', 'ENCRYPTED PRIVATE KEY']);

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** True when `der` is an EncryptedPrivateKeyInfo: SEQUENCE { AlgorithmIdentifier, OCTET STRING }. */
function isEncryptedPkcs8(der: Buffer): boolean {
  try {
    const [alg, data, extra] = sequence(parseBer(der));
    return extra === undefined && isTag(alg, UNIVERSAL, 16) && isTag(data, UNIVERSAL, 4);
  } catch {
    return false;
  }
}

/** Decrypts an EncryptedPrivateKeyInfo with our own PBE (PKCS#12 PBE incl. RC2, PBES2/PBKDF2). */
function decryptPkcs8Ourselves(der: Buffer, password: string): KeyObject | undefined {
  try {
    const [alg, data] = sequence(parseBer(der));
    for (const candidate of passwordCandidates(password)) {
      const plain = pbeDecrypt(alg, octetString(data), candidate);
      if (plain === undefined) continue;
      try {
        return createPrivateKey({ key: plain, format: 'der', type: 'pkcs8' });
      } catch {
        continue;
      }
    }
    return undefined;
  } catch {
    return undefined;
  }
}

function readEncryptedPkcs8(
  create: () => KeyObject,
  der: Buffer | undefined,
  password: string | undefined,
  source: string | undefined,
): KeyObject {
  if (password === undefined) throw unreadable(source, 'the private key is encrypted and needs a password');
  try {
    return create();
  } catch {
    // Node/OpenSSL 3 has no RC2 and no PKCS#12 PBE with an empty BMPString password: try ours.
    const key = der === undefined ? undefined : decryptPkcs8Ourselves(der, password);
    if (key !== undefined) return key;
    throw unreadable(source, 'wrong password or corrupt private key');
  }
}

/** PEM: PRIVATE KEY (PKCS#8), RSA PRIVATE KEY (PKCS#1), EC PRIVATE KEY (SEC1), ENCRYPTED PRIVATE KEY (needs password); DER: PKCS#8, PKCS#1, SEC1 tried in turn. */
export function readPrivateKey(bytes: Buffer, options: { password?: string; source?: string } = {}): KeyObject {
  const { password, source } = options;
  return guarded(source, 'not a readable private key', () => {
    if (bytes.length === 0) throw unreadable(source, 'empty private key file');
    if (looksLikePem(bytes)) {
      const block = pemBlocks(bytes).find((b) => KEY_LABELS.has(b.label));
      if (block === undefined) {
        throw unreadable(source, 'no PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY or ENCRYPTED PRIVATE KEY block in PEM');
      }
      const legacyEncrypted = block.headers.some((h) => /^Proc-Type:\s*4\s*,\s*ENCRYPTED/i.test(h));
      const pem = { key: block.text, format: 'pem' as const };
      if (block.label === 'ENCRYPTED PRIVATE KEY' || legacyEncrypted) {
        const der = block.label === 'ENCRYPTED PRIVATE KEY' ? decodeBase64Strict(block.base64) : undefined;
        return readEncryptedPkcs8(() => createPrivateKey({ ...pem, passphrase: password }), der, password, source);
      }
      try {
        return createPrivateKey(pem);
      } catch {
        throw unreadable(source, `not a valid ${block.label}`);
      }
    }
    if (sniffPkcs12(bytes)) throw unreadable(source, 'is a PKCS#12 (PFX) file, not a bare private key');
    if (isEncryptedPkcs8(bytes)) {
      return readEncryptedPkcs8(
        () => createPrivateKey({ key: bytes, format: 'der', type: 'pkcs8', passphrase: password }),
        bytes,
        password,
        source,
      );
    }
    for (const type of ['pkcs8', 'pkcs1', 'sec1'] as const) {
      try {
        return createPrivateKey({ key: bytes, format: 'der', type });
      } catch (err) {
        if (errorCode(err) === 'ERR_MISSING_PASSPHRASE') {
          throw unreadable(source, 'the private key is encrypted and needs a password');
        }
      }
    }
    throw unreadable(source, 'not a PEM or DER private key (PKCS#8, PKCS#1 or SEC1)');
  });
}

// ---------------------------------------------------------------------------------------------
// PKCS#12 detection

const PKCS7_DATA_OID_DER = Buffer.from('06092a864886f70d010701', 'hex');
const PKCS7_SIGNED_OID_DER = Buffer.from('06092a864886f70d010702', 'hex');

/** Reads a tag+length header at `at`; returns the content offset and length (-1 = indefinite). */
function header(buf: Buffer, at: number): { tag: number; start: number; length: number } | undefined {
  const tag = buf[at];
  const first = buf[at + 1];
  if (tag === undefined || first === undefined) return undefined;
  if (first < 0x80) return { tag, start: at + 2, length: first };
  if (first === 0x80) return { tag, start: at + 2, length: -1 };
  const n = first & 0x7f;
  if (n > 4 || at + 2 + n > buf.length) return undefined;
  let length = 0;
  for (let i = 0; i < n; i++) length = length * 256 + (buf[at + 2 + i] ?? 0);
  return { tag, start: at + 2 + n, length };
}

/** PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo (data or signedData), … } */
function sniffPkcs12(bytes: Buffer): boolean {
  const outer = header(bytes, 0);
  if (outer?.tag !== 0x30) return false;
  const version = header(bytes, outer.start);
  if (version?.tag !== 0x02 || version.length !== 1 || bytes[version.start] !== 3) return false;
  const contentInfo = header(bytes, version.start + 1);
  if (contentInfo?.tag !== 0x30) return false;
  const oidBytes = bytes.subarray(contentInfo.start, contentInfo.start + PKCS7_DATA_OID_DER.length);
  return oidBytes.equals(PKCS7_DATA_OID_DER) || oidBytes.equals(PKCS7_SIGNED_OID_DER);
}

/** True for a PKCS#12 PFX: by file extension .p12/.pfx when given, else by sniffing the ASN.1 (SEQUENCE { INTEGER 3, ContentInfo ... }). */
export function isPkcs12(bytes: Buffer, fileName?: string): boolean {
  if (fileName !== undefined) {
    const ext = path.extname(fileName).toLowerCase();
    if (ext === '.p12' || ext === '.pfx') return true;
  }
  return sniffPkcs12(bytes);
}

// ---------------------------------------------------------------------------------------------
// PKCS#12 key derivation and password-based decryption (RFC 7292 appendix B and C, RFC 8018)

/** Refuses absurd iteration counts (a hostile or corrupted file would otherwise hang the process). */
const MAX_ITERATIONS = 10_000_000;

interface HashSpec {
  name: string;
  /** Output length in bytes. */
  u: number;
  /** Block length in bytes. */
  v: number;
}

const HASHES: Record<string, HashSpec> = {
  '1.3.14.3.2.26': { name: 'sha1', u: 20, v: 64 },
  '2.16.840.1.101.3.4.2.4': { name: 'sha224', u: 28, v: 64 },
  '2.16.840.1.101.3.4.2.1': { name: 'sha256', u: 32, v: 64 },
  '2.16.840.1.101.3.4.2.2': { name: 'sha384', u: 48, v: 128 },
  '2.16.840.1.101.3.4.2.3': { name: 'sha512', u: 64, v: 128 },
};

const HMAC_PRFS: Record<string, string> = {
  '1.2.840.113549.2.7': 'sha1',
  '1.2.840.113549.2.8': 'sha224',
  '1.2.840.113549.2.9': 'sha256',
  '1.2.840.113549.2.10': 'sha384',
  '1.2.840.113549.2.11': 'sha512',
};

const SHA1 = HASHES['1.3.14.3.2.26'] as HashSpec;

/** One way of turning the password into bytes (see {@link passwordCandidates}). */
interface PasswordForm {
  /** For the PKCS#12 KDF: BMPString (UTF-16BE) plus two zero bytes, or empty for "no password". */
  bmp: Buffer;
  /** For PBKDF2 (PBES2): UTF-8. */
  utf8: Buffer;
}

/**
 * The empty password has two encodings in the wild: the BMPString "\0\0" (OpenSSL, .NET, forge) and
 * no bytes at all (Java keytool / BouncyCastle write those). OpenSSL tries both; so do we.
 */
function passwordCandidates(password: string): PasswordForm[] {
  const be = Buffer.from(password, 'utf16le').swap16();
  const bmp = Buffer.concat([be, Buffer.alloc(2)]);
  const utf8 = Buffer.from(password, 'utf8');
  const forms: PasswordForm[] = [{ bmp, utf8 }];
  if (password === '') forms.push({ bmp: Buffer.alloc(0), utf8 });
  return forms;
}

function checkIterations(n: number): number {
  if (n < 1 || n > MAX_ITERATIONS) throw new Malformed('iteration count out of range');
  return n;
}

function repeatTo(data: Buffer, length: number): Buffer {
  const out = Buffer.alloc(length);
  if (data.length === 0) return out;
  for (let i = 0; i < length; i++) out[i] = data[i % data.length] ?? 0;
  return out;
}

/** The PKCS#12 key derivation function (RFC 7292 B.2): id 1 = key, 2 = IV, 3 = MAC key. */
function pkcs12Kdf(hash: HashSpec, password: Buffer, salt: Buffer, id: number, iterations: number, n: number): Buffer {
  const { name, u, v } = hash;
  const d = Buffer.alloc(v, id);
  const i = Buffer.concat([
    repeatTo(salt, v * Math.ceil(salt.length / v)),
    repeatTo(password, v * Math.ceil(password.length / v)),
  ]);
  const out: Buffer[] = [];
  const blocks = Math.ceil(n / u);
  for (let block = 0; block < blocks; block++) {
    let a = createHash(name).update(d).update(i).digest();
    for (let r = 1; r < iterations; r++) a = createHash(name).update(a).digest();
    out.push(a);
    if (block + 1 < blocks) {
      const b = repeatTo(a, v);
      for (let j = 0; j < i.length; j += v) {
        let carry = 1;
        for (let k = v - 1; k >= 0; k--) {
          carry += (i[j + k] ?? 0) + (b[k] ?? 0);
          i[j + k] = carry & 0xff;
          carry >>>= 8;
        }
      }
    }
  }
  return Buffer.concat(out).subarray(0, n);
}

function stripPkcs7Padding(data: Buffer, blockSize: number): Buffer | undefined {
  const pad = data[data.length - 1];
  if (pad === undefined || pad === 0 || pad > blockSize || pad > data.length) return undefined;
  for (let k = data.length - pad; k < data.length; k++) if (data[k] !== pad) return undefined;
  return data.subarray(0, data.length - pad);
}

function nodeDecrypt(cipher: string, key: Buffer, iv: Buffer, data: Buffer): Buffer | undefined {
  try {
    const d = createDecipheriv(cipher, key, iv);
    return Buffer.concat([d.update(data), d.final()]);
  } catch {
    return undefined; // bad padding: wrong key
  }
}

/** RC2-CBC: the one primitive Node (OpenSSL 3 without the legacy provider) lacks. */
function rc2Decrypt(key: Buffer, effectiveBits: number, iv: Buffer, data: Buffer): Buffer | undefined {
  if (data.length === 0 || data.length % 8 !== 0) return undefined;
  const cipher = forge.rc2.createDecryptionCipher(forge.util.createBuffer(key.toString('binary')), effectiveBits);
  cipher.start(forge.util.createBuffer(iv.toString('binary')));
  cipher.update(forge.util.createBuffer(data.toString('binary')));
  if (!cipher.finish(() => true)) return undefined; // keep the padding; checked strictly below
  return stripPkcs7Padding(Buffer.from(cipher.output.getBytes(), 'binary'), 8);
}

/** PKCS#12 PBE schemes (RFC 7292 appendix C), all with SHA-1. */
const PKCS12_PBE: Record<string, { keyLength: number; decrypt: (key: Buffer, iv: Buffer, data: Buffer) => Buffer | undefined }> = {
  // pbeWithSHAAnd3-KeyTripleDES-CBC
  '1.2.840.113549.1.12.1.3': { keyLength: 24, decrypt: (k, iv, d) => nodeDecrypt('des-ede3-cbc', k, iv, d) },
  // pbeWithSHAAnd2-KeyTripleDES-CBC
  '1.2.840.113549.1.12.1.4': { keyLength: 16, decrypt: (k, iv, d) => nodeDecrypt('des-ede-cbc', k, iv, d) },
  // pbeWithSHAAnd128BitRC2-CBC
  '1.2.840.113549.1.12.1.5': { keyLength: 16, decrypt: (k, iv, d) => rc2Decrypt(k, 128, iv, d) },
  // pbeWithSHAAnd40BitRC2-CBC
  '1.2.840.113549.1.12.1.6': { keyLength: 5, decrypt: (k, iv, d) => rc2Decrypt(k, 40, iv, d) },
};

const PBES2_CIPHERS: Record<string, { cipher: string; keyLength: number }> = {
  '2.16.840.1.101.3.4.1.2': { cipher: 'aes-128-cbc', keyLength: 16 },
  '2.16.840.1.101.3.4.1.22': { cipher: 'aes-192-cbc', keyLength: 24 },
  '2.16.840.1.101.3.4.1.42': { cipher: 'aes-256-cbc', keyLength: 32 },
  '1.2.840.113549.3.7': { cipher: 'des-ede3-cbc', keyLength: 24 },
};

const OID_PBES2 = '1.2.840.113549.1.5.13';
const OID_PBKDF2 = '1.2.840.113549.1.5.12';

class UnsupportedAlgorithm extends Error {
  constructor(readonly what: string) {
    super(what);
  }
}

/**
 * Decrypts `data` under the password-based AlgorithmIdentifier `algId`. Returns undefined when the
 * password does not fit (bad padding); throws Malformed / UnsupportedAlgorithm otherwise.
 */
function pbeDecrypt(algId: Asn | undefined, data: Buffer, password: PasswordForm): Buffer | undefined {
  const [algOid, params] = sequence(algId);
  const id = oid(algOid);
  const pkcs12 = PKCS12_PBE[id];
  if (pkcs12 !== undefined) {
    const [salt, iterations] = sequence(params);
    const s = octetString(salt);
    const n = checkIterations(smallInteger(iterations));
    const key = pkcs12Kdf(SHA1, password.bmp, s, 1, n, pkcs12.keyLength);
    const iv = pkcs12Kdf(SHA1, password.bmp, s, 2, n, 8);
    return pkcs12.decrypt(key, iv, data);
  }
  if (id === OID_PBES2) {
    const [kdf, scheme] = sequence(params);
    const [kdfOid, kdfParams] = sequence(kdf);
    if (oid(kdfOid) !== OID_PBKDF2) throw new UnsupportedAlgorithm('key derivation function');
    const [salt, iterations, ...rest] = sequence(kdfParams);
    const s = octetString(salt); // the otherSource CHOICE is unused in practice
    const n = checkIterations(smallInteger(iterations));
    let keyLength: number | undefined;
    let prf = 'sha1';
    for (const field of rest) {
      if (field instanceof asn1js.Integer) keyLength = smallInteger(field);
      else {
        const p = HMAC_PRFS[oid(sequence(field)[0])];
        if (p === undefined) throw new UnsupportedAlgorithm('PBKDF2 pseudo-random function');
        prf = p;
      }
    }
    const [encOid, ivNode] = sequence(scheme);
    const enc = PBES2_CIPHERS[oid(encOid)];
    if (enc === undefined) throw new UnsupportedAlgorithm('PBES2 encryption scheme');
    if (keyLength !== undefined && keyLength !== enc.keyLength) throw new Malformed('PBES2 key length');
    const iv = octetString(ivNode);
    if (iv.length !== (enc.cipher.startsWith('aes') ? 16 : 8)) throw new Malformed('PBES2 IV length');
    const key = pbkdf2Sync(password.utf8, s, n, enc.keyLength, prf);
    return nodeDecrypt(enc.cipher, key, iv, data);
  }
  throw new UnsupportedAlgorithm('password-based encryption algorithm');
}

// ---------------------------------------------------------------------------------------------
// PKCS#12 structure (RFC 7292)

const OID_DATA = '1.2.840.113549.1.7.1';
const OID_SIGNED_DATA = '1.2.840.113549.1.7.2';
const OID_ENVELOPED_DATA = '1.2.840.113549.1.7.3';
const OID_ENCRYPTED_DATA = '1.2.840.113549.1.7.6';
const OID_PBMAC1 = '1.2.840.113549.1.5.14';
const OID_KEY_BAG = '1.2.840.113549.1.12.10.1.1';
const OID_SHROUDED_KEY_BAG = '1.2.840.113549.1.12.10.1.2';
const OID_CERT_BAG = '1.2.840.113549.1.12.10.1.3';
const OID_SAFE_CONTENTS_BAG = '1.2.840.113549.1.12.10.1.6';
const OID_X509_CERTIFICATE = '1.2.840.113549.1.9.22.1';
const OID_LOCAL_KEY_ID = '1.2.840.113549.1.9.21';

interface KeyBag {
  der: Buffer;
  localKeyId: Buffer | undefined;
}
interface CertBag {
  der: Buffer;
  localKeyId: Buffer | undefined;
}
interface Bags {
  keys: KeyBag[];
  certs: CertBag[];
}

class WrongPassword extends Error {}

function localKeyIdOf(attributes: Asn | undefined): Buffer | undefined {
  if (attributes === undefined || !isTag(attributes, UNIVERSAL, 17)) return undefined;
  for (const attr of children(attributes)) {
    const [type, values] = sequence(attr);
    if (oid(type) !== OID_LOCAL_KEY_ID || !isTag(values, UNIVERSAL, 17)) continue;
    const [first] = children(values);
    if (isTag(first, UNIVERSAL, 4)) return octetString(first);
  }
  return undefined;
}

function readSafeContents(der: Buffer, password: PasswordForm, bags: Bags, depth = 0): void {
  if (depth > 4) throw new Malformed('SafeContents nested too deeply');
  for (const safeBag of sequence(parseBer(der))) {
    const [bagId, bagValue, attributes] = sequence(safeBag);
    const type = oid(bagId);
    const value = explicit0(bagValue);
    const localKeyId = localKeyIdOf(attributes);
    switch (type) {
      case OID_KEY_BAG:
        bags.keys.push({ der: encodingOf(value), localKeyId });
        break;
      case OID_SHROUDED_KEY_BAG: {
        const [alg, data] = sequence(value);
        const plain = pbeDecrypt(alg, octetString(data), password);
        if (plain === undefined) throw new WrongPassword();
        bags.keys.push({ der: plain, localKeyId });
        break;
      }
      case OID_CERT_BAG: {
        const [certId, certValue] = sequence(value);
        if (oid(certId) !== OID_X509_CERTIFICATE) break; // SDSI certificates: not ours
        bags.certs.push({ der: octetString(explicit0(certValue)), localKeyId });
        break;
      }
      case OID_SAFE_CONTENTS_BAG:
        readSafeContents(encodingOf(value), password, bags, depth + 1);
        break;
      default:
        break; // CRL and secret bags are of no use here
    }
  }
}

interface ParsedPfx {
  authSafe: Buffer;
  mac: { hash: HashSpec; digest: Buffer; salt: Buffer; iterations: number } | undefined;
}

function parsePfx(bytes: Buffer): ParsedPfx {
  const [version, authSafeInfo, macData] = sequence(parseBer(bytes));
  if (smallInteger(version) !== 3) throw new Malformed('PFX version');
  const [contentType, content] = sequence(authSafeInfo);
  const ct = oid(contentType);
  if (ct === OID_SIGNED_DATA) throw new UnsupportedAlgorithm('public-key integrity mode (signedData)');
  if (ct !== OID_DATA) throw new Malformed('authSafe content type');
  const authSafe = octetString(explicit0(content));
  if (macData === undefined) return { authSafe, mac: undefined };
  const [digestInfo, salt, iterations] = sequence(macData);
  const [digestAlg, digest] = sequence(digestInfo);
  const macOid = oid(sequence(digestAlg)[0]);
  if (macOid === OID_PBMAC1) throw new UnsupportedAlgorithm('PBMAC1 integrity (RFC 9579)');
  const hash = HASHES[macOid];
  if (hash === undefined) throw new UnsupportedAlgorithm('MAC digest algorithm');
  return {
    authSafe,
    mac: {
      hash,
      digest: octetString(digest),
      salt: octetString(salt),
      iterations: iterations === undefined ? 1 : checkIterations(smallInteger(iterations)),
    },
  };
}

function macMatches(pfx: ParsedPfx, password: PasswordForm): boolean {
  const mac = pfx.mac;
  if (mac === undefined) return true;
  const key = pkcs12Kdf(mac.hash, password.bmp, mac.salt, 3, mac.iterations, mac.hash.u);
  const computed = createHmac(mac.hash.name, key).update(pfx.authSafe).digest();
  return computed.length === mac.digest.length && timingSafeEqual(computed, mac.digest);
}

function readBags(pfx: ParsedPfx, password: PasswordForm): Bags {
  const bags: Bags = { keys: [], certs: [] };
  for (const contentInfo of sequence(parseBer(pfx.authSafe))) {
    const [contentType, content] = sequence(contentInfo);
    const ct = oid(contentType);
    if (ct === OID_DATA) {
      readSafeContents(octetString(explicit0(content)), password, bags);
    } else if (ct === OID_ENCRYPTED_DATA) {
      // EncryptedData ::= SEQUENCE { version, EncryptedContentInfo { contentType, algorithm, [0] IMPLICIT data } }
      const [, encryptedContentInfo] = sequence(explicit0(content));
      const [, alg, encrypted] = sequence(encryptedContentInfo);
      if (!isTag(encrypted, CONTEXT, 0)) throw new Malformed('encryptedContent');
      const plain = pbeDecrypt(alg, octets(encrypted), password);
      if (plain === undefined) throw new WrongPassword();
      readSafeContents(plain, password, bags);
    } else if (ct === OID_ENVELOPED_DATA) {
      throw new UnsupportedAlgorithm('public-key privacy mode (envelopedData)');
    } else {
      throw new Malformed('authSafe content type');
    }
  }
  return bags;
}

function publicHalf(key: KeyObject): KeyObject {
  return key.type === 'private' ? createPublicKey(key) : key;
}

/** 'same' / 'different' public keys, or 'unknown' when Node cannot export one of them. */
function relation(key: KeyObject, cert: Certificate): 'same' | 'different' | 'unknown' {
  let a: KeyObject;
  let b: KeyObject;
  try {
    if (key.type === 'secret') return 'different';
    a = publicHalf(key);
    b = cert.publicKey;
    if (a.export({ type: 'spki', format: 'der' }).equals(b.export({ type: 'spki', format: 'der' }))) return 'same';
  } catch {
    return 'unknown';
  }
  // An RSA-PSS key (id-RSASSA-PSS SPKI) and an rsaEncryption certificate can share the modulus.
  const rsa = new Set(['rsa', 'rsa-pss']);
  if (rsa.has(a.asymmetricKeyType ?? '') && rsa.has(b.asymmetricKeyType ?? '')) {
    try {
      const ja = a.export({ format: 'jwk' });
      const jb = b.export({ format: 'jwk' });
      return ja.n === jb.n && ja.e === jb.e ? 'same' : 'different';
    } catch {
      return 'unknown';
    }
  }
  return 'different';
}

/** True when `key` (private or public) is the key of `cert`: the SPKI DER of the public halves are equal. */
export function keyMatchesCertificate(key: KeyObject, cert: Certificate): boolean {
  return relation(key, cert) === 'same';
}

/** Issuers of `leaf` among `pool`, leaf's issuer first, by issuer/subject DER and AKI/SKI. */
function buildChain(leaf: Certificate, pool: readonly Certificate[]): Certificate[] {
  const chain: Certificate[] = [];
  const used = new Set<Certificate>([leaf]);
  let current = leaf;
  while (!current.isSelfIssued) {
    const cur = current;
    const aki = cur.authorityKeyIdentifier;
    const keyIdFits = (c: Certificate): boolean =>
      aki === undefined || c.subjectKeyIdentifier === undefined || aki.equals(c.subjectKeyIdentifier);
    const free = pool.filter((c) => !used.has(c));
    const next =
      free.find((c) => c.subjectDer.equals(cur.issuerDer) && aki !== undefined && c.subjectKeyIdentifier?.equals(aki)) ??
      free.find((c) => c.subjectDer.equals(cur.issuerDer) && keyIdFits(c)) ??
      (aki === undefined ? undefined : free.find((c) => c.subjectKeyIdentifier?.equals(aki)));
    if (next === undefined) break;
    chain.push(next);
    used.add(next);
    current = next;
  }
  return chain;
}

/** Every private key in the PFX with its certificate (matched by public key, falling back to localKeyId) and the chain built from the other certificates (by subject/issuer DER and SKI/AKI). Wrong password → HISP_KEY_UNREADABLE "wrong password or corrupt PKCS#12". */
export function readPkcs12(bytes: Buffer, password: string, source?: string): PrivateCredential[] {
  return guarded(source, 'not a readable PKCS#12 file', () => {
    let pfx: ParsedPfx;
    try {
      pfx = parsePfx(bytes);
    } catch (err) {
      if (err instanceof UnsupportedAlgorithm) throw unreadable(source, `unsupported PKCS#12 feature: ${err.what}`);
      throw unreadable(source, 'not a PKCS#12 file or corrupt');
    }
    let bags: Bags | undefined;
    let failure: unknown;
    for (const candidate of passwordCandidates(password)) {
      if (!macMatches(pfx, candidate)) continue;
      try {
        bags = readBags(pfx, candidate);
        break;
      } catch (err) {
        failure ??= err;
        if (err instanceof UnsupportedAlgorithm) failure = err;
      }
    }
    if (bags === undefined) {
      if (failure instanceof UnsupportedAlgorithm) throw unreadable(source, `unsupported PKCS#12 feature: ${failure.what}`);
      throw unreadable(source, 'wrong password or corrupt PKCS#12');
    }

    const certificates: { cert: Certificate; localKeyId: Buffer | undefined }[] = [];
    for (const bag of bags.certs) {
      const cert = parseCertificate(bag.der, source);
      if (!certificates.some((c) => c.cert.der.equals(cert.der))) certificates.push({ cert, localKeyId: bag.localKeyId });
    }
    const pool = certificates.map((c) => c.cert);

    const credentials: PrivateCredential[] = [];
    for (const bag of bags.keys) {
      let key: KeyObject;
      try {
        key = createPrivateKey({ key: bag.der, format: 'der', type: 'pkcs8' });
      } catch {
        throw unreadable(source, 'contains a private key that cannot be read (not PKCS#8)');
      }
      // By public key; by localKeyId only when the public keys cannot be compared (never against
      // a certificate whose key is known to differ).
      const byKey = pool.find((c) => relation(key, c) === 'same');
      const lk = bag.localKeyId;
      const byId =
        lk === undefined
          ? undefined
          : certificates.find((c) => c.localKeyId?.equals(lk) && relation(key, c.cert) === 'unknown')?.cert;
      const certificate = byKey ?? byId;
      if (certificate === undefined) continue;
      credentials.push({ key, certificate, chain: buildChain(certificate, pool) });
    }
    if (credentials.length === 0) {
      if (bags.keys.length === 0) throw unreadable(source, 'the PKCS#12 file holds no private key');
      throw new HispError('HISP_KEY_MISMATCH', `${label(source)}: no certificate in the PKCS#12 file belongs to its private key`, {
        details: source === undefined ? {} : { source },
      });
    }
    return credentials;
  });
}

// ---------------------------------------------------------------------------------------------
// Pairing and loading

/** Pair a key with a certificate list (leaf first, then chain). Throws HISP_KEY_MISMATCH when the key is not the leaf's. */
export function pairCredential(key: KeyObject, certificates: Certificate[]): PrivateCredential {
  const [leaf, ...chain] = certificates;
  if (leaf === undefined) throw new HispError('HISP_USAGE', 'no certificate to pair the private key with');
  if (key.type !== 'private') throw new HispError('HISP_USAGE', 'pairCredential needs a private key');
  if (!keyMatchesCertificate(key, leaf)) {
    throw new HispError('HISP_KEY_MISMATCH', `the private key does not belong to the certificate ${leaf.subject}`, {
      details: { certificate: leaf.sha256 },
    });
  }
  return { key, certificate: leaf, chain };
}

function readFile(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    const code = errorCode(cause);
    throw new HispError('HISP_IO', `cannot read ${file}${code === undefined ? '' : ` (${code})`}`, { cause });
  }
}

/** All credentials of a key file (a multi-key PFX yields several). */
export function loadCredentials(keyPath: string, certPath: string | undefined, password?: string): PrivateCredential[] {
  const keyBytes = readFile(keyPath);
  const certs = certPath === undefined ? undefined : readCertificates(readFile(certPath), certPath);
  if (isPkcs12(keyBytes, keyPath)) {
    const credentials = readPkcs12(keyBytes, password ?? '', keyPath);
    if (certs === undefined) return credentials;
    // The certificate file picks the key(s); its certificates replace the PFX's when given.
    const [leaf, ...rest] = certs;
    const picked = credentials.filter((c) => leaf !== undefined && keyMatchesCertificate(c.key, leaf));
    if (leaf === undefined || picked.length === 0) {
      throw new HispError('HISP_KEY_MISMATCH', `no private key in ${keyPath} belongs to the certificate in ${certPath ?? ''}`);
    }
    return picked.map((c) => ({ key: c.key, certificate: leaf, chain: rest.length > 0 ? rest : c.chain }));
  }
  if (certs === undefined) {
    throw new HispError('HISP_USAGE', `${keyPath} is not PKCS#12: a certificate file is required with it`);
  }
  return [pairCredential(readPrivateKey(keyBytes, { password, source: keyPath }), certs)];
}

/** Convenience used by the CLI: read a credential from a key file and an optional cert file. If the key file is PKCS#12 (isPkcs12 with the file name) the cert file is optional and the first credential whose certificate matches (or the only one) is returned; `certPath` if given picks which key of a multi-key PFX. Else keyPath is a key and certPath (required, may hold a chain) its certificate(s). Reads files with fs.readFileSync; I/O errors → HispError HISP_IO. */
export function loadCredential(keyPath: string, certPath: string | undefined, password?: string): PrivateCredential {
  const [first] = loadCredentials(keyPath, certPath, password);
  if (first === undefined) throw new HispError('HISP_KEY_UNREADABLE', `${keyPath}: no credential`);
  return first;
}

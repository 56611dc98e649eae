// Certificates made to order for the trust tests (mutation testing, docs/testing.md): each test
// states the one property it is about (validity dates, a subject emailAddress, basicConstraints,
// keyUsage, key size, signature algorithm) on an otherwise good path. @peculiar/x509 over
// node:crypto's WebCrypto; EC P-256 keys by default (fast), RSA when a test is about RSA sizes.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { Certificate } from '../../gateway/core/certificate.js';

x509.cryptoProvider.set(webcrypto);

export type KeySpec = { kind: 'ec' } | { kind: 'rsa'; bits: number };
export type Digest = 'SHA-256' | 'SHA-1';

export interface MadeCertificate {
  cert: Certificate;
  keys: webcrypto.CryptoKeyPair;
  /** The key's algorithm, to sign with it. */
  algorithm: webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams;
  subject: string;
}

export interface CertSpec {
  /** RFC 4514 string, e.g. `CN=leaf, E=a@b.test` (E is the PKCS#9 emailAddress). */
  subject: string;
  /** The issuer; absent: self-signed. */
  issuer?: MadeCertificate;
  key?: KeySpec;
  /** Default: a day ago. */
  notBefore?: Date;
  /** Default: in a year. */
  notAfter?: Date;
  /** `true`/`false`: basicConstraints cA; a number: cA with that pathLenConstraint; `null`: no extension. */
  ca?: boolean | number | null;
  /** keyUsage bits (x509.KeyUsageFlags); `null`: no extension. Default: CA keyCertSign|cRLSign, leaf digitalSignature|keyEncipherment. */
  keyUsage?: number | null;
  /** subjectAltName rfc822Names. */
  emails?: readonly string[];
  /** subjectAltName dNSNames. */
  dnsNames?: readonly string[];
  /** Hash of the issuer's signature; default SHA-256. */
  digest?: Digest;
  /** AIA caIssuers URLs (R-TRU-4). */
  caIssuers?: readonly string[];
  /** CRL distribution point URLs (R-TRU-3). */
  crlUrls?: readonly string[];
  /** Put SKI and AKI extensions; default true. */
  keyIds?: boolean;
  /** The key to certify (default: a new one of `key`). */
  keys?: webcrypto.CryptoKeyPair;
}

let serial = 0x5000;

function keyAlgorithm(spec: KeySpec, digest: Digest): webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams {
  if (spec.kind === 'ec') return { name: 'ECDSA', namedCurve: 'P-256', hash: digest };
  return { name: 'RSASSA-PKCS1-v1_5', modulusLength: spec.bits, publicExponent: new Uint8Array([1, 0, 1]), hash: digest };
}

/** A certificate as `spec` says, signed by its issuer (or itself). */
export async function makeCertificate(spec: CertSpec): Promise<MadeCertificate> {
  const keySpec = spec.key ?? { kind: 'ec' };
  const algorithm = keyAlgorithm(keySpec, 'SHA-256');
  const keys = spec.keys ?? (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']));
  const now = Date.now();
  const isCa = spec.ca === undefined ? false : spec.ca;
  const extensions: x509.Extension[] = [];
  if (isCa !== null) {
    extensions.push(
      typeof isCa === 'number' ? new x509.BasicConstraintsExtension(true, isCa, true) : new x509.BasicConstraintsExtension(isCa, undefined, true),
    );
  }
  const defaultUsage =
    isCa === true || typeof isCa === 'number'
      ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign
      : x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment;
  const usage = spec.keyUsage === undefined ? defaultUsage : spec.keyUsage;
  if (usage !== null) extensions.push(new x509.KeyUsagesExtension(usage, true));
  const san = [...(spec.emails ?? []).map((value) => ({ type: 'email' as const, value })), ...(spec.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value }))];
  if (san.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(san));
  if (spec.caIssuers?.length) extensions.push(new x509.AuthorityInfoAccessExtension({ caIssuers: spec.caIssuers.map((url) => new x509.GeneralName('url', url)) }));
  if (spec.crlUrls?.length) extensions.push(new x509.CRLDistributionPointsExtension([...spec.crlUrls]));
  if (spec.keyIds ?? true) {
    extensions.push(await x509.SubjectKeyIdentifierExtension.create(keys.publicKey));
    if (spec.issuer) extensions.push(await x509.AuthorityKeyIdentifierExtension.create(spec.issuer.keys.publicKey));
  }
  const signer = spec.issuer ?? { keys, algorithm };
  const digest = spec.digest ?? 'SHA-256';
  const signingAlgorithm = { ...signer.algorithm, hash: digest };
  // RSASSA-PKCS1-v1_5 signs with the hash its key was made for: another hash needs the key again.
  const signingKey =
    signer.algorithm.name === 'ECDSA' || digest === 'SHA-256'
      ? signer.keys.privateKey
      : await webcrypto.subtle.importKey('pkcs8', await webcrypto.subtle.exportKey('pkcs8', signer.keys.privateKey), signingAlgorithm, false, ['sign']);
  const common = {
    serialNumber: (serial++).toString(16).padStart(6, '0'),
    notBefore: spec.notBefore ?? new Date(now - 86_400_000),
    notAfter: spec.notAfter ?? new Date(now + 365 * 86_400_000),
    signingAlgorithm,
    extensions,
  };
  const made = spec.issuer
    ? await x509.X509CertificateGenerator.create({
        ...common,
        subject: spec.subject,
        issuer: spec.issuer.subject,
        publicKey: keys.publicKey,
        signingKey,
      })
    : await x509.X509CertificateGenerator.createSelfSigned({ ...common, name: spec.subject, keys: { publicKey: keys.publicKey, privateKey: signingKey } });
  return { cert: Certificate.fromDer(Buffer.from(made.rawData)), keys, algorithm, subject: spec.subject };
}

/** A root CA, an intermediate under it, and nothing else: the usual top of a test path. */
export async function makeCaPair(prefix = 'Factory'): Promise<{ root: MadeCertificate; intermediate: MadeCertificate }> {
  // Valid over every validation time the tests use (2020–2049), so that only the leaf's dates matter.
  const validity = { notBefore: new Date('2020-01-01T00:00:00Z'), notAfter: new Date('2049-12-31T00:00:00Z') };
  const root = await makeCertificate({ subject: `CN=${prefix} Root CA`, ca: true, ...validity });
  const intermediate = await makeCertificate({ subject: `CN=${prefix} Intermediate CA`, issuer: root, ca: true, ...validity });
  return { root, intermediate };
}

/** keyUsage bits for {@link CertSpec.keyUsage} (so that tests need not load @peculiar/x509 themselves). */
export const KeyUsageFlags = x509.KeyUsageFlags;

import { KEY_USAGE_BITS, type Certificate, type KeyUsage } from '../core/certificate.js';
import { DirectAddress } from '../core/direct-address.js';
import { HispError } from '../core/errors.js';
import type { CertificatePurpose } from '../trust/chain-validator.js';
import type { RevocationMode } from '../trust/revocation.js';

/**
 * The certificate policy of a local domain: what, beyond a valid path to an anchor, a certificate
 * must offer before the domain signs for it, encrypts to it or accepts it (R-CRT-4, R-ENC-4,
 * requirements §5.1/§5.5/§5.7): required key usages, minimum RSA size, allowed certificate signature
 * algorithms, the SHA-1 legacy switch, the revocation mode, and the Blue Button+ patient-directed
 * switch. {@link applyPolicy} judges a candidate path and names the rule it breaks (HISP_TRUST_POLICY).
 */

export interface BlueButtonPlusPolicy {
  /**
   * Requirements §5.5: off by default. When on, patient-directed sends may go to any discoverable
   * certificate that is well-formed, unexpired and unrevoked, without an anchor.
   */
  enabled: boolean;
  /** Demand that the recipient certificate came from a DNSSEC-validated DNS answer (AD bit). */
  requireDnssec: boolean;
}

export interface CertificatePolicy {
  /** Key usages the leaf must assert explicitly (the extension present and the bits set), per purpose. */
  requiredKeyUsage: Readonly<Record<CertificatePurpose, readonly KeyUsage[]>>;
  /** Minimum RSA modulus for every certificate of the path (R-ENC-4); default 2048. */
  minRsaBits: number;
  /**
   * Certificate signature algorithms accepted on every certificate whose signature the decision
   * relies on (the anchor's own is not), as OIDs. SHA-1 ones count only with {@link allowSha1}.
   */
  allowedSignatureAlgorithms: readonly string[];
  /** The SHA-1 legacy switch (requirements §5.7): certificate, CRL, bundle and message digests. */
  allowSha1: boolean;
  /** When a CRL cannot be had: 'soft-fail' (default, as the RIs), 'hard-fail' or 'off'. */
  revocation: RevocationMode;
  blueButtonPlus: Readonly<BlueButtonPlusPolicy>;
}

/** Names (as OpenSSL prints them) and OIDs of the certificate signature algorithms a policy may list. */
export const SIGNATURE_ALGORITHMS = {
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  sha224WithRSAEncryption: '1.2.840.113549.1.1.14',
  rsassaPss: '1.2.840.113549.1.1.10',
  'ecdsa-with-SHA256': '1.2.840.10045.4.3.2',
  'ecdsa-with-SHA384': '1.2.840.10045.4.3.3',
  'ecdsa-with-SHA512': '1.2.840.10045.4.3.4',
  sha1WithRSAEncryption: '1.2.840.113549.1.1.5',
  'ecdsa-with-SHA1': '1.2.840.10045.4.1',
  'dsa-with-SHA1': '1.2.840.10040.4.3',
  sha1WithRSASignature: '1.3.14.3.2.29',
} as const;
export type SignatureAlgorithmName = keyof typeof SIGNATURE_ALGORITHMS;

const SHA1_ALGORITHMS = new Set<string>([
  SIGNATURE_ALGORITHMS.sha1WithRSAEncryption,
  SIGNATURE_ALGORITHMS['ecdsa-with-SHA1'],
  SIGNATURE_ALGORITHMS['dsa-with-SHA1'],
  SIGNATURE_ALGORITHMS.sha1WithRSASignature,
]);
const NEVER = new Map<string, string>([
  ['1.2.840.113549.1.1.4', 'md5WithRSAEncryption'],
  ['1.2.840.113549.1.1.3', 'md4WithRSAEncryption'],
  ['1.2.840.113549.1.1.2', 'md2WithRSAEncryption'],
  ['1.3.14.3.2.3', 'md5WithRSA (OIW)'],
]);
const NAME_BY_OID = new Map<string, string>([
  ...Object.entries(SIGNATURE_ALGORITHMS).map(([name, oid]) => [oid, name] as [string, string]),
  ...NEVER,
]);

export const DEFAULT_CERTIFICATE_POLICY: CertificatePolicy = Object.freeze({
  requiredKeyUsage: Object.freeze({ signing: [], encryption: [] }),
  minRsaBits: 2048,
  allowedSignatureAlgorithms: Object.freeze([
    SIGNATURE_ALGORITHMS.sha256WithRSAEncryption,
    SIGNATURE_ALGORITHMS.sha384WithRSAEncryption,
    SIGNATURE_ALGORITHMS.sha512WithRSAEncryption,
    SIGNATURE_ALGORITHMS.rsassaPss,
    SIGNATURE_ALGORITHMS['ecdsa-with-SHA256'],
    SIGNATURE_ALGORITHMS['ecdsa-with-SHA384'],
    SIGNATURE_ALGORITHMS['ecdsa-with-SHA512'],
    SIGNATURE_ALGORITHMS.sha1WithRSAEncryption,
    SIGNATURE_ALGORITHMS['ecdsa-with-SHA1'],
    SIGNATURE_ALGORITHMS.sha1WithRSASignature,
  ]),
  allowSha1: false,
  revocation: 'soft-fail',
  blueButtonPlus: Object.freeze({ enabled: false, requireDnssec: false }),
});

/** A partial policy as configuration gives it (names or OIDs for algorithms). */
export interface CertificatePolicyInput {
  requiredKeyUsage?: Partial<Record<CertificatePurpose, readonly KeyUsage[]>>;
  minRsaBits?: number;
  /** {@link SignatureAlgorithmName}s or dotted OIDs. */
  allowedSignatureAlgorithms?: readonly string[];
  allowSha1?: boolean;
  revocation?: RevocationMode;
  blueButtonPlus?: Partial<BlueButtonPlusPolicy>;
}

function usage(message: string): HispError {
  return new HispError('HISP_USAGE', `certificate policy: ${message}`);
}

/** `input` over `base` (default the built-in defaults), checked. Throws HISP_USAGE on bad values. */
export function resolvePolicy(input: CertificatePolicyInput = {}, base: CertificatePolicy = DEFAULT_CERTIFICATE_POLICY): CertificatePolicy {
  const minRsaBits = input.minRsaBits ?? base.minRsaBits;
  if (!Number.isInteger(minRsaBits) || minRsaBits < 1024 || minRsaBits > 16384) {
    throw usage(`minRsaBits must be an integer between 1024 and 16384 (got ${String(minRsaBits)})`);
  }
  const revocation = input.revocation ?? base.revocation;
  if (!['soft-fail', 'hard-fail', 'off'].includes(revocation)) throw usage(`unknown revocation mode ${String(revocation)}`);
  const requiredKeyUsage = {
    signing: [...(input.requiredKeyUsage?.signing ?? base.requiredKeyUsage.signing)],
    encryption: [...(input.requiredKeyUsage?.encryption ?? base.requiredKeyUsage.encryption)],
  };
  for (const u of [...requiredKeyUsage.signing, ...requiredKeyUsage.encryption]) {
    if (!(KEY_USAGE_BITS as readonly string[]).includes(u)) throw usage(`unknown key usage ${String(u)}`);
  }
  const algorithms = (input.allowedSignatureAlgorithms ?? base.allowedSignatureAlgorithms).map((a) => {
    const oid = /^\d+(\.\d+)+$/.test(a) ? a : (SIGNATURE_ALGORITHMS as Record<string, string>)[a];
    if (oid === undefined) throw usage(`unknown signature algorithm ${a}`);
    if (NEVER.has(oid)) throw usage(`${NEVER.get(oid)} is never allowed`);
    return oid;
  });
  return Object.freeze({
    requiredKeyUsage: Object.freeze(requiredKeyUsage),
    minRsaBits,
    allowedSignatureAlgorithms: Object.freeze([...new Set(algorithms)]),
    allowSha1: input.allowSha1 ?? base.allowSha1,
    revocation,
    blueButtonPlus: Object.freeze({
      enabled: input.blueButtonPlus?.enabled ?? base.blueButtonPlus.enabled,
      requireDnssec: input.blueButtonPlus?.requireDnssec ?? base.blueButtonPlus.requireDnssec,
    }),
  });
}

/** Policies per local domain, with a default for domains not configured. */
export class PolicyStore {
  private readonly domains = new Map<string, CertificatePolicy>();
  readonly defaults: CertificatePolicy;

  constructor(defaults: CertificatePolicyInput = {}) {
    this.defaults = resolvePolicy(defaults);
  }

  /** Sets a domain's policy: `input` over the store's defaults. */
  set(domain: string, input: CertificatePolicyInput): CertificatePolicy {
    const policy = resolvePolicy(input, this.defaults);
    this.domains.set(normalizeDomain(domain), policy);
    return policy;
  }

  /** The policy of a local domain, or of the domain of a local address. */
  policyFor(addressOrDomain: string | DirectAddress): CertificatePolicy {
    const domain = addressOrDomain instanceof DirectAddress ? addressOrDomain.domain : normalizeDomain(addressOrDomain);
    return this.domains.get(domain) ?? this.defaults;
  }
}

function normalizeDomain(value: string): string {
  const v = value.trim();
  return v.includes('@') ? DirectAddress.parse(v).domain : v.toLowerCase().replace(/\.$/, '');
}

/** The rule a refused candidate breaks (in HispError details.rule). */
export type PolicyRule = 'key-usage' | 'key-size' | 'signature-algorithm' | 'blue-button-plus' | 'dnssec';

export interface PolicyCandidate {
  /** Leaf first; for an anchored path the anchor last. */
  path: readonly Certificate[];
  /** True when the last certificate of `path` is a trust anchor (its own signature is not relied on). */
  anchored: boolean;
  purpose: CertificatePurpose;
}

function refused(rule: PolicyRule, cert: Certificate, reason: string): HispError {
  return new HispError('HISP_TRUST_POLICY', `${cert.subject}: ${reason}`, {
    details: { rule, subject: cert.subject, sha256: cert.sha256 },
  });
}

/** The signature algorithms `policy` accepts, SHA-1 ones only with the legacy switch. */
export function acceptedSignatureAlgorithms(policy: CertificatePolicy): Set<string> {
  return new Set(policy.allowedSignatureAlgorithms.filter((oid) => policy.allowSha1 || !SHA1_ALGORITHMS.has(oid)));
}

/**
 * Applies the policy to a candidate path; returns undefined when it passes, else the HispError
 * (HISP_TRUST_POLICY, details.rule) of the first rule it breaks. Validity, chain structure and
 * revocation are the TrustValidator's: this judges what a valid certificate must also offer.
 */
export function applyPolicy(policy: CertificatePolicy, candidate: PolicyCandidate): HispError | undefined {
  const leaf = candidate.path[0];
  if (!leaf) return new HispError('HISP_USAGE', 'applyPolicy: empty path');
  for (const u of policy.requiredKeyUsage[candidate.purpose]) {
    if (!leaf.keyUsage?.has(u)) {
      return refused('key-usage', leaf, leaf.keyUsage ? `lacks the ${u} key usage the domain's policy requires` : `has no keyUsage extension; the domain's policy requires ${u}`);
    }
  }
  for (const cert of candidate.path) {
    if (cert.publicKey.asymmetricKeyType === 'rsa' && cert.publicKeyBits < policy.minRsaBits) {
      return refused('key-size', cert, `RSA-${cert.publicKeyBits} key; the domain's policy requires at least ${policy.minRsaBits} bits`);
    }
  }
  const relied = candidate.anchored ? candidate.path.slice(0, -1) : candidate.path.slice(0, 1);
  const accepted = acceptedSignatureAlgorithms(policy);
  for (const cert of relied) {
    if (!accepted.has(cert.signatureAlgorithmOid)) {
      const name = NAME_BY_OID.get(cert.signatureAlgorithmOid) ?? cert.signatureAlgorithmOid;
      const why = SHA1_ALGORITHMS.has(cert.signatureAlgorithmOid) && !policy.allowSha1 ? ' (SHA-1 needs the legacy switch)' : '';
      return refused('signature-algorithm', cert, `signed with ${name}, not allowed by the domain's policy${why}`);
    }
  }
  return undefined;
}

/** {@link applyPolicy} that throws its refusal. */
export function checkPolicy(policy: CertificatePolicy, candidate: PolicyCandidate): void {
  const refusal = applyPolicy(policy, candidate);
  if (refusal) throw refusal;
}

/** The TrustValidator options a policy implies. */
export function validationSettings(policy: CertificatePolicy): { allowSha1: boolean; minRsaBits: number; revocation: RevocationMode } {
  return { allowSha1: policy.allowSha1, minRsaBits: policy.minRsaBits, revocation: policy.revocation };
}

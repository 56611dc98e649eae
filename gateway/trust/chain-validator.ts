import type { Certificate, KeyUsage } from '../core/certificate.js';
import { HispError, type HispErrorCode } from '../core/errors.js';

/** Why a certificate is needed: signing (inbound signer) or encryption (outbound recipient). */
export type CertificatePurpose = 'signing' | 'encryption';

export interface ChainValidationOptions {
  /** Trust anchors: roots, intermediates or pinned end-entity certificates (R-TRU-1). */
  anchors: readonly Certificate[];
  /** Untrusted certificates that may complete a path (those carried in the SignedData, AIA later). */
  intermediates?: readonly Certificate[];
  /** Validation time; default now. */
  at?: Date;
  purpose: CertificatePurpose;
  /** The SHA-1 legacy switch (requirements §5.7) for certificate signatures. MD5 never. */
  allowSha1?: boolean;
  /** Minimum RSA modulus in bits (R-ENC-4); default 2048. */
  minRsaBits?: number;
}

export interface ValidatedChain {
  /** leaf first, anchor last (a pinned leaf yields a path of one). */
  path: Certificate[];
  anchor: Certificate;
}

const MAX_PATH = 8;
/** MD2, MD4 and MD5 with RSA (PKCS#1 and the OIW md5WithRSA of old makecert/Windows certificates): never. */
const MD_SIGNATURES = new Set(['1.2.840.113549.1.1.2', '1.2.840.113549.1.1.3', '1.2.840.113549.1.1.4', '1.3.14.3.2.3']);
/**
 * SHA-1 signatures: RSA, ECDSA, DSA, and the OIW forms (1.3.14.3.2.29 sha1WithRSASignature, which the
 * .NET RI's makecert chains use; 1.3.14.3.2.27 dsaWithSHA1; 1.3.14.3.2.13 sha-1WithDSA).
 */
const SHA1_SIGNATURES = new Set([
  '1.2.840.113549.1.1.5',
  '1.2.840.10045.4.1',
  '1.2.840.10040.4.3',
  '1.3.14.3.2.29',
  '1.3.14.3.2.27',
  '1.3.14.3.2.13',
]);
/** The key usage a leaf must assert (when it has the extension) for each purpose (R-CRT-4). */
export const REQUIRED_LEAF_USAGE: Readonly<Record<CertificatePurpose, KeyUsage>> = {
  signing: 'digitalSignature',
  encryption: 'keyEncipherment',
};

/** Ranks failure codes: when every candidate path fails, the most specific reason is reported. */
const SPECIFICITY: HispErrorCode[] = [
  'HISP_TRUST_NO_ANCHOR',
  'HISP_TRUST_BAD_SIGNATURE',
  'HISP_TRUST_WEAK_SIGNATURE',
  'HISP_TRUST_WEAK_KEY',
  'HISP_TRUST_KEY_USAGE',
  'HISP_TRUST_BASIC_CONSTRAINTS',
  'HISP_TRUST_EXPIRED',
];

/**
 * Builds and validates a certification path from `leaf` to one of the anchors: the subset of RFC 5280
 * §6 that Direct needs (AS §4, R-TRU-2): signatures, validity at `at`, basicConstraints and pathLen,
 * keyUsage (keyCertSign for issuers, digitalSignature or keyEncipherment for the leaf), RSA keys of at
 * least 2048 bits, and the SHA-1/MD5 policy on certificate signatures. An anchor may be any certificate
 * of the path, the leaf included (pinning), as the RIs allow. Synchronous and offline: revocation
 * and AIA fetching are added by TrustValidator (trust-validator.ts). Throws HispError HISP_TRUST_*.
 */
export function validateChain(leaf: Certificate, options: ChainValidationOptions): ValidatedChain {
  const at = options.at ?? new Date();
  const pool = [...(options.intermediates ?? [])];
  let best: HispError | undefined;
  const consider = (e: HispError) => {
    if (!best || SPECIFICITY.indexOf(e.code) > SPECIFICITY.indexOf(best.code)) best = e;
  };

  const isAnchor = (c: Certificate) => options.anchors.some((a) => a.der.equals(c.der));

  // Depth-first search over issuer candidates; each complete path is then checked as a whole.
  const search = (path: Certificate[]): ValidatedChain | undefined => {
    const top = path[path.length - 1]!;
    if (isAnchor(top)) {
      try {
        checkPath(path, at, options);
        return { path, anchor: top };
      } catch (e) {
        // A candidate that makes the crypto layer throw (an undecodable key, say) is just a failed path.
        consider(e instanceof HispError ? e : new HispError('HISP_TRUST_BAD_SIGNATURE', `unusable certificate in the path: ${(e as Error).message}`));
        return undefined;
      }
    }
    if (path.length >= MAX_PATH || top.isSelfIssued) return undefined;
    const candidates = [...options.anchors, ...pool].filter(
      (c) => c.subjectDer.equals(top.issuerDer) && !path.some((p) => p.der.equals(c.der)) && keyIdsAgree(top, c),
    );
    for (const issuer of candidates) {
      const found = search([...path, issuer]);
      if (found) return found;
    }
    return undefined;
  };

  const result = search([leaf]);
  if (result) return result;
  throw (
    best ??
    new HispError('HISP_TRUST_NO_ANCHOR', `no path from ${leaf.subject} to a trust anchor`, {
      details: { subject: leaf.subject, issuer: leaf.issuer },
    })
  );
}

/** AKI/SKI disagreement rules a candidate out early (RFC 5280 §4.2.1.1); absence never does. */
function keyIdsAgree(child: Certificate, issuer: Certificate): boolean {
  if (!child.authorityKeyIdentifier || !issuer.subjectKeyIdentifier) return true;
  return child.authorityKeyIdentifier.equals(issuer.subjectKeyIdentifier);
}

function checkPath(path: Certificate[], at: Date, options: ChainValidationOptions): void {
  const minRsa = options.minRsaBits ?? 2048;
  const leaf = path[0]!;
  const roleOf = (i: number) => (i === 0 ? 'the certificate' : i === path.length - 1 ? 'the anchor' : 'an intermediate');
  // Structure first (signatures, CA flags), so that a malformed chain is reported as such and not
  // merely for a weaker symptom such as small keys (the .NET RI chain without basicConstraints).
  path.forEach((cert, i) => {
    const issuer = path[i + 1];
    if (!issuer) return; // the anchor's own signature is not checked: it is trusted as configured
    checkSignatureAlgorithm(cert, options.allowSha1 ?? false);
    if (!cert.isSignedBy(issuer)) {
      throw new HispError('HISP_TRUST_BAD_SIGNATURE', `the signature of ${cert.subject} does not verify with ${issuer.subject}`);
    }
    // RFC 5280 §6.1.4 (k): an issuer must be a CA; v3 certificates without basicConstraints are not.
    const bc = issuer.basicConstraints;
    if (!bc?.ca) {
      throw new HispError(
        'HISP_TRUST_BASIC_CONSTRAINTS',
        `${issuer.subject} issues ${cert.subject} but is not a CA (basicConstraints ${bc ? 'CA:FALSE' : 'absent'})`,
      );
    }
    // pathLenConstraint counts the non-self-issued intermediates below the issuer (RFC 5280 §4.2.1.9).
    const below = path.slice(1, i + 1).filter((c) => !c.isSelfIssued).length;
    if (bc.pathLenConstraint !== undefined && below > bc.pathLenConstraint) {
      throw new HispError('HISP_TRUST_BASIC_CONSTRAINTS', `${issuer.subject} allows a path length of ${bc.pathLenConstraint}`);
    }
    if (issuer.keyUsage && !issuer.keyUsage.has('keyCertSign')) {
      throw new HispError('HISP_TRUST_KEY_USAGE', `${issuer.subject} lacks keyCertSign`);
    }
  });
  path.forEach((cert, i) => {
    if (!cert.isValidAt(at)) {
      throw new HispError(
        'HISP_TRUST_EXPIRED',
        `${roleOf(i)} ${cert.subject} is not valid at ${at.toISOString()} (${cert.notBefore.toISOString()} – ${cert.notAfter.toISOString()})`,
      );
    }
    if (cert.publicKey.asymmetricKeyType === 'rsa' && cert.publicKeyBits < minRsa) {
      throw new HispError(
        'HISP_TRUST_WEAK_KEY',
        `${roleOf(i)} ${cert.subject} has an RSA-${cert.publicKeyBits} key; at least ${minRsa} bits are required (R-ENC-4)`,
      );
    }
  });
  const usage = REQUIRED_LEAF_USAGE[options.purpose];
  // RFC 5280 §4.2.1.3: without the extension the key is unrestricted; with it the bit must be set (R-CRT-4).
  if (leaf.keyUsage && !leaf.keyUsage.has(usage)) {
    throw new HispError('HISP_TRUST_KEY_USAGE', `${leaf.subject} lacks the ${usage} key usage needed for ${options.purpose}`);
  }
}

/** The SHA-1/MD5 policy on a certificate's signature (requirements §5.7); throws HISP_TRUST_WEAK_SIGNATURE. */
export function checkSignatureAlgorithm(cert: Certificate, allowSha1: boolean): void {
  const oid = cert.signatureAlgorithmOid;
  if (MD_SIGNATURES.has(oid)) {
    throw new HispError('HISP_TRUST_WEAK_SIGNATURE', `${cert.subject} is signed with MD5/MD2, never accepted`);
  }
  if (SHA1_SIGNATURES.has(oid) && !allowSha1) {
    throw new HispError(
      'HISP_TRUST_WEAK_SIGNATURE',
      `${cert.subject} is signed with SHA-1, refused unless the legacy SHA-1 switch is on (--allow-sha1)`,
    );
  }
}

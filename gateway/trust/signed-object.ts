import { constants, verify, type KeyObject } from 'node:crypto';
import { HispError, type HispErrorCode } from '../core/errors.js';
import { OID } from '../agent/algorithms.js';
import { children, decodeBer, isContext, readAlgorithm, readInteger, type Node } from '../agent/asn1.js';

/**
 * Verification of an X.509 "signed object" (a CRL here: RFC 5280 §5.1.1.2-3) with node:crypto:
 * the received tbs bytes, the outer signatureAlgorithm and the signature value, against the issuer
 * key. The algorithm policy is the one of certificate signatures (requirements §5.7): SHA-2 with RSA,
 * RSASSA-PSS or ECDSA; SHA-1 only with the legacy switch; MD5 and MD2 never.
 */

type Digest = 'sha1' | 'sha224' | 'sha256' | 'sha384' | 'sha512';

const BY_OID: Record<string, { kind: 'rsa' | 'ecdsa'; digest: Digest | 'md5' }> = {
  [OID.md5WithRSA]: { kind: 'rsa', digest: 'md5' },
  '1.2.840.113549.1.1.2': { kind: 'rsa', digest: 'md5' }, // md2WithRSAEncryption: as weak, never accepted
  [OID.sha1WithRSA]: { kind: 'rsa', digest: 'sha1' },
  '1.3.14.3.2.29': { kind: 'rsa', digest: 'sha1' }, // OIW sha1WithRSASignature
  '1.3.14.3.2.3': { kind: 'rsa', digest: 'md5' }, // OIW md5WithRSA
  '1.2.840.113549.1.1.3': { kind: 'rsa', digest: 'md5' }, // md4WithRSAEncryption: as weak, never accepted
  [OID.sha224WithRSA]: { kind: 'rsa', digest: 'sha224' },
  [OID.sha256WithRSA]: { kind: 'rsa', digest: 'sha256' },
  [OID.sha384WithRSA]: { kind: 'rsa', digest: 'sha384' },
  [OID.sha512WithRSA]: { kind: 'rsa', digest: 'sha512' },
  [OID.ecdsaWithSHA1]: { kind: 'ecdsa', digest: 'sha1' },
  '1.2.840.10045.4.3.1': { kind: 'ecdsa', digest: 'sha224' },
  [OID.ecdsaWithSHA256]: { kind: 'ecdsa', digest: 'sha256' },
  [OID.ecdsaWithSHA384]: { kind: 'ecdsa', digest: 'sha384' },
  [OID.ecdsaWithSHA512]: { kind: 'ecdsa', digest: 'sha512' },
};

const DIGEST_OIDS: Record<string, Digest> = {
  [OID.sha1]: 'sha1',
  [OID.sha224]: 'sha224',
  [OID.sha256]: 'sha256',
  [OID.sha384]: 'sha384',
  [OID.sha512]: 'sha512',
};

export interface SignatureCheck {
  /** Bytes covered by the signature (tbsCertList as received). */
  tbs: Uint8Array;
  algorithmOid: string;
  /** DER of the AlgorithmIdentifier parameters, when present (needed for RSASSA-PSS). */
  algorithmParams: Uint8Array | undefined;
  signature: Uint8Array;
  key: KeyObject;
  allowSha1: boolean;
  /** Code of the errors thrown (the caller's domain: revocation, policy…). */
  errorCode: HispErrorCode;
  /** What is being verified, for messages ("the CRL of …"). */
  what: string;
}

/** Names of the digest a signature algorithm uses, or undefined when unknown (policy checks). */
export function signatureDigestOf(algorithmOid: string): Digest | 'md5' | undefined {
  if (algorithmOid === OID.rsassaPss) return undefined;
  return BY_OID[algorithmOid]?.digest;
}

/** Verifies; throws HispError(errorCode) when the algorithm is refused or the signature is wrong. */
export function verifySignedObject(c: SignatureCheck): void {
  const fail = (reason: string) => new HispError(c.errorCode, `${c.what}: ${reason}`);
  let digest: Digest | 'md5';
  let kind: 'rsa' | 'ecdsa' | 'pss';
  let saltLength = 20;
  if (c.algorithmOid === OID.rsassaPss) {
    const pss = readPssParams(c.algorithmParams);
    if (!pss) throw fail('unsupported RSASSA-PSS parameters');
    ({ digest, saltLength } = pss);
    kind = 'pss';
  } else {
    const info = BY_OID[c.algorithmOid];
    if (!info) throw fail(`unsupported signature algorithm ${c.algorithmOid}`);
    ({ digest, kind } = info);
  }
  if (digest === 'md5') throw fail('signed with MD5/MD2, never accepted');
  if (digest === 'sha1' && !c.allowSha1) throw fail('signed with SHA-1, refused unless the legacy SHA-1 switch is on');
  const keyType = c.key.asymmetricKeyType;
  if ((kind === 'ecdsa' && keyType !== 'ec') || (kind !== 'ecdsa' && keyType !== 'rsa' && keyType !== 'rsa-pss')) {
    throw fail(`the ${c.algorithmOid} signature does not fit the issuer's ${keyType} key`);
  }
  let ok: boolean;
  try {
    const key =
      kind === 'pss'
        ? { key: c.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength }
        : kind === 'ecdsa'
          ? { key: c.key, dsaEncoding: 'der' as const }
          : c.key;
    ok = verify(digest, c.tbs, key, c.signature);
  } catch {
    ok = false; // OpenSSL throws on some malformed signature encodings: just a bad signature
  }
  if (!ok) throw fail('the signature does not verify with the issuer key');
}

/** RSASSA-PSS-params (RFC 4055 §3.1) when the MGF1 hash equals the message hash (Node's only form). */
function readPssParams(params: Uint8Array | undefined): { digest: Digest; saltLength: number } | undefined {
  try {
    let digest: Digest = 'sha1';
    let mgfDigest: Digest = 'sha1';
    let saltLength = 20;
    if (params && params.length > 0) {
      const root = decodeBer(params, 'RSASSA-PSS parameters');
      for (const field of children(root, 'RSASSA-PSS-params')) {
        const inner: Node | undefined = children(field, 'RSASSA-PSS field')[0];
        if (isContext(field, 0)) {
          const d = DIGEST_OIDS[readAlgorithm(inner, 'hashAlgorithm').oid];
          if (!d) return undefined;
          digest = d;
        } else if (isContext(field, 1)) {
          const mgf = readAlgorithm(inner, 'maskGenAlgorithm');
          if (mgf.oid !== OID.mgf1) return undefined;
          const d = DIGEST_OIDS[readAlgorithm(mgf.params, 'MGF1 hash').oid];
          if (!d) return undefined;
          mgfDigest = d;
        } else if (isContext(field, 2)) {
          saltLength = readInteger(inner, 'saltLength');
        } else if (isContext(field, 3)) {
          if (readInteger(inner, 'trailerField') !== 1) return undefined;
        }
      }
    }
    return digest === mgfDigest ? { digest, saltLength } : undefined;
  } catch {
    return undefined;
  }
}

import { createHash, timingSafeEqual, verify } from 'node:crypto';
import { Certificate } from '../core/certificate.js';
import { HispError, isHispError } from '../core/errors.js';
import {
  digestFromOid,
  OID,
  signatureAlgorithmFromOid,
  type DigestName,
  type DigestPolicy,
} from './algorithms.js';
import {
  children,
  expectSequence,
  isContext,
  malformed,
  rawBytes,
  readAlgorithm,
  readInteger,
  readIntegerBytes,
  readOctets,
  readOid,
  readTime,
  type Node,
} from './asn1.js';
import { subjectKeyIdentifierOf } from './create-envelope.js';
import { readSignedData } from './signed-data.js';

/** What was checked for one SignerInfo. */
export interface SignerResult {
  /** The signer certificate, when the SignedData carries it. */
  certificate: Certificate | undefined;
  digest: DigestName | undefined;
  signatureAlgorithm: string;
  signingTime: Date | undefined;
  /** The signature and messageDigest verify over the content. */
  verified: boolean;
  /** Why not, when not verified. */
  error: HispError | undefined;
  /** CMSAlgorithmProtection (RFC 6211) was present and matched. */
  algorithmProtection: boolean;
}

export interface SignatureVerification {
  signers: SignerResult[];
  /** Every certificate of the SignedData, for chain building. */
  certificates: Certificate[];
  /** The signed content: the detached content given, or eContent of an opaque SignedData. */
  content: Buffer;
}

/**
 * Verifies a CMS SignedData (RFC 5652 §5.6) over detached `content`, or over its own eContent when
 * `content` is undefined (opaque signing, RFC 5751 §3.5.2). Each SignerInfo is checked separately;
 * the caller decides what "signed" means (Direct: at least one verified, trusted signer). Throws only
 * when the structure itself is unusable.
 */
export function verifySignature(
  der: Uint8Array,
  content: Buffer | undefined,
  policy: DigestPolicy,
): SignatureVerification {
  const parts = readSignedData(der);
  const eContentType = parts.eContentType;
  let signedContent = content;
  if (signedContent === undefined) {
    if (!parts.eContent) throw malformed('SignedData has no content and none was given');
    signedContent = parts.eContent;
  }
  const certificates: Certificate[] = [];
  for (const c of parts.certificates) {
    try {
      certificates.push(Certificate.fromDer(c));
    } catch {
      // an unparseable extra certificate does not void the signature; the signer lookup decides
    }
  }
  const digests = new Map<DigestName, Buffer>();
  const digestOf = (name: DigestName): Buffer => {
    let d = digests.get(name);
    if (!d) {
      d = createHash(name).update(signedContent).digest();
      digests.set(name, d);
    }
    return d;
  };
  const signers = parts.signerInfos.map((si) =>
    verifySignerInfo(si, eContentType, certificates, signedContent, digestOf, policy),
  );
  if (signers.length === 0) throw new HispError('HISP_SIG_INVALID', 'the SignedData has no SignerInfo');
  return { signers, certificates, content: signedContent };
}

function verifySignerInfo(
  node: Node,
  eContentType: string,
  certificates: Certificate[],
  content: Buffer,
  digestOf: (d: DigestName) => Buffer,
  policy: DigestPolicy,
): SignerResult {
  const f = expectSequence(node, 'SignerInfo');
  let i = 0;
  readInteger(f[i++], 'SignerInfo version');
  const sid = f[i++];
  const digestAlg = readAlgorithm(f[i++], 'SignerInfo digestAlgorithm');
  const signedAttrsNode = isContext(f[i], 0) ? f[i++] : undefined;
  const sigAlg = readAlgorithm(f[i++], 'SignerInfo signatureAlgorithm');
  const signature = readOctets(f[i], 'SignerInfo signature');

  const result: SignerResult = {
    certificate: findSigner(sid, certificates),
    digest: undefined,
    signatureAlgorithm: sigAlg.oid,
    signingTime: undefined,
    verified: false,
    error: undefined,
    algorithmProtection: false,
  };
  try {
    const digest = digestFromOid(digestAlg.oid, policy, 'the signature digest');
    result.digest = digest;
    const sig = signatureAlgorithmFromOid(sigAlg.oid);
    if (sig.digest === 'md5') throw new HispError('HISP_CMS_WEAK_ALGORITHM', 'the signature uses MD5');
    if (sig.digest && sig.digest !== digest) {
      throw new HispError('HISP_SIG_INVALID', `signature algorithm ${sigAlg.oid} contradicts digest ${digest}`);
    }
    if (!result.certificate) {
      throw new HispError('HISP_SIG_NO_SIGNER_CERT', 'the signer certificate is not included in the signature');
    }
    const keyType = result.certificate.publicKey.asymmetricKeyType;
    if ((sig.kind === 'rsa' && keyType !== 'rsa') || (sig.kind === 'ecdsa' && keyType !== 'ec')) {
      throw new HispError('HISP_SIG_INVALID', `signature algorithm does not fit the signer's ${keyType} key`);
    }

    let signedBytes: Buffer;
    if (signedAttrsNode) {
      const attrs = readAttributes(signedAttrsNode);
      const md = attrs.get(OID.messageDigest);
      const ct = attrs.get(OID.contentType);
      if (!md || !ct) throw new HispError('HISP_SIG_INVALID', 'signed attributes lack messageDigest or contentType');
      if (readOid(ct, 'contentType attribute') !== eContentType) {
        throw new HispError('HISP_SIG_INVALID', 'contentType attribute does not match eContentType');
      }
      const expected = readOctets(md, 'messageDigest attribute');
      const actual = digestOf(digest);
      if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) {
        throw new HispError('HISP_SIG_INVALID', 'the signed content does not match its messageDigest (altered content)');
      }
      const protection = attrs.get(OID.cmsAlgorithmProtection);
      if (protection) {
        checkAlgorithmProtection(protection, digestAlg.oid, sigAlg.oid);
        result.algorithmProtection = true;
      }
      result.signingTime = readTime(attrs.get(OID.signingTime));
      // RFC 5652 §5.4: the signature covers the DER SET OF, i.e. the received octets with the
      // IMPLICIT [0] tag replaced by the SET tag; never a re-encoding.
      signedBytes = Buffer.from(rawBytes(signedAttrsNode));
      signedBytes[0] = 0x31;
    } else {
      // Without signed attributes the signature covers the content itself (RFC 5652 §5.4).
      signedBytes = content;
    }
    const key = result.certificate.publicKey;
    let ok: boolean;
    try {
      ok = verify(digest, signedBytes, sig.kind === 'rsa' ? key : { key, dsaEncoding: 'der' }, signature);
    } catch {
      ok = false; // OpenSSL throws on some malformed signature encodings: just a bad signature
    }
    if (!ok) throw new HispError('HISP_SIG_INVALID', 'the signature does not verify with the signer certificate');
    result.verified = true;
  } catch (err) {
    if (!isHispError(err)) throw err;
    result.error = err;
  }
  return result;
}

function findSigner(sid: Node | undefined, certificates: Certificate[]): Certificate | undefined {
  if (isContext(sid, 0)) {
    const ski = readOctets(sid, 'SignerIdentifier subjectKeyIdentifier');
    return certificates.find((c) => subjectKeyIdentifierOf(c).equals(ski));
  }
  const [issuer, serial] = expectSequence(sid, 'IssuerAndSerialNumber');
  if (!issuer) throw malformed('IssuerAndSerialNumber has no issuer');
  const issuerDer = rawBytes(issuer);
  const serialHex = readIntegerBytes(serial, 'serialNumber').toString('hex').replace(/^(00)+(?=.)/, '');
  return certificates.find(
    (c) => c.issuerDer.equals(issuerDer) && c.serialHex.replace(/^(00)+(?=.)/, '') === serialHex,
  );
}

function readAttributes(node: Node): Map<string, Node> {
  const map = new Map<string, Node>();
  for (const attr of children(node, 'signedAttrs')) {
    const [type, values] = expectSequence(attr, 'Attribute');
    const t = readOid(type, 'attribute type');
    const v = children(values, 'attribute values');
    // RFC 5652 §11: contentType, messageDigest and signingTime are single-valued and unique.
    if (map.has(t) || v.length !== 1) throw new HispError('HISP_SIG_INVALID', `attribute ${t} repeated`);
    map.set(t, v[0]!);
  }
  return map;
}

/** RFC 6211 §2: the protected algorithms must equal those of the SignerInfo. */
function checkAlgorithmProtection(node: Node, digestOid: string, signatureOid: string): void {
  const f = expectSequence(node, 'CMSAlgorithmProtection');
  const d = readAlgorithm(f[0], 'CMSAlgorithmProtection digestAlgorithm').oid;
  const sigNode = f.slice(1).find((n) => isContext(n, 1));
  const s = sigNode ? readOid(children(sigNode, 'signatureAlgorithm')[0], 'signatureAlgorithm') : undefined;
  if (d !== digestOid || (s !== undefined && s !== signatureOid)) {
    throw new HispError('HISP_SIG_INVALID', 'CMSAlgorithmProtection does not match the SignerInfo algorithms');
  }
}

import { createHash, sign, type KeyObject } from 'node:crypto';
import type { Certificate } from '../core/certificate.js';
import { HispError } from '../core/errors.js';
import { DIGEST_OID, OID, signatureOid, type SigningDigest } from './algorithms.js';
import { algorithm } from './asn1.js';
import { ctxConstructed, decodeBer, encode, int, octets, oid, raw, seq, set, setOf, time, type Der } from './der.js';

/** A signing key with its certificate and the chain above it (issuer first). */
export interface SigningCredential {
  key: KeyObject;
  certificate: Certificate;
  chain: readonly Certificate[];
}

/**
 * Makes a detached CMS SignedData (RFC 5652 §5) over `content` (one buffer or its pieces), one
 * SignerInfo per credential, with the signed attributes contentType, signingTime, messageDigest and
 * CMSAlgorithmProtection (RFC 6211), and every signer's certificate chain in `certificates`.
 * Returns the DER ContentInfo.
 */
export function signDetached(
  content: Buffer | readonly Buffer[],
  signers: readonly SigningCredential[],
  digest: SigningDigest,
  signingTime: Date = new Date(),
): Buffer {
  if (signers.length === 0) throw new HispError('HISP_USAGE', 'at least one signing credential is required');
  const hash = createHash(digest);
  for (const piece of Buffer.isBuffer(content) ? [content] : content) hash.update(piece);
  const messageDigest = hash.digest();

  const signerInfos = signers.map((s) => signerInfo(s, digest, messageDigest, signingTime));
  const certs: Certificate[] = [];
  for (const s of signers) {
    for (const c of [s.certificate, ...s.chain]) if (!certs.some((x) => x.der.equals(c.der))) certs.push(c);
  }
  const signedData = seq(
    int(1), // RFC 5652 §5.1: version 1 (no attribute certificates, eContentType id-data, v1 SignerInfos)
    set(algorithm(DIGEST_OID[digest])), // SHA-2 parameters absent (RFC 5754 §2)
    seq(oid(OID.data)), // encapContentInfo without eContent: detached (ETT rule 182)
    ctxConstructed(0, ...certs.map((c) => raw(c.der))),
    set(...signerInfos),
  );
  return encode(seq(oid(OID.signedData), ctxConstructed(0, signedData)));
}

function signerInfo(s: SigningCredential, digest: SigningDigest, messageDigest: Buffer, signingTime: Date): Der {
  const keyType = s.key.asymmetricKeyType;
  if (keyType !== 'rsa' && keyType !== 'ec') {
    throw new HispError('HISP_CMS_UNSUPPORTED_ALGORITHM', `cannot sign with a ${keyType ?? 'unknown'} key`);
  }
  const kind = keyType === 'rsa' ? 'rsa' : 'ecdsa';
  const sigOid = signatureOid(kind, digest);
  // RFC 4055 §5: sha*WithRSAEncryption carries NULL parameters; ECDSA ones carry none (RFC 5758 §3.2).
  const sigAlg = kind === 'rsa' ? algorithm(sigOid, 'null') : algorithm(sigOid);
  const sigAlgBody = decodeBer(encode(sigAlg), 'signatureAlgorithm').content; // re-tagged [1] below
  const attributes = [
    attribute(OID.contentType, oid(OID.data)),
    attribute(OID.signingTime, time(signingTime)),
    attribute(OID.messageDigest, octets(messageDigest)),
    // CMSAlgorithmProtection ::= SEQUENCE { digestAlgorithm, signatureAlgorithm [1] IMPLICIT ... } (RFC 6211 §2)
    attribute(OID.cmsAlgorithmProtection, seq(algorithm(DIGEST_OID[digest]), ctxConstructed(1, raw(sigAlgBody)))),
  ];
  // The signature covers the DER SET OF (sorted) attributes; the SignerInfo carries the same octets
  // under the [0] IMPLICIT tag (RFC 5652 §5.4).
  const signedAttrs = setOf(attributes);
  const signature = sign(digest, signedAttrs, kind === 'rsa' ? s.key : { key: s.key, dsaEncoding: 'der' });
  const implicitAttrs = Buffer.from(signedAttrs);
  implicitAttrs[0] = 0xa0;
  return seq(
    int(1), // version 1: sid is issuerAndSerialNumber
    seq(raw(s.certificate.issuerDer), raw(s.certificate.serialDer)),
    algorithm(DIGEST_OID[digest]),
    raw(implicitAttrs),
    sigAlg,
    octets(signature),
  );
}

function attribute(type: string, value: Der): Buffer {
  return encode(seq(oid(type), set(value)));
}

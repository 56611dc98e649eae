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

/** One signature to make: `sign(algorithm, data, key)` of node:crypto. */
export interface SignatureRequest {
  algorithm: SigningDigest;
  data: Buffer;
  key: KeyObject | { key: KeyObject; dsaEncoding: 'der' };
}

/**
 * A SignedData waiting for its signatures: what each signer signs (its DER signed attributes), and
 * how to assemble the ContentInfo once the signatures are made, by {@link signDetached} on the spot
 * or in the thread pool ({@link signInThreadPool}, as wrapMessageAsync does).
 */
export interface PreparedSignedData {
  requests: readonly SignatureRequest[];
  assemble(signatures: readonly Buffer[]): Buffer;
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
  const prepared = prepareSignedData(content, signers, digest, signingTime);
  return prepared.assemble(prepared.requests.map(signNow));
}

/** The signature requests of a detached SignedData over `content`, and its assembly. */
export function prepareSignedData(
  content: Buffer | readonly Buffer[],
  signers: readonly SigningCredential[],
  digest: SigningDigest,
  signingTime: Date = new Date(),
): PreparedSignedData {
  if (signers.length === 0) throw new HispError('HISP_USAGE', 'at least one signing credential is required');
  const hash = createHash(digest);
  for (const piece of Buffer.isBuffer(content) ? [content] : content) hash.update(piece);
  const messageDigest = hash.digest();

  const infos = signers.map((s) => signerInfo(s, digest, messageDigest, signingTime));
  const certs: Certificate[] = [];
  for (const s of signers) {
    for (const c of [s.certificate, ...s.chain]) if (!certs.some((x) => x.der.equals(c.der))) certs.push(c);
  }
  return {
    requests: infos.map((i) => i.request),
    assemble(signatures) {
      if (signatures.length !== infos.length) throw new HispError('HISP_USAGE', `${infos.length} signatures expected, ${signatures.length} given`);
      const signedData = seq(
        int(1), // RFC 5652 §5.1: version 1 (no attribute certificates, eContentType id-data, v1 SignerInfos)
        set(algorithm(DIGEST_OID[digest])), // SHA-2 parameters absent (RFC 5754 §2)
        seq(oid(OID.data)), // encapContentInfo without eContent: detached (ETT rule 182)
        ctxConstructed(0, ...certs.map((c) => raw(c.der))),
        set(...infos.map((info, i) => info.complete(signatures[i] as Buffer))),
      );
      return encode(seq(oid(OID.signedData), ctxConstructed(0, signedData)));
    },
  };
}

/** Makes one signature on the event loop. */
export function signNow(r: SignatureRequest): Buffer {
  return sign(r.algorithm, r.data, r.key);
}

/** Makes one signature in libuv's thread pool. */
export function signInThreadPool(r: SignatureRequest): Promise<Buffer> {
  return new Promise((resolve, reject) => sign(r.algorithm, r.data, r.key, (err, signature) => (err ? reject(err) : resolve(signature))));
}

/** A SignerInfo's signature request, and the SignerInfo once its signature is made. */
function signerInfo(
  s: SigningCredential,
  digest: SigningDigest,
  messageDigest: Buffer,
  signingTime: Date,
): { request: SignatureRequest; complete(signature: Buffer): Der } {
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
  const implicitAttrs = Buffer.from(signedAttrs);
  implicitAttrs[0] = 0xa0;
  return {
    request: { algorithm: digest, data: signedAttrs, key: kind === 'rsa' ? s.key : { key: s.key, dsaEncoding: 'der' } },
    complete: (signature) =>
      seq(
        int(1), // version 1: sid is issuerAndSerialNumber
        seq(raw(s.certificate.issuerDer), raw(s.certificate.serialDer)),
        algorithm(DIGEST_OID[digest]),
        raw(implicitAttrs),
        sigAlg,
        octets(signature),
      ),
  };
}

function attribute(type: string, value: Der): Buffer {
  return encode(seq(oid(type), set(value)));
}

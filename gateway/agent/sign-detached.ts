import { createHash, sign, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import type { Certificate } from '../core/certificate.js';
import { HispError } from '../core/errors.js';
import { DIGEST_OID, OID, signatureOid, type SigningDigest } from './algorithms.js';
import {
  algorithm,
  derSetOf,
  explicit,
  implicitConstructed,
  int,
  octets,
  oid,
  raw,
  seq,
  toDer,
} from './asn1.js';

/** A signing key with its certificate and the chain above it (issuer first). */
export interface SigningCredential {
  key: KeyObject;
  certificate: Certificate;
  chain: readonly Certificate[];
}

/**
 * Makes a detached CMS SignedData (RFC 5652 §5) over `content`, one SignerInfo per credential, with
 * the signed attributes contentType, signingTime, messageDigest and CMSAlgorithmProtection
 * (RFC 6211), and every signer's certificate chain in `certificates`. Returns the DER ContentInfo.
 */
export function signDetached(
  content: Buffer,
  signers: readonly SigningCredential[],
  digest: SigningDigest,
  signingTime: Date = new Date(),
): Buffer {
  if (signers.length === 0) throw new HispError('HISP_USAGE', 'at least one signing credential is required');
  const messageDigest = createHash(digest).update(content).digest();
  const digestAlg = algorithm(DIGEST_OID[digest]); // SHA-2 parameters absent (RFC 5754 §2)

  const signerInfos = signers.map((s) => {
    const keyType = s.key.asymmetricKeyType;
    if (keyType !== 'rsa' && keyType !== 'ec') {
      throw new HispError('HISP_CMS_UNSUPPORTED_ALGORITHM', `cannot sign with a ${keyType ?? 'unknown'} key`);
    }
    const kind = keyType === 'rsa' ? 'rsa' : 'ecdsa';
    const sigOid = signatureOid(kind, digest);
    // RFC 4055 §5: sha*WithRSAEncryption carries NULL parameters; ECDSA ones carry none (RFC 5758 §3.2).
    const sigAlg = () => (kind === 'rsa' ? algorithm(sigOid, 'null') : algorithm(sigOid));
    const attributes = [
      attribute(OID.contentType, oid(OID.data)),
      attribute(OID.signingTime, cmsTime(signingTime)),
      attribute(OID.messageDigest, octets(messageDigest)),
      // CMSAlgorithmProtection ::= SEQUENCE { digestAlgorithm, signatureAlgorithm [1] IMPLICIT, ... }
      attribute(
        OID.cmsAlgorithmProtection,
        seq(algorithm(DIGEST_OID[digest]), implicitConstructed(1, sigAlg().valueBlock.value)),
      ),
    ];
    // The signature covers the DER SET OF (sorted) attributes; the SignerInfo carries the same
    // octets under the [0] IMPLICIT tag (RFC 5652 §5.4).
    const signedAttrsSet = derSetOf(attributes);
    const signature = sign(digest, signedAttrsSet, kind === 'rsa' ? s.key : { key: s.key, dsaEncoding: 'der' });
    const signedAttrsImplicit = Buffer.from(signedAttrsSet);
    signedAttrsImplicit[0] = 0xa0;
    return seq(
      int(1), // version 1: sid is issuerAndSerialNumber
      seq(raw(s.certificate.issuerDer), raw(toDer(s.certificate.structure.serialNumber))),
      algorithm(DIGEST_OID[digest]),
      raw(signedAttrsImplicit),
      sigAlg(),
      octets(signature),
    );
  });

  const certs: Certificate[] = [];
  for (const s of signers) {
    for (const c of [s.certificate, ...s.chain]) if (!certs.some((x) => x.der.equals(c.der))) certs.push(c);
  }

  const signedData = seq(
    int(1), // RFC 5652 §5.1: version 1 (no attribute certificates, eContentType id-data, v1 SignerInfos)
    new asn1js.Set({ value: [digestAlg] }),
    seq(oid(OID.data)), // encapContentInfo without eContent: detached (ETT rule 182)
    implicitConstructed(
      0,
      certs.map((c) => raw(c.der)),
    ),
    new asn1js.Set({ value: signerInfos }),
  );
  return toDer(seq(oid(OID.signedData), explicit(0, signedData)));
}

function attribute(type: string, value: asn1js.AsnType): Buffer {
  return toDer(seq(oid(type), new asn1js.Set({ value: [value] })));
}

/** RFC 5652 §11.3: UTCTime for 1950–2049, GeneralizedTime otherwise. */
function cmsTime(d: Date): asn1js.AsnType {
  const year = d.getUTCFullYear();
  if (year >= 1950 && year < 2050) return new asn1js.UTCTime({ valueDate: d });
  return new asn1js.GeneralizedTime({ valueDate: d });
}

import { OID } from './algorithms.js';
import { children, decodeBer, expectSequence, isContext, isUniversal, malformed, rawBytes, readInteger, readOctets, readOid, TAG, type Node } from './asn1.js';

/**
 * The fields of a CMS SignedData (RFC 5652 §5.1) as the agent and the trust layer read them:
 * S/MIME signatures, certs-only "degenerate" SignedData (.p7b trust bundles, .p7c AIA answers) and
 * signed bundles. Built on the bounded BER reader, so malformed input fails with HISP_CMS_MALFORMED.
 */
export interface SignedDataParts {
  eContentType: string;
  /** The encapsulated content, when present (bundle metadata, or the inner bundle of a signed one). */
  eContent: Buffer | undefined;
  /** Raw DER of each Certificate choice of the certificates field, in order. */
  certificates: Buffer[];
  /** The SignerInfo elements, undecoded (verifySignature reads them). */
  signerInfos: Node[];
  signerInfoCount: number;
  /** The SignedData fields as received, to rebuild it with extra certificates. */
  fields: Node[];
}

export function readSignedData(der: Uint8Array): SignedDataParts {
  const [typeNode, wrapped, extra] = expectSequence(decodeBer(der, 'PKCS#7'), 'ContentInfo');
  if (readOid(typeNode, 'ContentInfo contentType') !== OID.signedData) throw malformed('the ContentInfo is not a SignedData');
  if (!isContext(wrapped, 0) || extra !== undefined) throw malformed('ContentInfo content is not [0]');
  const fields = expectSequence(children(wrapped, 'ContentInfo content')[0], 'SignedData');
  let i = 0;
  readInteger(fields[i++], 'SignedData version');
  if (!isUniversal(fields[i++], TAG.SET)) throw malformed('digestAlgorithms is not a SET');
  const encap = expectSequence(fields[i++], 'EncapsulatedContentInfo');
  const eContentType = readOid(encap[0], 'eContentType');
  let eContent: Buffer | undefined;
  if (encap[1] !== undefined) {
    if (!isContext(encap[1], 0)) throw malformed('eContent is not [0]');
    eContent = readOctets(children(encap[1], 'eContent')[0], 'eContent');
  }
  const certificates: Buffer[] = [];
  if (isContext(fields[i], 0)) {
    for (const c of children(fields[i], 'certificates')) {
      // Other CertificateChoices ([0]..[3]: extended, attribute, other) are not X.509 certificates.
      if (isUniversal(c, TAG.SEQUENCE)) certificates.push(rawBytes(c));
    }
    i++;
  }
  if (isContext(fields[i], 1)) i++; // crls
  const signerInfos = fields[i];
  if (!isUniversal(signerInfos, TAG.SET)) throw malformed('signerInfos is not a SET');
  if (fields.length !== i + 1) throw malformed('SignedData has trailing fields');
  const infos = children(signerInfos, 'signerInfos');
  return { eContentType, eContent, certificates, signerInfos: infos, signerInfoCount: infos.length, fields };
}


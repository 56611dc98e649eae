import { Certificate } from '../core/certificate.js';
import { OID } from '../agent/algorithms.js';
import {
  children,
  decodeBer,
  expectSequence,
  isContext,
  isUniversal,
  malformed,
  rawBytes,
  readInteger,
  readOctets,
  readOid,
  TAG,
  type Node,
} from '../agent/asn1.js';
import { ctxConstructed, encode, oid, raw, seq } from '../agent/der.js';

/**
 * Reading of the PKCS#7 / CMS SignedData shapes the trust layer meets: certs-only "degenerate"
 * SignedData (.p7b trust bundles, .p7c AIA answers, RFC 5652 §5 with no SignerInfo) and signed
 * bundles (SignedData with eContent). Built on the bounded BER reader of the agent, so malformed
 * input fails with HISP_CMS_MALFORMED, never a RangeError or a hang.
 */

export interface SignedDataParts {
  eContentType: string;
  /** The encapsulated content, when present (bundle metadata, or the inner bundle of a signed one). */
  eContent: Buffer | undefined;
  /** Raw DER of each Certificate choice of the certificates field, in order. */
  certificates: Buffer[];
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
  return { eContentType, eContent, certificates, signerInfoCount: children(signerInfos, 'signerInfos').length, fields };
}

/**
 * The same SignedData with `extra` certificates appended to its certificates field: for verifying a
 * signed bundle whose signer certificate is configured rather than included.
 */
export function withExtraCertificates(parts: SignedDataParts, extra: readonly Certificate[]): Buffer {
  const out = [];
  let certsDone = false;
  for (const [index, field] of parts.fields.entries()) {
    if (isContext(field, 0) && index === 3) {
      out.push(ctxConstructed(0, ...children(field, 'certificates').map((c) => raw(rawBytes(c))), ...extra.map((c) => raw(c.der))));
      certsDone = true;
    } else {
      if (!certsDone && index === 3) {
        out.push(ctxConstructed(0, ...extra.map((c) => raw(c.der))));
        certsDone = true;
      }
      out.push(raw(rawBytes(field)));
    }
  }
  return encode(seq(oid(OID.signedData), ctxConstructed(0, seq(...out))));
}

/** Parses certificates, skipping (and reporting) those that do not decode; deduplicated by DER. */
export function parseCertificates(ders: readonly Buffer[], warnings: string[], what: string): Certificate[] {
  const seen = new Set<string>();
  const out: Certificate[] = [];
  ders.forEach((der, index) => {
    try {
      const cert = Certificate.fromDer(der);
      if (seen.has(cert.sha256)) return;
      seen.add(cert.sha256);
      out.push(cert);
    } catch {
      warnings.push(`${what}: certificate #${index + 1} is not a readable X.509 certificate and was skipped`);
    }
  });
  return out;
}

export interface PemBlock {
  label: string;
  der: Buffer;
}

/**
 * True when the bytes look like PEM text (a BEGIN line within the first kilobyte, after optional
 * text). DER (a SEQUENCE, 0x30) never is, even when PEM text sits inside it (a signed bundle's eContent).
 */
export function looksLikePem(bytes: Uint8Array): boolean {
  if (bytes[0] === 0x30) return false;
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.byteLength, 1024)).toString('latin1');
  return head.includes('-----BEGIN ');
}

/** Every `-----BEGIN X-----` block with strictly valid base64 (other text ignored). */
export function pemBlocks(bytes: Uint8Array): PemBlock[] {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  const re = /-----BEGIN ([A-Z0-9 #]{1,64})-----([\s\S]*?)-----END \1-----/g;
  const out: PemBlock[] = [];
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const lines = m[2]!.split(/\r?\n|\r/).map((l) => l.trim()).filter((l) => l !== '' && !/^[A-Za-z-]+:/.test(l));
    const b64 = lines.join('');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) continue;
    out.push({ label: m[1]!, der: Buffer.from(b64, 'base64') });
  }
  return out;
}

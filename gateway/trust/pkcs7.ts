import { Certificate } from '../core/certificate.js';
import { pemBlocks as allPemBlocks } from '../core/pem.js';
export { looksLikePem } from '../core/pem.js';
import { OID } from '../agent/algorithms.js';
import { children, isContext, rawBytes } from '../agent/asn1.js';
import { ctxConstructed, encode, oid, raw, seq } from '../agent/der.js';

/**
 * Reading of the PKCS#7 / CMS SignedData shapes the trust layer meets: certs-only "degenerate"
 * SignedData (.p7b trust bundles, .p7c AIA answers, RFC 5652 §5 with no SignerInfo) and signed
 * bundles (SignedData with eContent). Built on the bounded BER reader of the agent, so malformed
 * input fails with HISP_CMS_MALFORMED, never a RangeError or a hang.
 */

import type { SignedDataParts } from '../agent/signed-data.js';
export { readSignedData, type SignedDataParts } from '../agent/signed-data.js';

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

/** PEM blocks whose body is valid base64; the others are ignored like any other text. */
export function pemBlocks(bytes: Uint8Array): { label: string; der: Buffer }[] {
  return allPemBlocks(bytes).flatMap((b) => (b.der ? [{ label: b.label, der: b.der }] : []));
}

import type { Certificate } from '../core/certificate.js';
import type { IncomingResult } from './process-incoming.js';

/** One trusted signer of a received message, as a webhook's `metadata.signers[]` carries it. */
export type SignerFacts = {
  /** The certificate's subject (RFC 4514, as `openssl x509 -nameopt RFC2253` prints it). */
  subject: string;
  issuer: string;
  /** The serial number, lowercase hex. */
  serial: string;
  /** SHA-256 of the certificate's DER, lowercase hex: the fingerprint hisp's reports and logs use. */
  sha256: string;
  notBefore: string;
  notAfter: string;
  /** How the certificate is bound to the sender (R-CRT-1): its address (rfc822Name) or its domain (dNSName). */
  binding: 'address' | 'domain';
  /** The address or domain it is bound to: the From address, or its domain. */
  boundTo: string;
  /** The trust anchor its chain ended at, and the trust bundle that holds that anchor (null: an anchor file). */
  anchor: { subject: string; sha256: string; bundle: string | null };
  /** What the trust check noted without refusing (revocation not checked under soft-fail, …). */
  warnings: string[];
};

/** The webhook's `metadata` for a message that passed the trust check (docs/delivery.md documents it). */
export type SignerMetadata = {
  /** The From address of the message, which the signers are bound to (requirements §5.8). */
  sender: string;
  /** The first trusted signer's subject. */
  signer: string;
  /** The subject of the anchor the first trusted signer's chain ended at. */
  anchor: string;
  /** Every trusted signer (a message may carry several signatures; one trusted is enough). */
  signers: SignerFacts[];
  /** How the message was protected: content encryption, key transport, and the first verified signer's digest. */
  algorithms: { cipher: string; keyTransport: string; digest: string };
};

/**
 * What the receive side verified, for the system behind the endpoint (issue 14, item 13): the
 * sender, and per trusted signer its certificate, its binding and the anchor (and trust bundle) its
 * chain ended at. Signatures that did not verify or were not trusted are not listed: the message was
 * delivered on the strength of the trusted ones. `bundleOf` names the trust bundle of an anchor
 * (undefined when it came from an anchor file).
 */
export function signerMetadata(incoming: IncomingResult, bundleOf: (anchor: Certificate) => string | undefined = () => undefined): SignerMetadata {
  const sender = incoming.sender.toString();
  const signers = incoming.accepted.map(
    (s): SignerFacts => ({
      subject: s.certificate.subject,
      issuer: s.certificate.issuer,
      serial: s.certificate.serialHex,
      sha256: s.certificate.sha256,
      notBefore: s.certificate.notBefore.toISOString(),
      notAfter: s.certificate.notAfter.toISOString(),
      binding: s.binding,
      boundTo: s.binding === 'address' ? sender : incoming.sender.domain,
      anchor: { subject: s.anchor.subject, sha256: s.anchor.sha256, bundle: bundleOf(s.anchor) ?? null },
      warnings: [...s.warnings],
    }),
  );
  const { cipher, keyTransport, digest } = incoming.unwrapped;
  return { sender, signer: signers[0]?.subject ?? '', anchor: signers[0]?.anchor.subject ?? '', signers, algorithms: { cipher, keyTransport, digest } };
}

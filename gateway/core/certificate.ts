import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { HispError } from './errors.js';
import { formatRfc4514 } from './distinguished-name.js';

/** OIDs of the X.509 extensions hisp reads (RFC 5280 §4.2.1). */
const OID_SUBJECT_KEY_IDENTIFIER = '2.5.29.14';
const OID_KEY_USAGE = '2.5.29.15';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_AUTHORITY_KEY_IDENTIFIER = '2.5.29.35';

const CACHE_SIZE = 2048;
const cache = new Map<string, Certificate>();

/** KeyUsage bit names in RFC 5280 §4.2.1.3 order (bit 0 first). */
export const KEY_USAGE_BITS = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
] as const;
export type KeyUsage = (typeof KEY_USAGE_BITS)[number];

export interface BasicConstraints {
  ca: boolean;
  pathLenConstraint?: number;
}

/**
 * An X.509 certificate as hisp uses it: the exact DER it came in (never re-encoded), node's
 * X509Certificate for the cryptography, and the fields Direct decides on, decoded once with PKI.js.
 */
export class Certificate {
  readonly der: Buffer;
  readonly x509: X509Certificate;
  readonly publicKey: KeyObject;
  readonly structure: pkijs.Certificate;
  /** Lowercase hex SHA-256 of the DER: the fingerprint every report and log uses. */
  readonly sha256: string;
  readonly subject: string;
  readonly issuer: string;
  /** Raw DER of the issuer and subject Names, for issuerAndSerialNumber matching (RFC 5652 §10.2.4). */
  readonly issuerDer: Buffer;
  readonly subjectDer: Buffer;
  /** Serial number content octets as lowercase hex (two's complement, as encoded). */
  readonly serialHex: string;
  /** The serialNumber INTEGER as encoded in the certificate, for issuerAndSerialNumber. */
  readonly serialDer: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly signatureAlgorithmOid: string;
  readonly subjectKeyIdentifier: Buffer | undefined;
  readonly authorityKeyIdentifier: Buffer | undefined;
  /** undefined when the certificate has no keyUsage extension. */
  readonly keyUsage: ReadonlySet<KeyUsage> | undefined;
  readonly basicConstraints: BasicConstraints | undefined;
  readonly rfc822Names: readonly string[];
  readonly dnsNames: readonly string[];
  /** Subject emailAddress attribute values (PKCS#9), which alone never bind (requirements §5.8). */
  readonly subjectEmailAddresses: readonly string[];
  /** isSignedBy's answers, by the issuer's SHA-256. */
  private readonly signedBy = new Map<string, boolean>();

  private constructor(der: Buffer) {
    this.der = der;
    try {
      this.x509 = new X509Certificate(der);
      this.structure = pkijs.Certificate.fromBER(der);
      // Node parses a certificate whose key it cannot decode and throws only when the key is read:
      // read it now, so that such a certificate is refused here with a typed error.
      this.publicKey = this.x509.publicKey;
    } catch (cause) {
      throw new HispError('HISP_KEY_UNREADABLE', 'not a valid X.509 certificate', { cause });
    }
    const s = this.structure;
    this.sha256 = createHash('sha256').update(der).digest('hex');
    this.subject = formatRfc4514(s.subject);
    this.issuer = formatRfc4514(s.issuer);
    this.issuerDer = Buffer.from(s.issuer.toSchema().toBER(false));
    this.subjectDer = Buffer.from(s.subject.toSchema().toBER(false));
    this.serialHex = Buffer.from(s.serialNumber.valueBlock.valueHexView).toString('hex');
    const serialView = s.serialNumber.valueBeforeDecodeView;
    this.serialDer = serialView.byteLength
      ? Buffer.from(serialView.buffer, serialView.byteOffset, serialView.byteLength)
      : Buffer.from(s.serialNumber.toBER(false));
    this.notBefore = s.notBefore.value;
    this.notAfter = s.notAfter.value;
    this.signatureAlgorithmOid = s.signatureAlgorithm.algorithmId;
    this.subjectEmailAddresses = s.subject.typesAndValues
      .filter((tv) => tv.type === '1.2.840.113549.1.9.1')
      .map((tv) => String(tv.value.valueBlock.value));

    let ski: Buffer | undefined;
    let aki: Buffer | undefined;
    let ku: Set<KeyUsage> | undefined;
    let bc: BasicConstraints | undefined;
    const rfc822: string[] = [];
    const dns: string[] = [];
    for (const ext of s.extensions ?? []) {
      const parsed: unknown = ext.parsedValue;
      switch (ext.extnID) {
        case OID_SUBJECT_KEY_IDENTIFIER:
          if (parsed instanceof asn1js.OctetString) ski = Buffer.from(parsed.valueBlock.valueHexView);
          break;
        case OID_AUTHORITY_KEY_IDENTIFIER:
          if (parsed instanceof pkijs.AuthorityKeyIdentifier && parsed.keyIdentifier) {
            aki = Buffer.from(parsed.keyIdentifier.valueBlock.valueHexView);
          }
          break;
        case OID_KEY_USAGE:
          if (parsed instanceof asn1js.BitString) ku = decodeKeyUsage(parsed);
          break;
        case OID_BASIC_CONSTRAINTS:
          if (parsed instanceof pkijs.BasicConstraints) {
            bc = { ca: parsed.cA };
            if (parsed.pathLenConstraint !== undefined) {
              const p = parsed.pathLenConstraint;
              bc.pathLenConstraint = typeof p === 'number' ? p : p.valueBlock.valueDec;
            }
          }
          break;
        case OID_SUBJECT_ALT_NAME:
          if (parsed instanceof pkijs.AltName) {
            for (const name of parsed.altNames) {
              // GeneralName choice tags: 1 = rfc822Name, 2 = dNSName (RFC 5280 §4.2.1.6)
              if (name.type === 1) rfc822.push(String(name.value));
              if (name.type === 2) dns.push(String(name.value));
            }
          }
          break;
        default:
          break;
      }
    }
    this.subjectKeyIdentifier = ski;
    this.authorityKeyIdentifier = aki;
    this.keyUsage = ku;
    this.basicConstraints = bc;
    this.rfc822Names = rfc822;
    this.dnsNames = dns;
  }

  /**
   * Parses one DER certificate. Throws HISP_KEY_UNREADABLE. Parsed certificates are kept in a small
   * LRU cache keyed by their DER: a HISP sees the same signer and recipient certificates again and
   * again, and decoding one with PKI.js costs more than all the cryptography of a message.
   */
  static fromDer(der: Uint8Array): Certificate {
    const bytes = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
    const key = bytes.toString('base64');
    const hit = cache.get(key);
    if (hit) {
      cache.delete(key);
      cache.set(key, hit);
      return hit;
    }
    const cert = new Certificate(Buffer.from(bytes)); // own copy: the input may be a view into a message
    cache.set(key, cert);
    if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value!);
    return cert;
  }


  /**
   * Whether this certificate's signature verifies with `issuer`'s public key (RFC 5280 §6.1.3
   * (a)(1)). Remembered per issuer certificate: both are immutable DER, so the answer never
   * changes, and the relay validates the same recipient chain for every message it sends (each
   * verification was an RSA operation plus OpenSSL's algorithm look-ups: ≈ 4 % of the sending hop's
   * event loop). Throws when the issuer's key cannot verify at all (not remembered).
   */
  isSignedBy(issuer: Certificate): boolean {
    let ok = this.signedBy.get(issuer.sha256);
    if (ok === undefined) {
      ok = this.x509.verify(issuer.publicKey);
      this.signedBy.set(issuer.sha256, ok);
    }
    return ok;
  }

  /** Key size in bits for RSA, the curve order size for EC. */
  get publicKeyBits(): number {
    const d = this.publicKey.asymmetricKeyDetails;
    if (d?.modulusLength) return d.modulusLength;
    if (d?.namedCurve === 'prime256v1') return 256;
    if (d?.namedCurve === 'secp384r1') return 384;
    if (d?.namedCurve === 'secp521r1') return 521;
    return 0;
  }

  get isSelfIssued(): boolean {
    return this.issuerDer.equals(this.subjectDer);
  }

  isValidAt(at: Date): boolean {
    return at.getTime() >= this.notBefore.getTime() && at.getTime() <= this.notAfter.getTime();
  }

  toPem(): string {
    const b64 = this.der.toString('base64').replace(/.{64}/g, '$&\n');
    return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
  }
}

function decodeKeyUsage(bits: asn1js.BitString): Set<KeyUsage> {
  const bytes = bits.valueBlock.valueHexView;
  const set = new Set<KeyUsage>();
  KEY_USAGE_BITS.forEach((name, i) => {
    const byte = bytes[i >> 3] ?? 0;
    if (byte & (0x80 >> (i & 7))) set.add(name);
  });
  return set;
}

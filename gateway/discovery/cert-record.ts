import { HispError } from '../core/errors.js';

/** The CERT RR type code (RFC 4398 §2); dns-packet knows the name but does not decode the data. */
export const CERT_RR_TYPE = 37;

/** Certificate types of the CERT RR (RFC 4398 §2.1, IANA "CERT RR Certificate Types"). */
export const CERT_TYPES = {
  PKIX: 1,
  SPKI: 2,
  PGP: 3,
  IPKIX: 4,
  ISPKI: 5,
  IPGP: 6,
  ACPKIX: 7,
  IACPKIX: 8,
  URI: 253,
  OID: 254,
} as const;
export type CertTypeName = keyof typeof CERT_TYPES;

/** Fixed part of the rdata: type (2), key tag (2), algorithm (1) (RFC 4398 §2). */
const FIXED_LENGTH = 5;
const MAX_RDATA_LENGTH = 0xffff;

/**
 * One CERT resource record's data. Direct publishes PKIX (1, a DER X.509 certificate) and, less
 * often, IPKIX (4, the URL of one); both must be understood (R-DIS-2). Other types are decoded too
 * and left to the caller to ignore.
 */
export interface CertRecord {
  /** Certificate type, e.g. {@link CERT_TYPES}.PKIX. */
  certType: number;
  keyTag: number;
  /** DNSSEC algorithm number (RFC 4398 §2.2); 0 when the key is not a DNSSEC one. */
  algorithm: number;
  /** The certificate, CRL or URL field: a DER certificate for PKIX, URL bytes for IPKIX. */
  data: Buffer;
}

/**
 * Decodes CERT rdata (RFC 4398 §2): type(2) key tag(2) algorithm(1) certificate(rest). The data is
 * copied, so the record does not keep the whole DNS message alive. Throws HISP_DNS_MALFORMED when
 * the rdata is shorter than its fixed part or longer than an rdata can be.
 *
 * @example
 * const rec = decodeCertRdata(rdata);
 * if (rec.certType === CERT_TYPES.PKIX) Certificate.fromDer(rec.data);
 */
export function decodeCertRdata(rdata: Uint8Array): CertRecord {
  if (!(rdata instanceof Uint8Array)) {
    throw new HispError('HISP_DNS_MALFORMED', 'CERT rdata is not a byte array');
  }
  if (rdata.length < FIXED_LENGTH) {
    throw new HispError(
      'HISP_DNS_MALFORMED',
      `CERT rdata of ${rdata.length} bytes is shorter than its ${FIXED_LENGTH}-byte fixed part (RFC 4398 §2)`,
    );
  }
  if (rdata.length > MAX_RDATA_LENGTH) {
    throw new HispError('HISP_DNS_MALFORMED', `CERT rdata of ${rdata.length} bytes exceeds the 65535-byte RDLENGTH`);
  }
  const view = Buffer.from(rdata.buffer, rdata.byteOffset, rdata.length);
  return {
    certType: view.readUInt16BE(0),
    keyTag: view.readUInt16BE(2),
    algorithm: view.readUInt8(4),
    data: Buffer.from(view.subarray(FIXED_LENGTH)),
  };
}

/** Encodes CERT rdata (for publishing a zone and for tests); the inverse of {@link decodeCertRdata}. */
export function encodeCertRdata(record: CertRecord): Buffer {
  const { certType, keyTag, algorithm, data } = record;
  if (!isUint(certType, 0xffff) || !isUint(keyTag, 0xffff) || !isUint(algorithm, 0xff)) {
    throw new HispError('HISP_USAGE', 'CERT type and key tag must be 16-bit and algorithm 8-bit unsigned integers');
  }
  if (data.length > MAX_RDATA_LENGTH - FIXED_LENGTH) {
    throw new HispError('HISP_USAGE', `CERT data of ${data.length} bytes does not fit in one resource record`);
  }
  const out = Buffer.alloc(FIXED_LENGTH + data.length);
  out.writeUInt16BE(certType, 0);
  out.writeUInt16BE(keyTag, 2);
  out.writeUInt8(algorithm, 4);
  Buffer.from(data).copy(out, FIXED_LENGTH);
  return out;
}

/** The mnemonic of a certificate type ('PKIX', 'IPKIX', …), or undefined when unassigned. */
export function certTypeName(certType: number): CertTypeName | undefined {
  for (const [key, value] of Object.entries(CERT_TYPES) as Array<[CertTypeName, number]>) {
    if (value === certType) return key;
  }
  return undefined;
}

/**
 * The URL of an indirect record (IPKIX, ISPKI, IACPKIX: "the URL of an X.509 data object",
 * RFC 4398 §2.1), or undefined for the other types (IPGP prefixes its URL with a fingerprint and is
 * of no use to Direct). Only http(s) and ldap URLs are accepted: they
 * are the ones a HISP fetches. Throws HISP_DNS_MALFORMED when the data is not such a URL.
 */
export function certRecordUrl(record: CertRecord): URL | undefined {
  const indirect: readonly number[] = [CERT_TYPES.IPKIX, CERT_TYPES.ISPKI, CERT_TYPES.IACPKIX];
  if (!indirect.includes(record.certType)) return undefined;
  // RFC 4398 leaves the URL's encoding unstated; URLs are ASCII (RFC 3986), so anything else is refused.
  const bytes = record.data;
  if (bytes.length === 0 || bytes.some((b) => b < 0x21 || b > 0x7e)) {
    throw new HispError('HISP_DNS_MALFORMED', 'CERT record URL is empty or not printable ASCII');
  }
  let url: URL;
  try {
    url = new URL(bytes.toString('ascii'));
  } catch (cause) {
    throw new HispError('HISP_DNS_MALFORMED', 'CERT record data is not a URL', { cause });
  }
  if (!['http:', 'https:', 'ldap:', 'ldaps:'].includes(url.protocol)) {
    throw new HispError('HISP_DNS_MALFORMED', `CERT record URL scheme ${url.protocol} is not http(s) or ldap(s)`);
  }
  return url;
}

function isUint(value: number, max: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= max;
}

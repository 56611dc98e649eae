import type * as pkijs from 'pkijs';
import * as asn1js from 'asn1js';

/**
 * Attribute type names as OpenSSL's `-nameopt RFC2253` prints them (RFC 4514 §3 plus the names
 * OpenSSL adds, e.g. emailAddress), so that our reports compare directly with `openssl x509 -subject`.
 */
const SHORT_NAMES: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.4': 'SN',
  '2.5.4.5': 'serialNumber',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.9': 'street',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '2.5.4.12': 'title',
  '2.5.4.42': 'GN',
  '2.5.4.43': 'initials',
  '2.5.4.46': 'dnQualifier',
  '0.9.2342.19200300.100.1.1': 'UID',
  '0.9.2342.19200300.100.1.25': 'DC',
  '1.2.840.113549.1.9.1': 'emailAddress',
};

/** RFC 4514 §2.4 escaping of one attribute value. */
function escapeValue(value: string): string {
  let out = value.replace(/["+,;<>\\]/g, (c) => `\\${c}`).replace(/\0/g, '\\00');
  if (out.startsWith(' ') || out.startsWith('#')) out = `\\${out}`;
  if (out.endsWith(' ') && out.length > 1) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/**
 * Formats a Name as an RFC 4514 string: RDNs in reverse order of the encoding, separated by commas.
 * Values that are not strings are written as `#` + hex of their BER (RFC 4514 §2.4).
 */
export function formatRfc4514(name: pkijs.RelativeDistinguishedNames): string {
  const parts = name.typesAndValues.map((tv) => {
    const type = SHORT_NAMES[tv.type] ?? tv.type;
    const v = tv.value;
    const isString =
      v instanceof asn1js.Utf8String ||
      v instanceof asn1js.PrintableString ||
      v instanceof asn1js.IA5String ||
      v instanceof asn1js.TeletexString ||
      v instanceof asn1js.BmpString ||
      v instanceof asn1js.UniversalString ||
      v instanceof asn1js.VisibleString;
    if (isString) return `${type}=${escapeValue(String(v.valueBlock.value))}`;
    return `${type}=#${Buffer.from(v.toBER(false)).toString('hex')}`;
  });
  return parts.reverse().join(',');
}

import { CONTEXT, decodeOid, malformed, seq, oid, nul, UNIVERSAL, type Der, type Tlv } from './der.js';

/**
 * Typed accessors over the BER reader of der.ts for reading CMS (RFC 5652): each checks the element
 * it is given and throws HISP_CMS_MALFORMED with the field name when it is not what the syntax asks.
 */

export { decodeBer, malformed } from './der.js';
export type Node = Tlv;

/** Universal tag numbers used in navigation. */
export const TAG = {
  INTEGER: 2,
  BIT_STRING: 3,
  OCTET_STRING: 4,
  NULL: 5,
  OID: 6,
  SEQUENCE: 16,
  SET: 17,
  UTC_TIME: 23,
  GENERALIZED_TIME: 24,
} as const;

export function isUniversal(n: Node | undefined, tag: number): n is Node {
  return n !== undefined && n.is(UNIVERSAL, tag);
}

export function isContext(n: Node | undefined, tag: number): n is Node {
  return n !== undefined && n.is(CONTEXT, tag);
}

/** Children of a constructed element (SEQUENCE, SET, constructed context tag). */
export function children(n: Node | undefined, what: string): Node[] {
  if (!n || !n.constructed) throw malformed(`${what} is not constructed`);
  return n.children();
}

export function expectSequence(n: Node | undefined, what: string): Node[] {
  if (!isUniversal(n, TAG.SEQUENCE) || !n.constructed) throw malformed(`${what} is not a SEQUENCE`);
  return n.children();
}

export function readOid(n: Node | undefined, what: string): string {
  if (!isUniversal(n, TAG.OID) || n.constructed) throw malformed(`${what} is not an OBJECT IDENTIFIER`);
  return decodeOid(n.content);
}

/** A small non-negative INTEGER (versions, lengths). */
export function readInteger(n: Node | undefined, what: string): number {
  if (!isUniversal(n, TAG.INTEGER) || n.constructed || n.content.length === 0 || n.content.length > 4) {
    throw malformed(`${what} is not a small INTEGER`);
  }
  const c = n.content;
  if (c[0]! & 0x80) throw malformed(`${what} is negative`);
  let v = 0;
  for (const b of c) v = v * 256 + b;
  return v;
}

/** Content octets of an INTEGER as encoded (serial numbers). */
export function readIntegerBytes(n: Node | undefined, what: string): Buffer {
  if (!isUniversal(n, TAG.INTEGER) || n.constructed || n.content.length === 0) {
    throw malformed(`${what} is not an INTEGER`);
  }
  return n.content;
}

/**
 * Content of an OCTET STRING, primitive or constructed (BER segments, X.690 §8.7.3), also under an
 * IMPLICIT context tag. A primitive one is a view; segments are concatenated once.
 */
export function readOctets(n: Node | undefined, what: string): Buffer {
  if (!n) throw malformed(`${what} is missing`);
  if (n.tagClass === UNIVERSAL && n.tagNumber !== TAG.OCTET_STRING) throw malformed(`${what} is not an OCTET STRING`);
  if (!n.constructed) return n.content;
  const parts: Buffer[] = [];
  const walk = (t: Tlv): void => {
    for (const c of t.children()) {
      if (!c.is(UNIVERSAL, TAG.OCTET_STRING)) throw malformed(`${what} has a segment that is not an OCTET STRING`);
      if (c.constructed) walk(c);
      else parts.push(c.content);
    }
  };
  walk(n);
  return Buffer.concat(parts);
}

/** The exact octets the element was decoded from. */
export function rawBytes(n: Node): Buffer {
  return n.raw;
}

export interface AlgorithmIdentifier {
  oid: string;
  /** The parameters element, if present (NULL included). */
  params: Node | undefined;
}

export function readAlgorithm(n: Node | undefined, what: string): AlgorithmIdentifier {
  const [o, params] = expectSequence(n, what);
  return { oid: readOid(o, `${what} algorithm`), params };
}

/** UTCTime or GeneralizedTime (RFC 5652 §11.3) to a Date; undefined when unreadable. */
export function readTime(n: Node | undefined): Date | undefined {
  if (!n || n.constructed) return undefined;
  const s = n.content.toString('latin1');
  let m: RegExpExecArray | null;
  if (n.is(UNIVERSAL, TAG.UTC_TIME) && (m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)?Z$/.exec(s))) {
    const yy = Number(m[1]);
    return new Date(Date.UTC(yy < 50 ? 2000 + yy : 1900 + yy, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6] ?? 0)));
  }
  if (n.is(UNIVERSAL, TAG.GENERALIZED_TIME) && (m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(?:\.\d+)?Z$/.exec(s))) {
    return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  }
  return undefined;
}

/** AlgorithmIdentifier; 'null' writes explicit NULL parameters (RFC 4055 §5 for sha*WithRSAEncryption). */
export function algorithm(value: string, params?: Der | 'null'): Der {
  if (params === 'null') return seq(oid(value), nul());
  return params ? seq(oid(value), params) : seq(oid(value));
}

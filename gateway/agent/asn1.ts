import * as asn1js from 'asn1js';
import { HispError } from '../core/errors.js';

/**
 * Thin helpers over asn1js for reading and writing CMS (RFC 5652). Reading is BER-tolerant
 * (indefinite lengths, constructed OCTET STRINGs); writing is DER. Every decoding failure becomes
 * HISP_CMS_MALFORMED, so that bytes from the network never surface as a raw exception.
 */

export type Node = asn1js.AsnType;

/** Universal tag numbers used in navigation. */
export const TAG = { INTEGER: 2, BIT_STRING: 3, OCTET_STRING: 4, NULL: 5, OID: 6, SEQUENCE: 16, SET: 17 } as const;

export function malformed(what: string, cause?: unknown): HispError {
  return new HispError('HISP_CMS_MALFORMED', `malformed CMS: ${what}`, { cause });
}

/** Decodes one complete BER element; trailing bytes other than zero padding are refused. */
export function decodeBer(bytes: Uint8Array, what: string): Node {
  let parsed: ReturnType<typeof asn1js.fromBER>;
  try {
    parsed = asn1js.fromBER(bytes);
  } catch (cause) {
    throw malformed(`${what} is not BER`, cause);
  }
  if (parsed.offset === -1 || parsed.result.error) {
    throw malformed(`${what} is not BER (${parsed.result.error || 'decoding failed'})`);
  }
  return parsed.result;
}

interface Tagged {
  idBlock: { tagClass: number; tagNumber: number; isConstructed: boolean };
}

function tagOf(n: Node): Tagged['idBlock'] {
  return (n as unknown as Tagged).idBlock;
}

/** True when the node is universal with the given tag number. */
export function isUniversal(n: Node | undefined, tag: number): boolean {
  if (!n) return false;
  const id = tagOf(n);
  return id.tagClass === 1 && id.tagNumber === tag;
}

/** True when the node is context-specific [tag]. */
export function isContext(n: Node | undefined, tag: number): boolean {
  if (!n) return false;
  const id = tagOf(n);
  return id.tagClass === 3 && id.tagNumber === tag;
}

/** Children of a constructed node (SEQUENCE, SET, constructed context tag). */
export function children(n: Node | undefined, what: string): Node[] {
  const vb = (n as { valueBlock?: { value?: unknown } } | undefined)?.valueBlock;
  if (!n || !tagOf(n).isConstructed || !Array.isArray(vb?.value)) throw malformed(`${what} is not constructed`);
  return (vb.value as Node[]).filter((c) => !(c instanceof asn1js.EndOfContent));
}

export function expectSequence(n: Node | undefined, what: string): Node[] {
  if (!isUniversal(n, TAG.SEQUENCE)) throw malformed(`${what} is not a SEQUENCE`);
  return children(n, what);
}

export function readOid(n: Node | undefined, what: string): string {
  if (!(n instanceof asn1js.ObjectIdentifier)) throw malformed(`${what} is not an OBJECT IDENTIFIER`);
  return n.valueBlock.toString();
}

export function readInteger(n: Node | undefined, what: string): number {
  if (!(n instanceof asn1js.Integer)) throw malformed(`${what} is not an INTEGER`);
  return n.valueBlock.valueDec;
}

/** Content octets of an INTEGER as encoded (two's complement, minimal unless the encoder was lax). */
export function readIntegerBytes(n: Node | undefined, what: string): Buffer {
  if (!(n instanceof asn1js.Integer)) throw malformed(`${what} is not an INTEGER`);
  return Buffer.from(n.valueBlock.valueHexView);
}

/**
 * Content of an OCTET STRING, primitive or constructed (BER segments, RFC 5652 §6.1 allows either),
 * also when it appears under an IMPLICIT context tag.
 */
export function readOctets(n: Node | undefined, what: string): Buffer {
  if (!n) throw malformed(`${what} is missing`);
  const id = tagOf(n);
  if (!id.isConstructed) {
    const view = (n as { valueBlock?: { valueHexView?: Uint8Array } }).valueBlock?.valueHexView;
    if (!view) throw malformed(`${what} has no content`);
    return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
  }
  const parts: Buffer[] = [];
  const walk = (node: Node, depth: number): void => {
    if (depth > 16) throw malformed(`${what} nests too deep`);
    if (!tagOf(node).isConstructed) {
      const view = (node as { valueBlock?: { valueHexView?: Uint8Array } }).valueBlock?.valueHexView;
      if (!view) throw malformed(`${what} segment has no content`);
      parts.push(Buffer.from(view.buffer, view.byteOffset, view.byteLength));
      return;
    }
    const vb = (node as { valueBlock?: { value?: unknown } }).valueBlock;
    // asn1js keeps constructed OCTET STRING segments either as `value` or under valueBlock.value
    const list = Array.isArray(vb?.value) ? (vb.value as Node[]) : [];
    for (const c of list) if (!(c instanceof asn1js.EndOfContent)) walk(c, depth + 1);
  };
  walk(n, 0);
  return Buffer.concat(parts);
}

/** The exact bytes the element was decoded from (tag, length and content). */
export function rawBytes(n: Node): Buffer {
  const view = (n as unknown as { valueBeforeDecodeView: Uint8Array }).valueBeforeDecodeView;
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

export interface AlgorithmIdentifier {
  oid: string;
  /** The parameters element, if present (NULL included). */
  params: Node | undefined;
}

export function readAlgorithm(n: Node | undefined, what: string): AlgorithmIdentifier {
  const [oid, params] = expectSequence(n, what);
  return { oid: readOid(oid, `${what} algorithm`), params };
}

// ---------------------------------------------------------------- writing (DER)

export function oid(value: string): asn1js.ObjectIdentifier {
  return new asn1js.ObjectIdentifier({ value });
}

export function seq(...value: asn1js.AsnType[]): asn1js.Sequence {
  return new asn1js.Sequence({ value });
}

export function int(value: number): asn1js.Integer {
  return new asn1js.Integer({ value });
}

export function octets(bytes: Uint8Array): asn1js.OctetString {
  return new asn1js.OctetString({ valueHex: bytes });
}

/**
 * Already-encoded DER inserted verbatim (certificates, Names), never re-encoded. asn1js's own
 * RawData ignores the writer that constructed types pass down, so it cannot be nested; this can.
 */
class RawDer {
  constructor(private readonly bytes: Uint8Array) {}
  toBER(_sizeOnly?: boolean, writer?: { write(buf: ArrayBuffer): void }): ArrayBuffer {
    // A copy into an ArrayBuffer of its own: a Buffer's .buffer may be Node's shared pool.
    const buf = new Uint8Array(this.bytes).buffer;
    if (writer) writer.write(buf);
    return buf;
  }
}

export function raw(bytes: Uint8Array): asn1js.AsnType {
  return new RawDer(bytes) as unknown as asn1js.AsnType;
}

/** AlgorithmIdentifier; `nullParams` writes an explicit NULL (RFC 4055 §5 for sha*WithRSAEncryption). */
export function algorithm(value: string, params?: asn1js.AsnType | 'null'): asn1js.Sequence {
  if (params === 'null') return seq(oid(value), new asn1js.Null());
  return params ? seq(oid(value), params) : seq(oid(value));
}

/** [n] IMPLICIT constructed: the children keep their encoding, the outer tag is replaced. */
export function implicitConstructed(tagNumber: number, value: asn1js.AsnType[]): asn1js.Constructed {
  return new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber }, value });
}

/** [n] IMPLICIT primitive (e.g. subjectKeyIdentifier [0] in a RecipientIdentifier). */
export function implicitPrimitive(tagNumber: number, bytes: Uint8Array): asn1js.Primitive {
  return new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber }, valueHex: bytes });
}

/** [n] EXPLICIT. */
export function explicit(tagNumber: number, inner: asn1js.AsnType): asn1js.Constructed {
  return new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber }, value: [inner] });
}

export function toDer(n: asn1js.AsnType): Buffer {
  return Buffer.from(n.toBER(false));
}

/** DER SET OF: elements sorted by their encodings (X.690 §11.6), as signed attributes need. */
export function derSetOf(elements: Buffer[], tag = 0x31): Buffer {
  const sorted = [...elements].sort((a, b) => Buffer.compare(a, b));
  const body = Buffer.concat(sorted);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

export function derLength(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  const bytes: number[] = [];
  for (let v = len; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

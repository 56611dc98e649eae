import { HispError } from '../core/errors.js';

/**
 * A zero-copy BER reader and a single-allocation DER writer for the CMS hot path.
 *
 * Why not asn1js here: profiling the agent (`node --cpu-prof dist/bench/profile-agent.js`) showed
 * asn1js's per-node object model taking about half of the time of an unwrap and a fifth of a wrap,
 * which alone put the 1,000 messages/s target of the agent out of reach; it also copies large OCTET
 * STRINGs on encoding. CMS needs only tag/length/value walking, so this file does that and nothing
 * else; X.509 certificates are still decoded by PKI.js (and cached, see Certificate.fromDer).
 * Reading is BER-tolerant (indefinite lengths, constructed strings, X.690 §8.1.3.6); every bound is
 * checked, so malformed input yields HISP_CMS_MALFORMED and never a RangeError or a hang.
 */

const MAX_DEPTH = 48;

export function malformed(what: string): HispError {
  return new HispError('HISP_CMS_MALFORMED', `malformed CMS: ${what}`);
}

/** Tag classes of X.690 §8.1.2.2. */
export const UNIVERSAL = 0;
export const CONTEXT = 2;

/** One decoded element; content and raw are views into the input buffer. */
export class Tlv {
  private kids: Tlv[] | undefined;

  constructor(
    readonly buf: Buffer,
    readonly tagClass: number,
    readonly constructed: boolean,
    readonly tagNumber: number,
    /** Offset of the identifier octet. */
    readonly start: number,
    readonly contentStart: number,
    /** End of the content (before end-of-contents octets of an indefinite form). */
    readonly contentEnd: number,
    /** End of the whole element. */
    readonly end: number,
    private readonly depth: number,
  ) {}

  /** Content octets (a view, no copy). */
  get content(): Buffer {
    return this.buf.subarray(this.contentStart, this.contentEnd);
  }

  /** The whole element as received (identifier, length and content). */
  get raw(): Buffer {
    return this.buf.subarray(this.start, this.end);
  }

  children(): Tlv[] {
    if (!this.constructed) throw malformed('a primitive element was read as constructed');
    if (!this.kids) {
      const list: Tlv[] = [];
      let p = this.contentStart;
      while (p < this.contentEnd) {
        const c = readTlv(this.buf, p, this.contentEnd, this.depth + 1);
        list.push(c);
        p = c.end;
      }
      this.kids = list;
    }
    return this.kids;
  }

  is(tagClass: number, tagNumber: number): boolean {
    return this.tagClass === tagClass && this.tagNumber === tagNumber;
  }
}

/** Decodes one element starting at `offset`, which must end by `limit`. */
export function readTlv(buf: Buffer, offset: number, limit: number, depth = 0): Tlv {
  if (depth > MAX_DEPTH) throw malformed('nesting too deep');
  let p = offset;
  if (p >= limit) throw malformed('element expected, end of data found');
  const id = buf[p++]!;
  const tagClass = id >> 6;
  const constructed = (id & 0x20) !== 0;
  let tagNumber = id & 0x1f;
  if (tagNumber === 0x1f) {
    // High tag number form (X.690 §8.1.2.4): base-128, at most 4 octets here.
    tagNumber = 0;
    for (let i = 0; ; i++) {
      if (p >= limit || i >= 4) throw malformed('bad tag');
      const b = buf[p++]!;
      tagNumber = tagNumber * 128 + (b & 0x7f);
      if (!(b & 0x80)) break;
    }
  }
  if (p >= limit) throw malformed('length expected, end of data found');
  const first = buf[p++]!;
  if (first === 0x80) {
    // Indefinite form (X.690 §8.1.3.6): constructed only; children up to end-of-contents 00 00.
    if (!constructed) throw malformed('indefinite length on a primitive element');
    const contentStart = p;
    while (true) {
      if (p + 2 > limit) throw malformed('end-of-contents missing');
      if (buf[p] === 0 && buf[p + 1] === 0) break;
      p = readTlv(buf, p, limit, depth + 1).end;
    }
    return new Tlv(buf, tagClass, constructed, tagNumber, offset, contentStart, p, p + 2, depth);
  }
  let length: number;
  if (first < 0x80) {
    length = first;
  } else {
    const n = first & 0x7f;
    if (n > 4 || p + n > limit) throw malformed('bad length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[p++]!;
  }
  const end = p + length;
  if (end > limit) throw malformed('length exceeds the data');
  return new Tlv(buf, tagClass, constructed, tagNumber, offset, p, end, end, depth);
}

/** Decodes a complete element; trailing bytes (other than zero padding) are refused. */
export function decodeBer(bytes: Uint8Array, what: string): Tlv {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tlv = readTlv(buf, 0, buf.length);
  for (let i = tlv.end; i < buf.length; i++) {
    if (buf[i] !== 0) throw malformed(`${what} has trailing data`);
  }
  return tlv;
}

/** OBJECT IDENTIFIER content to dotted form (X.690 §8.19). */
export function decodeOid(content: Buffer): string {
  if (content.length === 0 || content.length > 64) throw malformed('bad OBJECT IDENTIFIER');
  const arcs: number[] = [];
  let v = 0;
  for (let i = 0; i < content.length; i++) {
    const b = content[i]!;
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER / 128) throw malformed('OBJECT IDENTIFIER arc too large');
    if (!(b & 0x80)) {
      if (arcs.length === 0) {
        const a = v < 40 ? 0 : v < 80 ? 1 : 2;
        arcs.push(a, v - a * 40);
      } else {
        arcs.push(v);
      }
      v = 0;
    } else if (i === content.length - 1) {
      throw malformed('truncated OBJECT IDENTIFIER');
    }
  }
  return arcs.join('.');
}

// ---------------------------------------------------------------- writing

/**
 * An encoded value that knows its length before it is produced, and produces its encoding as a list
 * of buffers in order: a large content (ciphertext) stays the buffer the cipher returned and is never
 * copied into a bigger one unless the caller asks for one buffer ({@link encode}).
 */
export interface Der {
  readonly length: number;
  /** Appends the encoding, in order, to `out`. Called once. */
  pieces(out: Buffer[]): void;
}

class Bytes implements Der {
  constructor(private readonly bytes: Buffer) {}
  get length(): number {
    return this.bytes.length;
  }
  pieces(out: Buffer[]): void {
    out.push(this.bytes);
  }
}

class Element implements Der {
  readonly length: number;
  private readonly header: Buffer;
  constructor(
    identifier: number,
    private readonly parts: readonly Der[],
  ) {
    let n = 0;
    for (const p of parts) n += p.length;
    this.header = Buffer.concat([Buffer.from([identifier]), lengthOctets(n)]);
    this.length = this.header.length + n;
  }
  pieces(out: Buffer[]): void {
    out.push(this.header);
    for (const p of this.parts) p.pieces(out);
  }
}

export function lengthOctets(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  const bytes: number[] = [];
  for (let v = len; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Already-encoded DER inserted verbatim (certificates, Names, attributes): never re-encoded. */
export function raw(bytes: Buffer): Der {
  return new Bytes(bytes);
}

export function seq(...parts: Der[]): Der {
  return new Element(0x30, parts);
}

export function set(...parts: Der[]): Der {
  return new Element(0x31, parts);
}

/** [n] IMPLICIT or EXPLICIT constructed context tag around already-encoded parts. */
export function ctxConstructed(tagNumber: number, ...parts: Der[]): Der {
  return new Element(0xa0 | tagNumber, parts);
}

/** [n] IMPLICIT primitive context tag (an IMPLICIT OCTET STRING, e.g. subjectKeyIdentifier). */
export function ctxPrimitive(tagNumber: number, content: Buffer): Der {
  return new Element(0x80 | tagNumber, [new Bytes(content)]);
}

export function octets(content: Buffer): Der {
  return new Element(0x04, [new Bytes(content)]);
}

export function nul(): Der {
  return new Bytes(Buffer.from([0x05, 0x00]));
}

export function int(value: number): Der {
  if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) throw new RangeError('int(): small non-negative only');
  const bytes: number[] = [];
  let v = value;
  do {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return new Element(0x02, [new Bytes(Buffer.from(bytes))]);
}

const oidCache = new Map<string, Buffer>();

export function oid(dotted: string): Der {
  let enc = oidCache.get(dotted);
  if (!enc) {
    const arcs = dotted.split('.').map(Number);
    const out: number[] = [];
    const push = (v: number) => {
      const tmp = [v & 0x7f];
      for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) tmp.unshift((v & 0x7f) | 0x80);
      out.push(...tmp);
    };
    push(arcs[0]! * 40 + arcs[1]!);
    for (const a of arcs.slice(2)) push(a);
    enc = Buffer.concat([Buffer.from([0x06, out.length]), Buffer.from(out)]);
    oidCache.set(dotted, enc);
  }
  return new Bytes(enc);
}

/** RFC 5652 §11.3 Time: UTCTime for 1950–2049, GeneralizedTime otherwise (whole seconds, Z). */
export function time(d: Date): Der {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const year = d.getUTCFullYear();
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '');
  if (year >= 1950 && year < 2050) return new Element(0x17, [new Bytes(Buffer.from(`${digits.slice(2)}Z`))]);
  return new Element(0x18, [new Bytes(Buffer.from(`${digits}Z`))]);
}

/** DER SET OF: elements sorted by their encodings (X.690 §11.6), as signed attributes require. */
export function setOf(elements: Buffer[], identifier = 0x31): Buffer {
  const sorted = [...elements].sort((a, b) => Buffer.compare(a, b));
  const body = Buffer.concat(sorted);
  return Buffer.concat([Buffer.from([identifier]), lengthOctets(body.length), body]);
}

/** The encoding as buffers in order (see {@link Der}); checks the announced length. */
export function encodePieces(der: Der): Buffer[] {
  const out: Buffer[] = [];
  der.pieces(out);
  if (out.reduce((n, b) => n + b.length, 0) !== der.length) throw new Error('DER length mismatch');
  return out;
}

/** Encodes into one buffer. */
export function encode(der: Der): Buffer {
  return Buffer.concat(encodePieces(der), der.length);
}

import libmime from 'libmime';
import { HispError } from '../core/errors.js';
import { Base64Decoder } from './base64-decoder.js';

/**
 * A byte-exact view of an RFC 5322 / MIME entity. S/MIME verification must see the exact octets that
 * were signed (RFC 5751 §3.1.1), so nothing here re-serializes: header fields keep their raw bytes,
 * the body is a slice of the input, and multipart parts are slices cut where RFC 2046 §5.1.1 says.
 * mailparser remains the tool for reading content for delivery; this is only the S/MIME skeleton.
 */

export interface HeaderField {
  /** Field name as written. */
  name: string;
  /** Unfolded value without the leading space (RFC 5322 §2.2.3). */
  value: string;
  /** Raw octets of the whole field, folding and line end included. */
  raw: Buffer;
}

export interface ContentType {
  /** Lowercase `type/subtype`. */
  mediaType: string;
  /** Parameters with lowercase names, values unquoted. */
  params: Record<string, string>;
}

const MAX_HEADER_FIELDS = 1000;

export class MimeEntity {
  readonly headers: readonly HeaderField[];
  /** Octets of the header section, up to and including the blank line. */
  readonly headerSection: Buffer;
  readonly body: Buffer;

  private constructor(headers: HeaderField[], headerSection: Buffer, body: Buffer) {
    this.headers = headers;
    this.headerSection = headerSection;
    this.body = body;
  }

  /**
   * Splits an entity at the first empty line (CRLF CRLF, or LF LF for stores that lost the CRs).
   * Throws HISP_MIME_MALFORMED for a header section that is not `name: value` lines.
   */
  static parse(bytes: Buffer): MimeEntity {
    let end = -1;
    let bodyStart = bytes.length;
    if (bytes[0] === 0x0a) {
      end = 0;
      bodyStart = 1;
    } else if (bytes[0] === 0x0d && bytes[1] === 0x0a) {
      end = 0;
      bodyStart = 2;
    } else {
      for (let i = bytes.indexOf(0x0a); i !== -1; i = bytes.indexOf(0x0a, i + 1)) {
        const next = bytes[i + 1];
        if (next === 0x0a) {
          end = i + 1;
          bodyStart = i + 2;
          break;
        }
        if (next === 0x0d && bytes[i + 2] === 0x0a) {
          end = i + 1;
          bodyStart = i + 3;
          break;
        }
      }
    }
    // An entity with headers and no body (no blank line) is legal: everything is header.
    const headerEnd = end === -1 ? bytes.length : end;
    const headerSection = bytes.subarray(0, bodyStart);
    const headers = parseHeaderFields(bytes.subarray(0, headerEnd));
    return new MimeEntity(headers, headerSection, bytes.subarray(bodyStart));
  }

  /** The first field of that name (case-insensitive), unfolded. */
  header(name: string): string | undefined {
    const n = name.toLowerCase();
    return this.headers.find((h) => h.name.toLowerCase() === n)?.value;
  }

  /** Content-Type, defaulting to text/plain (RFC 2045 §5.2). */
  contentType(): ContentType {
    const v = this.header('content-type');
    if (v === undefined) return { mediaType: 'text/plain', params: { charset: 'us-ascii' } };
    return parseContentType(v);
  }
}

function parseHeaderFields(section: Buffer): HeaderField[] {
  const fields: HeaderField[] = [];
  let start = 0;
  while (start < section.length) {
    // A field runs to the line end that is not followed by WSP (folding, RFC 5322 §2.2.3).
    let end = start;
    for (;;) {
      const nl = section.indexOf(0x0a, end);
      if (nl === -1) {
        end = section.length;
        break;
      }
      end = nl + 1;
      const next = section[end];
      if (next !== 0x20 && next !== 0x09) break;
    }
    const raw = section.subarray(start, end);
    const text = raw.toString('latin1');
    const colon = text.indexOf(':');
    const name = colon > 0 ? text.slice(0, colon) : '';
    // RFC 5322 §3.6.8: field names are printable US-ASCII except ':' (no spaces).
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name.trimEnd())) {
      // The first line of an mbox file ("From sender date") is not a header; anything else is malformed.
      if (fields.length === 0 && start === 0 && text.startsWith('From ')) {
        start = end;
        continue;
      }
      throw new HispError('HISP_MIME_MALFORMED', 'the header section has a line that is not a header field');
    }
    const value = text
      .slice(colon + 1)
      .replace(/\r?\n(?=[ \t])/g, '')
      .replace(/\r?\n$/, '')
      .trim();
    fields.push({ name: name.trimEnd(), value, raw });
    if (fields.length > MAX_HEADER_FIELDS) {
      throw new HispError('HISP_MIME_MALFORMED', `more than ${MAX_HEADER_FIELDS} header fields`);
    }
    start = end;
  }
  return fields;
}

/**
 * Parses a Content-Type value tolerantly: quoted or bare parameters in any order, RFC 2231
 * continuations, stray whitespace (libmime does the grammar).
 */
export function parseContentType(value: string): ContentType {
  const parsed = libmime.parseHeaderValue(value);
  const params: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed.params)) params[k.toLowerCase()] = String(v);
  return { mediaType: parsed.value.trim().toLowerCase(), params };
}

/**
 * Cuts a multipart body into its parts' raw octets (RFC 2046 §5.1.1): a delimiter is a line starting
 * with `--boundary`; the line break before it belongs to the delimiter, so a part ends before that
 * CRLF. Text before the first delimiter (preamble) and after the close delimiter (epilogue) is
 * dropped. Throws HISP_MIME_MALFORMED when no close delimiter or no part is found.
 */
export function splitMultipart(body: Buffer, boundary: string): Buffer[] {
  if (!boundary || boundary.length > 200) {
    throw new HispError('HISP_MIME_MALFORMED', 'multipart boundary is missing or too long');
  }
  const dash = Buffer.from(`--${boundary}`, 'latin1');
  const parts: Buffer[] = [];
  let partStart = -1;
  let closed = false;
  for (let at = body.indexOf(dash); at !== -1; at = body.indexOf(dash, at + 1)) {
    if (at !== 0 && body[at - 1] !== 0x0a) continue; // not at a line start
    let p = at + dash.length;
    const isClose = body[p] === 0x2d && body[p + 1] === 0x2d;
    if (isClose) p += 2;
    while (body[p] === 0x20 || body[p] === 0x09) p++; // transport padding
    const lineEnd = body[p] === 0x0d && body[p + 1] === 0x0a ? p + 2 : body[p] === 0x0a ? p + 1 : -1;
    if (lineEnd === -1 && p !== body.length) continue; // `--boundaryXYZ`: a longer, different line
    if (partStart !== -1) {
      let end = at;
      if (body[end - 1] === 0x0a) end--;
      if (body[end - 1] === 0x0d) end--;
      parts.push(body.subarray(partStart, Math.max(partStart, end)));
    }
    if (isClose) {
      closed = true;
      break;
    }
    partStart = lineEnd === -1 ? body.length : lineEnd;
  }
  if (!closed || parts.length === 0) {
    throw new HispError('HISP_MIME_MALFORMED', 'multipart body has no parts or no close delimiter');
  }
  return parts;
}

const NATIVE_BASE64_LIMIT = 4 * 1024 * 1024;

/** True when the text holds only base64 characters and whitespace (for error reports). */
export function isValidBase64(body: Buffer): boolean {
  return !/[^A-Za-z0-9+/=\s]/.test(body.toString('latin1'));
}

/**
 * Decodes a base64 body as RFC 2045 §6.8 says: characters outside the alphabet (line breaks, spaces,
 * anything else) are ignored, and decoding ends at the padding. Up to a few MB Node's native decoder
 * on the whole text does it fastest; larger bodies are decoded octet by octet straight into the
 * output, without the text copies and strings the native path needs, which keeps a 10 MB message
 * within the agent's memory bound. Both paths give the same result; a caller whose decoded bytes turn
 * out to be garbage can use {@link isValidBase64} to report the encoding as the cause.
 */
export function decodeBase64(body: Buffer): Buffer {
  // Node's decoder also reads the base64url characters '-' and '_', which RFC 2045 ignores: text that
  // holds them takes the octet path, so that both paths give the same result.
  if (body.length <= NATIVE_BASE64_LIMIT && body.indexOf(0x2d) === -1 && body.indexOf(0x5f) === -1) {
    return Buffer.from(body.toString('latin1'), 'base64');
  }
  const decoder = new Base64Decoder(body.length);
  decoder.push(body);
  return decoder.end();
}

/** Base64 with 76-character lines and CRLF (RFC 2045 §6.8), as one buffer. */
export function encodeBase64Lines(data: Buffer | readonly Buffer[]): Buffer {
  const pieces = Buffer.isBuffer(data) ? [data] : data;
  const out = Buffer.allocUnsafe(base64LinesLength(pieces.reduce((n, b) => n + b.length, 0)));
  writeBase64Lines(pieces, out, 0);
  return out;
}

/** Size of {@link encodeBase64Lines} output for `n` input octets. */
export function base64LinesLength(n: number): number {
  const b64Length = Math.ceil(n / 3) * 4;
  return b64Length + Math.ceil(b64Length / 76) * 2;
}

/**
 * Writes the base64 lines of the concatenation of `pieces` into `out` at `offset`; returns the offset
 * after the last CRLF. Small data is encoded natively in slices of 57,000 octets (1,000 lines) and
 * folded into lines in place; large data octet by octet across the pieces, so that no intermediate
 * string or joined copy of a 10 MB envelope exists (memory bound).
 */
export function writeBase64Lines(pieces: readonly Buffer[], out: Buffer, offset: number): number {
  const total = pieces.reduce((n, b) => n + b.length, 0);
  if (total > NATIVE_BASE64_LIMIT) return new Base64LineWriter(out, offset).writeAll(pieces);
  // Slices of 57,000 octets (1,000 lines) taken across the pieces without joining them (only a
  // slice that spans two pieces is copied), each encoded natively straight into `out` and then
  // spread into 76-character lines where it lies, last line first (copyWithin, a memmove). Copying
  // line by line out of a scratch buffer made a Uint8Array view per line (Buffer#copy does): 190 KB
  // of short-lived heap objects per 100 KB message, the largest part of what the relay allocated,
  // and what kept the young generation churning (heap sampling of the sending hop).
  let o = offset;
  let p = 0;
  let at = 0;
  for (let done = 0; done < total; ) {
    const n = Math.min(NATIVE_SLICE, total - done);
    let slice: Buffer;
    const piece = pieces[p] as Buffer;
    if (piece.length - at >= n) {
      slice = piece.subarray(at, at + n);
      at += n;
    } else {
      const parts: Buffer[] = [];
      for (let need = n; need > 0; ) {
        const pc = pieces[p] as Buffer;
        const take = Math.min(need, pc.length - at);
        parts.push(pc.subarray(at, at + take));
        need -= take;
        at += take;
        if (at === pc.length && need > 0) {
          p++;
          at = 0;
        }
      }
      slice = Buffer.concat(parts, n);
    }
    if (at === pieces[p]?.length) {
      p++;
      at = 0;
    }
    // The folded lines take more room than the unfolded text, so the text fits where they go.
    const len = out.write(slice.toString('base64'), o, 'latin1');
    const lines = Math.ceil(len / 76);
    for (let i = lines - 1; i >= 0; i--) {
      const from = o + i * 76;
      const to = o + i * 78;
      const end = Math.min(o + len, from + 76);
      if (to !== from) out.copyWithin(to, from, end);
      // Beyond the unmoved text of this line and before the moved text of the next one.
      const eol = to + (end - from);
      out[eol] = 0x0d;
      out[eol + 1] = 0x0a;
    }
    o += len + 2 * lines;
    done += n;
  }
  return o;
}

/** 57,000 octets: 1,000 base64 lines of 76 characters. */
const NATIVE_SLICE = 57 * 1000;

const B64_CHARS = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/');

class Base64LineWriter {
  private col = 0;
  private carry: number[] = [];
  constructor(
    private readonly out: Buffer,
    private o: number,
  ) {}

  writeAll(pieces: readonly Buffer[]): number {
    for (const p of pieces) this.write(p);
    return this.finish();
  }

  private quad(v: number): void {
    const out = this.out;
    out[this.o++] = B64_CHARS[v >> 18]!;
    out[this.o++] = B64_CHARS[(v >> 12) & 63]!;
    out[this.o++] = B64_CHARS[(v >> 6) & 63]!;
    out[this.o++] = B64_CHARS[v & 63]!;
    if ((this.col += 4) === 76) {
      out[this.o++] = 0x0d;
      out[this.o++] = 0x0a;
      this.col = 0;
    }
  }

  private write(data: Buffer): void {
    let i = 0;
    while (this.carry.length > 0 && this.carry.length < 3 && i < data.length) this.carry.push(data[i++]!);
    if (this.carry.length === 3) {
      this.quad((this.carry[0]! << 16) | (this.carry[1]! << 8) | this.carry[2]!);
      this.carry = [];
    }
    const full = i + (data.length - i) - ((data.length - i) % 3);
    for (; i < full; i += 3) this.quad((data[i]! << 16) | (data[i + 1]! << 8) | data[i + 2]!);
    while (i < data.length) this.carry.push(data[i++]!);
  }

  private finish(): number {
    const out = this.out;
    const rest = this.carry.length;
    if (rest) {
      const v = (this.carry[0]! << 16) | (rest === 2 ? this.carry[1]! << 8 : 0);
      out[this.o++] = B64_CHARS[v >> 18]!;
      out[this.o++] = B64_CHARS[(v >> 12) & 63]!;
      out[this.o++] = rest === 2 ? B64_CHARS[(v >> 6) & 63]! : 0x3d;
      out[this.o++] = 0x3d;
      this.col += 4;
    }
    if (this.col) {
      out[this.o++] = 0x0d;
      out[this.o++] = 0x0a;
    }
    return this.o;
  }
}

/** Index of the first bare CR or bare LF, or -1 (RFC 5321 §2.3.8 forbids them in SMTP data). */
export function findBareLineEnd(bytes: Buffer): number {
  let lf = bytes.indexOf(0x0a);
  while (lf !== -1 && lf > 0 && bytes[lf - 1] === 0x0d) lf = bytes.indexOf(0x0a, lf + 1);
  // A bare CR is a CR not followed by LF; only those before the first bare LF matter.
  const limit = lf === -1 ? bytes.length : lf;
  for (let cr = bytes.indexOf(0x0d); cr !== -1 && cr < limit; cr = bytes.indexOf(0x0d, cr + 1)) {
    if (bytes[cr + 1] !== 0x0a) return cr;
  }
  return lf;
}

/** Turns every bare LF (and bare CR) into CRLF: canonical form for signing (RFC 5751 §3.1.1). */
export function toCanonicalCrlf(bytes: Buffer): Buffer {
  if (findBareLineEnd(bytes) === -1) return bytes;
  const text = bytes.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n');
  return Buffer.from(text, 'latin1');
}

import libmime from 'libmime';
import { HispError } from '../core/errors.js';

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

/** Decodes a base64 body tolerantly (any line length, whitespace anywhere); refuses other characters. */
export function decodeBase64(body: Buffer, what: string): Buffer {
  const text = body.toString('latin1').replace(/[\s]+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 === 1) {
    throw new HispError('HISP_MIME_MALFORMED', `${what} is not valid base64`);
  }
  return Buffer.from(text, 'base64');
}

/** Base64 with 76-character lines and CRLF (RFC 2045 §6.8). */
export function encodeBase64Lines(data: Buffer): string {
  const b64 = data.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76));
  return lines.join('\r\n') + '\r\n';
}

/** Index of the first bare CR or bare LF, or -1 (RFC 5321 §2.3.8 forbids them in SMTP data). */
export function findBareLineEnd(bytes: Buffer): number {
  for (let i = bytes.indexOf(0x0a); i !== -1; i = bytes.indexOf(0x0a, i + 1)) {
    if (i === 0 || bytes[i - 1] !== 0x0d) return i;
  }
  for (let i = bytes.indexOf(0x0d); i !== -1; i = bytes.indexOf(0x0d, i + 1)) {
    if (bytes[i + 1] !== 0x0a) return i;
  }
  return -1;
}

/** Turns every bare LF (and bare CR) into CRLF: canonical form for signing (RFC 5751 §3.1.1). */
export function toCanonicalCrlf(bytes: Buffer): Buffer {
  if (findBareLineEnd(bytes) === -1) return bytes;
  const text = bytes.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n');
  return Buffer.from(text, 'latin1');
}

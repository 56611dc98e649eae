import { isAscii, isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import libmime from 'libmime';
import addressparser from 'nodemailer/lib/addressparser';
import { DirectAddress, MAX_ADDRESS_FIELD } from '../core/direct-address.js';
import { HispError } from '../core/errors.js';
import { decodeBase64, MimeEntity, splitMultipart, toCanonicalCrlf, type ContentType } from '../mime/mime-entity.js';

/**
 * What MDNs (RFC 8098, formerly RFC 3798) and DSNs (RFC 3464) share: the multipart/report container
 * (RFC 6522, formerly RFC 3462), report fields that look like header fields but are read far more
 * tolerantly than RFC 5322 headers (the reference implementations and the ETT send MDNs with a UTF-8
 * BOM, without close delimiters, with fields in the part header, with stray spaces and line breaks),
 * and the writing side: CRLF text, folded fields, RFC 5322 dates, fresh boundaries.
 *
 * Every reader here throws only HispError (HISP_MIME_MALFORMED) on bad input.
 */

export const CRLF = '\r\n';

/** The kinds of automatic reports hisp tells apart. */
export type ReportKind = 'mdn' | 'dsn' | 'report';

const MAX_DEPTH = 6;
const MAX_FIELDS = 1000;
const MAX_PARTS = 100;
/** Report fields are short; a longer one (after unfolding) is not a report field. */
const MAX_FIELD_LENGTH = 100_000;

/** Strips a leading UTF-8 byte order mark (the .NET RI writes one). */
export function stripBom(bytes: Buffer): Buffer {
  return bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? bytes.subarray(3) : bytes;
}

/** MimeEntity.parse after dropping a BOM. */
export function parseEntity(bytes: Buffer): MimeEntity {
  return MimeEntity.parse(stripBom(bytes));
}

/** Content-Type of an entity; a value libmime cannot read counts as malformed. */
export function contentTypeOf(entity: MimeEntity): ContentType {
  try {
    return entity.contentType();
  } catch (err) {
    if (err instanceof HispError) throw err;
    throw new HispError('HISP_MIME_MALFORMED', 'unreadable Content-Type', { cause: err });
  }
}

/**
 * The parts of a multipart body, tolerantly: as RFC 2046 §5.1.1 cuts them when the body is well
 * formed; otherwise a close delimiter followed by anything (`--abcde------`, .NET RI) still closes,
 * and a body without a close delimiter (the Java RI's MDN samples) ends its last part at the end.
 */
function reportParts(body: Buffer, boundary: string): Buffer[] {
  try {
    const parts = splitMultipart(body, boundary);
    if (parts.length <= MAX_PARTS) return parts;
  } catch (err) {
    if (!(err instanceof HispError)) throw err;
  }
  if (!boundary || boundary.length > 200) {
    throw new HispError('HISP_MIME_MALFORMED', 'multipart boundary is missing or too long');
  }
  const dash = Buffer.from(`--${boundary}`, 'latin1');
  const parts: Buffer[] = [];
  let partStart = -1;
  const cut = (at: number) => {
    let end = at;
    if (body[end - 1] === 0x0a) end--;
    if (body[end - 1] === 0x0d) end--;
    parts.push(body.subarray(partStart, Math.max(partStart, end)));
  };
  let closed = false;
  for (let at = body.indexOf(dash); at !== -1; at = body.indexOf(dash, at + 1)) {
    if (at !== 0 && body[at - 1] !== 0x0a && body[at - 1] !== 0x0d) continue;
    let p = at + dash.length;
    const isClose = body[p] === 0x2d && body[p + 1] === 0x2d;
    if (!isClose) {
      while (body[p] === 0x20 || body[p] === 0x09) p++;
      const atLineEnd = p === body.length || body[p] === 0x0d || body[p] === 0x0a;
      if (!atLineEnd) continue; // `--boundaryXYZ`: another line
    }
    if (partStart !== -1) cut(at);
    if (isClose) {
      closed = true;
      break;
    }
    if (parts.length >= MAX_PARTS) throw new HispError('HISP_MIME_MALFORMED', `more than ${MAX_PARTS} body parts`);
    const nl = body.indexOf(0x0a, p);
    partStart = nl === -1 ? body.length : nl + 1;
  }
  if (!closed && partStart !== -1) parts.push(body.subarray(partStart));
  if (parts.length === 0) throw new HispError('HISP_MIME_MALFORMED', 'multipart body has no parts');
  return parts;
}

/** The body of an entity with its Content-Transfer-Encoding undone (7bit/8bit/binary as is). */
export function decodedBody(entity: MimeEntity): Buffer {
  const cte = (entity.header('content-transfer-encoding') ?? '').trim().toLowerCase();
  if (cte === 'base64') return decodeBase64(entity.body);
  if (cte === 'quoted-printable') return decodeQuotedPrintable(entity.body);
  return entity.body;
}

/** RFC 2045 §6.7 quoted-printable, tolerant: a bad `=XY` stays as written. */
function decodeQuotedPrintable(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(body.length);
  let o = 0;
  const hex = (c: number | undefined): number =>
    c === undefined ? -1 : c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x41 && c <= 0x46 ? c - 55 : c >= 0x61 && c <= 0x66 ? c - 87 : -1;
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== 0x3d) {
      out[o++] = c;
      continue;
    }
    // Soft line break: '=' then optional whitespace then CRLF or LF.
    let j = i + 1;
    while (body[j] === 0x20 || body[j] === 0x09) j++;
    if (body[j] === 0x0d && body[j + 1] === 0x0a) {
      i = j + 1;
      continue;
    }
    if (body[j] === 0x0a || j === body.length) {
      i = j;
      continue;
    }
    const h = hex(body[i + 1]);
    const l = hex(body[i + 2]);
    if (h >= 0 && l >= 0) {
      out[o++] = h * 16 + l;
      i += 2;
    } else {
      out[o++] = c;
    }
  }
  return out.subarray(0, o);
}

/** A report field (RFC 8098 §3.1, RFC 3464 §2.1): name as written, value unfolded and trimmed. */
export interface ReportField {
  name: string;
  /** Lowercase name, for lookups. */
  key: string;
  value: string;
}

/** Field names of MDN and DSN reports (RFC 8098 §3.2, RFC 3464 §2.2–2.3) and the Direct extension. */
const KNOWN_FIELDS = new Set([
  'reporting-ua', 'mdn-gateway', 'original-recipient', 'final-recipient', 'original-message-id', 'disposition',
  'failure', 'error', 'warning', 'x-direct-final-destination-delivery', 'reporting-mta', 'dsn-gateway',
  'received-from-mta', 'arrival-date', 'original-envelope-id', 'action', 'status', 'remote-mta', 'diagnostic-code',
  'last-attempt-date', 'final-log-id', 'will-retry-until',
]);

const SEPARATORS: ReadonlySet<string> = new Set([';', '/', ',', '=']);

const FIELD_LINE = /^\s*([\x21-\x39\x3b-\x7e]+)\s*:(.*)$/s;

/**
 * Reads report fields tolerantly, in blocks separated by empty lines (the per-message and
 * per-recipient groups of a DSN; an MDN has one). Lines are folded as RFC 5322 says (a line starting
 * with white space continues the field) except that an indented line that starts with a known report
 * field name begins that field (ETT "white space" MDNs indent every field), and a line without a
 * colon continues the previous field, across an empty line too (ETT "extra line break" MDNs break a
 * field in two).
 */
function parseFieldBlocks(text: string): ReportField[][] {
  const blocks: ReportField[][] = [];
  let block: ReportField[] = [];
  // The field being read, its value kept in pieces (joined once at the end: no quadratic copies).
  let last: { field: ReportField; pieces: string[]; length: number; lastChar: string } | undefined;
  const finish = () => {
    if (last !== undefined) last.field.value = last.pieces.join('');
  };
  let count = 0;
  for (const line of text.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/)) {
    if (line.trim() === '') {
      if (block.length > 0) blocks.push(block);
      block = [];
      continue;
    }
    const m = FIELD_LINE.exec(line);
    const name = m?.[1];
    const indented = line[0] === ' ' || line[0] === '\t';
    const startsField =
      m !== null && name !== undefined && (!indented || last === undefined || KNOWN_FIELDS.has(name.toLowerCase()) || /^x-.*original-message-id$/i.test(name));
    if (startsField) {
      finish();
      const value = (m[2] ?? '').trim();
      const field = { name, key: name.toLowerCase(), value };
      last = { field, pieces: [value], length: value.length, lastChar: value[value.length - 1] ?? '' };
      block.push(field);
      if (++count > MAX_FIELDS) throw new HispError('HISP_MIME_MALFORMED', `more than ${MAX_FIELDS} report fields`);
    } else if (last !== undefined) {
      const more = line.trim();
      // Folding (an indented line) is unfolded as RFC 5322 §2.2.3 says, its white space kept as
      // one space. A bare line break inside a value ("…;" then "processed") joins without a space
      // next to a separator, with one otherwise.
      const joins = !indented && (SEPARATORS.has(last.lastChar) || SEPARATORS.has(more[0] ?? ''));
      const piece = joins || last.length === 0 ? more : ` ${more}`;
      last.pieces.push(piece);
      last.length += piece.length;
      last.lastChar = more[more.length - 1] ?? last.lastChar;
      if (last.length > MAX_FIELD_LENGTH) {
        throw new HispError('HISP_MIME_MALFORMED', `a report field is longer than ${MAX_FIELD_LENGTH} characters`);
      }
    } else {
      throw new HispError('HISP_MIME_MALFORMED', 'report content does not start with a field');
    }
  }
  finish();
  if (block.length > 0) blocks.push(block);
  return blocks;
}

/** First value of a field in a list of fields (case-insensitive name). */
export function fieldValue(fields: readonly ReportField[], key: string): string | undefined {
  return fields.find((f) => f.key === key)?.value;
}

/** Every value of a field. */
export function fieldValues(fields: readonly ReportField[], key: string): string[] {
  return fields.filter((f) => f.key === key).map((f) => f.value);
}

/** Removes RFC 5322 comments `( … )` (nested) outside quoted strings. */
export function stripComments(value: string): string {
  let out = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\' && (quoted || depth > 0)) {
      if (depth === 0) out += c + (value[i + 1] ?? '');
      i++;
      continue;
    }
    if (depth === 0 && c === '"') quoted = !quoted;
    if (!quoted && c === '(') {
      depth++;
      continue;
    }
    if (!quoted && c === ')' && depth > 0) {
      depth--;
      if (depth === 0) out += ' ';
      continue;
    }
    if (depth === 0) out += c;
  }
  return out;
}

/** An address field of a report (`address-type ; generic-address`), read tolerantly. */
export interface TypedAddress {
  /** Lowercase address type (`rfc822`), or undefined when the field had none. */
  type: string | undefined;
  /** `local@domain` (domain lowercase) for rfc822 addresses that parse; else the generic address as written. */
  address: string;
  /** False when an rfc822 address did not parse as a mailbox. */
  parsed: boolean;
}

/**
 * Reads `rfc822; addr` in all the forms peers write: `rfc822;addr`, `RFC822; <addr>`, a display name
 * (`rfc822;"Jean" <addr>`, `ExternalUser <addr>`) and no address type at all (older Java RI).
 */
export function parseTypedAddress(value: string): TypedAddress {
  const v = value.trim();
  const m = /^([A-Za-z0-9][A-Za-z0-9.+-]*)\s*;(.*)$/s.exec(v);
  const type = m ? m[1]!.toLowerCase() : undefined;
  const generic = (type !== undefined ? m![2]! : v).trim();
  if (type !== undefined && type !== 'rfc822' && type !== 'unknown') return { type, address: generic, parsed: false };
  try {
    return { type, address: DirectAddress.fromHeader(generic).toString(), parsed: true };
  } catch (err) {
    if (!(err instanceof HispError)) throw err;
    return { type, address: generic, parsed: false };
  }
}

/** A msg-id in angle brackets, unfolded and trimmed (`id` becomes `<id>`); undefined when empty. */
export function normalizeMessageId(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const v = value.replace(/\s+/g, ' ').trim();
  if (v === '') return undefined;
  const angle = /<[^<>]*>/.exec(v);
  if (angle) return angle[0];
  return `<${v.replace(/^<|>$/g, '')}>`;
}

// ------------------------------------------------------------------------------------------------
// Finding the report inside a message

export interface FoundReport {
  kind: ReportKind;
  /** The multipart/report entity, or the bare message/disposition-notification or message/delivery-status one. */
  entity: MimeEntity;
  contentType: ContentType;
}

export const MDN_TYPES: ReadonlySet<string> = new Set(['message/disposition-notification', 'message/global-disposition-notification']);
export const DSN_TYPES: ReadonlySet<string> = new Set(['message/delivery-status', 'message/global-delivery-status']);

/**
 * The report in a message: the message itself when it is a multipart/report (or a bare
 * notification content), else the first part of a multipart/signed and the body of a message/rfc822,
 * looked into recursively (a decrypted Direct message before or after unwrapping). Undefined when
 * there is none. Encrypted content is not looked into: unwrap it first.
 */
export function findReport(entity: MimeEntity, depth = 0): FoundReport | undefined {
  if (depth > MAX_DEPTH) return undefined;
  const ct = contentTypeOf(entity);
  if (ct.mediaType === 'multipart/report') {
    return { kind: reportKindOf(entity, ct), entity, contentType: ct };
  }
  if (MDN_TYPES.has(ct.mediaType)) return { kind: 'mdn', entity, contentType: ct };
  if (DSN_TYPES.has(ct.mediaType)) return { kind: 'dsn', entity, contentType: ct };
  if (ct.mediaType === 'message/rfc822') return findReport(MimeEntity.parse(decodedBody(entity)), depth + 1);
  if (ct.mediaType === 'multipart/signed') {
    const first = reportParts(entity.body, ct.params.boundary ?? '')[0];
    return first === undefined ? undefined : findReport(MimeEntity.parse(first), depth + 1);
  }
  return undefined;
}

function reportKindOf(entity: MimeEntity, ct: ContentType): ReportKind {
  const reportType = (ct.params['report-type'] ?? '').trim().toLowerCase();
  if (reportType === 'disposition-notification' || reportType === 'global-disposition-notification') return 'mdn';
  if (reportType === 'delivery-status' || reportType === 'global-delivery-status') return 'dsn';
  // No or another report-type: what the parts say.
  try {
    for (const part of reportParts(entity.body, ct.params.boundary ?? '')) {
      const type = contentTypeOf(MimeEntity.parse(part)).mediaType;
      if (MDN_TYPES.has(type)) return 'mdn';
      if (DSN_TYPES.has(type)) return 'dsn';
    }
  } catch (err) {
    if (!(err instanceof HispError)) throw err;
  }
  return 'report';
}

/** The first part of a report of one of the media types, parsed, or undefined. */
export function reportPart(report: FoundReport, types: ReadonlySet<string>): MimeEntity | undefined {
  if (types.has(report.contentType.mediaType)) return report.entity;
  for (const raw of reportParts(report.entity.body, report.contentType.params.boundary ?? '')) {
    const part = MimeEntity.parse(raw);
    if (types.has(contentTypeOf(part).mediaType)) return part;
  }
  return undefined;
}

/**
 * The fields of a notification part: its body fields, and before them any fields that sit in the
 * part's header section (a Java RI sample has no empty line after Content-Type).
 */
export function notificationFieldBlocks(part: MimeEntity): ReportField[][] {
  const headerFields = part.headers
    .filter((h) => !/^content-|^mime-version$/i.test(h.name))
    .map((h) => ({ name: h.name, key: h.name.toLowerCase(), value: h.value }));
  const blocks = parseFieldBlocks(decodedBody(part).toString('utf8'));
  if (headerFields.length === 0) return blocks;
  const [first, ...rest] = blocks;
  return [[...headerFields, ...(first ?? [])], ...rest];
}

// ------------------------------------------------------------------------------------------------
// Writing

/** A boundary of at most 70 US-ASCII characters without ':' (RFC 2046 §5.1.1). */
export function freshBoundary(prefix: string): string {
  return `----=_${prefix}_${randomBytes(16).toString('hex')}`;
}

/** Text for a field value: one line (CR, LF and other controls become spaces), at most `max` characters. */
export function oneLine(text: string, max = 900): string {
  // eslint-disable-next-line no-control-regex
  const t = text.replace(/[\x00-\x1f\x7f]+/g, ' ').replace(/ {2,}/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 3)}...` : t;
}

/** `<id>` from a msg-id written with or without brackets; throws HISP_USAGE for an empty one. */
export function msgIdForHeader(id: string, what: string): string {
  const n = normalizeMessageId(oneLine(id, 990));
  if (n === undefined || n === '<>') throw new HispError('HISP_USAGE', `${what} is empty`);
  return n;
}

/**
 * `Name: value` folded at spaces to lines of at most 78 characters where the value allows it
 * (RFC 5322 §2.1.1), CRLF-terminated. Non-ASCII text is written as RFC 2047 encoded words when
 * `encode` is set (unstructured fields such as Subject), else kept as it is.
 */
export function headerLine(name: string, value: string, encode = false): string {
  // RFC 5322 §2.1.1: no line longer than 998 characters, even when a word cannot be folded.
  const v = oneLine(value, 998 - name.length - 2);
  const text = encode && /[^\x20-\x7e]/.test(v) ? libmime.encodeWords(v, 'Q', 52) : v;
  const words = text.split(' ');
  const lines: string[] = [];
  let line = `${name}:`;
  for (const word of words) {
    if (word === '') continue;
    // Never fold before a word that looks like a field name: readers that take an indented
    // "Name:" for a new field (as the tolerant ones here do) would split the value.
    const looksLikeField = /^[!-9;-~]+:/.test(word);
    if (line.length + 1 + word.length > 78 && line.length > name.length + 1 && !looksLikeField) {
      lines.push(line);
      line = ` ${word}`;
    } else {
      line += ` ${word}`;
    }
  }
  lines.push(line);
  return lines.join(CRLF) + CRLF;
}

/** A mailbox for a From/To field: the address of a header value or bare address, as `local@domain`. */
export function mailbox(value: string, what: string): string {
  try {
    return DirectAddress.fromHeader(oneLine(value)).toString();
  } catch (err) {
    if (err instanceof HispError) throw new HispError('HISP_USAGE', `${what}: ${err.message}`, { cause: err });
    throw err;
  }
}

/**
 * A text/plain part for human-readable text: CRLF lines, US-ASCII as 7bit, anything else UTF-8 in
 * base64 so that the report passes 7-bit transports unchanged.
 */
export function textPart(text: string): string {
  let body = text.replace(/\r\n|\r|\n/g, CRLF);
  while (body.endsWith(CRLF)) body = body.slice(0, -2);
  body += CRLF;
  if (/^[\x20-\x7e\r\n\t]*$/.test(body) && body.split(CRLF).every((l) => l.length <= 998)) {
    return `Content-Type: text/plain; charset=us-ascii${CRLF}Content-Transfer-Encoding: 7bit${CRLF}${CRLF}${body}`;
  }
  const b64 = Buffer.from(body, 'utf8').toString('base64').replace(/.{1,76}/g, `$&${CRLF}`);
  return `Content-Type: text/plain; charset=utf-8${CRLF}Content-Transfer-Encoding: base64${CRLF}${CRLF}${b64}`;
}

/**
 * A text/rfc822-headers part (RFC 6522 §4) with the header section of the original message: its
 * raw octets up to (not including) the empty line, with bare LFs made CRLF. Octets are kept as they
 * are (8bit when they are not ASCII).
 */
export function rfc822HeadersPart(headers: Buffer): Buffer {
  const entity = MimeEntity.parse(stripBom(headers));
  let section = toCanonicalCrlf(Buffer.concat(entity.headers.map((h) => h.raw)));
  if (section.length > 0 && !section.subarray(-2).equals(Buffer.from(CRLF))) section = Buffer.concat([section, Buffer.from(CRLF)]);
  const eightBit = !isAscii(section);
  const head = `Content-Type: text/rfc822-headers${eightBit ? `${CRLF}Content-Transfer-Encoding: 8bit` : ''}${CRLF}${CRLF}`;
  return Buffer.concat([Buffer.from(head, 'latin1'), section]);
}

/**
 * A header value of the original message's header section (Subject, Message-ID), as text: octets
 * read as UTF-8 when they are UTF-8, encoded words decoded.
 */
export function originalHeader(headers: Buffer | undefined, name: string): string | undefined {
  if (headers === undefined) return undefined;
  let value: string | undefined;
  try {
    value = MimeEntity.parse(stripBom(headers)).header(name);
  } catch (err) {
    if (err instanceof HispError) return undefined;
    throw err;
  }
  return value === undefined ? undefined : headerText(value);
}

/** An unstructured header value as text: its octets read as UTF-8 when they are UTF-8, encoded words decoded. */
export function headerText(value: string): string {
  const octets = Buffer.from(value, 'latin1');
  const text = isUtf8(octets) ? octets.toString('utf8') : value;
  try {
    return libmime.decodeWords(text);
  } catch {
    return text;
  }
}

/**
 * The octets of a multipart/report body: each part after its delimiter, then the close delimiter
 * (RFC 2046 §5.1.1; the CRLF before a delimiter belongs to it). Strings are written as UTF-8.
 */
export function assembleMultipart(head: string, boundary: string, parts: readonly (string | Buffer)[]): Buffer {
  const pieces: Buffer[] = [Buffer.from(head, 'utf8'), Buffer.from(CRLF)];
  for (const part of parts) {
    pieces.push(Buffer.from(`--${boundary}${CRLF}`), Buffer.isBuffer(part) ? part : Buffer.from(part, 'utf8'), Buffer.from(CRLF));
  }
  pieces.push(Buffer.from(`--${boundary}--${CRLF}`));
  return Buffer.concat(pieces);
}

/** The mailboxes of an address-list value (`a@b, "C, D" <c@d>`), as `local@domain`; HISP_USAGE when one is not a mailbox. */
export function mailboxes(value: string, what: string): string[] {
  if (value.length > MAX_ADDRESS_FIELD) throw new HispError('HISP_USAGE', `${what} is longer than ${MAX_ADDRESS_FIELD} characters`);
  // Split as the grammar says, in one linear pass (regular expressions over quotes and comments
  // were quadratic on an unclosed one).
  const list = addressparser(oneLine(value), { flatten: true });
  if (list.length === 0) throw new HispError('HISP_USAGE', `${what} is empty`);
  return list.map((item) => mailbox(item.address === '' ? item.name : `<${item.address}>`, what));
}

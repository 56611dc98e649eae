import type { HeaderField } from '../mime/mime-entity.js';
import { MimeEntity } from '../mime/mime-entity.js';
import { mailbox, stripBom } from './report-mime.js';

/**
 * The `Disposition-Notification-Options` request header (RFC 8098 §2.2, formerly RFC 3798 §2.2) and
 * the Direct "timely and reliable" request it carries (Implementation Guide for Delivery Notification
 * in Direct v1.0, R-MDN-4):
 *
 *     Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true
 *
 * Grammar: `parameter *(";" parameter)`, `parameter = attribute "=" importance "," value *("," value)`,
 * `importance = "required" / "optional"`, attribute a MIME token, value a token or quoted string.
 * Read with case-insensitive names and white space allowed around every separator, but otherwise
 * strictly: a header that does not follow the grammar does not ask for final-destination delivery
 * (ETT MT 40: answer it with a processed MDN, and never put the extension field in a dispatched one).
 */

/** The Direct option and MDN extension field name (DN-IG v1.0; Java and .NET RI `DispositionOption_TimelyAndReliable`). */
export const FINAL_DELIVERY_OPTION = 'X-DIRECT-FINAL-DESTINATION-DELIVERY';

/** The request value hisp writes (R-MDN-4). */
export const FINAL_DELIVERY_REQUEST = `${FINAL_DELIVERY_OPTION}=optional,true`;

export interface DispositionOptionParameter {
  /** Attribute as written. */
  attribute: string;
  /** Lowercase attribute. */
  name: string;
  importance: 'required' | 'optional';
  /** Values, unquoted. */
  values: string[];
}

export interface NotificationOptions {
  /** True when the message has a Disposition-Notification-Options field. */
  present: boolean;
  /** True when the field is well-formed and asks X-DIRECT-FINAL-DESTINATION-DELIVERY with value true. */
  finalDeliveryRequested: boolean;
  /** True when the field is present but does not follow the RFC 8098 §2.2 grammar. */
  malformed: boolean;
  /**
   * Attributes of `required` parameters hisp does not understand: RFC 8098 §2.2 then allows no MDN
   * other than a "failed" one (see {@link unsupportedRequiredFailure}).
   */
  unsupportedRequired: string[];
  /** The well-formed parameters, in order. */
  parameters: DispositionOptionParameter[];
  /** Why the field is malformed (empty when it is not). */
  problems: string[];
}

/** Attributes hisp understands. */
const UNDERSTOOD = new Set([FINAL_DELIVERY_OPTION.toLowerCase()]);

/** RFC 2045 token characters. */
const TOKEN = /^[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+$/;

/** Splits at `sep` outside quoted strings; quoted-pair escapes are kept. */
function splitOutsideQuotes(text: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted && c === '\\') {
      cur += c + (text[i + 1] ?? '');
      i++;
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === sep && !quoted) {
      out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  out.push(cur);
  return out;
}

/** A token or a quoted string (unquoted); undefined when it is neither. */
function readValue(raw: string): string | undefined {
  const v = raw.trim();
  if (TOKEN.test(v)) return v;
  const q = /^"((?:[^"\\\r\n]|\\.)*)"$/s.exec(v);
  return q ? q[1]!.replace(/\\(.)/gs, '$1') : undefined;
}

/**
 * Parses the value(s) of Disposition-Notification-Options. Several fields (not allowed, but seen)
 * are read as one list. Never throws.
 */
export function parseNotificationOptions(value: string | readonly string[] | undefined): NotificationOptions {
  const values = value === undefined ? [] : typeof value === 'string' ? [value] : [...value];
  const result: NotificationOptions = {
    present: values.length > 0,
    finalDeliveryRequested: false,
    malformed: false,
    unsupportedRequired: [],
    parameters: [],
    problems: [],
  };
  if (!result.present) return result;
  const problem = (p: string) => {
    result.malformed = true;
    result.problems.push(p);
  };
  for (const text of values) {
    const unfolded = text.replace(/\r?\n(?=[ \t])/g, '');
    const segments = splitOutsideQuotes(unfolded, ';');
    // One trailing ';' is forgiven; other empty parameters are not.
    if (segments.length > 1 && segments[segments.length - 1]!.trim() === '') segments.pop();
    for (const segment of segments) {
      const seg = segment.trim();
      if (seg === '') {
        problem('empty parameter');
        continue;
      }
      const eq = seg.indexOf('=');
      if (eq === -1) {
        problem(`parameter without "=importance,value": ${JSON.stringify(seg.slice(0, 80))}`);
        continue;
      }
      const attribute = seg.slice(0, eq).trim();
      if (!TOKEN.test(attribute)) {
        problem(`attribute is not a token: ${JSON.stringify(attribute.slice(0, 80))}`);
        continue;
      }
      const [importanceRaw = '', ...rawValues] = splitOutsideQuotes(seg.slice(eq + 1), ',');
      const importance = importanceRaw.trim().toLowerCase();
      if (importance !== 'required' && importance !== 'optional') {
        problem(`${attribute}: importance must be "required" or "optional", not ${JSON.stringify(importanceRaw.trim().slice(0, 40))}`);
        continue;
      }
      if (rawValues.length === 0) {
        problem(`${attribute}: no value`);
        continue;
      }
      const parsed = rawValues.map(readValue);
      if (parsed.some((v) => v === undefined)) {
        problem(`${attribute}: a value is neither a token nor a quoted string`);
        continue;
      }
      const param: DispositionOptionParameter = {
        attribute,
        name: attribute.toLowerCase(),
        importance,
        values: parsed as string[],
      };
      result.parameters.push(param);
      if (importance === 'required' && !UNDERSTOOD.has(param.name) && !result.unsupportedRequired.includes(attribute)) {
        result.unsupportedRequired.push(attribute);
      }
    }
  }
  const finalDelivery = result.parameters.find((p) => p.name === FINAL_DELIVERY_OPTION.toLowerCase());
  result.finalDeliveryRequested = !result.malformed && finalDelivery?.values[0]?.toLowerCase() === 'true';
  return result;
}

/** The Disposition-Notification-Options of a message (its header fields, or its bytes). Never throws for a parsed entity. */
export function notificationOptionsOf(message: MimeEntity | readonly HeaderField[] | Buffer): NotificationOptions {
  const headers = Buffer.isBuffer(message)
    ? MimeEntity.parse(stripBom(message)).headers
    : message instanceof MimeEntity
      ? message.headers
      : message;
  const values = headers.filter((h) => h.name.toLowerCase() === 'disposition-notification-options').map((h) => h.value);
  return parseNotificationOptions(values.length === 0 ? undefined : values);
}

/** The Failure field text of the "failed" MDN RFC 8098 §2.2 asks for when a required parameter is not understood. */
export function unsupportedRequiredFailure(options: NotificationOptions): string | undefined {
  if (options.unsupportedRequired.length === 0) return undefined;
  return `unsupported required Disposition-Notification-Options parameter(s): ${options.unsupportedRequired.join(', ')}`;
}

function serializeParameter(p: DispositionOptionParameter): string {
  const value = (v: string) => (TOKEN.test(v) ? v : `"${v.replace(/["\\]/g, '\\$&')}"`);
  return `${p.attribute}=${p.importance},${p.values.map(value).join(',')}`;
}

export interface RequestHeaderOptions {
  /** Ask for timely and reliable delivery (X-DIRECT-FINAL-DESTINATION-DELIVERY); default true (requirements §5.6). */
  finalDelivery?: boolean;
}

export interface RequestHeaderEdit {
  /** Header fields to add at the end of the header section, each `Name: value` + CRLF ('' when none). */
  fields: string;
  /** Lowercase names of existing fields to remove first (a Disposition-Notification-Options merged into the new one). */
  drop: string[];
}

/**
 * What an outgoing message needs to ask for MDNs (R-MDN-4, ETT MT 45/46): `Disposition-Notification-To`
 * (the sender) unless it has one, and `Disposition-Notification-Options` with
 * X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true unless it already asks for it validly. An existing
 * options field that lacks the Direct parameter (or is malformed) is replaced by one that keeps its
 * well-formed parameters and adds the Direct one, since the field may appear only once.
 */
export function requestHeaders(
  headers: readonly HeaderField[],
  sender: string,
  options: RequestHeaderOptions = {},
): RequestHeaderEdit {
  const has = (name: string) => headers.some((h) => h.name.toLowerCase() === name);
  let fields = '';
  const drop: string[] = [];
  if (!has('disposition-notification-to')) {
    fields += `Disposition-Notification-To: ${mailbox(sender, 'the sender')}\r\n`;
  }
  if (options.finalDelivery ?? true) {
    const current = notificationOptionsOf(headers);
    if (!current.finalDeliveryRequested) {
      const kept = current.parameters.filter((p) => p.name !== FINAL_DELIVERY_OPTION.toLowerCase());
      const value = [...kept.map(serializeParameter), FINAL_DELIVERY_REQUEST].join('; ');
      if (current.present) drop.push('disposition-notification-options');
      fields += `Disposition-Notification-Options: ${value}\r\n`;
    }
  }
  return { fields, drop };
}

/**
 * The message with {@link requestHeaders} applied: every other octet is kept as it was; the new
 * fields go at the end of the header section with the message's own line ending (CRLF or LF).
 * Throws HISP_MIME_MALFORMED for a message whose header section cannot be read, HISP_USAGE for a
 * sender that is not a mailbox.
 */
export function addRequestHeaders(message: Buffer, sender: string, options: RequestHeaderOptions = {}): Buffer {
  const pieces = requestHeaderPieces(message, sender, options);
  return pieces.length === 1 && pieces[0] === message ? message : Buffer.concat(pieces);
}

/**
 * {@link addRequestHeaders} as pieces of the message and the new bytes, for a caller that puts more
 * in front (the submission edge's trace fields) and copies the body once. `parsed` is the message's
 * entity when the caller has it already (it is used only when the message has no byte order mark).
 * `[message]` when nothing is to change.
 */
export function requestHeaderPieces(message: Buffer, sender: string, options: RequestHeaderOptions = {}, parsed?: MimeEntity): Buffer[] {
  const bytes = stripBom(message);
  const entity = parsed !== undefined && bytes === message ? parsed : MimeEntity.parse(bytes);
  const edit = requestHeaders(entity.headers, sender, options);
  if (edit.fields === '' && edit.drop.length === 0) return [message];
  const offsetOf = (b: Buffer) => b.byteOffset - bytes.byteOffset;
  const first = entity.headers[0];
  const last = entity.headers[entity.headers.length - 1];
  const start = first === undefined ? 0 : offsetOf(first.raw);
  let end = last === undefined ? 0 : offsetOf(last.raw) + last.raw.length;
  const lf = first !== undefined && !first.raw.includes('\r\n') && first.raw.includes('\n');
  const eol = lf ? '\n' : '\r\n';
  const pieces: Buffer[] = [bytes.subarray(0, start)];
  for (const h of entity.headers) if (!edit.drop.includes(h.name.toLowerCase())) pieces.push(h.raw);
  // A last field without a line ending (a message that is all header) gets one before ours.
  if (last !== undefined && !last.raw.toString('latin1').endsWith('\n')) pieces.push(Buffer.from(eol));
  pieces.push(Buffer.from(edit.fields.replace(/\r\n/g, eol), 'latin1'));
  if (end > bytes.length) end = bytes.length;
  pieces.push(bytes.subarray(end));
  return pieces;
}

import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';

/**
 * The JSON body of a request whose base64 fields may be long (a send's documents: 137 KB of base64
 * for a 100 KB C-CDA), read so that a long base64 value never becomes a JavaScript string.
 *
 * Why: V8 allocates a string over 128 KiB in its large-object space, page by page, and that
 * allocation costs ten times a smaller string's (0.2 ms against 0.02 ms in bench/api-bench.ts's
 * machine). Parsed the ordinary way, a send's body is such a string once as the text and once more
 * as the `content` value, and then decoded: 0.4 ms a request, a third of what the API door cost
 * beyond the SMTP door. Here the text is cut at its long strings, and only the rest is parsed.
 *
 * How: the body's strings are found as RFC 8259 §7 delimits them (a quotation mark opens one, the
 * next quotation mark not escaped by an odd run of reverse solidi closes it). A string in value
 * position (not followed by `:`), of at least {@link LONG_STRING} octets and without a reverse
 * solidus, is replaced in the text by a placeholder (a string naming a random per-request nonce
 * and its number) before the shortened text is parsed by the same JSON parser as ever (prototype
 * poisoning refused). Then:
 * - a placeholder at one of the route's base64 fields (a send's `documents[i].content`) whose octets are
 *   base64 (RFC 4648 §4, padded: the rule of api-schemas.ts decodeBase64Text) stays, and its
 *   octets are decoded straight from the body, a chunk at a time ({@link base64Member} has them);
 * - every other placeholder is put back as the string its octets are, parsed as JSON (so a string
 *   that is no JSON string, a control character in it say, is refused as the whole body was).
 * The value is the one JSON.parse gives for the whole text, but for the base64 fields kept as
 * octets; a body is refused exactly when JSON.parse refuses it (property-tested against it).
 *
 * Bounded: at most {@link MAX_STRINGS} strings are looked at (beyond, the rest of the text is
 * parsed as it is), each search a native one; the parse is the parser's.
 */
declare module 'fastify' {
  interface FastifyContextConfig {
    /** JSON Pointers (`*` for each array element) of the body's base64 fields: read by {@link readJsonBody}. */
    base64Fields?: readonly string[];
  }
}

export const LONG_STRING = 1024;
export const MAX_STRINGS = 4096;
/** Decoded this many base64 characters at a time: a multiple of 4, strings well under 128 KiB. */
const DECODE_CHUNK = 48 * 1024;
const QUOTE = 0x22;
const REVERSE_SOLIDUS = 0x5c;
const COLON = 0x3a;
const EQUALS = 0x3d;

/** A base64 value kept as octets: its text in the body and what it decodes to. */
interface KeptBase64 {
  placeholder: string;
  text: Buffer;
  bytes: Buffer;
}

/**
 * Placeholders name a random per-process value and a counter: unique, and no client can know one
 * to write it in a body (a randomBytes call a request cost 15 µs).
 */
const PROCESS_NONCE = randomBytes(9).toString('base64url');
let placeholderCounter = 0;

/** The base64 fields kept as octets, by the object that holds them and the field's name. */
const keptByOwner = new WeakMap<object, Map<string, KeptBase64>>();
/** The same, by the parsed body they belong to (for its JSON text again: {@link jsonText}). */
const keptByRoot = new WeakMap<object, KeptBase64[]>();

/**
 * Parses `body` (UTF-8 JSON) with `parse`, keeping the long base64 strings at `base64Fields` as
 * octets. A field is a JSON Pointer (RFC 6901) whose `*` segments stand for every element of an
 * array (`/documents/` `*` `/content`: each document's content). Throws what `parse` throws for a body that is not JSON.
 */
export function readJsonBody(body: Buffer, base64Fields: readonly string[], parse: (text: string) => unknown): unknown {
  const long = base64Fields.length > 0 && body.length >= LONG_STRING ? longStrings(body) : [];
  if (long.length === 0) return parse(body.toString('utf8'));

  const nonce = `${PROCESS_NONCE}${(placeholderCounter++).toString(36)}`;
  const placeholders = new Map<string, { start: number; end: number }>();
  const pieces: string[] = [];
  let at = 0;
  long.forEach(({ start, end }, i) => {
    const placeholder = `hisp-base64-${nonce}-${i}`;
    placeholders.set(placeholder, { start, end });
    // Cut at quotation marks: never inside a UTF-8 sequence.
    pieces.push(body.toString('utf8', at, start), placeholder);
    at = end;
  });
  pieces.push(body.toString('utf8', at));
  const value = parse(pieces.join(''));

  // The base64 fields: kept as octets when they are base64; else put back below as strings.
  const kept: KeptBase64[] = [];
  for (const field of base64Fields) {
    for (const { owner, key } of members(value, field)) {
      const placeholder = owner[key];
      const region = typeof placeholder === 'string' ? placeholders.get(placeholder) : undefined;
      if (!region) continue;
      const text = body.subarray(region.start, region.end);
      const bytes = decodeBase64Octets(text);
      if (!bytes) continue;
      const entry = { placeholder: placeholder as string, text, bytes };
      kept.push(entry);
      let byKey = keptByOwner.get(owner);
      if (!byKey) keptByOwner.set(owner, (byKey = new Map<string, KeptBase64>()));
      byKey.set(key, entry);
      placeholders.delete(placeholder as string);
    }
  }
  let result = value;
  if (placeholders.size > 0) {
    // What is left is put back (each string parsed, as the whole text would have been), wherever it
    // is; a placeholder the parse dropped (a duplicate name: the last one wins) is still checked.
    const stringOf = (region: { start: number; end: number }) => parse(body.toString('utf8', region.start - 1, region.end + 1));
    const holder = [value];
    const restored = restore(holder, placeholders, stringOf);
    for (const [placeholder, region] of placeholders) if (!restored.has(placeholder)) stringOf(region);
    result = holder[0];
  }
  if (kept.length > 0 && result !== null && typeof result === 'object') keptByRoot.set(result, kept);
  return result;
}

/**
 * The content-type parser of JSON bodies (application/json; FHIR's application/fhir+json) for
 * `parseAs: 'buffer'`: {@link readJsonBody} with the route's `config.base64Fields`, the parse
 * fastify's own (prototype poisoning refused), its refusals as they were.
 */
export function jsonBodyParser(app: Pick<FastifyInstance, 'getDefaultJsonParser'>): (request: FastifyRequest, body: string | Buffer, done: (err: Error | null, body?: unknown) => void) => void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  return (request, body, done) => {
    const parse = (text: string): unknown => {
      let error: Error | undefined;
      let value: unknown;
      void parseJson(request, text, (err, parsed) => {
        error = err ?? undefined;
        value = parsed;
      });
      if (error) throw error;
      return value;
    };
    try {
      done(null, readJsonBody(Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8'), request.routeOptions.config.base64Fields ?? [], parse));
    } catch (err) {
      done(err as Error, undefined);
    }
  };
}

/** The octets of a base64 field {@link readJsonBody} kept (undefined when it is an ordinary string). */
export function base64Member(owner: object, key: string): Buffer | undefined {
  const entry = keptByOwner.get(owner)?.get(key);
  return entry && (owner as Record<string, unknown>)[key] === entry.placeholder ? entry.bytes : undefined;
}

/** JSON.stringify(value) as UTF-8, with the base64 fields kept as octets written as the text they were. */
export function jsonText(value: unknown): Buffer {
  const text = JSON.stringify(value);
  const kept = value !== null && typeof value === 'object' ? keptByRoot.get(value) : undefined;
  if (!kept) return Buffer.from(text, 'utf8');
  const found = kept.map((k) => ({ k, at: text.indexOf(`"${k.placeholder}"`) })).filter((f) => f.at !== -1).sort((a, b) => a.at - b.at);
  const parts: Buffer[] = [];
  let at = 0;
  for (const { k, at: where } of found) {
    parts.push(Buffer.from(text.slice(at, where + 1), 'utf8'), k.text);
    at = where + 1 + k.placeholder.length;
  }
  parts.push(Buffer.from(text.slice(at), 'utf8'));
  return Buffer.concat(parts);
}

/**
 * The strings of `body` worth keeping out of the parse: in value position, long, without escapes;
 * as [start, end) of their contents (the quotation marks excluded).
 */
function longStrings(body: Buffer): { start: number; end: number }[] {
  const found: { start: number; end: number }[] = [];
  let at = 0;
  for (let strings = 0; strings < MAX_STRINGS; strings++) {
    const open = body.indexOf(QUOTE, at);
    if (open === -1) break;
    let close = open + 1;
    for (;;) {
      close = body.indexOf(QUOTE, close);
      if (close === -1) return found; // unterminated: the parse says so
      let escapes = 0;
      while (body[close - 1 - escapes] === REVERSE_SOLIDUS) escapes++;
      if (escapes % 2 === 0) break;
      close++;
    }
    at = close + 1;
    if (close - open - 1 < LONG_STRING || body.subarray(open + 1, close).includes(REVERSE_SOLIDUS)) continue;
    let next = at;
    while (next < body.length && isJsonWhitespace(body[next]!)) next++;
    if (body[next] === COLON) continue; // a member name (RFC 8259 §4)
    found.push({ start: open + 1, end: close });
  }
  return found;
}

/** RFC 8259 §2: space, horizontal tab, line feed, carriage return. */
function isJsonWhitespace(octet: number): boolean {
  return octet === 0x20 || octet === 0x09 || octet === 0x0a || octet === 0x0d;
}

/**
 * Base64 text (RFC 4648 §4, whole padded quanta) decoded a chunk at a time, or undefined when it is
 * not that. Node's decoder skips an octet outside the alphabet and stops at an `=`: either yields
 * fewer octets than the length promises, which is how it is told (as in decodeBase64Text); `-` and
 * `_` (base64url, RFC 4648 §5), which it would take, are looked for first.
 */
function decodeBase64Octets(text: Buffer): Buffer | undefined {
  const length = text.length;
  if (length % 4 !== 0 || text.includes(0x2d) || text.includes(0x5f)) return undefined;
  const padding = text[length - 1] === EQUALS ? (text[length - 2] === EQUALS ? 2 : 1) : 0;
  const out = Buffer.allocUnsafe((length / 4) * 3);
  let written = 0;
  for (let at = 0; at < length; at += DECODE_CHUNK) {
    const end = Math.min(length, at + DECODE_CHUNK);
    const n = out.write(text.toString('latin1', at, end), written, 'base64');
    if (n !== ((end - at) / 4) * 3 - (end === length ? padding : 0)) return undefined;
    written += n;
  }
  return out.subarray(0, written);
}

/** The members a field pointer names in `value`: objects holding it, by name (`*` = each array element). */
function members(value: unknown, pointer: string): { owner: Record<string, unknown>; key: string }[] {
  const segments = pointer.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const key = segments.pop();
  if (key === undefined) return [];
  let holders: unknown[] = [value];
  for (const segment of segments) {
    const next: unknown[] = [];
    for (const h of holders) {
      if (segment === '*') {
        // One at a time: spreading an array of 150,000 elements into push() overflows the stack.
        if (Array.isArray(h)) for (const element of h as unknown[]) next.push(element);
      } else if (isRecord(h) && Object.hasOwn(h, segment)) next.push(h[segment]);
    }
    holders = next;
  }
  return holders.filter((h): h is Record<string, unknown> => isRecord(h) && Object.hasOwn(h, key)).map((owner) => ({ owner, key }));
}

/**
 * Every placeholder left in `value` replaced by its string (an explicit stack: the nesting is the
 * client's), visiting members in place (no list of pairs: a body may hold millions of elements) and
 * stopping once every placeholder is found.
 */
function restore(value: unknown, placeholders: ReadonlyMap<string, { start: number; end: number }>, stringOf: (region: { start: number; end: number }) => unknown): Set<string> {
  const restored = new Set<string>();
  const stack: unknown[] = [value];
  const visit = (holder: Record<string | number, unknown>, k: string | number): void => {
    const v = holder[k];
    if (typeof v === 'string') {
      const region = placeholders.get(v);
      if (region) {
        holder[k] = stringOf(region);
        restored.add(v);
      }
    } else if (v !== null && typeof v === 'object') stack.push(v);
  };
  while (stack.length > 0 && restored.size < placeholders.size) {
    const node = stack.pop();
    if (node === null || typeof node !== 'object') continue;
    if (Array.isArray(node)) for (let i = 0; i < node.length; i++) visit(node as unknown as Record<number, unknown>, i);
    else for (const k in node) if (Object.hasOwn(node, k)) visit(node as Record<string, unknown>, k);
  }
  return restored;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

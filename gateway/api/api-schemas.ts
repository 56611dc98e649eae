import { HispError } from '../core/errors.js';
import { Type, type TObject, type TProperties, type ObjectOptions } from '@sinclair/typebox';
import { base64Member } from './json-body.js';

/**
 * The TypeBox schemas the routes share, and the rule every request schema follows: objects are
 * closed (`additionalProperties: false`), so that an unknown field is a 400, never silently dropped
 * or kept (issue 15). The server checks the rule for every route at registration
 * ({@link assertClosedObjects}); {@link Closed} is the short way to follow it.
 */

/** An object that takes exactly its properties (an unknown one is HISP_API_INVALID_REQUEST). */
export function Closed<T extends TProperties>(properties: T, options: ObjectOptions = {}): TObject<T> {
  return Type.Object(properties, { ...options, additionalProperties: false });
}

/**
 * A Direct address as the API takes it: `local@domain` (RFC 5321 mailbox, R-ADR-1), the domain in
 * LDH labels of at most 63 characters and 253 in all (RFC 1035 §2.3.4), no spaces or angle brackets.
 * `DirectAddress.parse` is the reading; the pattern makes the rule visible in /openapi.json and
 * keeps what is not a host name away from DNS.
 */
export const DirectAddressSchema = Type.String({
  minLength: 3,
  maxLength: 320,
  pattern: '^[^\\s<>@]+(?:@[^\\s<>@]+)*@(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\\.?$',
  description: 'A Direct address (local@domain).',
});

/** A local domain, as in a key's `@domain` scopes (without the `@`). */
export const DomainNameSchema = Type.String({
  minLength: 1,
  maxLength: 254,
  pattern: '^(?=.{1,253}\\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\\.?$',
  description: 'A domain name.',
});

/**
 * An RFC 9457 problem detail (gateway/api/problem-mapping.ts): `application/problem+json`, with the
 * HISP_… code and extension members (§3.2), hence open (`additionalProperties: true`).
 */
export const ProblemSchema = Type.Object(
  {
    type: Type.String({ description: 'A URI naming the problem type: tag:hisp.dev,2026:problem: and the code.' }),
    title: Type.String(),
    status: Type.Integer({ minimum: 400, maximum: 599 }),
    detail: Type.String(),
    code: Type.String({ pattern: '^HISP_[A-Z0-9_]+$', description: 'The HISP_… code (docs/errors.md).' }),
    instance: Type.Optional(Type.String()),
    trace: Type.Optional(Type.String({ description: 'For an internal failure: the id the log has its details under.' })),
    retryAfter: Type.Optional(Type.Integer({ minimum: 0, description: 'Seconds to wait (429, 503), as the Retry-After field says.' })),
    destinations: Type.Optional(
      Type.Array(
        Type.Object(
          { address: Type.String(), verdict: Type.String({ description: 'untrusted, no-certificate or try-later' }), code: Type.Optional(Type.String()), reason: Type.Optional(Type.String()) },
          { additionalProperties: false },
        ),
        { description: 'HISP_TRANSMIT_DESTINATION_REFUSED: each destination refused, its verdict and why.' },
      ),
    ),
    revokedAt: Type.Optional(Type.String({ format: 'date-time', description: 'HISP_TRANSMIT_REVOKED: the latest revocation of the patient’s authorizations.' })),
    expiredAt: Type.Optional(Type.String({ format: 'date-time', description: 'HISP_TRANSMIT_REVOKED, HISP_TRANSMIT_NOT_AUTHORIZED: the latest expiry of the patient’s expired authorizations, when one has expired.' })),
    errors: Type.Optional(
      Type.Array(
        Type.Object(
          {
            in: Type.String({ description: 'body, querystring, params or headers' }),
            path: Type.String({ description: 'A JSON Pointer (RFC 6901) into that part.' }),
            message: Type.String(),
          },
          { additionalProperties: false },
        ),
      ),
    ),
  },
  { $id: 'Problem', additionalProperties: true, description: 'An RFC 9457 problem detail.' },
);

/** The media type of every error response (RFC 9457 §3). */
export const PROBLEM_MEDIA_TYPE = 'application/problem+json';

/** Request parts whose objects must be closed. Headers are not: every request carries others. */
export const CLOSED_PARTS = ['body', 'querystring', 'params'] as const;

/**
 * Throws when a schema holds an object that is not closed: a route that would accept unknown
 * fields is a programming error, found when the route is registered, not by a client.
 */
export function assertClosedObjects(schema: unknown, where: string): void {
  if (schema === null || typeof schema !== 'object') return;
  const s = schema as Record<string, unknown>;
  const isObject = s.type === 'object' || (s.type === undefined && s.properties !== undefined);
  if (isObject && s.additionalProperties !== false) {
    throw new Error(`${where}: an object schema without additionalProperties: false (unknown fields must be refused with a 400; use Closed())`);
  }
  for (const key of ['properties', 'patternProperties', '$defs', 'definitions'] as const) {
    const children = s[key];
    if (children && typeof children === 'object') for (const [name, child] of Object.entries(children)) assertClosedObjects(child, `${where}.${name}`);
  }
  for (const key of ['items', 'additionalItems', 'not', 'if', 'then', 'else'] as const) assertClosedObjects(s[key], `${where}[]`);
  for (const key of ['anyOf', 'oneOf', 'allOf', 'prefixItems'] as const) {
    const list = s[key];
    if (Array.isArray(list)) list.forEach((child, i) => assertClosedObjects(child, `${where}|${i}`));
  }
}

/** RFC 4648 §4: the base64 alphabet, padded; what a document's `content` may hold (no line breaks). */
export const BASE64_TEXT = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * A document's `content` decoded, or undefined when it is not base64 text ({@link BASE64_TEXT}).
 * Not a schema `pattern`: a document is most of a send's body, and matching 137 KB against the
 * pattern took 0.8 ms a request in bench/api-bench.ts, where decoding (needed anyway) takes a
 * tenth of that. Node's decoder reads base64url's `-` and `_` as well, skips any other octet outside
 * the alphabet and stops at an `=` (RFC 4648 §3.3 leaves decoders to choose); so text of whole
 * quanta (length a multiple of 4) without `-` or `_` is base64 exactly when its decoding has all
 * the octets its length promises: each octet skipped, or lost after an `=` too early, takes at least
 * one away. Other text (unpadded, say) is matched against the pattern as before.
 */
/**
 * A base64 field of a request body decoded ({@link decodeBase64Text}), or the 400 a schema rule's
 * refusal would be (api-server.ts asHispError: the place, the rule, never the value).
 */
export function decodeBase64Field(text: string, path: string): Buffer {
  const bytes = decodeBase64Text(text);
  if (bytes) return bytes;
  const error = { in: 'body', path, message: 'must be base64 (RFC 4648 §4: A-Z a-z 0-9 + /, = padding, no line breaks)' };
  throw new HispError('HISP_API_INVALID_REQUEST', `body ${error.path}: ${error.message}`, { details: { errors: [error] } });
}

/**
 * `owner[key]`, a base64 field of a request body, decoded: the octets json-body.ts kept for it
 * (never a string: a route names its base64 fields in its `config.base64Fields`), or the string
 * decoded by {@link decodeBase64Field}.
 */
export function decodeBase64Member(owner: object, key: string, path: string): Buffer {
  return base64Member(owner, key) ?? decodeBase64Field((owner as Record<string, unknown>)[key] as string, path);
}

export function decodeBase64Text(text: string): Buffer | undefined {
  if (text.length % 4 === 0 && !text.includes('-') && !text.includes('_')) {
    const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
    const bytes = Buffer.from(text, 'base64');
    if (bytes.length === (text.length / 4) * 3 - padding) return bytes;
  }
  return BASE64_TEXT.test(text) ? Buffer.from(text, 'base64') : undefined;
}

import type { FastifyRequest } from 'fastify';
import { addressInScopes } from '../core/address-scope.js';
import { HispError } from '../core/errors.js';
import { keyMay, type ApiAction, type ApiKey } from '../store/api-key-store.js';

/**
 * What a route checks of the key that authenticated its request (the server's onRequest hook sets
 * `request.apiKey`; a route without one was refused with 401 before its handler). Each check throws
 * HISP_API_FORBIDDEN (403), naming what the key lacks, never what it has.
 *
 * @example
 * app.post('/v1/messages', { schema }, async (request) => {
 *   requireAction(request, 'send');
 *   requireSendAs(request, request.body.from);
 *   …
 * });
 */

declare module 'fastify' {
  interface FastifyRequest {
    /** The API key of the request, once authenticated; undefined on public routes without one. */
    apiKey: ApiKey | undefined;
  }
  interface FastifyContextConfig {
    /** The route takes requests without an API key (/openapi.json). Default false. */
    public?: boolean;
  }
}

/** The request's key; HISP_API_UNAUTHORIZED on a public route called without one. */
export function requireKey(request: FastifyRequest): ApiKey {
  const key = request.apiKey;
  if (!key) throw new HispError('HISP_API_UNAUTHORIZED', 'this needs an API key: send Authorization: Bearer hisp_…');
  return key;
}

/** The key may do `action` (send includes validate). */
export function requireAction(request: FastifyRequest, action: ApiAction): ApiKey {
  const key = requireKey(request);
  if (!keyMay(key, action)) throw new HispError('HISP_API_FORBIDDEN', `this API key may not ${action} (hisp api-key create --action ${action})`, { details: { keyId: key.id, action } });
  return key;
}

/** The key may send as `address` (or, given a domain, as every address of it: `@domain` in its scopes). */
export function requireSendAs(request: FastifyRequest, addressOrDomain: string): ApiKey {
  const key = requireKey(request);
  const domain = !addressOrDomain.includes('@');
  const allowed = domain
    ? key.sendAs.some((s) => s.toLowerCase() === `@${addressOrDomain.toLowerCase().replace(/\.$/, '')}`)
    : addressInScopes(key.sendAs, addressOrDomain);
  if (!allowed) throw new HispError('HISP_API_FORBIDDEN', `this API key may not send as ${addressOrDomain.slice(0, 320)}`, { details: { keyId: key.id } });
  return key;
}

/** The key may read the mailbox of `address`. */
export function requireMailbox(request: FastifyRequest, address: string): ApiKey {
  const key = requireKey(request);
  if (!addressInScopes(key.mailboxes, address)) throw new HispError('HISP_API_FORBIDDEN', `this API key may not read the mailbox of ${address.slice(0, 320)}`, { details: { keyId: key.id } });
  return key;
}

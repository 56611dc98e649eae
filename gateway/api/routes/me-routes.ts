import { Type } from '@sinclair/typebox';
import { API_ACTIONS, keyScopes } from '../../store/api-key-store.js';
import { requireKey } from '../api-authorization.js';
import type { ApiContext, ApiApp } from '../api-server.js';

/** GET /v1/me: what the key of the request is and may do, for an integrator checking a key. */
export const MeSchema = Type.Object(
  {
    id: Type.String({ description: 'The public part of the key (hisp_<id>_…), as the logs name it.' }),
    name: Type.String(),
    actions: Type.Array(Type.Union(API_ACTIONS.map((a) => Type.Literal(a))), { description: 'send (which includes validate), status, receive, validate, audit (the whole audit log).' }),
    sendAs: Type.Array(Type.String(), { description: 'Addresses (a@domain) and domains (@domain) it may send as.' }),
    mailboxes: Type.Array(Type.String(), { description: 'Addresses and domains whose mailboxes it may read.' }),
    ratePerMinute: Type.Integer({ description: 'Requests a minute it may make (its own rate, or the server default).' }),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);

export function meRoutes(app: ApiApp, ctx: ApiContext): void {
  app.get('/v1/me', { schema: { summary: 'The API key of the request: its id, name and scopes', response: { 200: MeSchema } } }, (request) => {
    const key = requireKey(request);
    return {
      ...keyScopes(key),
      ratePerMinute: key.ratePerMinute ?? ctx.config.api.rateLimit.perKeyPerMinute,
      createdAt: key.createdAt.toISOString(),
    };
  });
}

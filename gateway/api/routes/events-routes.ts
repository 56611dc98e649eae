import { Type } from '@sinclair/typebox';
import { HispError } from '../../core/errors.js';
import { EVENT_TYPES, MAX_EVENTS_PER_READ } from '../../events/event-outbox.js';
import { eventScope } from '../api-services.js';
import { requireKey } from '../api-authorization.js';
import { Closed } from '../api-schemas.js';
import type { ApiApp, ApiContext } from '../api-server.js';

const EventTypeSchema = Type.Union(EVENT_TYPES.map((t) => Type.Literal(t)));

export const EventSchema = Type.Object(
  {
    id: Type.String({ description: 'The event id: the same on every delivery of it (webhook-id); de-duplicate on it.' }),
    cursor: Type.String({ description: 'Its position: pass it as after to read what came since.' }),
    type: EventTypeSchema,
    timestamp: Type.String({ format: 'date-time', description: 'When the change happened.' }),
    data: Type.Object(
      {
        id: Type.String({ description: 'The message: GET /v1/messages/{id} (sent) or the mailbox entry’s queue id (received).' }),
        messageId: Type.Union([Type.String(), Type.Null()]),
        recipient: Type.String(),
        state: Type.Union(['queued', 'relayed', 'processed', 'dispatched', 'failed', 'received'].map((s) => Type.Literal(s))),
        reason: Type.Optional(Type.String()),
        detail: Type.Optional(Type.String()),
        evidence: Type.Optional(Type.Record(Type.String(), Type.Union([Type.String(), Type.Null()]))),
        late: Type.Optional(Type.Boolean()),
        from: Type.Optional(Type.String()),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

const WebhookSchema = Type.Object(
  {
    url: Type.String(),
    cursor: Type.String({ description: 'The last event the subscriber acknowledged.' }),
    failures: Type.Integer({ description: 'Consecutive failed deliveries.' }),
    nextAttemptAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    lastError: Type.Union([Type.String(), Type.Null()]),
    lastSuccessAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  },
  { additionalProperties: false },
);


/**
 * Events (issue 15, "Events"): `GET /v1/events?after=` to poll or replay what the outbox holds,
 * and the key's webhook: `PUT /v1/webhook {url}` (the signing secret is returned once), `GET`,
 * `DELETE`. Every state change of a sent message's recipient and every received message is an
 * event, written in the commit of the change (events/event-outbox.ts).
 */
export function eventsRoutes(app: ApiApp, ctx: ApiContext): void {
  const { outbox, webhooks } = ctx.services;

  app.get(
    '/v1/events',
    {
      schema: {
        summary: 'Events after a cursor, oldest first (poll, or replay from 0)',
        querystring: Closed({
          after: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'The cursor of the last event seen; 0 or absent: from the oldest kept.' })),
          limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,3}$', description: `At most this many (1–${MAX_EVENTS_PER_READ}); default 100.` })),
          type: Type.Optional(EventTypeSchema),
        }),
        response: { 200: Type.Object({ events: Type.Array(EventSchema), nextCursor: Type.String({ description: 'Pass as after next time (the last event’s, or the one given when there was none).' }) }, { additionalProperties: false }) },
      },
    },
    (request) => {
      const key = requireKey(request);
      const scope = eventScope(key);
      if (scope.sent.length + scope.received.length === 0) throw new HispError('HISP_API_FORBIDDEN', 'this API key may see no events: it may neither send, read status nor receive');
      const after = Number(request.query.after ?? '0');
      const limit = Math.min(MAX_EVENTS_PER_READ, Math.max(1, Number(request.query.limit ?? '100')));
      const events = outbox.after(after, scope, limit, request.query.type ? [request.query.type] : undefined);
      return { events, nextCursor: events.at(-1)?.cursor ?? String(after) };
    },
  );

  app.put(
    '/v1/webhook',
    {
      schema: {
        summary: 'Subscribe this API key’s webhook: events from now on are POSTed to url, signed per Standard Webhooks',
        body: Closed({ url: Type.String({ minLength: 8, maxLength: 2000, description: 'https: (http: only to a loopback host).' }) }),
        response: { 200: Type.Object({ secret: Type.String({ description: 'The signing secret (whsec_…), shown this once.' }), webhook: WebhookSchema }, { additionalProperties: false }) },
      },
    },
    (request) => {
      const key = requireKey(request);
      if (eventScope(key).sent.length + eventScope(key).received.length === 0) throw new HispError('HISP_API_FORBIDDEN', 'this API key may see no events');
      const { secret, subscription } = webhooks.subscribe(key.id, request.body.url);
      request.log.info({ url: subscription.url }, 'webhook subscribed');
      return { secret, webhook: toJson(subscription) };
    },
  );

  app.get('/v1/webhook', { schema: { summary: 'This API key’s webhook and how its deliveries go', response: { 200: WebhookSchema } } }, (request) => {
    const key = requireKey(request);
    const s = webhooks.get(key.id);
    if (!s) throw new HispError('HISP_NOT_FOUND', 'this API key has no webhook');
    return toJson(s);
  });

  app.delete('/v1/webhook', { schema: { summary: 'Stop this API key’s webhook', response: { 204: Type.Null() } } }, async (request, reply) => {
    const key = requireKey(request);
    if (!webhooks.unsubscribe(key.id)) throw new HispError('HISP_NOT_FOUND', 'this API key has no webhook');
    return reply.status(204).send(null);
  });
}

function toJson(s: { url: string; cursor: string; failures: number; nextAttemptAt: Date | null; lastError: string | null; lastSuccessAt: Date | null }) {
  return { url: s.url, cursor: s.cursor, failures: s.failures, nextAttemptAt: s.nextAttemptAt?.toISOString() ?? null, lastError: s.lastError, lastSuccessAt: s.lastSuccessAt?.toISOString() ?? null };
}

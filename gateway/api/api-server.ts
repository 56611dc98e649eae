import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { HispError, isHispError } from '../core/errors.js';
import { TLS_PROFILE } from '../core/tls-profile.js';
import { describeError } from '../flows/notices.js';
import type { GatewayContext } from '../flows/gateway-context.js';
import { clientKey } from '../smtp/client-key.js';
import type { ApiKeyStore } from '../store/api-key-store.js';
import { assertClosedObjects, CLOSED_PARTS, PROBLEM_MEDIA_TYPE, ProblemSchema } from './api-schemas.js';
// request.apiKey and the routes' `config.public` (module augmentation).
import './api-authorization.js';
import { jsonBodyParser } from './json-body.js';
import { problemForError } from './problem-mapping.js';
import { meRoutes } from './routes/me-routes.js';
import { recipientsRoutes } from './routes/recipients-routes.js';
import { messagesRoutes } from './routes/messages-routes.js';
import { eventsRoutes } from './routes/events-routes.js';
import { mailboxesRoutes } from './routes/mailboxes-routes.js';
import { auditRoutes } from './routes/audit-routes.js';
import { patientsRoutes } from './routes/patients-routes.js';
import { fhirRoutes } from './routes/fhir-routes.js';
import type { ApiServices } from './api-services.js';
import { randomHexId } from '../core/random-id.js';

/**
 * What the API's routes use: the gateway's services (one service, three doors: the routes call
 * the same ones as the CLI and the SMTP edges) and the key store. Routes that need more of the
 * gateway add it here; HispGateway passes its whole context.
 */
export interface ApiContext extends Pick<GatewayContext, 'config' | 'registry' | 'discovery' | 'validator' | 'logger' | 'now'> {
  readonly apiKeys: ApiKeyStore;
  /** Sending, status, events and webhooks, mailboxes (api-services.ts). */
  readonly services: ApiServices;
}

/** The fastify instance of the API, with TypeBox types for the routes' schemas. */
export type ApiApp = FastifyInstance<HttpServer | HttpsServer, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

/** The routes of one area (`gateway/api/routes/<area>-routes.ts`), registered in their own plugin scope. */
export type ApiRoutes = (app: ApiApp, ctx: ApiContext) => Promise<void> | void;

/** Every area of the API; a new area's module is added here. */
export const API_ROUTES: readonly ApiRoutes[] = [meRoutes, recipientsRoutes, messagesRoutes, eventsRoutes, mailboxesRoutes, auditRoutes, patientsRoutes, fhirRoutes];

export interface ApiServerOptions {
  /** The HTTPS key and certificate chain (PEM); without them, plain HTTP (loopback only: ApiListener). */
  https?: { key: Buffer; cert: Buffer };
  /** Default {@link API_ROUTES}; tests add routes of their own. */
  routes?: readonly ApiRoutes[];
}

/** The whole request, headers and body, must arrive within this (Node's own default, which fastify turns off). */
const REQUEST_TIMEOUT_MS = 300_000;
/** The rate-limit window (a fixed minute) and how many keys and clients it tracks at once (least recently seen forgotten first). */
const RATE_WINDOW_MS = 60_000;
const RATE_TRACKED = 65_536;
/** What a client is told to wait when the API is stopping. */
const STOPPING_RETRY_AFTER_S = 5;

/** How an error reaches a client: as the HispError the problem is made of (also the FHIR routes' OperationOutcome). */
export function asHispError(err: FastifyError & { validationContext?: string }): unknown {
  if (isHispError(err)) return err;
  if (err.validation) {
    // Ajv's errors name the place (a JSON Pointer) and the rule, never the value sent.
    const part = err.validationContext ?? 'body';
    const errors = err.validation.slice(0, 10).map((v) => {
      const extra = (v.params as { additionalProperty?: unknown }).additionalProperty;
      return typeof extra === 'string'
        ? { in: part, path: `${v.instancePath}/${extra.replace(/~/g, '~0').replace(/\//g, '~1')}`, message: 'unknown field' }
        : { in: part, path: v.instancePath, message: v.message ?? 'invalid' };
    });
    const first = errors[0];
    const detail = first ? `${part}${first.path === '' ? '' : ` ${first.path}`}: ${first.message}` : `${part} does not match the schema`;
    return new HispError('HISP_API_INVALID_REQUEST', detail.slice(0, 500), { details: { errors } });
  }
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HispError('HISP_API_UNSUPPORTED_MEDIA_TYPE', 'this route does not take a body of that media type (Content-Type): send application/json');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HispError('HISP_API_PAYLOAD_TOO_LARGE', 'the request body is larger than this route takes');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new HispError('HISP_API_INVALID_REQUEST', 'the body is not valid JSON (RFC 8259)');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HispError('HISP_API_INVALID_REQUEST', 'the body is empty but Content-Type says application/json');
  }
  if (err instanceof SyntaxError) {
    // secure-json-parse's refusal of __proto__ and constructor.prototype keys (prototype poisoning).
    return new HispError('HISP_API_INVALID_REQUEST', 'the body is not valid JSON, or holds a __proto__ or constructor.prototype key');
  }
  const status = err.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // fastify's own refusals (a malformed URL or Content-Length…): its messages name no value.
    const code = status === 413 ? 'HISP_API_PAYLOAD_TOO_LARGE' : status === 415 ? 'HISP_API_UNSUPPORTED_MEDIA_TYPE' : 'HISP_API_INVALID_REQUEST';
    return new HispError(code, err.message.slice(0, 200));
  }
  return err;
}

/** `/v1/mailboxes/:address/messages` as a matcher of concrete paths (for 405). */
function routeMatcher(url: string): RegExp {
  const source = url
    .split('/')
    .map((segment) => (segment.startsWith(':') ? '[^/]+' : segment === '*' ? '.*' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}/?$`);
}

/** Sends the problem of `err` (RFC 9457), logged with the request's id as its trace. */
function sendProblem(err: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const problem = problemForError(err, request.id);
  if (problem.status >= 500) request.log.error({ err: describeError(err), trace: request.id }, 'internal error');
  else request.log.info({ code: problem.code, status: problem.status }, 'request refused');
  const retryAfter = isHispError(err) ? err.details?.retryAfter : undefined;
  if (typeof retryAfter === 'number') {
    problem.retryAfter = retryAfter;
    // RFC 9110 §10.2.3: the field itself, as the rate limit's and the stopping server's answers carry it.
    void reply.header('retry-after', String(retryAfter));
  }
  const errors = isHispError(err) ? err.details?.errors : undefined;
  if (Array.isArray(errors)) problem.errors = errors;
  // Blue Button+ transmit: each refused destination's verdict; the latest revocation and expiry of a patient's authorizations.
  const destinations = isHispError(err) ? err.details?.destinations : undefined;
  if (Array.isArray(destinations)) problem.destinations = destinations;
  const revokedAt = isHispError(err) ? err.details?.revokedAt : undefined;
  if (typeof revokedAt === 'string') problem.revokedAt = revokedAt;
  const expiredAt = isHispError(err) ? err.details?.expiredAt : undefined;
  if (typeof expiredAt === 'string') problem.expiredAt = expiredAt;
  return reply.status(problem.status).type(PROBLEM_MEDIA_TYPE).send(problem);
}

/**
 * Builds the HTTP API (issue 15) on fastify 5: TypeBox schemas validated by Ajv without coercion
 * and without dropping unknown fields (every request object is closed: an unknown field is a 400),
 * the OpenAPI 3.1 document at `/openapi.json` generated from the routes' schemas, API keys
 * (`Authorization: Bearer hisp_…`, read from the store at every request), rate limits per key and
 * per client, and every error an RFC 9457 problem through the one table of
 * `problem-mapping.ts`: schema errors, unknown routes (404) and methods (405), bodies too large
 * (413) or of another media type (415), 429, thrown HispErrors, and anything else as 500 with a
 * trace id. Each request is logged once, by a child logger that carries its key's id, never the key.
 *
 * The request lifecycle (fastify's Lifecycle.md) as this server uses it:
 * onRequest: X-Request-Id; 503 while stopping; the key authenticated (or why not noted)
 *   → route onRequest: rate limit per key, or per client without a valid key (429)
 *   → preParsing: 401 on a non-public route without a valid key, before any body is read
 *   → body parsing: application/json only (415), bodyLimitBytes (413), JSON (400)
 *   → preValidation: the schemas (400) → handler: the route's checks (403) and its service
 *   → onResponse: one log line.
 */
export async function buildApiServer(ctx: ApiContext, options: ApiServerOptions = {}): Promise<ApiApp> {
  const { api } = ctx.config;
  const common = {
    loggerInstance: ctx.logger.child({ component: 'api' }),
    // One line per request, at its end, by the onResponse hook below (with the key's id).
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
    genReqId: () => randomHexId(16),
    bodyLimit: api.bodyLimitBytes,
    requestTimeout: REQUEST_TIMEOUT_MS,
    // HEAD twins of every GET would be routes to document and test for nothing an EHR needs.
    exposeHeadRoutes: false,
    // 503 while stopping comes as a problem from our onRequest hook, not as fastify's plain JSON.
    return503OnClosing: false,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  } as const;
  const app = (options.https ? Fastify({ ...common, https: { ...options.https, ...TLS_PROFILE } }) : Fastify(common)) as unknown as ApiApp;

  const routes: { method: string; url: string; matcher: RegExp }[] = [];
  // Before @fastify/swagger and the routes: every route documents its problems (4XX, 5XX), and a
  // request schema with an open object is refused at registration.
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) routes.push({ method, url: route.url, matcher: routeMatcher(route.url) });
    const schema = (route.schema ?? {}) as Record<string, unknown>;
    for (const part of CLOSED_PARTS) assertClosedObjects(schema[part], `${methods.join(',')} ${route.url} ${part}`);
    const problem = { description: 'An RFC 9457 problem (docs/errors.md)', content: { [PROBLEM_MEDIA_TYPE]: { schema: Type.Ref(ProblemSchema) } } };
    route.schema = { ...schema, response: { '4xx': problem, '5xx': problem, ...(schema.response as object | undefined) } };
  });
  app.addSchema(ProblemSchema);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'hisp HTTP API', version: '1', description: 'Direct secure messaging for EHRs and PHRs (docs/api.md).' },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'hisp_<id>_<secret>, from `hisp api-key create`' } } },
      security: [{ apiKey: [] }],
    },
    // Shared schemas by their $id (#/components/schemas/Problem), not def-0.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });

  // application/json only (RFC 8259; fastify would also take text/plain): anything else is 415. A
  // route that takes another type registers its parser in its own scope (multipart for uploads).
  app.removeAllContentTypeParsers();
  // The route's long base64 fields are read as octets, never as strings (json-body.ts).
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, jsonBodyParser(app));

  let stopping = false;
  app.addHook('preClose', (done) => {
    stopping = true;
    done();
  });
  app.decorateRequest('apiKey', undefined);
  const failures = new WeakMap<FastifyRequest, string>();
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    if (stopping) {
      reply.header('retry-after', STOPPING_RETRY_AFTER_S).header('connection', 'close');
      throw new HispError('HISP_API_UNAVAILABLE', 'the API is stopping: try again shortly', { details: { retryAfter: STOPPING_RETRY_AFTER_S } });
    }
    const authorization = request.headers.authorization;
    if (authorization === undefined) {
      failures.set(request, 'missing');
      return;
    }
    // RFC 6750 §2.1: "Bearer" (case-insensitive) and the token; hisp's tokens are base64url.
    const m = /^Bearer +([A-Za-z0-9_-]{1,200})$/i.exec(authorization);
    const check = m ? ctx.apiKeys.authenticate(m[1]!, ctx.now()) : ({ ok: false, reason: 'malformed' } as const);
    if (!check.ok) {
      failures.set(request, check.reason);
      return;
    }
    request.apiKey = check.key;
    // Every later line of the request names its key; the key itself is never logged.
    request.log = request.log.child({ keyId: check.key.id });
    reply.log = request.log;
  });
  // After the rate limit (a route-level onRequest hook): a guesser is counted before being refused.
  app.addHook('preParsing', async (request, reply) => {
    if (request.apiKey || request.is404 || request.routeOptions.config.public === true) return;
    const why = failures.get(request) ?? 'missing';
    // RFC 6750 §3: a 401 carries WWW-Authenticate; invalid_token when a token was sent.
    reply.header('www-authenticate', why === 'missing' ? 'Bearer realm="hisp"' : 'Bearer realm="hisp", error="invalid_token"');
    const detail = {
      missing: 'no API key: send Authorization: Bearer hisp_…',
      malformed: 'the Authorization field is not Bearer with an API key (hisp_…)',
      unknown: 'the API key is not valid',
      revoked: 'the API key was revoked',
    }[why];
    throw new HispError('HISP_API_UNAUTHORIZED', detail ?? 'no valid API key');
  });
  app.addHook('onResponse', async (request, reply) => {
    // A key pasted into a URL by mistake is not logged either (only its public id).
    const url = request.url.slice(0, 300).replace(/hisp_([0-9a-f]{16})_[A-Za-z0-9_-]+/g, 'hisp_$1_[redacted]');
    request.log.info({ method: request.method, route: request.routeOptions.url, url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'api request');
  });

  await app.register(rateLimit, {
    global: true,
    hook: 'onRequest',
    timeWindow: RATE_WINDOW_MS,
    cache: RATE_TRACKED,
    keyGenerator: (request) => (request.apiKey ? `key:${request.apiKey.id}` : `client:${clientKey(request.ip)}`),
    max: (request) => (request.apiKey ? (request.apiKey.ratePerMinute ?? api.rateLimit.perKeyPerMinute) : api.rateLimit.perClientPerMinute),
    errorResponseBuilder: (request, context) =>
      new HispError(
        'HISP_API_RATE_LIMITED',
        `more than ${context.max} requests a minute ${request.apiKey ? 'with this API key' : 'from this client without a valid API key'}: try again in ${Math.ceil(context.ttl / 1000)} s`,
        { details: { retryAfter: Math.ceil(context.ttl / 1000) } },
      ),
  });

  // Not an error handler per area: one for the whole API, so that every error is a problem.
  app.setErrorHandler((err: FastifyError, request, reply) => sendProblem(asHispError(err), request, reply));
  app.setNotFoundHandler({ preHandler: app.rateLimit() }, (request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    const allowed = [...new Set(routes.filter((r) => r.matcher.test(path)).map((r) => r.method))];
    if (allowed.length > 0) {
      // RFC 9110 §15.5.6: a 405 lists the methods the resource takes.
      reply.header('allow', allowed.join(', '));
      return sendProblem(new HispError('HISP_API_METHOD_NOT_ALLOWED', `${request.method} is not a method of ${path.slice(0, 200)}: ${allowed.join(', ')}`), request, reply);
    }
    return sendProblem(new HispError('HISP_API_NO_ROUTE', `no route ${request.method} ${path.slice(0, 200)} (the routes are in /openapi.json)`), request, reply);
  });

  app.get(
    '/openapi.json',
    {
      config: { public: true },
      schema: {
        summary: 'This API as an OpenAPI 3.1 document',
        security: [],
        response: { 200: Type.Object({}, { additionalProperties: true, description: 'The OpenAPI 3.1 document.' }) },
      },
    },
    () => app.swagger(),
  );
  for (const register of options.routes ?? API_ROUTES) await app.register(async (scope) => register(scope as ApiApp, ctx));
  await app.ready();
  return app;
}

// The HTTP API's core in process (app.inject): authentication, scopes, problems for every error,
// rate limits, the log, and the OpenAPI document. Every response is checked against /openapi.json
// by the ApiClient (test/helpers/api-client.ts).
import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { apiServerPerTest, apiTestContext, TEST_DOMAIN } from '../../test/helpers/api-context.js';
import { openDatabase } from '../store/database.js';
import { ApiKeyStore } from '../store/api-key-store.js';
import { requireMailbox } from './api-authorization.js';
import { Closed } from './api-schemas.js';
import { API_ROUTES, buildApiServer, type ApiRoutes } from './api-server.js';

/** Routes of the tests only: a bug (500), a mailbox check. */
const testRoutes: ApiRoutes = (scope) => {
  scope.get('/v1/test/bug', () => {
    throw new TypeError('cannot read x of undefined at /srv/hisp/gateway/secret-path.ts:12');
  });
  const ok = { response: { 200: Closed({ ok: Type.Boolean() }) } };
  scope.post('/v1/test/mailbox', { schema: { ...ok, body: Closed({ address: Type.String() }) } }, (request) => {
    requireMailbox(request, request.body.address);
    return { ok: true };
  });
};

const server = apiServerPerTest();
const start = (options: { api?: Record<string, unknown>; routes?: readonly ApiRoutes[] } = {}) =>
  server.start({ ...(options.api ? { api: options.api } : {}), routes: options.routes ?? [...API_ROUTES, testRoutes] });

describe('authentication (Authorization: Bearer hisp_…)', () => {
  it('answers 401 problems without a key, with a malformed, an unknown or a revoked one, and says which', async () => {
    const { client, t } = await start();
    const { id, token } = await t.key();
    const missing = await client.request('GET', '/v1/me');
    expect(missing).toMatchObject({ status: 401, body: { code: 'HISP_API_UNAUTHORIZED', status: 401, detail: expect.stringContaining('no API key') as unknown } });
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="hisp"');
    const malformed = await client.request('GET', '/v1/me', { headers: { authorization: `Basic ${Buffer.from('dev:x').toString('base64')}` } });
    expect(malformed).toMatchObject({ status: 401, body: { detail: expect.stringContaining('not Bearer') as unknown } });
    expect(malformed.headers['www-authenticate']).toContain('error="invalid_token"');
    const unknown = await client.request('GET', '/v1/me', { key: token.replace(id, 'ffffffffffffffff') });
    expect(unknown).toMatchObject({ status: 401, body: { detail: 'the API key is not valid' } });
    expect((await client.request('GET', '/v1/me', { key: token })).status).toBe(200);
    // Revoked by another connection (`hisp api-key revoke` while the gateway runs): the next request is refused.
    const other = openDatabase({ dataDir: t.ctx.config.dataDir });
    await new ApiKeyStore(other).revoke(id, Date.now());
    await other.close();
    expect(await client.request('GET', '/v1/me', { key: token })).toMatchObject({ status: 401, body: { detail: 'the API key was revoked' } });
  });

  it('refuses an unauthenticated request before reading its body', async () => {
    const { client } = await start({ api: { bodyLimitBytes: 1024 } });
    // Too large and not JSON: had the body been read, this would be 413 or 400.
    const r = await client.request('POST', '/v1/recipients/validate', { body: 'x'.repeat(5000), contentType: 'application/json' });
    expect(r.status).toBe(401);
  });

  it('GET /v1/me shows the key’s id, name, scopes and rate (its own, or the configured default)', async () => {
    const { client, t } = await start({ api: { rateLimit: { perKeyPerMinute: 77 } } });
    const own = await t.key({ name: 'ehr-1', actions: ['send'], sendAs: ['ehr@hospital.test'], mailboxes: [], ratePerMinute: 12 });
    expect((await client.request('GET', '/v1/me', { key: own.token })).body).toMatchObject({ id: own.id, name: 'ehr-1', actions: ['send'], sendAs: ['ehr@hospital.test'], mailboxes: [], ratePerMinute: 12 });
    const dflt = await t.key({ name: 'phr', actions: ['receive'], mailboxes: ['@hospital.test'], sendAs: [] });
    expect((await client.request('GET', '/v1/me', { key: dflt.token })).body).toMatchObject({ actions: ['receive'], ratePerMinute: 77 });
  });
});

describe('scopes', () => {
  it('403 when the key may not do the action, send as the sender, or read the mailbox', async () => {
    const { client, t } = await start();
    const reader = await t.key({ actions: ['receive'], sendAs: [], mailboxes: [`patient@${TEST_DOMAIN}`] });
    const noValidate = await client.request('POST', '/v1/recipients/validate', { key: reader.token, json: { addresses: ['a@b.test'] } });
    expect(noValidate).toMatchObject({ status: 403, body: { code: 'HISP_API_FORBIDDEN', detail: expect.stringContaining('may not validate') as unknown } });
    const sender = await t.key({ actions: ['send'], sendAs: [`ehr@${TEST_DOMAIN}`] });
    const otherSender = await client.request('POST', '/v1/recipients/validate', { key: sender.token, json: { addresses: ['a@b.test'], from: `other@${TEST_DOMAIN}` } });
    expect(otherSender).toMatchObject({ status: 403, body: { detail: `this API key may not send as other@${TEST_DOMAIN}` } });
    // A key scoped to one address may not claim its whole domain either.
    expect((await client.request('POST', '/v1/recipients/validate', { key: sender.token, json: { addresses: ['a@b.test'], from: TEST_DOMAIN } })).status).toBe(403);
    expect((await client.request('POST', '/v1/test/mailbox', { key: reader.token, json: { address: `patient@${TEST_DOMAIN}` } })).status).toBe(200);
    expect((await client.request('POST', '/v1/test/mailbox', { key: reader.token, json: { address: `other@${TEST_DOMAIN}` } })).status).toBe(403);
  });
});

describe('every error is an RFC 9457 problem', () => {
  it('400 for an unknown field, a wrong type, a missing field, bad JSON and prototype keys, naming the place', async () => {
    const { client, t } = await start();
    const { token } = await t.key();
    const unknown = await client.request('POST', '/v1/recipients/validate', { key: token, json: { addresses: ['a@b.test'], cc: ['x'] } });
    expect(unknown).toMatchObject({ status: 400, body: { code: 'HISP_API_INVALID_REQUEST', detail: 'body /cc: unknown field', errors: [{ in: 'body', path: '/cc', message: 'unknown field' }] } });
    const wrongType = await client.request('POST', '/v1/recipients/validate', { key: token, json: { addresses: 'a@b.test' } });
    expect(wrongType).toMatchObject({ status: 400, body: { errors: [{ path: '/addresses' }] } });
    // No coercion: "true" is not a boolean.
    expect((await client.request('POST', '/v1/recipients/validate', { key: token, json: { addresses: ['a@b.test'], patientDirected: 'true' } })).status).toBe(400);
    expect((await client.request('POST', '/v1/recipients/validate', { key: token, json: {} })).body).toMatchObject({ code: 'HISP_API_INVALID_REQUEST' });
    const badAddress = await client.request('POST', '/v1/recipients/validate', { key: token, json: { addresses: ['a@b.test', 'not an address'] } });
    expect(badAddress).toMatchObject({ status: 400, body: { errors: [{ path: '/addresses/1' }] } });
    const json = await client.request('POST', '/v1/recipients/validate', { key: token, body: '{"addresses": [', contentType: 'application/json' });
    expect(json).toMatchObject({ status: 400, body: { detail: 'the body is not valid JSON (RFC 8259)' } });
    const proto = await client.request('POST', '/v1/recipients/validate', { key: token, body: '{"addresses":["a@b.test"],"__proto__":{"x":1}}', contentType: 'application/json' });
    expect(proto).toMatchObject({ status: 400, body: { code: 'HISP_API_INVALID_REQUEST' } });
    const empty = await client.request('POST', '/v1/recipients/validate', { key: token, body: '', contentType: 'application/json' });
    expect(empty.status).toBe(400);
  });

  it('415 for a body of another media type, 413 for one over bodyLimitBytes', async () => {
    const { client, t } = await start({ api: { bodyLimitBytes: 2048 } });
    const { token } = await t.key();
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'multipart/form-data; boundary=x']) {
      const r = await client.request('POST', '/v1/recipients/validate', { key: token, body: 'addresses=a@b.test', contentType: type });
      expect(r, type).toMatchObject({ status: 415, body: { code: 'HISP_API_UNSUPPORTED_MEDIA_TYPE' } });
    }
    const under = { addresses: Array.from({ length: 40 }, (_, i) => `p${i}@nowhere.test`) };
    expect(JSON.stringify(under).length).toBeLessThan(2048);
    expect((await client.request('POST', '/v1/recipients/validate', { key: token, json: under })).status).toBe(200);
    const over = { addresses: Array.from({ length: 40 }, (_, i) => `patient-with-a-much-much-longer-name-${i}@nowhere.test`) };
    expect(JSON.stringify(over).length).toBeGreaterThan(2048);
    expect(await client.request('POST', '/v1/recipients/validate', { key: token, json: over })).toMatchObject({ status: 413, body: { code: 'HISP_API_PAYLOAD_TOO_LARGE' } });
  });

  it('404 for an unknown route, 405 with Allow for a known path and another method', async () => {
    const { client } = await start();
    expect(await client.request('GET', '/v1/nothing-here')).toMatchObject({ status: 404, body: { code: 'HISP_API_NO_ROUTE' } });
    const r = await client.request('DELETE', '/v1/recipients/validate');
    expect(r).toMatchObject({ status: 405, body: { code: 'HISP_API_METHOD_NOT_ALLOWED' } });
    expect(r.headers.allow).toBe('POST');
  });

  it('500 for anything unexpected: a trace id, nothing internal; the log has the details under it', async () => {
    const { client, t } = await start();
    const { token } = await t.key();
    const r = await client.request('GET', '/v1/test/bug', { key: token });
    expect(r).toMatchObject({ status: 500, body: { code: 'HISP_INTERNAL', trace: r.headers['x-request-id'] } });
    expect(r.text).not.toContain('secret-path');
    expect(r.text).not.toContain('TypeError');
    const line = t.logs().split('\n').find((l) => l.includes('"internal error"'));
    expect(line).toContain('secret-path');
    expect(line).toContain(`"trace":"${r.headers['x-request-id']}"`);
  });
});

describe('rate limits (@fastify/rate-limit, a minute)', () => {
  it('per key: its own rate, else perKeyPerMinute; then 429 with Retry-After, other keys unaffected', async () => {
    const { client, t } = await start({ api: { rateLimit: { perKeyPerMinute: 4, perClientPerMinute: 100 } } });
    const own = await t.key({ ratePerMinute: 2 });
    const dflt = await t.key();
    const statuses = async (token: string, n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await client.request('GET', '/v1/me', { key: token })).status);
      return out;
    };
    expect(await statuses(own.token, 3)).toEqual([200, 200, 429]);
    const limited = await client.request('GET', '/v1/me', { key: own.token });
    expect(limited).toMatchObject({ status: 429, body: { code: 'HISP_API_RATE_LIMITED', detail: expect.stringContaining('more than 2 requests a minute with this API key') as unknown } });
    const retryAfter = Number(limited.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect((limited.body as { retryAfter: number }).retryAfter).toBe(retryAfter);
    expect(await statuses(dflt.token, 5)).toEqual([200, 200, 200, 200, 429]);
  });

  it('per client without a valid key (perClientPerMinute): wrong keys are counted before they are refused', async () => {
    // The client's own GET /openapi.json is the first request of the minute.
    const { client, t } = await start({ api: { rateLimit: { perKeyPerMinute: 100, perClientPerMinute: 4 } } });
    const { token } = await t.key();
    const wrong = `hisp_0000000000000000_${'A'.repeat(43)}`;
    const seen: number[] = [];
    for (let i = 0; i < 4; i++) seen.push((await client.request('GET', '/v1/me', { key: wrong })).status);
    expect(seen).toEqual([401, 401, 401, 429]);
    expect((await client.request('GET', '/v1/nothing')).status).toBe(429);
    // A valid key counts under its own limit, not the client's.
    expect((await client.request('GET', '/v1/me', { key: token })).status).toBe(200);
  });
});

describe('the log', () => {
  it('logs every request once with the key id, never the key, whatever its fate', async () => {
    const { client, t } = await start();
    const { id, token } = await t.key();
    await client.request('GET', '/v1/me', { key: token });
    await client.request('POST', '/v1/recipients/validate', { key: token, json: { addresses: ['a@b.test'], bogus: 1 } });
    await client.request('GET', '/v1/test/bug', { key: token });
    await client.request('GET', '/v1/me', { key: `${token.slice(0, -2)}zz` });
    await client.request('GET', '/v1/me', { headers: { authorization: `Bearer ${token} trailing` } });
    await client.request('GET', `/v1/me?key=${token}`, { key: token });
    const logs = t.logs();
    const secret = token.slice(22);
    expect(logs).not.toContain(secret);
    expect(logs).not.toContain(secret.slice(0, 20));
    expect(logs.toLowerCase()).not.toContain('bearer');
    const lines = logs
      .split('\n')
      .filter((l) => l.includes('"msg":"api request"'))
      .map((l) => JSON.parse(l) as { keyId?: string; route?: string; status: number; requestId: string });
    expect(lines.map((l) => [l.route, l.status, l.keyId])).toEqual([
      ['/openapi.json', 200, undefined],
      ['/v1/me', 200, id],
      ['/v1/recipients/validate', 400, id],
      ['/v1/test/bug', 500, id],
      ['/v1/me', 401, undefined],
      ['/v1/me', 401, undefined],
      ['/v1/me', 200, id],
    ]);
    expect(logs).toContain(`/v1/me?key=hisp_${id}_[redacted]`);
    expect(new Set(lines.map((l) => l.requestId)).size).toBe(lines.length);
  });
});

describe('the OpenAPI document', () => {
  it('lists every registered route (as the onRoute hook sees them), each with its problems', async () => {
    const registered: string[] = [];
    const spy: ApiRoutes = (scope) => {
      scope.addHook('onRoute', (route) => void registered.push(`${String(route.method)} ${route.url}`));
    };
    // The spy's scope sees only its own routes: register every area again inside it.
    const everyArea: ApiRoutes = async (scope, ctx) => {
      await scope.register(async (inner) => {
        await spy(inner, ctx);
        for (const r of API_ROUTES) await r(inner, ctx);
      });
    };
    const { client } = await start({ routes: [everyArea] });
    registered.push('GET /openapi.json');
    expect(registered.length).toBeGreaterThan(2);
    for (const r of registered) {
      const [method, url] = r.split(' ') as [string, string];
      const template = url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
      const operation = client.document.paths[template]?.[method.toLowerCase()];
      expect(operation, `${r} in /openapi.json`).toBeDefined();
      expect(Object.keys(operation?.responses ?? {})).toEqual(expect.arrayContaining(['4XX', '5XX']));
    }
    expect(client.document.openapi).toBe('3.1.0');
  });

  it('every request object of the document is closed (unknown fields are 400)', async () => {
    const { client } = await start();
    const open: string[] = [];
    const walk = (schema: unknown, where: string): void => {
      if (schema === null || typeof schema !== 'object') return;
      const s = schema as Record<string, unknown>;
      if ((s.type === 'object' || s.properties) && s.additionalProperties !== false) open.push(where);
      for (const v of Object.values(s)) walk(v, where);
    };
    for (const [path, operations] of Object.entries(client.document.paths)) {
      for (const [method, op] of Object.entries(operations)) walk((op as { requestBody?: unknown }).requestBody, `${method} ${path}`);
    }
    expect(open).toEqual([]);
  });

  it('refuses to register a route whose body schema is an open object', async () => {
    const t = await apiTestContext();
    const openRoute: ApiRoutes = (scope) => {
      scope.post('/v1/test/open', { schema: { body: Type.Object({ a: Type.String() }) } }, () => ({}));
    };
    try {
      await expect(buildApiServer(t.ctx, { routes: [openRoute] })).rejects.toThrow(/additionalProperties: false/);
    } finally {
      await t.close();
    }
  });
});

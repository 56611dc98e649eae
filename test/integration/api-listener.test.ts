// The HTTP API over real sockets, started by HispGateway from `[api]`: HTTPS with the test
// certificate (test/fixtures/trust/tls-server), and plain HTTP on loopback. Driven with fetch (and
// node:https where a test CA must be trusted); every response is checked against /openapi.json by
// the ApiClient, so every error here is also checked to be an application/problem+json problem.
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConfig } from '../../gateway/config/load-config.js';
import { createLogger } from '../../gateway/core/logger.js';
import { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { ApiKeyStore } from '../../gateway/store/api-key-store.js';
import { ApiClient } from '../helpers/api-client.js';
import { credentialPaths } from '../helpers/pki.js';

const TLS_CERT = path.resolve(import.meta.dirname, '../fixtures/trust/tls-server.cert.pem');
const TLS_KEY = path.resolve(import.meta.dirname, '../fixtures/trust/tls-server.key.pem');
const work = mkdtempSync(path.join(tmpdir(), 'hisp-api-listener-'));
/** A DNS server that never answers: discovery waits for its time-out (a slow request on demand). */
const blackHole = dgram.createSocket('udp4');
let logs = '';

async function gateway(name: string, api: Record<string, unknown>, closeTimeoutMs = 5000): Promise<HispGateway> {
  const domain = credentialPaths('sender-domain');
  const { config } = buildConfig(
    {
      dataDir: path.join(work, name),
      dns: { servers: [`127.0.0.1:${(blackHole.address()).port}`], timeoutMs: 1500, retries: 0 },
      submission: { enabled: false },
      inbound: { enabled: false },
      api: { enabled: true, port: 0, ...api },
      domains: [{ name: 'hospital.test', credentials: [{ key: domain.key, cert: domain.chain }], anchors: { outgoing: [credentialPaths('root-ca').cert] } }],
    },
    { baseDir: work, env: {} },
  );
  const logger = createLogger({ level: 'info', destination: { write: (line: string) => void (logs += line) } });
  return HispGateway.start({ config, logger, closeTimeoutMs });
}

async function newKey(g: HispGateway, input: Partial<Parameters<ApiKeyStore['create']>[0]> = {}): Promise<{ id: string; token: string }> {
  const { key, token } = await new ApiKeyStore(g.ctx.db).create({ name: 'test', actions: ['send', 'status'], sendAs: ['@hospital.test'], ...input }, Date.now());
  return { id: key.id, token };
}

let secure: HispGateway;
let plain: HispGateway;
beforeAll(async () => {
  await new Promise<void>((r) => blackHole.bind(0, '127.0.0.1', r));
  secure = await gateway('secure', { host: '127.0.0.1', tlsCert: TLS_CERT, tlsKey: TLS_KEY, bodyLimitBytes: 4096, rateLimit: { perKeyPerMinute: 5, perClientPerMinute: 20 } });
  plain = await gateway('plain', { host: '127.0.0.1' });
}, 60_000);
afterAll(async () => {
  await secure?.stop();
  await plain?.stop();
  blackHole.close();
  rmSync(work, { recursive: true, force: true });
});

describe('HTTPS with the configured certificate', () => {
  it('serves HTTPS only (TLS 1.2 or later), and its document at /openapi.json', async () => {
    expect(secure.apiUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const client = await ApiClient.forUrl(secure.apiUrl!, { ca: readFileSync(TLS_CERT) });
    expect(client.document.paths['/v1/recipients/validate']?.post).toBeDefined();
    // Plain HTTP to the HTTPS port gets no API.
    await expect(fetch(`${secure.apiUrl!.replace('https:', 'http:')}/v1/me`)).rejects.toThrow();
    // An old client cannot negotiate (core/tls-profile.ts).
    const old = tls.connect({ host: '127.0.0.1', port: secure.apiPort!, ca: readFileSync(TLS_CERT), maxVersion: 'TLSv1.1', minVersion: 'TLSv1' });
    await expect(new Promise((resolve, reject) => old.once('secureConnect', resolve).once('error', reject))).rejects.toThrow();
    old.destroy();
  });

  it('401 without a key, with an unknown one, with a revoked one; 200 with a valid one', async () => {
    const client = await ApiClient.forUrl(secure.apiUrl!, { ca: readFileSync(TLS_CERT) });
    const { id, token } = await newKey(secure);
    expect((await client.request('GET', '/v1/me')).status).toBe(401);
    expect((await client.request('GET', '/v1/me', { key: token.replace(id, '0123456789abcdef') })).body).toMatchObject({ code: 'HISP_API_UNAUTHORIZED' });
    expect(await client.request('GET', '/v1/me', { key: token })).toMatchObject({ status: 200, body: { id } });
    await new ApiKeyStore(secure.ctx.db).revoke(id, Date.now());
    expect(await client.request('GET', '/v1/me', { key: token })).toMatchObject({ status: 401, body: { detail: 'the API key was revoked' } });
  });

  it('403 outside the key’s scopes, 400 for an unknown field, 415 for another media type, 413 over bodyLimitBytes', async () => {
    const client = await ApiClient.forUrl(secure.apiUrl!, { ca: readFileSync(TLS_CERT) });
    const statusOnly = await newKey(secure, { actions: ['status'], sendAs: [] });
    expect(await client.request('POST', '/v1/recipients/validate', { key: statusOnly.token, json: { addresses: ['patient@hospital.test'] } })).toMatchObject({
      status: 403,
      body: { code: 'HISP_API_FORBIDDEN' },
    });
    const { token } = await newKey(secure);
    expect(await client.request('POST', '/v1/recipients/validate', { key: token, json: { addresses: ['patient@hospital.test'], priority: 'high' } })).toMatchObject({
      status: 400,
      body: { code: 'HISP_API_INVALID_REQUEST', errors: [{ path: '/priority' }] },
    });
    expect((await client.request('POST', '/v1/recipients/validate', { key: token, body: '<addresses/>', contentType: 'application/xml' })).status).toBe(415);
    const big = { addresses: Array.from({ length: 50 }, (_, i) => `${'a'.repeat(80)}-${i}@hospital.test`), from: 'hospital.test' };
    expect(JSON.stringify(big).length).toBeGreaterThan(4096);
    expect(await client.request('POST', '/v1/recipients/validate', { key: token, json: big })).toMatchObject({ status: 413, body: { code: 'HISP_API_PAYLOAD_TOO_LARGE' } });
  });

  it('429 with Retry-After past the key’s rate', async () => {
    const client = await ApiClient.forUrl(secure.apiUrl!, { ca: readFileSync(TLS_CERT) });
    const { token } = await newKey(secure);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await client.request('GET', '/v1/me', { key: token })).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    const r = await client.request('GET', '/v1/me', { key: token });
    expect(r).toMatchObject({ status: 429, body: { code: 'HISP_API_RATE_LIMITED' } });
    expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('logs each request with the key id, never the key', () => {
    expect(logs).toContain('"msg":"api request"');
    expect(logs).toMatch(/"keyId":"[0-9a-f]{16}"/);
    expect(logs).not.toMatch(/hisp_[0-9a-f]{16}_/);
    expect(logs.toLowerCase()).not.toContain('bearer');
  });
});

describe('plain HTTP on loopback', () => {
  it('answers over http:, validation included', async () => {
    expect(plain.apiUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const client = await ApiClient.forUrl(plain.apiUrl!);
    const { token } = await newKey(plain);
    const r = await client.request('POST', '/v1/recipients/validate', { key: token, json: { addresses: ['patient@hospital.test', 'nobody@hospital.test'] } });
    // hospital.test is not catch-all and lists no address: neither is known.
    expect(r).toMatchObject({ status: 200, body: { recipients: [{ local: true, verdict: 'no-certificate' }, { local: true, verdict: 'no-certificate' }] } });
    expect((await client.request('GET', '/v1/nowhere')).status).toBe(404);
  });

  it('stops taking requests when the gateway stops: a request already on a connection gets 503, the one in progress finishes', async () => {
    const g = await gateway('stopping', { host: '127.0.0.1' });
    const { token } = await newKey(g);
    const port = g.apiPort!;
    // A slow validation (the DNS never answers) on a kept-alive connection; while it runs, the
    // gateway stops, and a second request comes on the same connection.
    const body = JSON.stringify({ addresses: ['someone@remote.test'] });
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.write(
      `POST /v1/recipients/validate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    await new Promise((r) => setTimeout(r, 300));
    const stopped = g.stop();
    await new Promise((r) => setTimeout(r, 50));
    socket.write(`GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    await closed;
    await stopped;
    const responses = received.split(/(?=HTTP\/1\.1 )/);
    expect(responses).toHaveLength(2);
    expect(responses[0]).toMatch(/^HTTP\/1\.1 200 /);
    expect(responses[0]).toContain('"verdict":"try-later"');
    expect(responses[1]).toMatch(/^HTTP\/1\.1 503 /);
    expect(responses[1]).toMatch(/content-type: application\/problem\+json/i);
    expect(responses[1]).toMatch(/retry-after: 5/i);
    expect(responses[1]).toContain('"code":"HISP_API_UNAVAILABLE"');
    // And nothing listens any more.
    await expect(fetch(`http://127.0.0.1:${port}/openapi.json`)).rejects.toThrow();
  }, 30_000);

  it('a request that outlasts the close time-out is cut, and the stop does not wait for it', async () => {
    const g = await gateway('cut', { host: '127.0.0.1' }, 200);
    const { token } = await newKey(g);
    // The validation waits 1.5 s for a DNS that never answers; the gateway gives it 0.2 s.
    const slow = fetch(`${g.apiUrl!}/v1/recipients/validate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ addresses: ['someone@remote.test'] }),
    });
    const outcome = slow.then(
      (r) => r.status,
      () => 'cut',
    );
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    await g.stop();
    expect(Date.now() - started).toBeLessThan(1200);
    expect(await outcome).toBe('cut');
  }, 30_000);
});

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hispError } from '../../test/helpers/hisp-error.js';
import type { WebhookDelivery } from '../config/schema.js';
import { WebhookDeliverer, type WebhookPayload } from './webhook.js';

const SECRET = 'a-webhook-secret-of-32-bytes-abc';
const tlsKey = readFileSync(new URL('../../test/fixtures/trust/tls-server.key.pem', import.meta.url));
const tlsCert = readFileSync(new URL('../../test/fixtures/trust/tls-server.cert.pem', import.meta.url));
const MESSAGE = Buffer.from('From: a@sender.test\r\nTo: b@recipient.test\r\nSubject: webhook\r\n\r\nbody \u00e9\r\n', 'utf8');

const PAYLOAD: WebhookPayload = {
  recipient: 'b@recipient.test',
  sender: 'a@sender.test',
  messageId: 'abc@sender.test',
  queueId: '0123456789abcdef012345',
  receivedAt: new Date('2025-01-02T03:04:05.678Z'),
  message: MESSAGE,
  metadata: { signer: 'CN=a@sender.test', anchor: 'CN=Sender CA' },
};

interface Received {
  headers: IncomingHttpHeaders;
  body: Buffer;
}

const servers: (http.Server | https.Server)[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A local endpoint that records each request, then answers with `respond`. */
async function endpoint(
  respond: (req: IncomingMessage, res: ServerResponse) => void = (_q, res) => res.end('ok\n'),
  tls = false,
): Promise<{ url: string; received: Received[] }> {
  const received: Received[] = [];
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks) });
      respond(req, res);
    });
  };
  const server = tls ? https.createServer({ key: tlsKey, cert: tlsCert }, handler) : http.createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}/hisp/inbound`, received };
}

const config = (url: string, extra: Partial<WebhookDelivery> = {}): WebhookDelivery => ({ type: 'webhook', url, hmacSecret: SECRET, retries: 5, timeoutMs: 5000, ...extra });

const status = (code: number, body = '', headers: Record<string, string> = {}) => (_q: IncomingMessage, res: ServerResponse) => {
  res.writeHead(code, headers);
  res.end(body);
};

/** What a receiver does (docs/delivery.md): recompute the HMAC over "<t>.<raw body>" and compare in constant time. */
function verify(headers: IncomingHttpHeaders, body: Buffer, secret: string, nowSeconds: number, toleranceSeconds = 300): boolean {
  const header = String(headers['x-hisp-signature'] ?? '');
  const fields = new Map(header.split(',').map((kv) => kv.split('=') as [string, string]));
  const t = Number(fields.get('t'));
  const v1 = Buffer.from(fields.get('v1') ?? '', 'hex');
  const expected = createHmac('sha256', secret).update(`${t}.`).update(body).digest();
  return Number.isInteger(t) && Math.abs(nowSeconds - t) <= toleranceSeconds && v1.length === expected.length && timingSafeEqual(v1, expected);
}

describe('WebhookDeliverer', () => {
  it('POSTs the documented JSON, signed with the secret (t=…,v1=…), with a delivery id and Idempotency-Key', async () => {
    const { url, received } = await endpoint(status(200, 'stored as 42\nmore'));
    const now = new Date('2025-01-02T03:05:00Z');
    const r = await new WebhookDeliverer(config(url)).deliver(PAYLOAD, { now: () => now });

    expect(r).toMatchObject({ outcome: 'delivered', status: 200, text: 'stored as 42' });
    expect(received).toHaveLength(1);
    const { headers, body } = received[0]!;
    expect(headers['content-type']).toBe('application/json');
    expect(Number(headers['content-length'])).toBe(body.byteLength);
    expect(headers['x-hisp-delivery-id']).toBe(r.deliveryId);
    expect(headers['idempotency-key']).toBe(r.deliveryId);
    expect(r.deliveryId).toMatch(/^[0-9a-f]{32}$/);
    expect(headers['x-hisp-signature']).toMatch(/^t=1735787100,v1=[0-9a-f]{64}$/);
    expect(verify(headers, body, SECRET, now.getTime() / 1000)).toBe(true);
    expect(verify(headers, body, 'another-secret-of-enough-length', now.getTime() / 1000)).toBe(false);
    expect(verify(headers, Buffer.concat([body, Buffer.from(' ')]), SECRET, now.getTime() / 1000)).toBe(false);
    // A replay an hour later is outside the receiver's tolerance.
    expect(verify(headers, body, SECRET, now.getTime() / 1000 + 3600)).toBe(false);

    const json = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    expect(Object.keys(json)).toEqual(['recipient', 'sender', 'messageId', 'receivedAt', 'queueId', 'deliveryId', 'size', 'sha256', 'metadata', 'message']);
    expect(json).toEqual({
      recipient: 'b@recipient.test',
      sender: 'a@sender.test',
      messageId: 'abc@sender.test',
      receivedAt: '2025-01-02T03:04:05.678Z',
      queueId: '0123456789abcdef012345',
      deliveryId: r.deliveryId,
      size: MESSAGE.byteLength,
      sha256: createHash('sha256').update(MESSAGE).digest('hex'),
      metadata: { signer: 'CN=a@sender.test', anchor: 'CN=Sender CA' },
      message: MESSAGE.toString('base64'),
    });
    expect(Buffer.from(json.message as string, 'base64').equals(MESSAGE)).toBe(true);
  });

  it('sends a null Message-ID, the null reverse-path and no metadata as null, "" and {}', async () => {
    const { url, received } = await endpoint();
    const { metadata: _m, ...bare } = PAYLOAD;
    await new WebhookDeliverer(config(url)).deliver({ ...bare, messageId: null, sender: '' });
    expect(JSON.parse(received[0]!.body.toString())).toMatchObject({ messageId: null, sender: '', metadata: {} });
  });

  it('keeps the delivery id of a (queue id, recipient) across tries and deliverers; another recipient gets another', async () => {
    const { url, received } = await endpoint();
    const a = await new WebhookDeliverer(config(url)).deliver(PAYLOAD);
    const b = await new WebhookDeliverer(config(url)).deliver({ ...PAYLOAD, recipient: 'B@Recipient.Test', receivedAt: new Date() });
    const c = await new WebhookDeliverer(config(url)).deliver({ ...PAYLOAD, recipient: 'c@recipient.test' });
    expect(b.deliveryId).toBe(a.deliveryId);
    expect(c.deliveryId).not.toBe(a.deliveryId);
    expect(WebhookDeliverer.deliveryId(PAYLOAD.queueId, PAYLOAD.recipient)).toBe(a.deliveryId);
    expect(received.map((x) => x.headers['x-hisp-delivery-id'])).toEqual([a.deliveryId, a.deliveryId, c.deliveryId]);
  });

  it.each([
    [500, 'transient'],
    [503, 'transient'],
    [408, 'transient'],
    [429, 'transient'],
    [400, 'permanent'],
    [401, 'permanent'],
    [404, 'permanent'],
    [413, 'permanent'],
  ] as const)('classifies HTTP %i as %s, with the first line of the body', async (code, outcome) => {
    const { url } = await endpoint(status(code, `\n  reason for ${code}\r\nsecond line`));
    const r = await new WebhookDeliverer(config(url)).deliver(PAYLOAD);
    expect(r).toMatchObject({ outcome, status: code, failure: 'status', text: `reason for ${code}` });
  });

  it('does not follow a redirect: 302 is permanent, naming the Location, and nothing is sent there', async () => {
    const target = await endpoint();
    const { url, received } = await endpoint(status(302, 'moved', { Location: target.url }));
    const r = await new WebhookDeliverer(config(url)).deliver(PAYLOAD);
    expect(r).toMatchObject({ outcome: 'permanent', status: 302, failure: 'redirect' });
    expect(r.text).toContain(`Location: ${target.url}`);
    expect(received).toHaveLength(1);
    expect(target.received).toHaveLength(0);
  });

  it('a server that does not answer in time is transient (timeout), after about timeoutMs', async () => {
    const { url } = await endpoint(() => undefined); // reads the request, never answers
    const started = Date.now();
    const r = await new WebhookDeliverer(config(url, { timeoutMs: 300 })).deliver(PAYLOAD);
    expect(r).toMatchObject({ outcome: 'transient', failure: 'timeout' });
    expect(r.status).toBeUndefined();
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('a status that came in time decides, even when the body then stalls past the deadline', async () => {
    const { url } = await endpoint((_q, res) => {
      res.writeHead(200);
      res.write('accepted');
    });
    const r = await new WebhookDeliverer(config(url, { timeoutMs: 300 })).deliver(PAYLOAD);
    expect(r).toMatchObject({ outcome: 'delivered', status: 200, text: 'accepted' });
  });

  it('reads at most 4 KiB of the response and keeps one line of at most 200 characters', async () => {
    const { url } = await endpoint(status(400, 'x'.repeat(1024 * 1024)));
    const r = await new WebhookDeliverer(config(url)).deliver(PAYLOAD);
    expect(r).toMatchObject({ outcome: 'permanent', status: 400 });
    expect(r.text).toBe('x'.repeat(200));
  });

  it('connection refused is transient (connection)', async () => {
    const { url } = await endpoint();
    const s = servers.pop()!;
    await new Promise<void>((r) => s.close(() => r()));
    const r = await new WebhookDeliverer(config(url)).deliver(PAYLOAD);
    expect(r).toMatchObject({ outcome: 'transient', failure: 'connection' });
    expect(r.text).toContain('ECONNREFUSED');
  });

  it('https: verifies the server certificate (trust roots from the options; an unknown issuer is a transient failure)', async () => {
    const { url, received } = await endpoint(undefined, true);
    expect(await new WebhookDeliverer(config(url), { tls: { ca: tlsCert } }).deliver(PAYLOAD)).toMatchObject({ outcome: 'delivered', status: 200 });
    const untrusted = await new WebhookDeliverer(config(url), { tls: { rejectUnauthorized: false } }).deliver(PAYLOAD);
    expect(untrusted).toMatchObject({ outcome: 'transient', failure: 'connection' });
    expect(received).toHaveLength(1);
  });

  it('reads hmacSecretFile once, trimmed, at construction', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hisp-webhook-'));
    dirs.push(dir);
    const file = join(dir, 'webhook-hmac.key');
    writeFileSync(file, `${SECRET}\n`);
    const { url, received } = await endpoint();
    const deliverer = new WebhookDeliverer({ type: 'webhook', url, hmacSecretFile: file, retries: 5, timeoutMs: 5000 });
    writeFileSync(file, 'a-rotated-secret-not-yet-loaded\n');
    const r = await deliverer.deliver(PAYLOAD);
    expect(r.outcome).toBe('delivered');
    const nowSeconds = Math.floor(Date.now() / 1000);
    expect(verify(received[0]!.headers, received[0]!.body, SECRET, nowSeconds)).toBe(true);
  });

  it('refuses to start without a usable secret or URL', () => {
    expect(hispError(() => new WebhookDeliverer({ type: 'webhook', url: 'http://127.0.0.1:1/', hmacSecretFile: '/nonexistent/hisp/key', retries: 1, timeoutMs: 1000 }))).toMatchObject({
      code: 'HISP_IO',
      transient: true,
    });
    expect(hispError(() => new WebhookDeliverer({ type: 'webhook', url: 'http://127.0.0.1:1/', retries: 1, timeoutMs: 1000 })).code).toBe('HISP_CONFIG_INVALID');
    expect(hispError(() => new WebhookDeliverer(config('ftp://127.0.0.1/x'))).code).toBe('HISP_CONFIG_INVALID');
    expect(hispError(() => new WebhookDeliverer(config('not a url'))).code).toBe('HISP_CONFIG_INVALID');
  });
});

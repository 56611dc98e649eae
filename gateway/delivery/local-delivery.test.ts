import { createHmac } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DeliveryConfig, WebhookDelivery } from '../config/schema.js';
import { deliverLocally, type LocalDeliveryItem } from './local-delivery.js';
import type { WebhookDeliverer } from './webhook.js';

const SECRET = 'a-webhook-secret-of-32-bytes-abc';
const MESSAGE = Buffer.from('From: a@sender.test\r\nTo: b@recipient.test\r\nSubject: local\r\n\r\nbody\r\n.leading dot\r\n');
const ITEM: LocalDeliveryItem = {
  recipient: 'b@recipient.test',
  sender: 'a@sender.test',
  messageId: 'abc@sender.test',
  queueId: '0123456789abcdef012345',
  receivedAt: new Date('2025-01-02T03:04:05Z'),
  message: MESSAGE,
  metadata: { signer: 'CN=a@sender.test' },
};
const OPTIONS = { hostname: 'hisp.test' };

let root: string;
const closers: (() => Promise<void>)[] = [];
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'hisp-local-'));
});
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
  rmSync(root, { recursive: true, force: true });
});

interface Transaction {
  mailFrom: string | false;
  rcptTo: string[];
  message: Buffer;
}

/** An SMTP or LMTP server (smtp-server) on 127.0.0.1:0 or on a Unix socket, recording each transaction. */
async function mailServer(options: Partial<SMTPServerOptions>, socketPath?: string): Promise<{ port: number; received: Transaction[] }> {
  const received: Transaction[] = [];
  const s = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        received.push({
          mailFrom: session.envelope.mailFrom === false ? false : session.envelope.mailFrom.address,
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
          message: Buffer.concat(chunks),
        });
        cb();
      });
    },
    ...options,
  });
  closers.push(() => new Promise<void>((r) => s.close(() => r())));
  if (socketPath !== undefined) {
    await new Promise<void>((r) => s.listen(socketPath, r));
    return { port: 0, received };
  }
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { port: (s.server.address() as AddressInfo).port, received };
}

/** A node:http endpoint answering with `code` (the nth request with the nth of a list, then its last), recording each request. */
async function webhookEndpoint(codes: number | readonly number[] = 200, delayMs = 0): Promise<{ url: string; received: { headers: IncomingHttpHeaders; body: Buffer }[] }> {
  const received: { headers: IncomingHttpHeaders; body: Buffer }[] = [];
  const list = typeof codes === 'number' ? [codes] : codes;
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks) });
      const code = list[Math.min(received.length, list.length) - 1]!;
      setTimeout(() => {
        res.writeHead(code, code >= 300 && code < 400 ? { Location: 'http://127.0.0.1:1/elsewhere' } : {});
        res.end(`answer ${code}\n`);
      }, delayMs);
    });
  });
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/in`, received };
}

const webhook = (url: string, extra: Partial<WebhookDelivery> = {}): WebhookDelivery => ({ type: 'webhook', url, hmacSecret: SECRET, retries: 5, timeoutMs: 5000, ...extra });

const signedWith = (h: IncomingHttpHeaders, body: Buffer, secret: string): boolean => {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(h['x-hisp-signature']));
  return m !== null && createHmac('sha256', secret).update(`${m[1]}.`).update(body).digest('hex') === m[2];
};

/** An error smtp-server answers with the given reply code. */
const smtpError = (code: number, text: string): Error => Object.assign(new Error(text), { responseCode: code });

describe('deliverLocally: maildir', () => {
  it("resolves the domain's {address} path and delivers durably into new/ (250, location = the file)", async () => {
    const target: DeliveryConfig = { type: 'maildir', path: join(root, 'maildir', '{address}') };
    const r = await deliverLocally(target, { ...ITEM, recipient: 'Dr.Smith@Recipient.Test' }, OPTIONS);
    expect(r).toMatchObject({ outcome: 'delivered', reply: { code: 250, enhanced: '2.0.0' } });
    expect(dirname(r.location!)).toBe(join(root, 'maildir', 'dr.smith@recipient.test', 'new'));
    expect(readFileSync(r.location!).equals(MESSAGE)).toBe(true);
    expect(r.location).toMatch(/\.hisp\.test,S=\d+$/);
  });

  it('delivers once per delivery: a try after a crash finds the copy (also moved to cur/ with flags) and writes no second one', async () => {
    const target: DeliveryConfig = { type: 'maildir', path: join(root, 'box') };
    const first = await deliverLocally(target, ITEM, { ...OPTIONS, firstTry: true });
    expect(first).toMatchObject({ outcome: 'delivered', reply: { text: 'maildir: delivered' } });
    // The gateway died before the queue recorded it; the next lease tries again.
    const again = await deliverLocally(target, ITEM, OPTIONS);
    expect(again).toMatchObject({ outcome: 'delivered', reply: { code: 250, text: 'maildir: delivered earlier' }, location: first.location });
    renameSync(first.location!, join(root, 'box', 'cur', `${basename(first.location!)}:2,RS`));
    expect((await deliverLocally(target, ITEM, OPTIONS)).reply.text).toBe('maildir: delivered earlier');
    expect(readdirSync(join(root, 'box', 'new'))).toEqual([]);
    expect(readdirSync(join(root, 'box', 'cur'))).toHaveLength(1);
    // Another recipient of the same message is another delivery.
    await deliverLocally(target, { ...ITEM, recipient: 'c@recipient.test' }, OPTIONS);
    expect(readdirSync(join(root, 'box', 'new'))).toHaveLength(1);
  });

  it('a path that cannot be a maildir is transient 451 4.3.5, the errno in the reply and the path only in the error', async () => {
    const file = join(root, 'file');
    writeFileSync(file, 'x');
    const r = await deliverLocally({ type: 'maildir', path: join(file, 'box') }, ITEM, OPTIONS);
    expect(r).toMatchObject({ outcome: 'transient', reply: { code: 451, enhanced: '4.3.5' }, error: { code: 'HISP_CONFIG_INVALID' } });
    expect(r.reply.text).toMatch(/^maildir: (ENOTDIR|EEXIST) .*\[HISP_CONFIG_INVALID\]$/);
    expect(r.reply.text).not.toContain(root);
    expect(r.error?.message).toContain(root);
  });
});

describe('deliverLocally: webhook', () => {
  it('delivers with a signed POST: 250 2.0.0 "webhook 200 …", location = the delivery id', async () => {
    const { url, received } = await webhookEndpoint(200);
    const r = await deliverLocally(webhook(url), ITEM, OPTIONS);
    expect(r).toMatchObject({ outcome: 'delivered', reply: { code: 250, enhanced: '2.0.0', text: 'webhook 200 answer 200' } });
    expect(r.location).toBe(received[0]!.headers['x-hisp-delivery-id']);
    expect(signedWith(received[0]!.headers, received[0]!.body, SECRET)).toBe(true);
    expect(JSON.parse(received[0]!.body.toString())).toMatchObject({ recipient: ITEM.recipient, metadata: { signer: 'CN=a@sender.test' } });
  });

  it('sends the same delivery id (X-Hisp-Delivery-Id, Idempotency-Key, the signed body) and the same body on every try', async () => {
    const { url, received } = await webhookEndpoint([503, 500, 200]);
    const tries = [];
    for (let n = 1; n <= 3; n++) tries.push(await deliverLocally(webhook(url), ITEM, { ...OPTIONS, tryNumber: n }));
    expect(tries.map((t) => t.outcome)).toEqual(['transient', 'transient', 'delivered']);
    const ids = received.map((r) => [r.headers['x-hisp-delivery-id'], r.headers['idempotency-key'], (JSON.parse(r.body.toString()) as { deliveryId: string }).deliveryId]);
    expect(new Set(ids.flat()).size).toBe(1);
    expect(ids[0]![0]).toMatch(/^[0-9a-f]{32}$/);
    expect(new Set(received.map((r) => r.body.toString('base64'))).size).toBe(1);
  });

  it.each([
    [500, 'transient', 451, '4.3.0'],
    [503, 'transient', 451, '4.3.2'],
    [400, 'permanent', 554, '5.6.0'],
    [403, 'permanent', 554, '5.7.1'],
    [413, 'permanent', 552, '5.3.4'],
    [302, 'permanent', 554, '5.3.5'],
  ] as const)('HTTP %i: %s, %i %s', async (status, outcome, code, enhanced) => {
    const { url } = await webhookEndpoint(status);
    const r = await deliverLocally(webhook(url), ITEM, OPTIONS);
    expect(r).toMatchObject({ outcome, reply: { code, enhanced } });
    expect(r.reply.text).toMatch(new RegExp(`^webhook ${status} `));
  });

  it('a time-out is transient 451 4.4.1 (options.timeoutMs overrides the config)', async () => {
    const { url } = await webhookEndpoint(200, 2000);
    const r = await deliverLocally(webhook(url), ITEM, { ...OPTIONS, timeoutMs: 200 });
    expect(r).toMatchObject({ outcome: 'transient', reply: { code: 451, enhanced: '4.4.1' } });
    expect(r.reply.text).toMatch(/^webhook timeout/);
  });

  it("caps the tries with the config's retries: a transient outcome of try retries+1 is permanent 554 5.4.7", async () => {
    const { url } = await webhookEndpoint(500);
    const target = webhook(url, { retries: 2 });
    expect((await deliverLocally(target, ITEM, { ...OPTIONS, tryNumber: 2 })).outcome).toBe('transient');
    const last = await deliverLocally(target, ITEM, { ...OPTIONS, tryNumber: 3 });
    expect(last).toMatchObject({ outcome: 'permanent', reply: { code: 554, enhanced: '5.4.7' } });
    expect(last.reply.text).toBe('gave up after 3 tries: 451 webhook 500 answer 500');
  });

  it('creates one deliverer per configuration object: the secret file is read once, a new config object reads it again', async () => {
    const { url, received } = await webhookEndpoint(200);
    const file = join(root, 'hmac.key');
    writeFileSync(file, `${SECRET}\n`);
    const target: WebhookDelivery = { type: 'webhook', url, hmacSecretFile: file, retries: 5, timeoutMs: 5000 };
    const cache = new WeakMap<WebhookDelivery, WebhookDeliverer>();
    await deliverLocally(target, ITEM, { ...OPTIONS, webhooks: cache });
    writeFileSync(file, 'the-rotated-secret-of-some-length\n');
    await deliverLocally(target, ITEM, { ...OPTIONS, webhooks: cache });
    await deliverLocally({ ...target }, ITEM, { ...OPTIONS, webhooks: cache });
    expect(received.map((x) => signedWith(x.headers, x.body, SECRET))).toEqual([true, true, false]);
    expect(signedWith(received[2]!.headers, received[2]!.body, 'the-rotated-secret-of-some-length')).toBe(true);
  });

  it('an unreadable secret file is transient and not cached: the next try reads it', async () => {
    const { url } = await webhookEndpoint(200);
    const file = join(root, 'late.key');
    const target: WebhookDelivery = { type: 'webhook', url, hmacSecretFile: file, retries: 5, timeoutMs: 5000 };
    const r = await deliverLocally(target, ITEM, OPTIONS);
    expect(r).toMatchObject({ outcome: 'transient', reply: { code: 451, enhanced: '4.3.0' }, error: { code: 'HISP_IO' } });
    expect(r.reply.text).toMatch(/^webhook: ENOENT /);
    writeFileSync(file, SECRET);
    expect((await deliverLocally(target, ITEM, OPTIONS)).outcome).toBe('delivered');
  });
});

describe('deliverLocally: LMTP and SMTP', () => {
  it('LMTP over TCP: LHLO, MAIL FROM the envelope sender, RCPT the recipient, the message unchanged', async () => {
    const { port, received } = await mailServer({ lmtp: true });
    const r = await deliverLocally({ type: 'lmtp', host: '127.0.0.1', port }, ITEM, OPTIONS);
    expect(r).toMatchObject({ outcome: 'delivered', reply: { code: 250 }, location: `lmtp://127.0.0.1:${port}` });
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ mailFrom: 'a@sender.test', rcptTo: ['b@recipient.test'] });
    expect(received[0]!.message.equals(MESSAGE)).toBe(true);
  });

  it.each([
    [550, 'permanent'],
    [451, 'transient'],
  ] as const)("LMTP: the recipient's own reply after DATA (%i) is %s", async (code, outcome) => {
    const { port } = await mailServer({
      lmtp: true,
      onData(stream, _s, cb) {
        stream.resume();
        stream.on('end', () => cb(null, [smtpError(code, `${code === 550 ? '5.2.1 mailbox disabled' : '4.2.1 mailbox busy'}`)]));
      },
    });
    const r = await deliverLocally({ type: 'lmtp', host: '127.0.0.1', port }, ITEM, OPTIONS);
    expect(r).toMatchObject({ outcome, reply: { code, enhanced: code === 550 ? '5.2.1' : '4.2.1' } });
  });

  it('LMTP over a Unix socket, delivered; per-recipient 550 and 451 keep their class', async () => {
    const path = join(root, 'lmtp.sock');
    const replies: (Error | null)[] = [null, smtpError(550, '5.1.1 no such user'), smtpError(451, '4.3.0 try later')];
    const { received } = await mailServer(
      {
        lmtp: true,
        onData(stream, session, cb) {
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('end', () => {
            received.push({ mailFrom: session.envelope.mailFrom && session.envelope.mailFrom.address, rcptTo: session.envelope.rcptTo.map((x) => x.address), message: Buffer.concat(chunks) });
            const reply = replies.shift() ?? null;
            cb(null, [reply ?? 'OK stored']);
          });
        },
      },
      path,
    );
    const target: DeliveryConfig = { type: 'lmtp', host: '127.0.0.1', port: 1, socket: path };
    const ok = await deliverLocally(target, ITEM, OPTIONS);
    expect(ok).toMatchObject({ outcome: 'delivered', reply: { code: 250, text: 'OK stored' }, location: `lmtp:unix:${path}` });
    expect(received[0]).toMatchObject({ mailFrom: 'a@sender.test', rcptTo: ['b@recipient.test'] });
    expect(received[0]!.message.equals(MESSAGE)).toBe(true);
    expect(await deliverLocally(target, ITEM, OPTIONS)).toMatchObject({ outcome: 'permanent', reply: { code: 550, enhanced: '5.1.1' } });
    expect(await deliverLocally(target, ITEM, OPTIONS)).toMatchObject({ outcome: 'transient', reply: { code: 451, enhanced: '4.3.0' } });
  });

  it('LMTP to a Unix socket nobody listens on is transient 421 4.4.1', async () => {
    const r = await deliverLocally({ type: 'lmtp', host: '127.0.0.1', port: 24, socket: join(root, 'missing.sock') }, ITEM, OPTIONS);
    expect(r).toMatchObject({ outcome: 'transient', reply: { code: 421, enhanced: '4.4.1' } });
  });

  it('SMTP: delivered, the null reverse-path kept as MAIL FROM:<>', async () => {
    const { port, received } = await mailServer({});
    const r = await deliverLocally({ type: 'smtp', host: '127.0.0.1', port }, { ...ITEM, sender: '' }, OPTIONS);
    expect(r).toMatchObject({ outcome: 'delivered', reply: { code: 250 }, location: `smtp://127.0.0.1:${port}` });
    expect(received[0]).toMatchObject({ mailFrom: '', rcptTo: ['b@recipient.test'] });
    expect(received[0]!.message.equals(MESSAGE)).toBe(true);
  });

  it.each([
    [550, 'permanent'],
    [451, 'transient'],
  ] as const)('SMTP: a %i to the recipient is %s, nothing delivered', async (code, outcome) => {
    const { port, received } = await mailServer({
      onRcptTo(_a, _s, cb) {
        cb(smtpError(code, code === 550 ? '5.1.1 no such user' : '4.2.0 later'));
      },
    });
    const r = await deliverLocally({ type: 'smtp', host: '127.0.0.1', port }, ITEM, OPTIONS);
    expect(r).toMatchObject({ outcome, reply: { code } });
    expect(received).toHaveLength(0);
  });

  it('SMTP: connection refused is transient', async () => {
    const { port } = await mailServer({});
    await closers.pop()!();
    const r = await deliverLocally({ type: 'smtp', host: '127.0.0.1', port }, ITEM, { ...OPTIONS, timeoutMs: 2000 });
    expect(r).toMatchObject({ outcome: 'transient', reply: { code: 421 } });
  });
});

/**
 * Issue 14, item 11: hisp's TLS clients speak TLS 1.2+ with forward-secret AEAD suites only
 * (core/tls-profile.ts, Mozilla "intermediate"): the relay to other HISPs and downstream SMTP/LMTP
 * servers (STARTTLS through nodemailer) and the webhook client (HTTPS). Real servers on loopback,
 * each offering one kind of weak TLS: only TLS 1.1; only RSA key exchange (with CBC, and with
 * GCM); only CBC (with ECDHE). The client must fail the handshake and deliver nothing; a server with
 * the profile's suites takes the message.
 */
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { buffer } from 'node:stream/consumers';
import type { SecureContextOptions } from 'node:tls';
import { SMTPServer } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { TLS_PROFILE } from '../../gateway/core/tls-profile.js';
import { relayMessage } from '../../gateway/delivery/smtp-relay.js';
import { WebhookDeliverer } from '../../gateway/delivery/webhook.js';

const key = readFileSync(new URL('../fixtures/trust/tls-server.key.pem', import.meta.url));
const cert = readFileSync(new URL('../fixtures/trust/tls-server.cert.pem', import.meta.url));
const MESSAGE = Buffer.from('From: a@sender.test\r\nTo: b@recipient.test\r\nSubject: tls\r\n\r\nbody\r\n');

/** What a server of each kind offers. SECLEVEL=0: OpenSSL 3 refuses TLS 1.1 and SHA-1 suites otherwise. */
const WEAK: Record<string, SecureContextOptions> = {
  'only TLS 1.1': { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' },
  'only RSA key exchange with CBC (AES128-SHA)': { maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA@SECLEVEL=0' },
  'only RSA key exchange with GCM (AES128-GCM-SHA256)': { maxVersion: 'TLSv1.2', ciphers: 'AES128-GCM-SHA256' },
  'only CBC with ECDHE (ECDHE-RSA-AES128-SHA256)': { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-SHA256' },
};
const GOOD: Record<string, SecureContextOptions> = {
  'the profile (TLS 1.2 and 1.3, ECDHE with AEAD)': { ...TLS_PROFILE },
  'only TLS 1.2 with ECDHE-RSA-AES256-GCM-SHA384': { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES256-GCM-SHA384' },
};

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
});

/** An SMTP server with STARTTLS offering `tls`, recording what it accepted. */
async function smtpServer(tls: SecureContextOptions): Promise<{ port: number; received: Buffer[] }> {
  const received: Buffer[] = [];
  const server = new SMTPServer({
    authOptional: true,
    key,
    cert,
    ...tls,
    logger: false,
    onData(stream, _session, cb) {
      buffer(stream).then((b) => {
        received.push(b);
        cb();
      }, cb);
    },
  });
  // A refused handshake is an error on the server side too: expected here.
  server.on('error', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.server.address() as AddressInfo).port, received };
}

/** An HTTPS server offering `tls` that answers 200 to every POST, counting them. */
async function httpsServer(tls: SecureContextOptions): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  const server = https.createServer({ key, cert, ...tls }, (req: http.IncomingMessage, res: http.ServerResponse) => {
    requests++;
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/hisp`, requests: () => requests };
}

function webhook(url: string): WebhookDeliverer {
  return new WebhookDeliverer({ type: 'webhook', url, hmacSecret: 'a secret of at least 32 characters, for tests', timeoutMs: 10_000, retries: 3 }, { tls: { ca: cert } });
}

const PAYLOAD = { recipient: 'p@recipient.test', sender: 'a@sender.test', messageId: 'm@sender.test', queueId: 'q1', receivedAt: new Date(), message: MESSAGE };

describe('relay (STARTTLS to the next hop)', () => {
  it.each(Object.entries(WEAK))('fails the handshake with a server offering %s, and sends nothing', async (_name, tls) => {
    const { port, received } = await smtpServer(tls);
    for (const tlsRequired of [false, true]) {
      const r = await relayMessage('127.0.0.1', port, { from: 'a@sender.test', to: ['b@recipient.test'] }, MESSAGE, {
        name: 'hisp.test',
        tlsRequired,
        tls: { ca: cert },
        servername: 'localhost',
      });
      expect(r.recipients[0], `tlsRequired ${tlsRequired}`).toMatchObject({ outcome: 'transient' });
      expect(r.tls).toBe(false);
    }
    expect(received).toHaveLength(0);
  });

  it.each(Object.entries(GOOD))('delivers to a server offering %s', async (_name, tls) => {
    const { port, received } = await smtpServer(tls);
    const r = await relayMessage('127.0.0.1', port, { from: 'a@sender.test', to: ['b@recipient.test'] }, MESSAGE, {
      name: 'hisp.test',
      tlsRequired: true,
      tls: { ca: cert },
      servername: 'localhost',
    });
    expect(r).toMatchObject({ tls: true, recipients: [{ outcome: 'delivered' }] });
    expect(received).toHaveLength(1);
  });

  it('cannot be weakened by the options a caller passes', async () => {
    const { port, received } = await smtpServer(WEAK['only RSA key exchange with CBC (AES128-SHA)']!);
    const r = await relayMessage('127.0.0.1', port, { from: 'a@sender.test', to: ['b@recipient.test'] }, MESSAGE, {
      name: 'hisp.test',
      tls: { ca: cert, minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' },
      servername: 'localhost',
    });
    expect(r.recipients[0]!.outcome).toBe('transient');
    expect(received).toHaveLength(0);
  });
});

describe('webhook (HTTPS)', () => {
  it.each(Object.entries(WEAK))('fails the handshake with a server offering %s, and posts nothing', async (_name, tls) => {
    const { url, requests } = await httpsServer(tls);
    const r = await webhook(url).deliver(PAYLOAD);
    expect(r).toMatchObject({ outcome: 'transient', failure: 'connection' });
    expect(requests()).toBe(0);
  });

  it.each(Object.entries(GOOD))('delivers to a server offering %s', async (_name, tls) => {
    const { url, requests } = await httpsServer(tls);
    expect(await webhook(url).deliver(PAYLOAD)).toMatchObject({ outcome: 'delivered', status: 200 });
    expect(requests()).toBe(1);
  });
});

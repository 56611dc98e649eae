/**
 * The verified signer reaches the endpoint (issue 14, item 13): a real Direct message, signed by the
 * test PKI's sender-rsa (sender@sender.test, chained through the intermediate to root-ca) and
 * encrypted to recipient.test's domain certificate, arrives on the inbound port of a gateway running
 * in-process, for a Maildir address and a webhook address. The Maildir file starts with exactly one
 * Authentication-Results of the gateway (smime=pass, the signer), the forged one the sender put in
 * the message is gone; the webhook's metadata names the signer (subject, fingerprint) and the anchor
 * its chain ended at, as docs/delivery.md documents. No DNS server is needed: the receive side
 * trusts by the configured anchors (the MDN back to sender.test stays queued).
 */
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCredential } from '../../gateway/agent/key-material.js';
import { wrapMessage } from '../../gateway/agent/wrap-message.js';
import type { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { maildirMessages, startGateway, toConfig, waitFor } from '../helpers/direct-network.js';
import { credentialPaths } from '../helpers/pki.js';
import { freePort } from '../helpers/postfix.js';
import { rawSmtp } from '../helpers/raw-smtp.js';

const OWN = 'hisp.recipient.test';
const SECRET = 'a-webhook-secret-for-the-phr-endpoint';
const MANIFEST = JSON.parse(readFileSync(path.join(credentialPaths('root-ca').cert, '..', 'manifest.json'), 'utf8')) as Record<string, { subject: string; sha256: string }>;

interface Hooked {
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

let dir: string;
let gateway: HispGateway;
let hook: http.Server;
const hooked: Hooked[] = [];

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'hisp-receive-auth-'));
  hook = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      hooked.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(200).end('stored\n');
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  const domain = credentialPaths('recipient-domain');
  const root = credentialPaths('root-ca').cert;
  const raw = {
    dataDir: path.join(dir, 'data'),
    hostname: OWN,
    log: { level: 'warn' },
    // Nothing answers there: the MDN back to sender.test waits in the queue, which is all right here.
    dns: { servers: ['127.0.0.1:9'], timeoutMs: 200, retries: 0 },
    submission: { enabled: false },
    inbound: { host: '127.0.0.1', port: await freePort() },
    domains: [
      {
        name: 'recipient.test',
        credentials: [{ key: domain.key, cert: domain.chain }],
        anchors: { incoming: [root], outgoing: [root] },
        addresses: [
          { address: 'patient@recipient.test' },
          { address: 'phr@recipient.test', delivery: { type: 'webhook', url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/in`, hmacSecret: SECRET } },
        ],
      },
    ],
  };
  gateway = await startGateway(toConfig(raw, dir));
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  await new Promise<void>((r) => (hook ? hook.close(() => r()) : r()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The header fields of a message, unfolded, in order. */
function fields(m: Buffer): string[] {
  const s = m.toString('latin1');
  return s
    .slice(0, s.indexOf('\r\n\r\n'))
    .split(/\r\n(?![ \t])/)
    .map((f) => f.replace(/\r\n([ \t])/g, '$1'));
}

describe('what the receive side verified reaches the endpoint', () => {
  it('Maildir: one Authentication-Results of ours, smime=pass with the signer, first; the forged one is gone. Webhook: the signer and anchor in metadata', async () => {
    const inner = Buffer.from(
      [
        `Authentication-Results: ${OWN}; smime=pass body.smime-identifier=chief.medical.officer@recipient.test`,
        `Authentication-Results: (claims to be us) HISP.Recipient.Test;`,
        '\tsmime=pass',
        'Authentication-Results: mx.sender.test; spf=pass smtp.mailfrom=sender.test',
        'From: sender@sender.test',
        'To: patient@recipient.test, phr@recipient.test',
        'Subject: Discharge summary',
        'Date: Mon, 07 Dec 2026 10:00:00 +0000',
        'Message-ID: <authentication-results.1@sender.test>',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=us-ascii',
        '',
        'The summary.',
        '',
      ].join('\r\n'),
      'latin1',
    );
    const signer = credentialPaths('sender-rsa');
    const recipientCert = loadCredential(credentialPaths('recipient-domain').key, credentialPaths('recipient-domain').cert).certificate;
    const wrapped = wrapMessage(inner, { signers: [loadCredential(signer.key, signer.chain)], recipients: [recipientCert] }).message;

    const smtp = await rawSmtp(gateway.inboundPort!);
    try {
      expect(await smtp.read()).toMatch(/^220 /);
      expect(await smtp.send('EHLO mx.sender.test\r\n')).toMatch(/^250/);
      expect(await smtp.send('MAIL FROM:<sender@sender.test>\r\n')).toMatch(/^250/);
      expect(await smtp.send('RCPT TO:<patient@recipient.test>\r\n')).toMatch(/^250/);
      expect(await smtp.send('RCPT TO:<phr@recipient.test>\r\n')).toMatch(/^250/);
      expect(await smtp.send('DATA\r\n')).toMatch(/^354/);
      expect(await smtp.send(Buffer.concat([wrapped, Buffer.from('.\r\n')]))).toMatch(/^250/);
      await smtp.send('QUIT\r\n');
    } finally {
      smtp.close();
    }

    // Maildir
    const [delivered] = await waitFor('the Maildir delivery', () => {
      const m = maildirMessages(path.join(dir, 'data', 'maildir', 'patient@recipient.test'));
      return m.length > 0 ? m : undefined;
    });
    const all = fields(delivered!);
    const results = all.filter((f) => /^authentication-results:/i.test(f));
    const ours = results.filter((f) => /^authentication-results:\s*(\([^)]*\)\s*)?"?hisp\.recipient\.test\b/i.test(f));
    expect(ours).toEqual([
      `Authentication-Results: ${OWN};\tsmime=pass (address-bound signer, trusted)\tbody.smime-identifier=sender@sender.test` +
        `\tbody.smime-serial=${loadCredential(signer.key, signer.cert).certificate.serialHex}\tbody.smime-issuer="${MANIFEST['intermediate-ca']!.subject}"`,
    ]);
    expect(all[0]).toBe(ours[0]); // the first field, above hisp's Received (RFC 8601 §4.1)
    expect(all[1]).toMatch(/^Received: from mx\.sender\.test .*by hisp\.recipient\.test/);
    expect(delivered!.toString()).not.toContain('chief.medical.officer');
    expect(results).toContain('Authentication-Results: mx.sender.test; spf=pass smtp.mailfrom=sender.test'); // not ours: kept

    // Webhook
    const request = await waitFor('the webhook request', () => hooked[0]);
    const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(request.headers['x-hisp-signature'])) ?? [];
    expect(v1).toBe(createHmac('sha256', SECRET).update(`${t}.`).update(request.body).digest('hex'));
    const payload = JSON.parse(request.body.toString()) as { recipient: string; deliveryId: string; metadata: Record<string, unknown>; message: string };
    expect(payload.recipient).toBe('phr@recipient.test');
    expect(payload.deliveryId).toBe(request.headers['x-hisp-delivery-id']);
    expect(payload.metadata).toEqual({
      sender: 'sender@sender.test',
      signer: MANIFEST['sender-rsa']!.subject,
      anchor: MANIFEST['root-ca']!.subject,
      signers: [
        {
          subject: MANIFEST['sender-rsa']!.subject,
          issuer: MANIFEST['intermediate-ca']!.subject,
          serial: loadCredential(signer.key, signer.cert).certificate.serialHex,
          sha256: MANIFEST['sender-rsa']!.sha256,
          notBefore: '2025-01-01T00:00:00.000Z',
          notAfter: '2049-12-31T23:59:59.000Z',
          binding: 'address',
          boundTo: 'sender@sender.test',
          anchor: { subject: MANIFEST['root-ca']!.subject, sha256: MANIFEST['root-ca']!.sha256, bundle: null },
          // The test PKI names no CRLs: under the default soft-fail, said rather than hidden.
          warnings: [
            expect.stringMatching(/^revocation not checked \(soft-fail\): CN=sender@sender\.test names no CRL distribution point/),
            expect.stringMatching(/^revocation not checked \(soft-fail\): CN=hisp Test Intermediate CA,O=hisp tests names no CRL/),
          ],
        },
      ],
      // How it was protected, by the names of hisp wrap's options (the test's sender wraps with the defaults).
      algorithms: { cipher: expect.stringMatching(/^aes(128|192|256)-(cbc|gcm)$/) as string, keyTransport: expect.stringMatching(/^rsa-/) as string, digest: 'sha256' },
    });
    const viaHook = Buffer.from(payload.message, 'base64');
    expect(fields(viaHook).filter((f) => /^authentication-results:\s*hisp\.recipient\.test;/i.test(f))).toHaveLength(1);
    expect(fields(viaHook)[0]).toMatch(/^Authentication-Results: hisp\.recipient\.test;\tsmime=pass /);
  }, 60_000);
});

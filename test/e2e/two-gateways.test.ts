/**
 * Two hisp gateways on loopback exchange Direct messages end to end (issue 5, "Proven against real
 * peers"): certificates and MX published in a real DNS server (knotd), submission over STARTTLS +
 * AUTH by nodemailer and by swaks, delivery into the receiving Maildir with every submitted header
 * field and the body unchanged, processed and dispatched MDNs back at the sender (R-MDN-1, R-MDN-5),
 * and the tracking visible in `hisp status`.
 */
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { parseMdn } from '../../gateway/mdn/mdn-parser.js';
import { buildDsn } from '../../gateway/queue/dsn.js';
import { authPlain, rawSmtp } from '../helpers/raw-smtp.js';
import {
  EDGE_PASSWORD,
  EDGE_USER,
  gatewayConfigObject,
  maildirMessages,
  startDirectNetwork,
  startGateway,
  toConfig,
  waitFor,
  type DirectNetwork,
  edgeTransport,
} from '../helpers/direct-network.js';
import { missingExecutable, requirePeer } from '../helpers/require-peer.js';

const run = promisify(execFile);
const HOOK_SECRET = 'a webhook secret shared with the PHR';
const REPO = path.resolve(import.meta.dirname, '../..');

function message(from: string, to: string, subject: string, extra = ''): Buffer {
  return Buffer.from(
    `From: Dr. Provider <${from}>\r\nTo: ${to}\r\nSubject: ${subject}\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n` +
      `Message-ID: <${subject.replace(/\W+/g, '-')}.${Date.now()}@a.test>\r\nX-Clinic-Ref: 12345\r\nMIME-Version: 1.0\r\n` +
      `Content-Type: text/plain; charset=utf-8\r\n${extra}\r\nSummary of care for the patient.\r\nSecond line.\r\n`,
  );
}

function headerSection(m: Buffer): string {
  const s = m.toString('latin1');
  return s.slice(0, s.indexOf('\r\n\r\n') + 2);
}

/** knotd serves the test zones: with CI=true its absence fails the run (test/helpers/require-peer.ts). */
const knot = requirePeer(missingExecutable('knotd'));
const swaks = requirePeer(missingExecutable('swaks'));

describe.skipIf(knot.skip)(knot.title('two gateways over a real DNS server (knotd)'), () => {
  let net: DirectNetwork;
  let a: HispGateway;
  let b: HispGateway;

  /** A PHR's webhook endpoint: what it received, raw. */
  const hooked: { headers: http.IncomingHttpHeaders; body: Buffer }[] = [];
  /** The edge sender ehr-inbox@a.test's webhook (the notifications it gets back), with the status answered. */
  const edgeHooked: { status: number; body: Buffer }[] = [];
  let hook: http.Server;

  beforeAll(async () => {
    hook = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.url === '/edge') {
          // The EHR's own endpoint for notifications: down for its first request.
          edgeHooked.push({ status: edgeHooked.length === 0 ? 503 : 200, body: Buffer.concat(chunks) });
          res.writeHead(edgeHooked.at(-1)!.status).end();
          return;
        }
        hooked.push({ headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/direct`;
    net = await startDirectNetwork(['a.test', 'b.test']);
    const edgeUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/edge`;
    // A gateway for `domain` whose `address` is delivered to the webhook at `url`.
    const withWebhook = async (domain: string, address: string, url: string) =>
      startGateway(
        toConfig(
          await gatewayConfigObject(net.spec(domain, { domainExtra: { addresses: [{ address, delivery: { type: 'webhook', url, hmacSecret: HOOK_SECRET } }] } }), net.dns.address),
          net.dir,
        ),
      );
    a = await withWebhook('a.test', 'ehr-inbox@a.test', edgeUrl);
    b = await withWebhook('b.test', 'phr@b.test', hookUrl);
  }, 60_000);

  afterAll(async () => {
    await new Promise<void>((r) => (hook ? hook.close(() => r()) : r()));
    await a?.stop();
    await b?.stop();
    await net?.stop();
  });

  const maildir = (domain: string, address: string) => path.join(net.dir, `data-${domain}`, 'maildir', address);

  it('delivers a message submitted by nodemailer (STARTTLS + AUTH) unchanged, with processed and dispatched MDNs back', async () => {
    const original = message('provider@a.test', 'patient@b.test', 'Summary of care');
    const transport = edgeTransport(a.submissionPort);
    const info = await transport.sendMail({ envelope: { from: 'provider@a.test', to: ['patient@b.test'] }, raw: original });
    expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as \w+/);

    const [delivered] = await waitFor('delivery at b.test', () => {
      const m = maildirMessages(maildir('b.test', 'patient@b.test'));
      return m.length > 0 ? m : undefined;
    });
    const text = delivered!.toString('latin1');
    // Every submitted field and the body, byte for byte; hisp adds trace fields and the MDN request only.
    const submittedHeaders = headerSection(original).split('\r\n').filter(Boolean);
    for (const line of submittedHeaders) expect(text).toContain(`${line}\r\n`);
    expect(text.endsWith('\r\n\r\nSummary of care for the patient.\r\nSecond line.\r\n')).toBe(true);
    // What b verified comes first (RFC 8601 §4.1: above b's Received field): a.test's domain-bound signer.
    expect(text).toMatch(/^Authentication-Results: hisp\.b\.test;\r\n\tsmime=pass \(domain-bound signer, trusted\)\r\n\tbody\.smime-identifier=a\.test\r\n[^]*?\r\nReceived: /);
    expect(text).toContain('Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\n');
    const added = headerSection(delivered!)
      .split(/\r\n(?![ \t])/)
      .filter(Boolean)
      .map((f) => f.slice(0, f.indexOf(':')).toLowerCase())
      .filter((name) => !submittedHeaders.some((l) => l.toLowerCase().startsWith(`${name}:`)));
    expect(new Set(added)).toEqual(new Set(['authentication-results', 'received', 'disposition-notification-to', 'disposition-notification-options']));

    const mdns = await waitFor('processed and dispatched MDNs at a.test', () => {
      const m = maildirMessages(maildir('a.test', 'provider@a.test')).map((x) => parseMdn(x));
      return m.length >= 2 ? m : undefined;
    });
    expect(mdns.map((m) => m.disposition).sort()).toEqual(['dispatched', 'processed']);
    const messageId = /^Message-ID: (<[^>]+>)/im.exec(original.toString())![1]!;
    for (const m of mdns) {
      expect(m.originalMessageId).toBe(messageId);
      expect(m.finalRecipient).toBe('patient@b.test');
    }
    const dispatched = mdns.find((m) => m.disposition === 'dispatched')!;
    expect(dispatched.finalDeliveryExtension).toBe(true);

    const tracking = await waitFor('tracking dispatched', () => {
      const t = a.ctx.tracking.get(messageId, 'patient@b.test');
      return t?.state === 'dispatched' ? t : undefined;
    });
    expect(tracking.processedAt).not.toBeNull();
    const status = await a.ctx.queue.get(messageId);
    expect(status?.deliveries.map((d) => d.state)).toEqual(['delivered']);
    expect(status?.deliveries[0]?.lastReply?.code).toBe(250);
  });

  it.skipIf(swaks.skip)(swaks.title('delivers a message submitted by swaks (STARTTLS + AUTH PLAIN)'), async () => {
    const { stdout } = await run('swaks', [
      '--server', `127.0.0.1:${a.submissionPort}`, '--tls', '--auth', 'PLAIN', '--auth-user', EDGE_USER, '--auth-password', EDGE_PASSWORD,
      '--from', 'clinic@a.test', '--to', 'patient2@b.test', '--header', 'Subject: From swaks', '--body', 'Hello from swaks',
    ]);
    expect(stdout).toMatch(/<~ {2}250 2\.0\.0 Ok: queued as/);
    const [m] = await waitFor('swaks message at b.test', () => {
      const x = maildirMessages(maildir('b.test', 'patient2@b.test'));
      return x.length > 0 ? x : undefined;
    });
    expect(m!.toString()).toContain('Subject: From swaks');
    expect(m!.toString()).toContain('Hello from swaks');
    await waitFor('MDNs for the swaks message', () => maildirMessages(maildir('a.test', 'clinic@a.test')).length >= 2);
  });

  it('refuses what the submission port must refuse, with the RFC 3463 codes', async () => {
    const transport = (auth?: { user: string; pass: string }) =>
      nodemailer.createTransport({ host: '127.0.0.1', port: a.submissionPort, secure: false, requireTLS: true, ...(auth ? { auth } : {}), tls: { rejectUnauthorized: false } });
    await expect(transport({ user: EDGE_USER, pass: 'wrong' }).sendMail({ envelope: { from: 'provider@a.test', to: ['patient@b.test'] }, raw: message('provider@a.test', 'patient@b.test', 'x') })).rejects.toMatchObject({ responseCode: 535 });
    await expect(transport().sendMail({ envelope: { from: 'provider@a.test', to: ['patient@b.test'] }, raw: message('provider@a.test', 'patient@b.test', 'x') })).rejects.toMatchObject({ responseCode: 530 });
    await expect(
      transport({ user: EDGE_USER, pass: EDGE_PASSWORD }).sendMail({ envelope: { from: 'someone@b.test', to: ['patient@b.test'] }, raw: message('someone@b.test', 'patient@b.test', 'x') }),
    ).rejects.toMatchObject({ responseCode: 553, response: expect.stringContaining('5.7.1') as string });
    // nodemailer would repair bare line ends; a raw client sends them as they are.
    const c = await rawSmtp(a.submissionPort!);
    expect(await c.read()).toMatch(/^220 /);
    await c.send('EHLO raw.test\r\n');
    await c.startTls();
    expect(await c.send(`AUTH PLAIN ${authPlain(EDGE_USER, EDGE_PASSWORD)}\r\n`)).toMatch(/^235 /);
    for (const [name, smuggle] of [
      ['LF', 'line\n.\r\nMAIL FROM:<x@a.test>\r\n'],
      ['CR', 'line\r.\r\nRCPT TO:<y@b.test>\r\n'],
    ] as const) {
      expect(await c.send('MAIL FROM:<provider@a.test>\r\n')).toMatch(/^250/);
      expect(await c.send('RCPT TO:<patient@b.test>\r\n')).toMatch(/^250/);
      expect(await c.send('DATA\r\n')).toMatch(/^354/);
      const reply = await c.send(`From: provider@a.test\r\nTo: patient@b.test\r\nSubject: smuggle\r\n\r\n${smuggle}.\r\n`);
      expect(reply).toMatch(new RegExp(`^550 5\\.6\\.0 bare ${name}`));
    }
    expect(await c.send('RSET\r\n')).toMatch(/^250/);
    c.close();
    // Nothing of it was queued.
    expect((await a.ctx.queue.list({ direction: 'outbound', limit: 1000 })).filter((m) => m.mailFrom === 'provider@a.test' && m.size < 200)).toEqual([]);
  });

  it('the inbound port takes only local recipients (550 5.7.1, 550 5.1.1 with catchAll off)', async () => {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: b.inboundPort, secure: false, ignoreTLS: true });
    await expect(t.sendMail({ envelope: { from: 'x@a.test', to: ['someone@elsewhere.test'] }, raw: message('x@a.test', 'someone@elsewhere.test', 'relay') })).rejects.toMatchObject({
      responseCode: 550,
      response: expect.stringContaining('5.7.1') as string,
    });
  });

  it('shows the message in `hisp status --json`', async () => {
    const id = (await a.ctx.queue.list({ state: 'delivered', direction: 'outbound', limit: 1 }))[0]?.queueId;
    expect(id).toBeDefined();
    const { stdout } = await run(process.execPath, [path.join(REPO, 'bin/hisp.js'), 'status', id!, '--json', '--data-dir', path.join(net.dir, 'data-a.test')]);
    const report = JSON.parse(stdout) as { deliveries: { state: string; lastReply: { code: number } | null }[] };
    expect(report.deliveries[0]?.state).toBe('delivered');
    expect(report.deliveries[0]?.lastReply?.code).toBe(250);
  });

  it('takes a plain DSN from an ordinary mail server as an unauthenticated failure: tracking updated, the sender told, the DSN quarantined', async () => {
    // A message a sent that still waits for its MDNs (tracked by hand: a real one is answered at once by b).
    const messageId = `<plain-dsn.${Date.now()}@a.test>`;
    await a.ctx.db.batch(() =>
      a.ctx.tracking.track({
        queueId: 'plain-dsn-test',
        messageId,
        recipient: 'patient@b.test',
        sender: 'provider@a.test',
        sentAt: new Date(),
        processedTimeoutMs: 3_600_000,
        dispatchedTimeoutMs: 3_600_000,
        dispatchedRequested: true,
      }),
    );
    const dsn = buildDsn({
      reportingMta: 'mx.ordinary.test',
      recipients: [{ finalRecipient: 'patient@b.test', action: 'failed', status: '5.2.2', diagnosticCode: { type: 'smtp', text: '552 5.2.2 mailbox full' } }],
      originalMessageId: messageId,
      to: 'provider@a.test',
      from: 'mailer-daemon@ordinary.test',
    });
    const c = await rawSmtp(a.inboundPort!);
    await c.read();
    await c.send('EHLO mx.ordinary.test\r\n');
    expect(await c.send('MAIL FROM:<>\r\n')).toMatch(/^250/);
    expect(await c.send('RCPT TO:<provider@a.test>\r\n')).toMatch(/^250/);
    expect(await c.send('DATA\r\n')).toMatch(/^354/);
    const reply = await c.send(Buffer.concat([dsn.message, Buffer.from('.\r\n')]));
    c.close();
    expect(reply).toMatch(/^250 2\.0\.0 Ok: queued as (\w+)/);
    const queueId = /queued as (\w+)/.exec(reply)![1]!;

    const tracked = await waitFor('the tracking failed', () => {
      const t = a.ctx.tracking.get(messageId, 'patient@b.test');
      return t?.state === 'failed' ? t : undefined;
    });
    expect(tracked.failureNote).toBe('unauthenticated DSN from mx.ordinary.test');
    // Not a Direct message: quarantined, never delivered as it is.
    // (The tracking is updated before the quarantine entry commits: wait for the entry.)
    const entry = await waitFor('the quarantine entry', () => a.ctx.quarantine.get(queueId));
    expect(entry.reasonCode).toBe('HISP_SMIME_NOT_ENCRYPTED');
    // The sender hears of it, from hisp, saying it could not be authenticated.
    const notice = await waitFor('the notice at provider@a.test', () =>
      maildirMessages(maildir('a.test', 'provider@a.test'))
        .map((m) => m.toString())
        .find((m) => m.includes(messageId) && m.includes('unauthenticated')),
    );
    expect(notice).toContain('mailbox full');
    expect(notice).not.toContain('mailer-daemon@ordinary.test');
  });

  it('delivers to a PHR webhook: the message in signed JSON (HMAC-SHA256 over "<t>.<body>"), then a dispatched MDN', async () => {
    const original = message('provider@a.test', 'phr@b.test', 'To the PHR webhook');
    await edgeTransport(a.submissionPort).sendMail({ envelope: { from: 'provider@a.test', to: ['phr@b.test'] }, raw: original });
    const got = await waitFor('the webhook request', () => hooked.find((h) => h.body.includes('phr@b.test')));
    const signature = String(got.headers['x-hisp-signature']);
    const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(signature) ?? [];
    expect(v1).toBe(createHmac('sha256', HOOK_SECRET).update(`${t}.`).update(got.body).digest('hex'));
    const payload = JSON.parse(got.body.toString()) as { recipient: string; sender: string; messageId: string; message: string };
    expect(payload).toMatchObject({ recipient: 'phr@b.test', sender: 'provider@a.test' });
    const delivered = Buffer.from(payload.message, 'base64').toString('latin1');
    expect(delivered).toContain('Subject: To the PHR webhook\r\n');
    expect(delivered.endsWith('\r\n\r\nSummary of care for the patient.\r\nSecond line.\r\n')).toBe(true);
    const messageId = /^Message-ID: (<[^>]+>)/im.exec(original.toString())![1]!;
    await waitFor('the dispatched MDN for the webhook delivery', () => a.ctx.tracking.get(messageId, 'phr@b.test')?.state === 'dispatched');
  });

  it('passes a notification on to the edge although the edge endpoint failed at first (the retry is not taken for a duplicate MDN)', async () => {
    const original = message('ehr-inbox@a.test', 'patient@b.test', 'Notifications to a flaky edge');
    await edgeTransport(a.submissionPort).sendMail({ envelope: { from: 'ehr-inbox@a.test', to: ['patient@b.test'] }, raw: original });
    const messageId = /^Message-ID: (<[^>]+>)/im.exec(original.toString())![1]!;
    await waitFor('the dispatched MDN recorded', () => a.ctx.tracking.get(messageId, 'patient@b.test')?.state === 'dispatched');
    // processed and dispatched both reach the edge (mdn.forwardPositive = processed): the one refused
    // with 503 arrives on its retry.
    const delivered = await waitFor('both MDNs at the edge endpoint', () => {
      const ok = edgeHooked.filter((h) => h.status === 200);
      return ok.length >= 2 ? ok : undefined;
    }, 20_000);
    const dispositions = delivered.map((h) => {
      const payload = JSON.parse(h.body.toString()) as { message: string };
      return parseMdn(Buffer.from(payload.message, 'base64')).disposition;
    });
    expect(dispositions.sort()).toEqual(['dispatched', 'processed']);
    expect(edgeHooked[0]?.status).toBe(503);
  }, 40_000);
});

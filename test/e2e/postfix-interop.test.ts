/**
 * hisp next to Debian Postfix (issue 5, "Proven against real peers"): "Postfix (Debian) as the
 * downstream mail server that receives the delivered messages over LMTP or SMTP, and as a plain MTA
 * between the edge and hisp". Two gateways on loopback (certificates and MX in knotd, as in
 * two-gateways.test.ts); b.test delivers to a private Postfix over SMTP (its domain delivery), one
 * address over LMTP to smtp-sink -L (Postfix's own LMTP server: Postfix itself is only an LMTP
 * client), one address to a port where nothing listens (retried, then a failed MDN); and a Postfix
 * relay sits between the edge (swaks, plain SMTP) and a's submission port (STARTTLS + SMTP AUTH).
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { parseMdn, type ParsedMdn } from '../../gateway/mdn/mdn-parser.js';
import type { DeliveryStatus } from '../../gateway/queue/outbound-queue.js';
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
import {
  freePort,
  postfixUnavailableReason,
  startPostfix,
  startSmtpSink,
  swaksPath,
  type PostfixMailbox,
  type SmtpSink,
} from '../helpers/postfix.js';
import { firstMissing, missingExecutable, requirePeer } from '../helpers/require-peer.js';

const execFileAsync = promisify(execFile);

/** knotd, Postfix (as root), smtp-sink and swaks: with CI=true a missing one fails the run (test/helpers/require-peer.ts). */
const peers = requirePeer(firstMissing(missingExecutable('knotd'), postfixUnavailableReason(), missingExecutable('smtp-sink'), missingExecutable('swaks')));

/** A submitted message (CRLF) with a leading-dot line, which both SMTP hops must dot-stuff and undo. */
function message(from: string, to: string, subject: string): { crlf: Buffer; messageId: string; headerLines: string[]; body: string } {
  const messageId = `<${subject.replace(/\W+/g, '-')}.${Date.now()}@a.test>`;
  const headerLines = [
    `From: Dr. Provider <${from}>`,
    `To: ${to}`,
    `Subject: ${subject}`,
    'Date: Wed, 25 Nov 2026 10:00:00 +0000',
    `Message-ID: ${messageId}`,
    'X-Clinic-Ref: 12345',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
  ];
  const body = 'Summary of care for the patient.\r\n.A line with a leading dot\r\nLast line.\r\n';
  return { crlf: Buffer.from(`${headerLines.join('\r\n')}\r\n\r\n${body}`), messageId, headerLines, body };
}

/** Lower-case field names of a header section (LF or CRLF line ends), continuation lines folded in. */
function fieldNames(header: string): string[] {
  return header
    .replace(/\r\n/g, '\n')
    .split(/\n(?![ \t])/)
    .filter(Boolean)
    .map((f) => f.slice(0, f.indexOf(':')).toLowerCase());
}

describe.skipIf(peers.skip)(peers.title('Postfix around hisp: downstream over SMTP and LMTP, relay in front of the submission port'), () => {
  let net: DirectNetwork;
  let mx: PostfixMailbox;
  let lmtp: SmtpSink;
  let a: HispGateway;
  let b: HispGateway;

  beforeAll(async () => {
    net = await startDirectNetwork(['a.test', 'b.test']);
    mx = await startPostfix({ mode: 'mailbox', domains: ['b.test'] });
    lmtp = await startSmtpSink({ lmtp: true, dump: true });
    const deadPort = await freePort(); // nothing listens there
    a = await startGateway(toConfig(await gatewayConfigObject(net.spec('a.test'), net.dns.address), net.dir));
    b = await startGateway(
      toConfig(
        await gatewayConfigObject(
          net.spec('b.test', {
            domainExtra: {
              // Every address of b.test (catchAll) goes to Postfix over SMTP …
              delivery: { type: 'smtp', host: '127.0.0.1', port: mx.port },
              addresses: [
                // … except these two: LMTP to smtp-sink, and LMTP to nobody.
                { address: 'lmtp-user@b.test', delivery: { type: 'lmtp', host: '127.0.0.1', port: lmtp.port } },
                { address: 'offline@b.test', delivery: { type: 'lmtp', host: '127.0.0.1', port: deadPort } },
              ],
            },
            // Top-level keys replace the harness's: tries every 0.6 s, given up after 0.002 h (7.2 s).
            // b logs each failed try at warn: errors only, unless HISP_TEST_LOG_LEVEL says otherwise.
            extra: { queue: { retrySchedule: [0.01], giveUpHours: 0.002, workers: 2 }, log: { level: process.env.HISP_TEST_LOG_LEVEL ?? 'error' } },
          }),
          net.dns.address,
        ),
        net.dir,
      ),
    );
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await lmtp?.stop();
    await mx?.stop();
    await net?.stop();
  });

  const submit = async (to: string[], raw: Buffer): Promise<string> => {
    const transport = edgeTransport(a.submissionPort);
    const info = await transport.sendMail({ envelope: { from: 'provider@a.test', to }, raw });
    return info.response;
  };

  /** MDNs for `messageId` at a's edge (provider@a.test's Maildir). */
  const mdnsAtEdge = (messageId: string): ParsedMdn[] =>
    maildirMessages(path.join(net.dir, 'data-a.test', 'maildir', 'provider@a.test'))
      .map((m) => parseMdn(m))
      .filter((m) => m.originalMessageId === messageId);

  const waitForMdns = (messageId: string, dispositions: string[], timeoutMs?: number): Promise<ParsedMdn[]> =>
    waitFor(
      `${dispositions.join(' + ')} MDNs for ${messageId} at a's edge`,
      () => {
        const m = mdnsAtEdge(messageId);
        return m.length >= dispositions.length ? m : undefined;
      },
      timeoutMs,
    );

  /** b's inbound delivery to `recipient` (its local delivery), newest message first. */
  const inboundDelivery = async (recipient: string): Promise<DeliveryStatus | undefined> => {
    const all = await b.ctx.queue.list({ direction: 'inbound', limit: 1000 });
    return all
      .flatMap((m) => m.deliveries)
      .filter((d) => d.recipient === recipient)
      .at(-1);
  };

  it('delivers to Postfix over SMTP: stored in its Maildir unchanged, dispatched MDN back to the edge', async () => {
    const sent = message('provider@a.test', 'patient@b.test', 'Summary of care over SMTP');
    expect(await submit(['patient@b.test'], sent.crlf)).toMatch(/^250 2\.0\.0 Ok: queued as \w+/);

    const [stored] = await mx.waitForMessages(1, { recipient: 'patient@b.test', timeoutMs: 15_000 });
    // virtual(8) stores lines with LF: every submitted field and the body, byte for byte otherwise
    // (the leading dot stuffed by hisp b and unstuffed by Postfix's smtpd).
    const header = `${stored!.header}\n`;
    for (const line of sent.headerLines) expect(header).toContain(`\n${line}\n`);
    expect(stored!.body.toString('latin1')).toBe(sent.body.replace(/\r\n/g, '\n'));
    // Postfix prepends the envelope and its Received:; then hisp b's and hisp a's (submission)
    // Received:, the message, and the MDN request hisp a added.
    expect(stored!.header).toMatch(/^Return-Path: <provider@a\.test>\nX-Original-To: patient@b\.test\nDelivered-To: patient@b\.test\nReceived: from /);
    expect(stored!.header).toContain(`by ${mx.myhostname} (Postfix) with ESMTP`);
    expect(stored!.header).toMatch(/\nReceived: from [^\n]*(\n[ \t][^\n]*)*by hisp\.b\.test \(hisp\) with ESMTP/);
    expect(stored!.header).toMatch(/\nReceived: from [^\n]*(\n[ \t][^\n]*)*by hisp\.a\.test \(hisp\) with ESMTPSA/);
    expect(header).toContain('\nDisposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\n');
    const submittedNames = new Set(sent.headerLines.map((l) => l.slice(0, l.indexOf(':')).toLowerCase()));
    const added = fieldNames(stored!.header).filter((n) => !submittedNames.has(n));
    expect(added.sort()).toEqual(
      ['authentication-results', 'delivered-to', 'disposition-notification-options', 'disposition-notification-to', 'received', 'received', 'received', 'return-path', 'x-original-to'].sort(),
    );
    await mx.waitForLog(/to=<patient@b\.test>, relay=virtual, .*status=sent \(delivered to maildir\)/);

    // Final delivery succeeded (Postfix's 250 is b's reply of record): processed and dispatched MDNs.
    const delivery = await waitFor('b delivered to Postfix', async () => {
      const d = await inboundDelivery('patient@b.test');
      return d?.state === 'delivered' ? d : undefined;
    });
    expect(delivery.lastReply?.code).toBe(250);
    expect(delivery.lastReply?.text).toMatch(/Ok: queued as/);
    const mdns = await waitForMdns(sent.messageId, ['processed', 'dispatched']);
    expect(mdns.map((m) => m.disposition).sort()).toEqual(['dispatched', 'processed']);
    for (const m of mdns) expect(m.finalRecipient).toBe('patient@b.test');
    expect(mdns.find((m) => m.disposition === 'dispatched')?.finalDeliveryExtension).toBe(true);
  });

  it('delivers one address over LMTP (smtp-sink -L) while the others of the domain still go to Postfix', async () => {
    const sent = message('provider@a.test', 'lmtp-user@b.test, other@b.test', 'Summary of care over LMTP');
    await submit(['lmtp-user@b.test', 'other@b.test'], sent.crlf);

    await lmtp.waitForMessages(1, 15_000);
    const dumps = lmtp.dumps();
    expect(dumps).toHaveLength(1);
    // One LMTP transaction per local recipient, LHLO with b's host name, the original envelope sender.
    expect(dumps[0]).toMatchObject({ proto: 'LMTP', helo: 'hisp.b.test', rcptArgs: ['<lmtp-user@b.test>'] });
    expect(dumps[0]!.mailArgs).toMatch(/^<provider@a\.test>/);
    const text = dumps[0]!.message.toString('latin1');
    const sep = text.indexOf('\n\n');
    for (const line of sent.headerLines) expect(`\n${text.slice(0, sep + 1)}`).toContain(`\n${line}\n`);
    expect(text.slice(sep + 2)).toBe(sent.body.replace(/\r\n/g, '\n'));
    expect(text).toMatch(/^Authentication-Results: hisp\.b\.test;\n\tsmime=pass [^]*?\nReceived: from [^\n]*(\n[ \t][^\n]*)*by hisp\.b\.test/);

    // The catch-all address of the same message went to the domain's delivery, Postfix.
    const [other] = await mx.waitForMessages(1, { recipient: 'other@b.test', timeoutMs: 15_000 });
    expect(other!.body.toString('latin1')).toBe(sent.body.replace(/\r\n/g, '\n'));
    expect(mx.messages('lmtp-user@b.test')).toEqual([]);

    const mdns = await waitForMdns(sent.messageId, ['processed', 'dispatched', 'processed', 'dispatched']);
    expect(mdns.map((m) => `${m.finalRecipient} ${m.disposition}`).sort()).toEqual([
      'lmtp-user@b.test dispatched',
      'lmtp-user@b.test processed',
      'other@b.test dispatched',
      'other@b.test processed',
    ]);
    expect((await inboundDelivery('lmtp-user@b.test'))?.lastReply?.code).toBe(250);
  });

  it('retries an LMTP downstream that does not answer, then gives up with a failed MDN to the edge', async () => {
    const sent = message('provider@a.test', 'offline@b.test', 'Summary of care to nowhere');
    await submit(['offline@b.test'], sent.crlf);

    // Deferred, not failed: connection refused is transient (4.4.1), tried again every 0.6 s.
    const deferred = await waitFor('b to defer the delivery to offline@b.test twice', async () => {
      const d = await inboundDelivery('offline@b.test');
      return d !== undefined && d.state === 'queued' && d.attempts >= 2 ? d : undefined;
    });
    expect(deferred.lastReply?.code).toBeGreaterThanOrEqual(400);
    expect(deferred.lastReply?.code).toBeLessThan(500);
    // The processed MDN went out before the first try; no dispatched one.
    const [processed] = await waitForMdns(sent.messageId, ['processed']);
    expect(processed?.disposition).toBe('processed');

    // giveUpHours 0.002: 7.2 s after b accepted the message it fails, and a failed MDN goes back.
    const failedMdn = await waitFor(
      'the failed MDN at a\'s edge',
      () => mdnsAtEdge(sent.messageId).find((m) => m.disposition === 'failed'),
      60_000,
    );
    expect(failedMdn.finalRecipient).toBe('offline@b.test');
    expect(failedMdn.failure).toMatch(/^delivery kept failing \(4\d\d( 4\.\d+\.\d+)?\)$/);
    // The reply text (it names the internal downstream host and port) does not leave this HISP.
    expect(failedMdn.failure).not.toMatch(/ECONNREFUSED|127\.0\.0\.1/);
    expect(failedMdn.finalDeliveryExtension).toBe(true);
    const final = await inboundDelivery('offline@b.test');
    expect(final?.state).toBe('failed');
    expect(final!.attempts).toBeGreaterThanOrEqual(3);
    expect(mdnsAtEdge(sent.messageId).map((m) => m.disposition).sort()).toEqual(['failed', 'processed']);
    const tracking = await waitFor('a to track the failure', () => {
      const t = a.ctx.tracking.get(sent.messageId, 'offline@b.test');
      return t?.state === 'failed' ? t : undefined;
    });
    expect(tracking.failedLate).toBe(false);
  }, 90_000);

  it('takes mail from a Postfix relay (AUTH over STARTTLS) between the edge and hisp', async () => {
    const relay = await startPostfix({
      mode: 'relay',
      relayhost: { port: a.submissionPort! },
      auth: { username: EDGE_USER, password: EDGE_PASSWORD },
      tlsSecurityLevel: 'may',
    });
    try {
      const sent = message('provider@a.test', 'patient3@b.test', 'Summary of care through a Postfix relay');
      const dataFile = path.join(net.dir, 'relay-message.eml');
      // Ends with the "." line (see postfix-harness.test.ts: otherwise swaks adds an empty line).
      writeFileSync(dataFile, Buffer.concat([sent.crlf, Buffer.from('.\r\n')]));
      // The edge speaks plain SMTP to Postfix, which is open to loopback clients.
      const { stdout } = await execFileAsync(
        swaksPath()!,
        ['--server', `127.0.0.1:${relay.port}`, '--from', 'provider@a.test', '--to', 'patient3@b.test', '--data', `@${dataFile}`],
        { timeout: 20_000 },
      );
      expect(stdout).toMatch(/^<- {2}250 2\.0\.0 Ok: queued as /m);

      // Postfix → hisp a: STARTTLS, then AUTH with the edge account, then 250 from the submission port.
      const sentLine = await relay.waitForLog(/to=<patient3@b\.test>, relay=.*status=sent/, 15_000);
      expect(sentLine).toContain(`relay=127.0.0.1[127.0.0.1]:${a.submissionPort}`);
      expect(sentLine).toMatch(/status=sent \(250 2\.0\.0 Ok: queued as \w+\)/);
      expect(relay.log()).toMatch(/TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:\d+/);
      expect(await relay.queue()).toEqual([]);

      // hisp a → hisp b → Postfix mailbox: the relay's Received: travelled inside the signed message.
      const [stored] = await mx.waitForMessages(1, { recipient: 'patient3@b.test', timeoutMs: 15_000 });
      const header = `${stored!.header}\n`;
      for (const line of sent.headerLines) expect(header).toContain(`\n${line}\n`);
      expect(stored!.body.toString('latin1')).toBe(sent.body.replace(/\r\n/g, '\n'));
      expect(stored!.header).toContain(`by ${relay.myhostname} (Postfix) with ESMTP`);

      const outbound = await a.ctx.queue.get(sent.messageId);
      expect(outbound?.submittedBy).toBe(EDGE_USER);
      const mdns = await waitForMdns(sent.messageId, ['processed', 'dispatched']);
      expect(mdns.map((m) => m.disposition).sort()).toEqual(['dispatched', 'processed']);
      for (const m of mdns) expect(m.finalRecipient).toBe('patient3@b.test');
    } finally {
      await relay.stop();
    }
  });
});

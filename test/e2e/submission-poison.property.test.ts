/**
 * Issue 14, item 1 (poison messages): whatever header section an authenticated EHR submits, the
 * message is refused at DATA, or it ends delivered, or failed with its failure notice queued (or,
 * when even that cannot be, with the reason recorded for the operator); and afterwards the notifier
 * has nothing left to look at: it does not spin (counted in rounds and items, not in time).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { createLogger } from '../../gateway/core/logger.js';
import { HispGateway as Gateway } from '../../gateway/flows/hisp-gateway.js';
import { EDGE_PASSWORD, EDGE_USER, gatewayConfigObject, makeCa, makeDomainCredential, toConfig, waitFor } from '../helpers/direct-network.js';
import { authPlain, rawSmtp, type RawSmtp } from '../helpers/raw-smtp.js';

const DOMAIN = 'b.test';
let dir: string;
let gw: HispGateway;
let smtp: RawSmtp;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'hisp-poison-'));
  const ca = await makeCa(dir, 'Poison Test CA');
  const credential = await makeDomainCredential(dir, ca, DOMAIN);
  const raw = await gatewayConfigObject(
    { domain: DOMAIN, credential, anchors: [ca.certFile], submissionPort: 0, inboundPort: 0, remotePorts: {}, dataDir: path.join(dir, 'data') },
    '127.0.0.1:9',
  );
  // Failures reach their end within the test: a short give-up time.
  raw.queue = { retrySchedule: [0.01], giveUpHours: 0.005, workers: 2 };
  const config = toConfig(raw, dir);
  gw = await Gateway.start({ config, logger: createLogger({ level: 'silent' }), pollIntervalMs: 20, closeTimeoutMs: 500, jitter: (ms) => ms });
  smtp = await session();
}, 60_000);

afterAll(async () => {
  smtp?.close();
  await gw?.stop();
});

/** An authenticated submission session (STARTTLS, AUTH PLAIN). */
async function session(): Promise<RawSmtp> {
  const s = await rawSmtp(gw.submissionPort!);
  await s.read();
  await s.send('EHLO ehr.test\r\n');
  await s.startTls('ehr.test');
  expect(await s.send(`AUTH PLAIN ${authPlain(EDGE_USER, EDGE_PASSWORD)}\r\n`)).toMatch(/^235 /);
  return s;
}

/**
 * One transaction on the authenticated session; the final reply. More than 20 refusals since the
 * last message taken end a session (421 4.7.0, connection-guard.ts: a client that only fails is
 * shown the door): that is the session's verdict, not the message's, so the message is submitted
 * again on a new session.
 */
async function submit(message: Buffer): Promise<string> {
  const reply = await transaction(message);
  if (!reply.startsWith('421 4.7.0') && !reply.startsWith('closed')) return reply;
  smtp.close();
  smtp = await session();
  return transaction(message);
}

async function transaction(message: Buffer): Promise<string> {
  const rset = await smtp.send('RSET\r\n');
  if (!rset.startsWith('250')) return rset;
  const mail = await smtp.send(`MAIL FROM:<provider@${DOMAIN}>\r\n`);
  if (!mail.startsWith('250')) return mail;
  await smtp.send(`RCPT TO:<patient@${DOMAIN}>\r\n`);
  const data = await smtp.send('DATA\r\n');
  if (!data.startsWith('354')) return data;
  // Dot-stuffing (RFC 5321 §4.5.2).
  const stuffed = Buffer.from(message.toString('latin1').replace(/(^|\r\n)\./g, '$1..'), 'latin1');
  return smtp.send(Buffer.concat([stuffed, Buffer.from('.\r\n')]));
}

const fieldName = fc.oneof(
  fc.constantFrom('Subject', 'Comments', 'Keywords', 'X-Test', 'Message-ID', 'Date', 'To', 'Cc', 'Bcc', 'Reply-To', 'Content-Type', 'Content-Transfer-Encoding', 'MIME-Version', 'Disposition-Notification-To', 'Disposition-Notification-Options', 'Received', 'In-Reply-To', 'References', 'Sender'),
  fc.stringMatching(/^[!-9;-~]{1,40}$/),
);
const fieldValue = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.stringMatching(/^[ -~]{0,2000}$/),
  fc.constantFrom('', ' ', '<>', '<@>', 'multipart/mixed; boundary=""', 'multipart/signed; boundary=x', `<patient@${DOMAIN}>`, 'patient@b.test, <>', '=?utf-8?b?AAAA?='),
);
/** A header line: a field (maybe folded), or something that is not one. */
const headerLine = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(fieldName, fieldValue).map(([n, v]) => `${n}: ${v.replace(/[\r\n]/g, ' ').replaceAll('\u0000', ' ')}`) },
  { weight: 1, arbitrary: fc.tuple(fieldName, fieldValue, fieldValue).map(([n, a, b]) => `${n}: ${a.replace(/[\r\n]/g, ' ').replaceAll('\u0000', ' ')}\r\n\t${b.replace(/[\r\n]/g, ' ').replaceAll('\u0000', ' ')}`) },
  { weight: 1, arbitrary: fc.stringMatching(/^[ -~]{1,60}$/) },
);
/** A submission the edge's envelope checks let through (From is the user's), with anything else around it. */
const submission = fc
  .record({
    mbox: fc.boolean(),
    before: fc.array(headerLine, { maxLength: 5 }),
    after: fc.array(headerLine, { maxLength: 5 }),
    // Around the parser's limit of 1,000 fields: the edge adds its own.
    filler: fc.oneof(fc.constant(0), fc.integer({ min: 990, max: 1001 })),
    body: fc.string({ unit: 'binary', maxLength: 300 }),
  })
  .map(({ mbox, before, after, filler, body }) => {
    const lines = [
      ...(mbox ? ['From provider@b.test Mon Dec  7 10:00:00 2026'] : []),
      ...before,
      `From: provider@${DOMAIN}`,
      `To: patient@${DOMAIN}`,
      ...Array.from({ length: filler }, (_, i) => `X-Filler-${i}: ${i}`),
      ...after,
    ];
    const text = `${lines.join('\r\n')}\r\n\r\n${body.replace(/\r?\n|\r/g, '\r\n').replaceAll('\u0000', '0')}\r\n`;
    return Buffer.from(text, 'latin1');
  });

describe('poison messages through the submission edge (issue 14, item 1)', () => {
  it('end refused at DATA, delivered, or failed with a notice or a recorded reason; the notifier then stays idle', async () => {
    const accepted: string[] = [];
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(submission, async (message) => {
        const reply = await submit(message);
        if (reply.startsWith('250')) {
          const id = /queued as (\S+)/.exec(reply)?.[1];
          expect(id).toBeDefined();
          accepted.push(id!);
        } else {
          // Refused at DATA, permanently and with a reason, never a local error.
          expect(reply).toMatch(/^5\d\d 5\.\d\.\d /);
          refused++;
        }
      }),
      {
        numRuns: 60,
        examples: [
          // The two cases the issue found: an mbox first line, and exactly 1,000 fields.
          [Buffer.from(`From x\r\nFrom: provider@${DOMAIN}\r\nTo: patient@${DOMAIN}\r\n\r\nmbox\r\n`, 'latin1')],
          [Buffer.from(`From: provider@${DOMAIN}\r\nTo: patient@${DOMAIN}\r\n${Array.from({ length: 998 }, (_, i) => `X-F${i}: ${i}\r\n`).join('')}\r\nthousand\r\n`, 'latin1')],
        ],
      },
    );
    expect(refused).toBeGreaterThan(0);
    expect(accepted.length).toBeGreaterThan(0);

    // Every accepted message reaches an end: each delivery final; a failed one with its DSN
    // queued, or the reason it could not be, for the operator.
    for (const queueId of accepted) {
      const status = await waitFor(
        `the end of ${queueId}`,
        async () => {
          const s = await gw.ctx.queue.get(queueId);
          if (!s) return undefined;
          const done = s.deliveries.every((d) => d.state === 'delivered' || (d.state === 'failed' && (d.dsnQueuedAt !== null || (d.dsnError !== null && d.dsnRetryAt === null))));
          return done ? s : undefined;
        },
        60_000,
      );
      expect(status.deliveries).toHaveLength(1);
    }
    // The received copies too (delivered, or quarantined with the reason).
    await waitFor('no inbound work left', async () => (await gw.ctx.queue.list({ state: 'queued' })).length === 0 || undefined, 60_000);

    // Nothing spins: over the next rounds of the notifier, it finds nothing to do.
    const items = gw.loopStats.notifier.items;
    const rounds = gw.loopStats.notifier.rounds;
    await waitFor('20 notifier rounds', () => gw.loopStats.notifier.rounds >= rounds + 20 || undefined, 30_000);
    expect(gw.loopStats.notifier.items).toBe(items);
  }, 240_000);
});

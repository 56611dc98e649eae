/**
 * The ETT delivery-notification mailboxes (requirements §2.2, ETT MT 23–29) played against a real
 * sending hisp gateway (issue 5): `a.test` sends, a simulated receiving HISP for `ett.test`
 * (test/helpers/ett-simulator.ts: decrypts and verifies with hisp's agent, answers with signed and
 * encrypted MDNs per mailbox) plays processedonly5, processeddispatched6, processdelayeddispatch7,
 * nomdn8 and noaddressfailure9; `nocert.test` publishes an MX but no certificate (ETT failure15@) and
 * `untrusted.test` a certificate from a CA nobody anchors (ETT direct2.sitenv.org). The MDN
 * time-outs (R-MDN-8, decision 6: one hour each by default) are scaled down to a few seconds. For
 * each case the test asserts what the edge sender (provider@a.test's Maildir) receives: the MDNs
 * passed on, the failure DSNs (R-MDN-7, R-DSN-1) with their Original-Message-ID, Final-Recipient,
 * Action and Status, and nothing more (no late or duplicate notification).
 *
 * All messages are submitted at once in beforeAll, so the cases' time-outs run side by side.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { notificationKind, parseMdn, type ParsedMdn } from '../../gateway/mdn/mdn-parser.js';
import { parseDsn, type ParsedDsn } from '../../gateway/queue/dsn-parser.js';
import type { TrackingEntry } from '../../gateway/store/tracking-store.js';
import {
  certRecord,
  gatewayConfigObject,
  startDirectNetwork,
  startGateway,
  startKnot,
  toConfig,
  waitFor,
  type DirectNetwork,
  type KnotServer,
  type ZoneEntry,
  edgeTransport,
} from '../helpers/direct-network.js';
import { EventOutbox } from '../../gateway/events/event-outbox.js';
import { MessageTracker } from '../../gateway/events/message-tracker.js';
import { EttSimulator, type EttBehaviour, type MdnStep } from '../helpers/ett-simulator.js';
import { missingExecutable, requirePeer } from '../helpers/require-peer.js';

/** The scaled MDN time-outs (processed and dispatched): 0.08 min = 4.8 s instead of 60 min. */
const TIMEOUT_MINUTES = 0.08;
const TIMEOUT_MS = TIMEOUT_MINUTES * 60_000;
/** How long after a deadline a test keeps watching the edge for a notification that must not come. */
const QUIET_MS = 1500;
/** File times may trail the clock by a tick (coarse kernel clock): the tolerance of "not before". */
const CLOCK_SLACK_MS = 50;
/** Waits that include a time-out. */
const LONG_WAIT_MS = TIMEOUT_MS + 15_000;

const SENDER = 'provider@a.test';

/** The simulated mailboxes of ett.test (and untrusted.test), named after the ETT ones. */
const MAILBOXES: Record<string, EttBehaviour> = {
  processedonly5: 'processed-only',
  processeddispatched6: 'processed-and-dispatched',
  processdelayeddispatch7: 'dispatched-too-late',
  nomdn8: 'no-mdn',
  noaddressfailure9: 'failed',
};

/** One submitted message per case: name → recipient. */
const CASES = {
  processedOnly: 'processedonly5@ett.test',
  processedDispatched: 'processeddispatched6@ett.test',
  dispatchedTooLate: 'processdelayeddispatch7@ett.test',
  noMdn: 'nomdn8@ett.test',
  failed: 'noaddressfailure9@ett.test',
  noCertificate: 'failure15@nocert.test',
  untrusted: 'processeddispatched6@untrusted.test',
  nonexistent: 'nosuchmailbox@ett.test',
} as const;
type CaseName = keyof typeof CASES;

interface EdgeNotice {
  file: string;
  mtimeMs: number;
  kind: 'mdn' | 'dsn' | 'other';
  mdn?: ParsedMdn;
  dsn?: ParsedDsn;
  /** Original-Message-ID (MDN) or the DSN's original message id. */
  original: string | undefined;
}

function message(to: string, messageId: string, subject: string): Buffer {
  return Buffer.from(
    `From: Dr. Provider <${SENDER}>\r\nTo: ${to}\r\nSubject: ${subject}\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n` +
      `Message-ID: ${messageId}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n` +
      `Summary of care for the patient.\r\n`,
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** knotd serves the test zones: with CI=true its absence fails the run (test/helpers/require-peer.ts). */
const knot = requirePeer(missingExecutable('knotd'));

describe.skipIf(knot.skip)(knot.title('ETT delivery-notification mailboxes against a sending hisp (requirements §2.2, R-MDN-7)'), () => {
  let net: DirectNetwork;
  let dns: KnotServer | undefined;
  let sim: EttSimulator;
  let a: HispGateway;
  let closing = false;
  const ids = {} as Record<CaseName, string>;
  /** When each case's message was accepted at the submission port. */
  const submittedAt = {} as Record<CaseName, number>;

  const maildir = () => path.join(net.dir, 'data-a.test', 'maildir', SENDER, 'new');

  /** What reached the edge sender so far, oldest first, each read as an MDN or a DSN. */
  function edge(): EdgeNotice[] {
    const dir = maildir();
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .map((file): EdgeNotice => {
        const full = path.join(dir, file);
        const raw = readFileSync(full);
        const mtimeMs = statSync(full).mtimeMs;
        let kind: EdgeNotice['kind'];
        try {
          const k = notificationKind(raw);
          kind = k === 'mdn' || k === 'dsn' ? k : 'other';
        } catch {
          kind = 'other';
        }
        if (kind === 'mdn') {
          const mdn = parseMdn(raw);
          return { file, mtimeMs, kind, mdn, original: mdn.originalMessageId };
        }
        if (kind === 'dsn') {
          const dsn = parseDsn(raw);
          return { file, mtimeMs, kind, dsn, original: dsn.originalMessageId };
        }
        return { file, mtimeMs, kind: 'other', original: undefined };
      })
      .sort((x, y) => x.mtimeMs - y.mtimeMs || x.file.localeCompare(y.file));
  }

  const noticesFor = (c: CaseName) => edge().filter((n) => n.original === ids[c]);
  const waitNotices = (c: CaseName, count: number, timeoutMs = LONG_WAIT_MS) =>
    waitFor(`${count} notification(s) at the edge for ${c}`, () => {
      const n = noticesFor(c);
      return n.length >= count ? n : undefined;
    }, timeoutMs);
  const tracking = (c: CaseName): TrackingEntry | undefined => a.ctx.tracking.get(ids[c], CASES[c]);
  const dispositions = (ns: EdgeNotice[]) => ns.map((n) => (n.kind === 'mdn' ? n.mdn!.disposition : n.kind));

  /** The one failure DSN of a case: one failed recipient, the case's, about the case's message (R-DSN-1). */
  function expectFailureDsn(n: EdgeNotice | undefined, c: CaseName, status: string) {
    expect(n?.kind).toBe('dsn');
    const dsn = n!.dsn!;
    expect(dsn.originalMessageId).toBe(ids[c]);
    expect(dsn.from).toBe('mailer-daemon@a.test');
    expect(dsn.recipients).toHaveLength(1);
    const r = dsn.recipients[0]!;
    expect(r.finalRecipient).toBe(CASES[c]);
    expect(r.action).toBe('failed');
    expect(r.status).toBe(status);
    return r;
  }

  /**
   * Holds the simulator's MDNs so the order on the wire is the one a real HISP produces and the test
   * is deterministic: a dispatched or failed MDN leaves only once a.test recorded the processed one
   * and passed it to the edge (two receive workers could otherwise take them in either order; a
   * processed MDN after a dispatched one counts as a duplicate and is not passed on), and the late dispatched one
   * (ETT processdelayeddispatch7, 65 min after a 60 min time-out) only once a.test's dispatched
   * time-out fired.
   */
  async function beforeMdn(step: MdnStep): Promise<void> {
    const id = step.receipt.messageId;
    if (step.disposition === 'processed' || id === undefined) return;
    const entry = () => {
      if (closing) throw new Error('test over');
      return a.ctx.tracking.get(id, step.recipient);
    };
    await waitFor(`a.test recorded the processed MDN of ${step.recipient}`, () => entry()?.processedAt != null, LONG_WAIT_MS);
    await waitFor(`the processed MDN of ${step.recipient} at the edge`, () => edge().some((n) => n.original === id && n.mdn?.disposition === 'processed'), LONG_WAIT_MS);
    if (step.behaviour === 'dispatched-too-late') {
      await waitFor(`a.test's dispatched time-out for ${step.recipient}`, () => entry()?.timedOut === 'dispatched', LONG_WAIT_MS);
    }
  }

  beforeAll(async () => {
    net = await startDirectNetwork(['a.test', 'ett.test'], ['untrusted.test']);
    // The network publishes a CERT for every domain; nocert.test needs an MX and no CERT, so a.test
    // resolves through a second knotd serving the same zone plus nocert.test's MX (requirements §2.2,
    // ETT failure15@: "has no published certificate").
    const entries: ZoneEntry[] = [];
    for (const [domain, c] of Object.entries(net.credentials)) {
      entries.push(certRecord(domain, c.der), { name: domain, type: 'MX', data: `10 mx.${domain}.` }, { name: `mx.${domain}`, type: 'A', data: '127.0.0.1' });
    }
    entries.push({ name: 'nocert.test', type: 'MX', data: '10 mx.nocert.test.' }, { name: 'mx.nocert.test', type: 'A', data: '127.0.0.1' });
    dns = await startKnot(path.join(net.dir, 'zone-with-nocert'), entries);

    sim = await EttSimulator.start({
      domains: [
        { domain: 'ett.test', port: net.ports['ett.test']!.inbound, credential: net.credentials['ett.test']! },
        { domain: 'untrusted.test', port: net.ports['untrusted.test']!.inbound, credential: net.credentials['untrusted.test']! },
        // Listens only to prove that nothing is sent there: it has no certificate to decrypt with.
        { domain: 'nocert.test', port: 0 },
      ],
      mailboxes: MAILBOXES,
      anchors: [net.trusted.certFile],
      peers: { 'a.test': { port: net.ports['a.test']!.inbound, certFile: net.credentials['a.test']!.certFile } },
      dispatchedDelayMs: 100,
      // ETT: dispatched 65 min after a 60 min time-out; scaled, and held by beforeMdn until it fired.
      lateDispatchedDelayMs: TIMEOUT_MS + 1000,
      beforeMdn,
    });

    const base = net.spec('a.test');
    const spec = net.spec('a.test', {
      remotePorts: { ...base.remotePorts, 'nocert.test': sim.port('nocert.test') },
      domainExtra: { mdn: { processedTimeoutMinutes: TIMEOUT_MINUTES, dispatchedTimeoutMinutes: TIMEOUT_MINUTES } },
    });
    a = await startGateway(toConfig(await gatewayConfigObject(spec, dns.address), net.dir));

    const transport = edgeTransport(a.submissionPort);
    const stamp = Date.now().toString(36);
    await Promise.all(
      (Object.keys(CASES) as CaseName[]).map(async (c) => {
        // Mixed case on purpose: Message-IDs are compared as written (R-MDN-9).
        ids[c] = `<ETT-${c}.${stamp}@A.test>`;
        const info = await transport.sendMail({ envelope: { from: SENDER, to: [CASES[c]] }, raw: message(CASES[c], ids[c], `ETT case ${c}`) });
        expect(info.response).toMatch(/^250 2\.0\.0 /);
        submittedAt[c] = Date.now();
      }),
    );
    transport.close();
  }, 60_000);

  afterAll(async () => {
    closing = true;
    await a?.stop();
    await sim?.stop();
    await dns?.stop();
    await net?.stop();
  });

  it('processeddispatched6 (MT 29, R-MDN-5): processed and dispatched MDNs reach the edge, the dispatched one with X-DIRECT-FINAL-DESTINATION-DELIVERY, and no DSN', async () => {
    const notices = await waitNotices('processedDispatched', 2);
    expect(dispositions(notices)).toEqual(['processed', 'dispatched']);
    for (const n of notices) {
      expect(n.mdn!.originalMessageId).toBe(ids.processedDispatched);
      expect(n.mdn!.finalRecipient).toBe(CASES.processedDispatched);
      expect(n.mdn!.dispositionMode).toBe('automatic-action/MDN-sent-automatically');
      expect(n.mdn!.from).toBe(CASES.processedDispatched);
    }
    expect(notices[0]!.mdn!.finalDeliveryExtension).toBe(false);
    expect(notices[1]!.mdn!.finalDeliveryExtension).toBe(true); // R-MDN-6
    const t = tracking('processedDispatched')!;
    expect(t.state).toBe('dispatched'); // the positive final notification (R-MDN-7)
    // After the dispatched deadline has passed: still only the two MDNs, no time-out DSN.
    await sleep(t.processedAt!.getTime() + TIMEOUT_MS + QUIET_MS - Date.now());
    expect(dispositions(noticesFor('processedDispatched'))).toEqual(['processed', 'dispatched']);
    expect(tracking('processedDispatched')!.timedOut).toBeNull();
  });

  it('processedonly5 (MT 27, R-MDN-7/8): the processed MDN reaches the edge, then a failure DSN (5.4.7) once the dispatched time-out passed, not before', async () => {
    const notices = await waitNotices('processedOnly', 2);
    expect(dispositions(notices)).toEqual(['processed', 'dsn']);
    expect(notices[0]!.mdn!.originalMessageId).toBe(ids.processedOnly);
    expect(notices[0]!.mdn!.finalRecipient).toBe(CASES.processedOnly);
    const r = expectFailureDsn(notices[1], 'processedOnly', '5.4.7');
    expect(r.diagnosticCode?.text).toContain(`no dispatched MDN within ${TIMEOUT_MINUTES} minutes`);
    const t = tracking('processedOnly')!;
    expect(t.dispatchedRequested).toBe(true); // hisp asked for timely and reliable delivery (R-MDN-4, decision 6)
    expect(t.state).toBe('timed-out');
    expect(t.timedOut).toBe('dispatched');
    // "not before N": the DSN came after the deadline the processed MDN started.
    expect(t.dispatchedDeadline!.getTime()).toBe(t.processedAt!.getTime() + TIMEOUT_MS);
    expect(t.timedOutAt!.getTime()).toBeGreaterThanOrEqual(t.dispatchedDeadline!.getTime());
    expect(notices[1]!.mtimeMs).toBeGreaterThanOrEqual(t.dispatchedDeadline!.getTime() - CLOCK_SLACK_MS);
    expect(sim.sentFor(ids.processedOnly).map((m) => m.disposition)).toEqual(['processed']);
  });

  it('nomdn8 (MT 26, R-MDN-7/8): no MDN, so a failure DSN (5.4.7, "no processed MDN") after the processed time-out, and nothing else', async () => {
    const [dsn] = await waitNotices('noMdn', 1);
    const r = expectFailureDsn(dsn, 'noMdn', '5.4.7');
    expect(r.diagnosticCode?.text).toContain(`no processed MDN within ${TIMEOUT_MINUTES} minutes`);
    const t = tracking('noMdn')!;
    expect(t.timedOut).toBe('processed');
    expect(t.processedDeadline.getTime()).toBe(t.sentAt.getTime() + TIMEOUT_MS);
    expect(dsn!.mtimeMs).toBeGreaterThanOrEqual(t.processedDeadline.getTime() - CLOCK_SLACK_MS);
    // The simulator did receive and trust the message; it just never answered.
    expect(sim.receivedFor(CASES.noMdn).map((x) => x.outcome)).toEqual(['trusted']);
    expect(sim.sentFor(ids.noMdn)).toEqual([]);
    await sleep(QUIET_MS);
    expect(noticesFor('noMdn')).toHaveLength(1);
  });

  it('processdelayeddispatch7 (MT 28): processed passed on, a failure DSN at the dispatched time-out, and the late dispatched MDN never reaches the edge', async () => {
    const notices = await waitNotices('dispatchedTooLate', 2);
    expect(dispositions(notices)).toEqual(['processed', 'dsn']);
    const r = expectFailureDsn(notices[1], 'dispatchedTooLate', '5.4.7');
    expect(r.diagnosticCode?.text).toContain('no dispatched MDN');
    const before = tracking('dispatchedTooLate')!;
    expect(before.timedOut).toBe('dispatched');
    expect(notices[1]!.mtimeMs).toBeGreaterThanOrEqual(before.dispatchedDeadline!.getTime() - CLOCK_SLACK_MS);

    // The simulator sends the dispatched MDN after the time-out; a.test takes it (250) …
    const late = await waitFor(
      'the late dispatched MDN sent',
      () => sim.sentFor(ids.dispatchedTooLate).find((m) => m.disposition === 'dispatched'),
      LONG_WAIT_MS,
    );
    expect(late.delivered).toBe(true);
    expect(late.at).toBeGreaterThan(before.timedOutAt!.getTime());
    // … records it as late …
    const after = await waitFor('dispatched recorded as late', () => {
      const t = tracking('dispatchedTooLate');
      return t?.dispatchedLate ? t : undefined;
    });
    expect(after.state).toBe('timed-out');
    // … and finishes with it without passing it on.
    const status = await waitFor('the late MDN handled', async () => {
      const s = await a.ctx.queue.get(late.messageId);
      return s?.deliveries.every((d) => d.state !== 'queued') ? s : undefined;
    });
    expect(status.deliveries.map((d) => d.state)).toEqual(['delivered']);
    expect(status.deliveries[0]!.lastReply?.text).toMatch(/late.*not passed to the edge/);
    await sleep(QUIET_MS);
    expect(dispositions(noticesFor('dispatchedTooLate'))).toEqual(['processed', 'dsn']);
  });

  it('noaddressfailure9 (MT 41 as sender, R-MDN-5/7): processed, then the failed MDN reaches the edge with its Failure field, and no time-out DSN follows', async () => {
    const notices = await waitNotices('failed', 2);
    expect(dispositions(notices)).toEqual(['processed', 'failed']);
    const failed = notices[1]!.mdn!;
    expect(failed.originalMessageId).toBe(ids.failed);
    expect(failed.finalRecipient).toBe(CASES.failed);
    expect(failed.failure).toContain('does not exist at the final destination');
    expect(failed.finalDeliveryExtension).toBe(true);
    const t = tracking('failed')!;
    expect(t.state).toBe('failed');
    await sleep(t.processedAt!.getTime() + TIMEOUT_MS + QUIET_MS - Date.now());
    expect(dispositions(noticesFor('failed'))).toEqual(['processed', 'failed']);
    expect(tracking('failed')!.timedOut).toBeNull();
  });

  it('failure15@nocert.test (MT 25, R-MDN-7): no certificate published, so a failure DSN 5.7.5 "no certificate", and nothing sent', async () => {
    const [dsn, ...more] = await waitNotices('noCertificate', 1);
    const r = expectFailureDsn(dsn, 'noCertificate', '5.7.5');
    expect(r.diagnosticCode?.text).toContain(`no certificate found for ${CASES.noCertificate}`);
    expect(more).toEqual([]);
    expect(sim.connections['nocert.test']).toBe(0);
    expect(tracking('noCertificate')).toBeUndefined(); // never sent: nothing to wait for
    const status = await a.ctx.queue.get(ids.noCertificate);
    expect(status?.deliveries.map((d) => d.state)).toEqual(['failed']);
  });

  it('untrusted.test (MT 24, R-MDN-7, R-TRU-5): the receiving HISP is not trusted, so a failure DSN 5.7.1 "not trusted", and nothing reached it', async () => {
    const [dsn, ...more] = await waitNotices('untrusted', 1);
    const r = expectFailureDsn(dsn, 'untrusted', '5.7.1');
    expect(r.diagnosticCode?.text).toContain('not trusted');
    expect(more).toEqual([]);
    expect(sim.connections['untrusted.test']).toBe(0);
    expect(sim.receivedFor(CASES.untrusted)).toEqual([]);
    expect(tracking('untrusted')).toBeUndefined();
  });

  it('nonexistent address (MT 23, R-MDN-7): the receiving HISP refuses the mailbox (550 5.1.1), so a failure DSN 5.1.1 with its reply', async () => {
    const [dsn, ...more] = await waitNotices('nonexistent', 1);
    const r = expectFailureDsn(dsn, 'nonexistent', '5.1.1');
    expect(r.diagnosticCode?.text).toMatch(/^550 5\.1\.1 /);
    expect(more).toEqual([]);
    expect(sim.receivedFor(CASES.nonexistent)).toEqual([]);
    expect(tracking('nonexistent')).toBeUndefined();
  });

  it('the simulator saw signed, encrypted, trusted messages asking for timely and reliable delivery, and every MDN it sent was taken', async () => {
    // By now every case has ended; wait for the last MDN of the simulator to be accepted.
    await waitFor('simulator idle', () => sim.sent.length >= 7, LONG_WAIT_MS);
    const trusted = sim.received.filter((x) => x.domain === 'ett.test');
    expect(trusted.map((x) => x.recipients[0]).sort()).toEqual(
      ['processedOnly', 'processedDispatched', 'dispatchedTooLate', 'noMdn', 'failed'].map((c) => CASES[c as CaseName]).sort(),
    );
    for (const x of trusted) {
      expect(x.outcome).toBe('trusted'); // decrypted, signature verified, signer chained to the trusted CA
      expect(x.options?.finalDeliveryRequested).toBe(true); // R-MDN-4
      expect(x.signer).toContain('a.test');
    }
    // processed ×4 (processedonly5, processeddispatched6, processdelayeddispatch7, noaddressfailure9),
    // dispatched ×2, failed ×1 … plus nothing else.
    expect(sim.sent.map((m) => `${m.finalRecipient} ${m.disposition}`).sort()).toEqual(
      [
        `${CASES.processedOnly} processed`,
        `${CASES.processedDispatched} processed`,
        `${CASES.processedDispatched} dispatched`,
        `${CASES.dispatchedTooLate} processed`,
        `${CASES.dispatchedTooLate} dispatched`,
        `${CASES.failed} processed`,
        `${CASES.failed} failed`,
      ].sort(),
    );
    expect(sim.sent.every((m) => m.delivered && m.reply.code === 250)).toBe(true);
    expect(sim.errors).toEqual([]);
    // The edge got exactly what the cases above expect: 2+2+1+2+2+1+1+1 notifications, nothing unreadable.
    const all = edge();
    expect(all.filter((n) => n.kind === 'other')).toEqual([]);
    expect(all).toHaveLength(12);
  });

  it("the API view of every case (issue 15): each recipient's state and failure reason, with its evidence, from the event outbox", async () => {
    const tracker = new MessageTracker(a.ctx.db, a.ctx.queue, new EventOutbox(a.ctx.db));
    const view = async (c: CaseName) => {
      const queued = await a.ctx.queue.get(ids[c]);
      const v = await tracker.get(queued!.queueId, ['@a.test']);
      return v.recipients[0]!;
    };
    const expected: Record<CaseName, [string, string | undefined]> = {
      processedDispatched: ['dispatched', undefined],
      processedOnly: ['failed', 'dispatched-timeout'],
      noMdn: ['failed', 'processed-timeout'],
      dispatchedTooLate: ['failed', 'dispatched-timeout'],
      failed: ['failed', 'failure-mdn'],
      noCertificate: ['failed', 'no-certificate'],
      untrusted: ['failed', 'untrusted'],
      nonexistent: ['failed', 'rejected'],
    };
    for (const [c, [state, reason]] of Object.entries(expected) as [CaseName, [string, string | undefined]][]) {
      const r = await view(c);
      expect({ case: c, state: r.state, reason: r.reason }).toEqual({ case: c, state, reason });
      expect(r.transitions[0]?.state).toBe('queued');
      for (const t of r.transitions) expect(Number.isNaN(Date.parse(t.at))).toBe(false);
    }
    const dispatched = await view('processedDispatched');
    expect(dispatched.transitions.map((t) => t.state)).toEqual(['queued', 'relayed', 'processed', 'dispatched']);
    expect(dispatched.transitions[1]?.evidence?.reply).toMatch(/^250 /);
    expect(dispatched.transitions[2]?.evidence?.mdnMessageId).toEqual(expect.any(String));
    expect(dispatched.transitions[3]?.evidence?.mdnMessageId).toEqual(expect.any(String));
    // The dispatched MDN that came after the time-out is in the timeline, flagged late; the state stays failed.
    const late = await view('dispatchedTooLate');
    expect(late.transitions.map((t) => [t.state, t.late ?? false])).toEqual([
      ['queued', false],
      ['relayed', false],
      ['processed', false],
      ['failed', false],
      ['dispatched', true],
    ]);
    expect((await view('failed')).transitions.at(-1)?.evidence?.mdnMessageId).toEqual(expect.any(String));
    expect((await view('nonexistent')).detail).toMatch(/^550 5\.1\.1 /);
    expect((await view('noCertificate')).detail).toMatch(/^554 5\.7\.5 no certificate/);
    // Every event of a.test's sender, in commit order, each with a unique id.
    const events = new EventOutbox(a.ctx.db).after(0, { sent: [SENDER], received: [] }, 500);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    expect(events.map((e) => Number(e.cursor))).toEqual([...events.map((e) => Number(e.cursor))].sort((x, y) => x - y));
    expect(events.filter((e) => e.type === 'message.failed')).toHaveLength(7);
  });
});

// `hisp status`, `hisp queue list|retry|bounce`, `hisp quarantine list|show|delete|purge` through the real
// binary (bin/hisp.js, built) on a data folder filled by the real stores.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MessageReport, StatusReport } from '../../gateway/cli/status-command.js';
import type { QueueListReport } from '../../gateway/cli/queue-command.js';
import type { QuarantineListReport, QuarantinePurgeReport, QuarantineShowReport } from '../../gateway/cli/quarantine-command.js';
import { SqliteQueue, type Delivery } from '../../gateway/queue/index.js';
import { DiskReserve } from '../../gateway/store/disk-reserve.js';
import { HISP_MIGRATIONS, MessageStore, QuarantineStore, TrackingStore, openDatabase } from '../../gateway/store/index.js';
import { credentialPaths } from '../helpers/pki.js';
import { IN_CI, mountTmpfs, type TmpfsResult } from '../helpers/tmpfs.js';

const run = promisify(execFile);
const repo = resolve(import.meta.dirname, '..', '..');
const work = mkdtempSync(join(tmpdir(), 'hisp-operator-cli-'));
/** The default data folder of a command run in `work` (./hisp-data). */
const dataDir = join(work, 'hisp-data');
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Result {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs hisp in `work` with a clean environment (no HISP_* variables of the caller) unless `env` adds some. */
async function hisp(args: string[], env: Record<string, string> = {}): Promise<Result> {
  try {
    const r = await run(process.execPath, [join(repo, 'bin', 'hisp.js'), ...args], { cwd: work, env: { PATH: process.env.PATH ?? '', ...env } });
    return { status: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { status: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function hispRaw(args: string[]): Promise<Buffer> {
  const r = await run(process.execPath, [join(repo, 'bin', 'hisp.js'), ...args], { cwd: work, encoding: 'buffer', env: { PATH: process.env.PATH ?? '' } });
  return r.stdout;
}

const json = <T>(r: Result): T => JSON.parse(r.stdout) as T;
const at = (ms: number) => new Date(ms).toISOString();

const H = 3_600_000;
const M = 60_000;
/** "Now" when the fixture was written; every stored time is relative to it. */
const T0 = Date.now();
const RAW = Buffer.from(
  'From: Mallory <mallory@evil.test>\r\nTo: doc@sender.test\r\nSubject: invoice\x1b[31m\r\n\tfolded\r\nMessage-ID: <q1@evil.test>\r\n\r\nnot signed\r\n',
);

const BODY = Buffer.from('From: doc@sender.test\r\nSubject: results\r\n\r\nhello\r\n');
const ids = { a: '', b: '', c: '', d: '', quarantined: '' };
const times = { clerkTimedOut: 0 };

/**
 * The fixture: message A (outbound, 5 recipients: delivered with a dispatched MDN, delivered with a
 * timed-out MDN and a late processed one, deferred, failed, leased), C (2 deferred recipients), B
 * (queued, never tried), D (inbound, queued), and one quarantined message.
 */
beforeAll(async () => {
  let clock = T0 - 3 * H;
  const db = openDatabase({ dataDir, migrations: HISP_MIGRATIONS });
  const queue = new SqliteQueue(db, { now: () => clock });
  const tracking = new TrackingStore(db);
  const quarantine = new QuarantineStore(db, queue.messages, { now: () => clock });
  const by = (ds: Delivery[], rcpt: string) => ds.find((d) => d.recipient === rcpt) as Delivery;

  ids.a = await queue.enqueue(
    {
      direction: 'outbound',
      mailFrom: 'doc@sender.test',
      recipients: ['patient@recipient.test', 'clerk@recipient.test', 'Nurse@Other.test', 'gone@third.test', 'busy@fourth.test'],
      submittedBy: 'ehr',
      messageId: '<status-a@sender.test>',
    },
    BODY,
  );
  clock = T0 - 2 * H;
  const a = await queue.lease(10, 'worker-1', 10 * H);
  expect(a).toHaveLength(5);
  await queue.complete(by(a, 'patient@recipient.test'), { code: 250, enhanced: '2.0.0', text: 'queued as ABC' });
  await queue.complete(by(a, 'clerk@recipient.test'), { code: 250, enhanced: '2.0.0', text: 'queued as ABD' });
  await queue.defer(by(a, 'Nurse@Other.test'), { code: 451, enhanced: '4.4.1', text: 'connection refused' }, new Date(T0 + H));
  await queue.fail(by(a, 'gone@third.test'), { code: 550, enhanced: '5.1.1', text: 'user unknown' });
  // busy@fourth.test stays leased by worker-1 (until T0 + 8h).

  const track = (recipient: string, dispatchedRequested: boolean) =>
    tracking.track({
      queueId: ids.a,
      messageId: 'status-a@sender.test',
      recipient,
      sender: 'doc@sender.test',
      sentAt: new Date(T0 - 2 * H),
      processedTimeoutMs: H,
      dispatchedTimeoutMs: H,
      dispatchedRequested,
    });
  track('patient@recipient.test', true);
  track('clerk@recipient.test', false);
  expect(tracking.record('status-a@sender.test', 'patient@recipient.test', 'processed', new Date(T0 - 2 * H + 10 * M)).status).toBe('timely');
  expect(tracking.record('status-a@sender.test', 'patient@recipient.test', 'dispatched', new Date(T0 - 2 * H + 20 * M)).status).toBe('timely');
  const due = tracking.dueTimeouts(new Date(T0)).find((t) => t.entry.recipient === 'clerk@recipient.test');
  times.clerkTimedOut = T0 - 30 * M;
  expect(due && tracking.markTimedOut(due.id, new Date(times.clerkTimedOut))).toBe(true);
  expect(tracking.record('status-a@sender.test', 'clerk@recipient.test', 'processed', new Date(T0 - 20 * M)).status).toBe('late');

  clock = T0 - 90 * M;
  ids.c = await queue.enqueue({ direction: 'outbound', mailFrom: 'doc@sender.test', recipients: ['a@slow.test', 'b@slow.test'], messageId: 'c@sender.test' }, BODY);
  clock = T0 - 80 * M;
  const c = await queue.lease(10, 'worker-2', 5 * M);
  expect(c).toHaveLength(2);
  for (const d of c) await queue.defer(d, { code: 421, enhanced: '4.7.0', text: 'try again later' }, new Date(T0 + 2 * H));

  clock = T0 - H;
  ids.b = await queue.enqueue({ direction: 'outbound', mailFrom: '', recipients: ['later@recipient.test'] }, BODY);
  clock = T0 - 30 * M;
  // An inbound message that carries C's Message-ID (hisp status by Message-ID shows the newest).
  ids.d = await queue.enqueue({ direction: 'inbound', mailFrom: 'someone@remote.test', recipients: ['doc@sender.test'], messageId: '<c@sender.test>' }, BODY);

  clock = T0 - 10 * M;
  ids.quarantined = await quarantine.store(
    { direction: 'inbound', mailFrom: 'mallory@evil.test', recipients: ['doc@sender.test'], messageId: '<q1@evil.test>' },
    RAW,
    'HISP_SIG_INVALID',
    'no signature of the message verifies over the signed content',
  );
  await db.close();
});

/** Reopens the data folder to check what a command changed. */
async function reopen<T>(fn: (queue: SqliteQueue) => Promise<T>): Promise<T> {
  const db = openDatabase({ dataDir, migrations: HISP_MIGRATIONS });
  try {
    return await fn(new SqliteQueue(db));
  } finally {
    await db.close();
  }
}

describe('hisp status', () => {
  it('--json shows every recipient with its state, times, last reply and MDN tracking', async () => {
    const r = await hisp(['status', '<status-a@sender.test>', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const report = json<MessageReport>(r);
    expect(report).toMatchObject({
      queueId: ids.a,
      messageId: 'status-a@sender.test',
      direction: 'outbound',
      mailFrom: 'doc@sender.test',
      recipients: ['patient@recipient.test', 'clerk@recipient.test', 'Nurse@Other.test', 'gone@third.test', 'busy@fourth.test'],
      submittedBy: 'ehr',
      receivedAt: at(T0 - 3 * H),
      size: BODY.length,
    });
    const [patient, clerk, nurse, gone, busy] = report.deliveries;
    expect(patient).toEqual({
      recipient: 'patient@recipient.test',
      state: 'delivered',
      attempts: 1,
      lastAttemptAt: at(T0 - 2 * H),
      nextAttemptAt: null,
      leasedBy: null,
      leasedUntil: null,
      finishedAt: at(T0 - 2 * H),
      lastReply: { code: 250, enhanced: '2.0.0', text: 'queued as ABC' },
      dsnQueuedAt: null,
      dsnError: null,
      dsnRetryAt: null,
      mdn: {
        state: 'dispatched',
        dispatchedRequested: true,
        sentAt: at(T0 - 2 * H),
        processedAt: at(T0 - 2 * H + 10 * M),
        processedLate: false,
        dispatchedAt: at(T0 - 2 * H + 20 * M),
        dispatchedLate: false,
        failedAt: null,
        failedLate: false,
        failureNote: null,
        timedOut: null,
        timedOutAt: null,
        nextDeadline: null,
        noticeError: null,
      },
    });
    expect(clerk?.mdn).toMatchObject({ state: 'timed-out', timedOut: 'processed', timedOutAt: at(times.clerkTimedOut), processedAt: at(T0 - 20 * M), processedLate: true });
    expect(nurse).toMatchObject({
      state: 'deferred',
      attempts: 1,
      lastAttemptAt: at(T0 - 2 * H),
      nextAttemptAt: at(T0 + H),
      finishedAt: null,
      lastReply: { code: 451, enhanced: '4.4.1', text: 'connection refused' },
      mdn: null,
    });
    expect(gone).toMatchObject({ state: 'failed', attempts: 1, finishedAt: at(T0 - 2 * H), lastReply: { code: 550, enhanced: '5.1.1', text: 'user unknown' }, dsnQueuedAt: null });
    expect(busy).toMatchObject({ state: 'leased', attempts: 0, leasedBy: 'worker-1', leasedUntil: at(T0 + 8 * H), nextAttemptAt: null, lastReply: null });
  });

  it('finds a message by Message-ID without brackets and by queue id, the same report', async () => {
    const byId = await hisp(['status', ids.a, '--json']);
    const bare = await hisp(['status', 'status-a@sender.test', '--json']);
    expect(byId.status).toBe(0);
    expect(json<MessageReport>(bare)).toEqual(json<MessageReport>(byId));
  });

  it('prints what an operator needs to read', async () => {
    const r = await hisp(['status', 'status-a@sender.test']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`message ${ids.a}  <status-a@sender.test>`);
    expect(r.stdout).toMatch(/direction\s+outbound/);
    expect(r.stdout).toMatch(/from\s+doc@sender\.test \(submitted by ehr\)/);
    // Relative times allow for a slow machine: a few minutes may pass between the fixture and the command.
    expect(r.stdout).toContain(`received      ${at(T0 - 3 * H).replace(/\.\d{3}Z$/, 'Z')} (3h`);
    expect(r.stdout).toMatch(/received\s+\S+ \(3h( \dm)? ago\)/);
    expect(r.stdout).toMatch(/size\s+50 bytes/);
    expect(r.stdout).toContain('patient@recipient.test: delivered');
    expect(r.stdout).toMatch(/last reply\s+250 2\.0\.0 queued as ABC/);
    expect(r.stdout).toMatch(/MDN\s+dispatched \(dispatched requested\)/);
    expect(r.stdout).toMatch(/processed\s+\S+ \(1h 5\dm ago\)/);
    expect(r.stdout).toMatch(/MDN\s+timed-out/);
    expect(r.stdout).toMatch(/processed\s+\S+ \(2\dm ago\) \(late\)/);
    expect(r.stdout).toMatch(/timed out\s+waiting for processed/);
    expect(r.stdout).toContain('Nurse@Other.test: deferred');
    expect(r.stdout).toMatch(/next attempt\s+\S+ \(in (5\dm|1h)\)/);
    expect(r.stdout).toMatch(/last reply\s+451 4\.4\.1 connection refused/);
    expect(r.stdout).toContain('gone@third.test: failed');
    expect(r.stdout).toMatch(/last reply\s+550 5\.1\.1 user unknown/);
    expect(r.stdout).toMatch(/DSN sent\s+not yet/);
    expect(r.stdout).toContain('busy@fourth.test: leased');
    expect(r.stdout).toMatch(/in flight\s+worker-1, lease until/);
  });

  it('shows every message with a Message-ID, the sent one first, in JSON and text', async () => {
    // C was sent (outbound) before D, a received (inbound) message with the same Message-ID.
    const j = json<StatusReport>(await hisp(['status', 'c@sender.test', '--json']));
    expect(j.queueId).toBe(ids.c);
    expect(j.messages.map((m) => [m.queueId, m.direction])).toEqual([
      [ids.c, 'outbound'],
      [ids.d, 'inbound'],
    ]);
    const { messages: _messages, ...top } = j;
    expect(top).toEqual(j.messages[0]);
    const r = await hisp(['status', '<c@sender.test>']);
    expect(r.stdout).toMatch(/^2 messages carry this Message-ID \(sent first/);
    const sent = r.stdout.indexOf(`message ${ids.c}  <c@sender.test>`);
    const received = r.stdout.indexOf(`message ${ids.d}  <c@sender.test>`);
    expect(sent).toBeGreaterThan(0);
    expect(received).toBeGreaterThan(sent);
    // A queue id names one message.
    expect(json<StatusReport>(await hisp(['status', ids.d, '--json'])).messages.map((m) => m.queueId)).toEqual([ids.d]);
  });

  it('exits 1 for an unknown id, with the reason on stderr or as JSON', async () => {
    const r = await hisp(['status', '<nobody@nowhere.test>']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('HISP_NOT_FOUND');
    expect(r.stderr).toContain('nobody@nowhere.test');
    expect(r.stdout).toBe('');
    const j = await hisp(['status', 'nobody@nowhere.test', '--json']);
    expect(j.status).toBe(1);
    expect(json<{ error: { code: string; reason: string } }>(j).error).toMatchObject({ code: 'HISP_NOT_FOUND' });
  });
});

describe('hisp queue list', () => {
  it('--json lists the messages oldest first, each as hisp status shows it', async () => {
    const r = await hisp(['queue', 'list', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const { messages } = json<QueueListReport>(r);
    expect(messages.map((m) => m.queueId)).toEqual([ids.a, ids.c, ids.b, ids.d]);
    expect(messages[0]).toEqual(json<StatusReport>(await hisp(['status', ids.a, '--json'])).messages[0]);
    expect(messages[2]).toMatchObject({ mailFrom: '', deliveries: [{ recipient: 'later@recipient.test', state: 'queued', attempts: 0, nextAttemptAt: at(T0 - H) }] });
  });

  it('filters by state (showing only those deliveries), direction and limit', async () => {
    const list = async (...args: string[]) => json<QueueListReport>(await hisp(['queue', 'list', ...args, '--json'])).messages;
    const [deferred, failed, leased, inbound, limited] = await Promise.all([
      list('--state', 'deferred'),
      list('--state', 'failed'),
      list('--state', 'leased'),
      list('--direction', 'inbound'),
      list('--limit', '2'),
    ]);
    expect(deferred.map((m) => [m.queueId, m.deliveries.map((d) => d.recipient)])).toEqual([
      [ids.a, ['Nurse@Other.test']],
      [ids.c, ['a@slow.test', 'b@slow.test']],
    ]);
    expect(failed.map((m) => m.deliveries.map((d) => d.recipient))).toEqual([['gone@third.test']]);
    expect(leased.map((m) => m.deliveries.map((d) => d.state))).toEqual([['leased']]);
    expect(inbound.map((m) => m.queueId)).toEqual([ids.d]);
    expect(limited.map((m) => m.queueId)).toEqual([ids.a, ids.c]);
  });

  it('prints one line per delivery: queue id, age, from, recipient, state, tries, next try, last reply', async () => {
    const r = await hisp(['queue', 'list']);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^QUEUE ID\s+AGE\s+FROM\s+RECIPIENT\s+STATE\s+TRIES\s+NEXT TRY\s+LAST REPLY$/);
    expect(lines).toHaveLength(1 + 5 + 2 + 1 + 1 + 1);
    const row = (rcpt: string) => lines.find((l) => l.includes(` ${rcpt} `)) ?? '';
    expect(row('Nurse@Other.test')).toMatch(new RegExp(`^${ids.a}\\s+3h( \\dm)?\\s+doc@sender\\.test\\s+Nurse@Other\\.test\\s+deferred\\s+1\\s+in (5\\dm|1h)\\s+451 4\\.4\\.1 connection refused$`));
    expect(row('busy@fourth.test')).toMatch(/leased\s+0\s+in flight\s+-$/);
    expect(row('later@recipient.test')).toMatch(new RegExp(`^${ids.b}\\s+1h( \\dm)?\\s+<>\\s+later@recipient\\.test\\s+queued\\s+0\\s+now\\s+-$`));
    expect(row('gone@third.test')).toMatch(/failed\s+1\s+-\s+550 5\.1\.1 user unknown$/);
    expect(lines.at(-1)).toBe('4 message(s), 9 deliveries');
  });

  it('says so when nothing matches', async () => {
    const r = await hisp(['queue', 'list', '--state', 'delivered', '--direction', 'inbound']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('hisp: no message with a delivered delivery\n');
  });

  it('refuses bad flags with exit 2', async () => {
    const [state, zero, ten, both] = await Promise.all([
      hisp(['queue', 'list', '--state', 'stuck']),
      hisp(['queue', 'list', '--limit', '0']),
      hisp(['queue', 'list', '--limit', 'ten']),
      hisp(['queue', 'list', '--config', 'x.toml', '--data-dir', 'y']),
    ]);
    expect([state.status, zero.status, ten.status, both.status]).toEqual([2, 2, 2, 2]);
    expect(zero.stderr).toContain('--limit must be a whole number');
    expect(both.stderr).toContain('cannot be used with');
  });
});

describe('hisp queue retry and bounce', () => {
  it('retry QUEUE-ID makes the waiting deliveries of that message due now', async () => {
    const r = await hisp(['queue', 'retry', ids.a, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(json(r)).toEqual({ queueId: ids.a, retried: 1 });
    const nurse = await reopen(async (q) => (await q.get(ids.a))?.deliveries.find((d) => d.recipient === 'Nurse@Other.test'));
    expect(nurse?.state).toBe('queued');
    expect(nurse?.nextAttemptAt?.getTime()).toBeLessThanOrEqual(Date.now());
    expect(nurse?.lastReply).toEqual({ code: 451, enhanced: '4.4.1', text: 'connection refused' });
    const again = await hisp(['queue', 'retry', ids.a]);
    expect(again.stdout).toBe(`hisp: no delivery of ${ids.a} was waiting: nothing to retry\n`);
  });

  it('retry without an id makes every waiting delivery due now, and says how many', async () => {
    const r = await hisp(['queue', 'retry']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('hisp: 2 deliveries in the queue made due now: the gateway tries them next\n');
    const c = await reopen(async (q) => (await q.get(ids.c))?.deliveries ?? []);
    for (const d of c) expect(d.nextAttemptAt?.getTime()).toBeLessThanOrEqual(Date.now());
    expect(json(await hisp(['queue', 'retry', '--json']))).toEqual({ queueId: null, retried: 0 });
  });

  it('bounce fails the deliveries not final with the reason; the DSN is then due', async () => {
    const r = await hisp(['queue', 'bounce', ids.c, '--reason', 'the practice closed', '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(json(r)).toEqual({ queueId: ids.c, bounced: 2, inFlight: 0 });
    const { deliveries, pending } = await reopen(async (q) => ({ deliveries: (await q.get(ids.c))?.deliveries ?? [], pending: await q.pendingDsn() }));
    expect(deliveries).toHaveLength(2);
    for (const d of deliveries) {
      expect(d.state).toBe('failed');
      expect(d.lastReply).toEqual({ code: 554, enhanced: '5.0.0', text: 'bounced by the operator: the practice closed (last reply: 421 4.7.0 try again later)' });
    }
    expect(pending.filter((p) => p.message.queueId === ids.c)).toHaveLength(2);
    const status = json<MessageReport>(await hisp(['status', ids.c, '--json']));
    expect(status.deliveries.map((d) => d.state)).toEqual(['failed', 'failed']);
  });

  it('bounce leaves a delivery in flight to its worker and says so', async () => {
    const r = await hisp(['queue', 'bounce', ids.a]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(
      `hisp: 1 delivery of ${ids.a} bounced: the gateway sends the DSN to the sender\n` +
        'hisp: 1 being delivered now left to the worker: bounce again once it ends\n',
    );
    const a = json<MessageReport>(await hisp(['status', ids.a, '--json']));
    expect(a.deliveries.find((d) => d.recipient === 'Nurse@Other.test')).toMatchObject({
      state: 'failed',
      lastReply: { code: 554, enhanced: '5.0.0', text: 'bounced by the operator: no reason given (last reply: 451 4.4.1 connection refused)' },
    });
    expect(a.deliveries.find((d) => d.recipient === 'busy@fourth.test')?.state).toBe('leased');
  });

  it('exit 1 for an unknown queue id (a Message-ID is not a queue id here)', async () => {
    const retry = await hisp(['queue', 'retry', 'status-a@sender.test']);
    expect(retry.status).toBe(1);
    expect(retry.stderr).toContain('HISP_NOT_FOUND');
    const bounce = await hisp(['queue', 'bounce', '0000000000000000000000', '--json']);
    expect(bounce.status).toBe(1);
    expect(json<{ error: { code: string } }>(bounce).error.code).toBe('HISP_NOT_FOUND');
  });
});

describe('hisp quarantine', () => {
  it('list --json shows the entry with its reason and envelope', async () => {
    const r = await hisp(['quarantine', 'list', '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(json<QuarantineListReport>(r)).toEqual({
      total: { entries: 1, bytes: RAW.length },
      dropped: { since: expect.stringMatching(/T00:00:00\.000Z$/) as unknown, retention: { entries: 0, bytes: 0 }, cap: { entries: 0, bytes: 0 } },
      entries: [
        {
          id: ids.quarantined,
          quarantinedAt: at(T0 - 10 * M),
          reasonCode: 'HISP_SIG_INVALID',
          detail: 'no signature of the message verifies over the signed content',
          messageId: 'q1@evil.test',
          direction: 'inbound',
          mailFrom: 'mallory@evil.test',
          recipients: ['doc@sender.test'],
          receivedAt: at(T0 - 10 * M),
          size: RAW.length,
        },
      ],
    });
  });

  it('list prints id, time, reason, sender, recipients and size', async () => {
    const r = await hisp(['quarantine', 'list']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`quarantined ${ids.quarantined}`);
    expect(r.stdout).toMatch(/when\s+\S+ \(1\dm ago\)/);
    expect(r.stdout).toMatch(/reason\s+HISP_SIG_INVALID: no signature of the message verifies/);
    expect(r.stdout).toMatch(/from\s+mallory@evil\.test/);
    expect(r.stdout).toMatch(/recipients\s+doc@sender\.test/);
    expect(r.stdout).toMatch(new RegExp(`size\\s+${RAW.length} bytes`));
    expect(r.stdout).toContain(`1 quarantined message(s), the oldest 1`);
    expect(r.stdout).toContain(`; ${RAW.length} bytes in all\n`);
    expect(r.stdout).not.toContain('dropped');
  });

  it('show prints the headers, escaping control characters; --json gives them unfolded', async () => {
    const r = await hisp(['quarantine', 'show', ids.quarantined]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('From: Mallory <mallory@evil.test>');
    expect(r.stdout).toContain('Subject: invoice\\x1b[31m\tfolded');
    expect(r.stdout).not.toContain('\x1b');
    const j = json<QuarantineShowReport>(await hisp(['quarantine', 'show', ids.quarantined, '--json']));
    expect(j).toMatchObject({ id: ids.quarantined, reasonCode: 'HISP_SIG_INVALID', headersError: null });
    expect(j.headers).toEqual([
      { name: 'From', value: 'Mallory <mallory@evil.test>' },
      { name: 'To', value: 'doc@sender.test' },
      { name: 'Subject', value: 'invoice\x1b[31m\tfolded' },
      { name: 'Message-ID', value: '<q1@evil.test>' },
    ]);
  });

  it('hisp status of a quarantined message says so', async () => {
    const r = await hisp(['status', 'q1@evil.test']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/note\s+quarantined \S+: HISP_SIG_INVALID: no signature/);
    expect(r.stdout).toContain('(no deliveries)');
  });

  it('show --raw writes the stored bytes as received', async () => {
    expect((await hispRaw(['quarantine', 'show', ids.quarantined, '--raw'])).equals(RAW)).toBe(true);
    expect((await hisp(['quarantine', 'show', ids.quarantined, '--raw', '--json'])).status).toBe(2);
  });

  it('delete removes the entry and its message; unknown ids exit 1', async () => {
    expect((await hisp(['quarantine', 'show', 'nope'])).status).toBe(1);
    const r = await hisp(['quarantine', 'delete', ids.quarantined, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(json(r)).toEqual({ id: ids.quarantined, deleted: true });
    expect(json<QuarantineListReport>(await hisp(['quarantine', 'list', '--json']))).toMatchObject({ entries: [], total: { entries: 0, bytes: 0 } });
    expect((await hisp(['quarantine', 'list'])).stdout).toBe('hisp: the quarantine is empty\n');
    expect(await reopen((q) => Promise.resolve(q.messages.has(ids.quarantined)))).toBe(false);
    const again = await hisp(['quarantine', 'delete', ids.quarantined]);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('HISP_NOT_FOUND');
  });
});

describe('hisp quarantine purge, and what the gateway dropped by itself', () => {
  const purgeDir = join(work, 'purge-data');
  const D = 86_400_000;
  const p = { old: '', trust: '', young: '', dropped: '' };
  const purge = (...args: string[]) => hisp(['quarantine', 'purge', '--data-dir', purgeDir, ...args]);

  beforeAll(async () => {
    let clock = T0 - 100 * D;
    const db = openDatabase({ dataDir: purgeDir, migrations: HISP_MIGRATIONS });
    const messages = new MessageStore(db, { now: () => clock });
    const q = new QuarantineStore(db, messages, { now: () => clock });
    const env = (n: string) => ({ direction: 'inbound' as const, mailFrom: `${n}@evil.test`, recipients: ['doc@sender.test'], messageId: `<${n}@evil.test>` });
    p.dropped = await q.store(env('dropped'), RAW, 'HISP_SIG_INVALID', 'dropped by retention');
    clock = T0 - 40 * D;
    p.old = await q.store(env('old'), RAW, 'HISP_SIG_INVALID', 'forty days');
    clock = T0 - 20 * D;
    p.trust = await q.store(env('trust'), RAW, 'HISP_TRUST_NO_ANCHOR', 'twenty days');
    clock = T0 - H;
    p.young = await q.store(env('young'), RAW, 'HISP_SIG_INVALID', 'an hour');
    // The gateway's housekeeping (retention 60 days) drops the first one.
    clock = T0;
    expect(await new QuarantineStore(db, messages, { now: () => clock, limits: { retentionDays: 60, maxBytes: 100 * 1024 * 1024 } }).enforce()).toEqual({ retention: 1, cap: 0 });
    await db.close();
    await messages.close();
  });

  it('list counts what the gateway dropped by itself in the last 30 days', async () => {
    const j = json<QuarantineListReport>(await hisp(['quarantine', 'list', '--data-dir', purgeDir, '--json', '--limit', '1']));
    expect(j.entries.map((e) => e.id)).toEqual([p.young]);
    expect(j.total).toEqual({ entries: 3, bytes: 3 * RAW.length });
    expect(j.dropped).toMatchObject({ retention: { entries: 1, bytes: RAW.length }, cap: { entries: 0, bytes: 0 } });
    const r = await hisp(['quarantine', 'list', '--data-dir', purgeDir, '--limit', '1']);
    expect(r.stdout).toContain('1 of 3 quarantined message(s)');
    expect(r.stdout).toContain(
      `dropped by the gateway in the last 30 days: 1 past retention (${RAW.length} bytes), 0 over the size cap (0 bytes); each is logged ("quarantine entry dropped")\n`,
    );
  });

  it('needs --older-than DAYS or --all (exit 2), not both, and a number of days', async () => {
    const cases = [[], ['--older-than', '3', '--all'], ['--older-than', 'ten'], ['--older-than', '-1']];
    const results = await Promise.all(cases.map((args) => purge(...args)));
    results.forEach((r, i) => expect(r.status, cases[i]?.join(' ')).toBe(2));
    expect(results[0]?.stderr).toContain('give --older-than DAYS or --all');
    expect(results[2]?.stderr).toContain('--older-than must be a number of days from 0 to 36500, not "ten"');
    expect(json<QuarantineListReport>(await hisp(['quarantine', 'list', '--data-dir', purgeDir, '--json'])).total.entries).toBe(3);
  });

  it('--dry-run lists what would go, oldest first, and deletes nothing', async () => {
    const r = await purge('--older-than', '10', '--dry-run');
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^would delete ${p.old}  \\S+ \\(40d ago\\)  HISP_SIG_INVALID  old@evil\\.test  ${RAW.length} bytes$`));
    expect(lines[1]).toMatch(new RegExp(`^would delete ${p.trust} `));
    expect(lines[2]).toBe(`hisp: 2 quarantined message(s) (${2 * RAW.length} bytes) would be deleted (dry run: nothing deleted)`);
    const j = json<QuarantinePurgeReport>(await purge('--older-than', '10', '--dry-run', '--json'));
    expect(j).toEqual({
      dryRun: true,
      olderThanDays: 10,
      reasonCode: null,
      before: expect.any(String) as unknown,
      count: 2,
      bytes: 2 * RAW.length,
      entries: [
        { id: p.old, quarantinedAt: at(T0 - 40 * D), reasonCode: 'HISP_SIG_INVALID', detail: 'forty days', mailFrom: 'old@evil.test', messageId: 'old@evil.test', size: RAW.length },
        { id: p.trust, quarantinedAt: at(T0 - 20 * D), reasonCode: 'HISP_TRUST_NO_ANCHOR', detail: 'twenty days', mailFrom: 'trust@evil.test', messageId: 'trust@evil.test', size: RAW.length },
      ],
    });
    expect(existsSync(join(purgeDir, 'messages', `${p.old}.eml`))).toBe(true);
    expect(json<QuarantineListReport>(await hisp(['quarantine', 'list', '--data-dir', purgeDir, '--json'])).total.entries).toBe(3);
  });

  it('deletes the entries and their messages; --reason keeps to one reason; --all takes the rest', async () => {
    const old = json<QuarantinePurgeReport>(await purge('--older-than', '30', '--json'));
    expect(old).toMatchObject({ dryRun: false, olderThanDays: 30, count: 1, entries: [{ id: p.old }] });
    expect(existsSync(join(purgeDir, 'messages', `${p.old}.eml`))).toBe(false);
    const byReason = await purge('--all', '--reason', 'HISP_TRUST_NO_ANCHOR');
    expect(byReason.status, byReason.stderr).toBe(0);
    expect(byReason.stdout).toBe(`hisp: 1 quarantined message(s) (${RAW.length} bytes) deleted\n`);
    const rest = json<QuarantinePurgeReport>(await purge('--all', '--json'));
    expect(rest).toMatchObject({ olderThanDays: null, reasonCode: null, count: 1, entries: [{ id: p.young }] });
    expect((await purge('--all')).stdout).toBe('hisp: 0 quarantined message(s) (0 bytes) deleted\n');
    for (const id of [p.old, p.trust, p.young]) expect(existsSync(join(purgeDir, 'messages', `${id}.eml`))).toBe(false);
    expect(json<QuarantineListReport>(await hisp(['quarantine', 'list', '--data-dir', purgeDir, '--json'])).total).toEqual({ entries: 0, bytes: 0 });
  });
});

/**
 * A data folder on a full disk (a tmpfs filled to the last byte), the gateway stopped: its `-wal`
 * and `-shm` files are gone, so the command must create them, and append its DELETE to the WAL.
 * Needs root (CI runs as root); with CI=true it never skips.
 */
describe('hisp quarantine delete and purge on a full disk', () => {
  let mounted: TmpfsResult | undefined;
  beforeAll(async () => {
    mounted = await mountTmpfs(8 * 1024 * 1024);
  });
  afterAll(async () => {
    if (mounted?.ok) await mounted.tmpfs.unmount();
  });

  it('work, by releasing the data folder\'s reserve; without one, the failure is a clean HISP_IO', async (ctx) => {
    if (!mounted?.ok) {
      if (IN_CI) throw new Error(`CI=true: ${mounted?.reason ?? 'no tmpfs'}`);
      ctx.skip();
      return;
    }
    const full = join(mounted.tmpfs.dir, 'data');
    const db = openDatabase({ dataDir: full, migrations: HISP_MIGRATIONS });
    const messages = new MessageStore(db);
    const q = new QuarantineStore(db, messages);
    const big = Buffer.concat([RAW, Buffer.alloc(300 * 1024, 'x')]);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await q.store({ direction: 'inbound', mailFrom: 'mallory@evil.test', recipients: ['doc@sender.test'] }, big, 'HISP_SIG_INVALID', `#${i}`));
    await db.close();
    await messages.close();
    const reserve = new DiskReserve(full, 1024 * 1024); // as the gateway writes it at start
    expect(await reserve.ensure()).toBe(true);
    const dataArgs = ['--data-dir', full, '--json'];

    // No reserve: the command cannot even open the database. A clean error, exit 1.
    rmSync(reserve.path);
    mounted.tmpfs.fill('filler-0');
    const without = await hisp(['quarantine', 'delete', ids[0]!, ...dataArgs]);
    expect(without.status, without.stderr).toBe(1);
    expect(json<{ error: { code: string; reason: string } }>(without).error.code).toBe('HISP_IO');
    rmSync(join(mounted.tmpfs.dir, 'filler-0'));
    expect(await reserve.ensure()).toBe(true);

    mounted.tmpfs.fill('filler-1');
    const deleted = await hisp(['quarantine', 'delete', ids[0]!, ...dataArgs]);
    expect(deleted.status, deleted.stderr).toBe(0);
    expect(json(deleted)).toEqual({ id: ids[0], deleted: true });
    expect(existsSync(join(full, 'messages', `${ids[0]}.eml`))).toBe(false);
    // The body freed enough: the command wrote the reserve back before it exited.
    expect(reserve.size()).toBe(1024 * 1024);

    mounted.tmpfs.fill('filler-2');
    const purged = await hisp(['quarantine', 'purge', '--all', ...dataArgs]);
    expect(purged.status, purged.stderr).toBe(0);
    expect(json<QuarantinePurgeReport>(purged)).toMatchObject({ count: 3, bytes: 3 * big.length });
    for (const id of ids) expect(existsSync(join(full, 'messages', `${id}.eml`))).toBe(false);
    expect(reserve.size()).toBe(1024 * 1024);
    const list = await hisp(['quarantine', 'list', ...dataArgs]);
    expect(json<QuarantineListReport>(list).total).toEqual({ entries: 0, bytes: 0 });
  });
});

describe('the data folder of the operator verbs', () => {
  it('is --data-dir, else $HISP_DATA_DIR, else ./hisp-data', async () => {
    const elsewhere = await hisp(['queue', 'list', '--json', '--data-dir', dataDir], {});
    expect(elsewhere.status).toBe(0);
    const fromEnv = await hisp(['status', ids.b, '--json'], { HISP_DATA_DIR: dataDir });
    expect(json<MessageReport>(fromEnv).queueId).toBe(ids.b);
    const envMissing = await hisp(['status', ids.b], { HISP_DATA_DIR: join(work, 'not-there') });
    expect(envMissing.status).toBe(1);
    expect(envMissing.stderr).toContain(`no hisp data folder at ${join(work, 'not-there')}`);
  });

  it("is the configuration's dataDir with --config", async () => {
    const q = JSON.stringify;
    const config = join(work, 'hisp.toml');
    writeFileSync(
      config,
      `dataDir = "hisp-data"
[submission]
requireTls = false
[[domains]]
name = "sender.test"
[[domains.credentials]]
key = ${q(credentialPaths('sender-domain').key)}
cert = ${q(credentialPaths('sender-domain').chain ?? '')}
[domains.anchors]
incoming = [${q(credentialPaths('root-ca').cert)}]
outgoing = [${q(credentialPaths('root-ca').cert)}]
`,
    );
    const [flag, fromEnv, overridden, dataDirWins] = await Promise.all([
      hisp(['status', ids.b, '--json', '--config', config]),
      hisp(['status', ids.b, '--json'], { HISP_CONFIG: config }),
      // As for hisp start, $HISP_DATA_DIR overrides the configuration's dataDir…
      hisp(['status', ids.b], { HISP_CONFIG: config, HISP_DATA_DIR: join(work, 'not-there') }),
      // …and an explicit --data-dir beats $HISP_CONFIG.
      hisp(['status', ids.b, '--data-dir', join(work, 'not-there')], { HISP_CONFIG: config }),
    ]);
    expect(flag.status, flag.stderr).toBe(0);
    expect(json<MessageReport>(flag).queueId).toBe(ids.b);
    expect(json<MessageReport>(fromEnv).queueId).toBe(ids.b);
    expect(overridden.stderr).toContain(`no hisp data folder at ${join(work, 'not-there')}`);
    expect(dataDirWins.stderr).toContain(`no hisp data folder at ${join(work, 'not-there')}`);
  });

  it('an invalid configuration says how to reach the data folder anyway', async () => {
    const broken = join(work, 'broken.toml');
    writeFileSync(broken, 'dataDir = "hisp-data"\n');
    const r = await hisp(['queue', 'list', '--config', broken]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('HISP_CONFIG_INVALID');
    expect(r.stderr).toContain('give --data-dir DIR instead of --config');
  });

  it('a missing data folder is a clear error (exit 1), and is not created', async () => {
    const missing = join(work, 'missing');
    const r = await hisp(['queue', 'list', '--data-dir', missing]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`no hisp data folder at ${missing}`);
    expect(existsSync(missing)).toBe(false);
    const j = await hisp(['quarantine', 'list', '--data-dir', missing, '--json']);
    expect(j.status).toBe(1);
    expect(json<{ error: { code: string; reason: string } }>(j).error).toMatchObject({ code: 'HISP_IO', reason: expect.stringContaining('no hisp data folder') as unknown });
    expect(existsSync(missing)).toBe(false);
  });

  it('a folder without a database is one too', async () => {
    const empty = join(work, 'empty');
    mkdirSync(empty);
    const r = await hisp(['status', 'x', '--data-dir', empty]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`no hisp data folder at ${empty}: it has no hisp.sqlite`);
    expect(existsSync(join(empty, 'hisp.sqlite'))).toBe(false);
  });
});

describe('--help of the operator verbs', () => {
  it.each([
    [['status'], ['<message-id>', '--json', '--config <file>', '--data-dir <dir>']],
    [['queue', 'list'], ['--state <state>', '--direction <direction>', '--limit <n>', '--json', '--config <file>', '--data-dir <dir>']],
    [['queue', 'retry'], ['[queue-id]', '--json', '--data-dir <dir>']],
    [['queue', 'bounce'], ['<queue-id>', '--reason <text>', '--json', '--data-dir <dir>']],
    [['quarantine', 'list'], ['--limit <n>', '--json', '--data-dir <dir>']],
    [['quarantine', 'show'], ['<id>', '--raw', '--json', '--data-dir <dir>']],
    [['quarantine', 'delete'], ['<id>', '--json', '--data-dir <dir>']],
    [['quarantine', 'purge'], ['--older-than <days>', '--all', '--reason <code>', '--dry-run', '--json', '--data-dir <dir>']],
  ])('hisp %s --help lists its flags', async (verb, flags) => {
    const r = await hisp([...verb, '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`Usage: hisp ${verb.join(' ')}`);
    for (const f of flags) expect(r.stdout).toContain(f);
  });

  it('hisp --help lists the verbs', async () => {
    const r = await hisp(['--help']);
    for (const v of ['status', 'queue', 'quarantine']) expect(r.stdout).toMatch(new RegExp(`^  ${v} `, 'm'));
  });
});

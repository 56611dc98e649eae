import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HispDatabase } from '../store/database.js';
import { MessageStore, type MessageEnvelope } from '../store/message-store.js';
import { QuarantineStore } from '../store/quarantine-store.js';
import type { Delivery, RemoteReply } from './outbound-queue.js';
import { SqliteQueue } from './sqlite-queue.js';

let dir: string;
let db: HispDatabase;
let clock: number;
let queue: SqliteQueue;
const T0 = Date.UTC(2026, 0, 1, 12);
const MINUTE = 60_000;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-queue-'));
  db = HispDatabase.open({ dataDir: dir });
  clock = T0;
  queue = new SqliteQueue(db, { now: () => clock });
});

afterEach(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

function envelope(recipients: string[], extra: Partial<MessageEnvelope> = {}): MessageEnvelope {
  return { direction: 'outbound', mailFrom: 'doctor@hospital.example', recipients, messageId: '<m1@hospital.example>', ...extra };
}
const body = Buffer.from('Subject: results\r\n\r\nhello\r\n');
const ok: RemoteReply = { code: 250, enhanced: '2.0.0', text: 'queued as 42' };
const busy: RemoteReply = { code: 451, enhanced: '4.3.0', text: 'try later' };
const unknown: RemoteReply = { code: 550, enhanced: '5.1.1', text: 'no such user' };

async function leaseOne(worker = 'w1', leaseMs = MINUTE): Promise<Delivery> {
  const [d] = await queue.lease(1, worker, leaseMs);
  if (d === undefined) throw new Error('nothing to lease');
  return d;
}

async function stateOf(queueId: string, seq = 0) {
  const status = await queue.get(queueId);
  const d = status?.deliveries.find((x) => x.seq === seq);
  if (d === undefined) throw new Error('no delivery');
  return d;
}

describe('SqliteQueue.enqueue', () => {
  it('stores the body once and one queued delivery per recipient (a repeated recipient counts once), due now', async () => {
    const id = await queue.enqueue(envelope(['a@phr.example', 'b@other.example', 'A@PHR.example']), body);
    expect(await queue.body(id)).toEqual(body);
    expect(db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(1);
    const status = await queue.get(id);
    expect(status?.recipients).toEqual(['a@phr.example', 'b@other.example', 'A@PHR.example']);
    expect(status?.deliveries.map((d) => [d.seq, d.recipient, d.domain, d.state, d.attempts, d.nextAttemptAt])).toEqual([
      [0, 'a@phr.example', 'phr.example', 'queued', 0, new Date(T0)],
      [1, 'b@other.example', 'other.example', 'queued', 0, new Date(T0)],
    ]);
  });

  it('is atomic: when the work committed with it throws, neither the message, its deliveries nor its body (a file here) remain', async () => {
    const queue = new SqliteQueue(db, { messages: new MessageStore(db, { inlineMaxBytes: 0 }) });
    await expect(
      queue.enqueue(envelope(['a@phr.example']), body, {
        withinCommit: () => {
          throw new Error('DSN bookkeeping failed');
        },
      }),
    ).rejects.toThrow('DSN bookkeeping failed');
    expect(db.sqlite.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(0);
    expect(db.sqlite.prepare('SELECT count(*) FROM deliveries').pluck().get()).toBe(0);
    expect(readdirSync(join(dir, 'messages'))).toEqual([]);
  });

  it('withinCommit writes commit with the message', async () => {
    const id = await queue.enqueue(envelope(['a@phr.example']), body, {
      withinCommit: (m) => db.sqlite.prepare("INSERT INTO quarantine (queue_id, reason_code, detail, quarantined_at) VALUES (?, 'X', 'y', 0)").run(m.queueId),
    });
    expect(db.sqlite.prepare('SELECT queue_id FROM quarantine').pluck().get()).toBe(id);
  });

  it('deliverTo limits the deliveries to some recipients (inbound de-duplication)', async () => {
    const id = await queue.enqueue(envelope(['a@phr.example', 'b@phr.example'], { direction: 'inbound' }), body, {
      deliverTo: ['b@phr.example'],
    });
    expect((await queue.get(id))?.deliveries.map((d) => d.recipient)).toEqual(['b@phr.example']);
  });

  it('enqueueMany stores several messages in one commit', async () => {
    const ids = await queue.enqueueMany([
      { envelope: envelope(['a@phr.example']), body },
      { envelope: envelope(['b@phr.example', 'c@phr.example']), body: Buffer.from('second') },
    ]);
    expect(ids).toHaveLength(2);
    expect(await queue.body(ids[1] as string)).toEqual(Buffer.from('second'));
    expect((await queue.get(ids[1] as string))?.deliveries).toHaveLength(2);
  });

  it('many concurrent enqueues all resolve, each with its own message', async () => {
    const ids = await Promise.all(Array.from({ length: 50 }, (_, i) => queue.enqueue(envelope([`p${i}@phr.example`]), Buffer.from(`body ${i}`))));
    expect(new Set(ids).size).toBe(50);
    for (const [i, id] of ids.entries()) expect((await queue.body(id)).toString()).toBe(`body ${i}`);
  });
});

describe('SqliteQueue.enqueueLeased', () => {
  it('stores the message with its deliveries leased to the worker it is handed to: others do not take them, it completes them', async () => {
    const { message, deliveries } = await queue.enqueueLeased(envelope(['a@phr.example', 'B@phr.example', 'a@PHR.example']), body, 'relay-1', MINUTE);
    expect(message.recipients).toEqual(['a@phr.example', 'B@phr.example', 'a@PHR.example']);
    expect(deliveries).toEqual([
      expect.objectContaining({ seq: 0, recipient: 'a@phr.example', domain: 'phr.example', attempt: 1, attempts: 0, leaseOwner: 'relay-1', leaseUntil: new Date(T0 + MINUTE), lastReply: null }),
      expect.objectContaining({ seq: 1, recipient: 'B@phr.example', attempt: 1, leaseOwner: 'relay-1' }),
    ]);
    // The same deliveries lease() would have given: a poller finds nothing while the lease runs.
    expect(await queue.lease(10, 'w2', MINUTE)).toEqual([]);
    expect(await queue.complete(deliveries[0]!, ok)).toBe(true);
    expect(await queue.defer(deliveries[1]!, busy, new Date(T0 + 5 * MINUTE))).toBe(true);
    expect((await stateOf(message.queueId, 0)).state).toBe('delivered');
    expect(await stateOf(message.queueId, 1)).toMatchObject({ state: 'queued', attempts: 1, lastReply: busy });
  });

  it('deliveries handed to a worker of a process that died are due again at the next start (releaseAll), or when the lease expires', async () => {
    const { message } = await queue.enqueueLeased(envelope(['a@phr.example']), body, 'relay-dead', MINUTE);
    clock += MINUTE + 1;
    const taken = await leaseOne('w2');
    expect(taken.queueId).toBe(message.queueId);
    expect(await queue.complete(taken, ok)).toBe(true);
    const second = await queue.enqueueLeased(envelope(['b@phr.example']), body, 'relay-dead', MINUTE);
    expect(await db.batch(() => queue.deliveries.releaseAll(clock))).toBeGreaterThanOrEqual(1);
    expect((await leaseOne('w3')).queueId).toBe(second.message.queueId);
  });
});

describe('SqliteQueue.lease', () => {
  it('claims due deliveries with the envelope a worker needs, and not again while the lease runs', async () => {
    const id = await queue.enqueue(envelope(['a@phr.example'], { submittedBy: 'ehr' }), body);
    const [d, ...rest] = await queue.lease(10, 'w1', MINUTE);
    expect(rest).toEqual([]);
    expect(d).toMatchObject({
      queueId: id,
      seq: 0,
      recipient: 'a@phr.example',
      domain: 'phr.example',
      mailFrom: 'doctor@hospital.example',
      messageId: 'm1@hospital.example',
      direction: 'outbound',
      submittedBy: 'ehr',
      receivedAt: new Date(T0),
      attempts: 0,
      attempt: 1,
      leaseOwner: 'w1',
      leaseUntil: new Date(T0 + MINUTE),
      lastReply: null,
    });
    expect(await queue.lease(10, 'w2', MINUTE)).toEqual([]);
    expect(await stateOf(id)).toMatchObject({ leasedBy: 'w1', leasedUntil: new Date(T0 + MINUTE), nextAttemptAt: null });
  });

  it('a lease that expires (the worker died) makes the delivery due again, with the next attempt number', async () => {
    await queue.enqueue(envelope(['a@phr.example']), body);
    const first = await leaseOne('w1', MINUTE);
    clock += MINUTE - 1;
    expect(await queue.lease(1, 'w2', MINUTE)).toEqual([]);
    clock += 1;
    const second = await leaseOne('w2', MINUTE);
    expect(second.id).toBe(first.id);
    expect(second.attempt).toBe(2);
    expect(second.attempts).toBe(0);
  });

  it('does not claim deliveries whose next try is in the future', async () => {
    const id = await queue.enqueue(envelope(['a@phr.example']), body);
    const d = await leaseOne();
    await queue.defer(d, busy, new Date(T0 + 5 * MINUTE));
    clock = T0 + 5 * MINUTE - 1;
    expect(await queue.lease(10, 'w1', MINUTE)).toEqual([]);
    clock = T0 + 5 * MINUTE;
    expect((await leaseOne()).queueId).toBe(id);
  });

  it('claims the earliest due first, and whole (message, domain) groups: one secured copy per recipient domain', async () => {
    const early = await queue.enqueue(envelope(['a@x.example', 'b@X.example', 'c@y.example']), body);
    clock += 1000;
    const late = await queue.enqueue(envelope(['d@x.example']), body);
    const group = await queue.lease(1, 'w1', MINUTE);
    expect(group.map((d) => [d.queueId, d.recipient])).toEqual([
      [early, 'a@x.example'],
      [early, 'b@X.example'],
    ]);
    expect((await queue.lease(1, 'w2', MINUTE)).map((d) => [d.queueId, d.recipient])).toEqual([[early, 'c@y.example']]);
    expect((await queue.lease(5, 'w3', MINUTE)).map((d) => [d.queueId, d.recipient])).toEqual([[late, 'd@x.example']]);
  });

  it('relay workers lease outbound deliveries, local delivery inbound ones', async () => {
    const outbound = await queue.enqueue(envelope(['a@phr.example']), body);
    const inbound = await queue.enqueue(envelope(['me@local.example'], { direction: 'inbound' }), body);
    expect((await queue.lease(10, 'relay', MINUTE)).map((d) => d.queueId)).toEqual([outbound]);
    expect((await queue.lease(10, 'local', MINUTE, 'inbound')).map((d) => [d.queueId, d.direction])).toEqual([[inbound, 'inbound']]);
  });

  it('claims at most about n deliveries', async () => {
    for (let i = 0; i < 10; i++) await queue.enqueue(envelope([`r${i}@phr${i}.example`]), body);
    expect(await queue.lease(4, 'w1', MINUTE)).toHaveLength(4);
    expect(await queue.lease(0, 'w1', MINUTE)).toEqual([]);
    expect(await queue.lease(100, 'w1', MINUTE)).toHaveLength(6);
  });
});

describe('SqliteQueue transitions', () => {
  it('complete: delivered, with the time and the remote reply; repeated by the same attempt it stays true and changes nothing', async () => {
    const id = await queue.enqueue(envelope(['a@phr.example']), body);
    const d = await leaseOne();
    clock += 2000;
    expect(await queue.complete(d, ok)).toBe(true);
    const after = await stateOf(id);
    expect(after).toMatchObject({
      state: 'delivered',
      attempts: 1,
      leases: 1,
      finishedAt: new Date(T0 + 2000),
      lastAttemptAt: new Date(T0 + 2000),
      lastReply: ok,
      nextAttemptAt: null,
      leasedBy: null,
    });
    clock += 2000;
    expect(await queue.complete(d, ok)).toBe(true);
    expect(await stateOf(id)).toEqual(after);
    expect(await queue.lease(10, 'w1', MINUTE)).toEqual([]);
  });

  it('a worker whose lease expired may still complete (the message went out); the new holder then cannot complete it again', async () => {
    const id = await queue.enqueue(envelope(['a@phr.example']), body);
    const stale = await leaseOne('w1', 1000);
    clock += 1000;
    const current = await leaseOne('w2', 1000);
    expect(await queue.complete(stale, ok)).toBe(true);
    expect(await queue.complete(current, ok)).toBe(false);
    expect(await queue.defer(current, busy, new Date(clock + MINUTE))).toBe(false);
    expect(await stateOf(id)).toMatchObject({ state: 'delivered', attempts: 1 });
    expect(db.sqlite.prepare('SELECT completed_lease FROM deliveries').pluck().get()).toBe(1);
  });

  it('defer: keeps the remote reply, counts the attempt and waits until the given time', async () => {
    const id = await queue.enqueue(envelope(['a@phr.example']), body);
    const d = await leaseOne();
    expect(await queue.defer(d, busy, new Date(T0 + 5 * MINUTE))).toBe(true);
    expect(await stateOf(id)).toMatchObject({
      state: 'queued',
      attempts: 1,
      lastReply: busy,
      lastAttemptAt: new Date(T0),
      nextAttemptAt: new Date(T0 + 5 * MINUTE),
      leasedBy: null,
    });
    expect(await queue.defer(d, busy, new Date(T0 + 9 * MINUTE))).toBe(false); // repeated: the lease is gone
    clock = T0 + 5 * MINUTE;
    const again = await leaseOne();
    expect(again).toMatchObject({ attempts: 1, attempt: 2, lastReply: busy });
  });

  it('defer, fail, release and extend need the current lease', async () => {
    await queue.enqueue(envelope(['a@phr.example']), body);
    const stale = await leaseOne('w1', 1000);
    clock += 1000;
    await leaseOne('w2', 1000);
    expect(await queue.defer(stale, busy, new Date(clock))).toBe(false);
    expect(await queue.fail(stale, unknown)).toBe(false);
    expect(await queue.release(stale)).toBe(false);
    expect(await queue.extendLease(stale, MINUTE)).toBe(false);
  });

  it('fail: failed with the reply, and listed as waiting for its DSN until marked', async () => {
    const id = await queue.enqueue(envelope(['a@phr.example', 'b@phr.example']), body);
    const [a, b] = await queue.lease(1, 'w1', MINUTE);
    expect(await queue.fail(a as Delivery, unknown)).toBe(true);
    expect(await queue.complete(b as Delivery, ok)).toBe(true);
    expect(await queue.fail(a as Delivery, unknown)).toBe(false);
    expect(await stateOf(id, 0)).toMatchObject({ state: 'failed', attempts: 1, lastReply: unknown, finishedAt: new Date(T0) });
    const pending = await queue.pendingDsn();
    expect(pending.map((p) => [p.message.queueId, p.delivery.recipient, p.delivery.lastReply])).toEqual([[id, 'a@phr.example', unknown]]);
    expect(queue.markDsnQueued([(a as Delivery).id, (b as Delivery).id])).toBe(1);
    expect(await queue.pendingDsn()).toEqual([]);
    expect((await stateOf(id, 0)).dsnQueuedAt).toEqual(new Date(T0));
  });

  it('pendingDsn and lease return at most the number asked for, oldest first', async () => {
    const first = await queue.enqueue(envelope(['a@phr.example']), body);
    clock += 1;
    await queue.enqueue(envelope(['b@phr.example']), body);
    clock += 1;
    await queue.enqueue(envelope(['c@phr.example']), body);
    const one = await queue.lease(1, 'w1', MINUTE);
    expect(one.map((d) => d.queueId)).toEqual([first]);
    const two = await queue.lease(2, 'w1', MINUTE);
    expect(two).toHaveLength(2);
    for (const d of [...one, ...two]) expect(await queue.fail(d, unknown)).toBe(true);
    expect((await queue.pendingDsn(1)).map((p) => p.delivery.recipient)).toEqual(['a@phr.example']);
    expect((await queue.pendingDsn(2)).map((p) => p.delivery.recipient)).toEqual(['a@phr.example', 'b@phr.example']);
    expect(await queue.pendingDsn()).toHaveLength(3);
  });

  it('release: gives the lease back, due now, without counting an attempt', async () => {
    const id = await queue.enqueue(envelope(['a@phr.example']), body);
    const d = await leaseOne();
    clock += 500;
    expect(await queue.release(d)).toBe(true);
    expect(await stateOf(id)).toMatchObject({ state: 'queued', attempts: 0, nextAttemptAt: new Date(T0 + 500), leasedBy: null });
    expect((await leaseOne('w2')).attempt).toBe(2);
  });

  it('extendLease keeps a long transfer from being leased by another worker', async () => {
    await queue.enqueue(envelope(['a@phr.example']), body);
    const d = await leaseOne('w1', 1000);
    clock += 900;
    expect(await queue.extendLease(d, 1000)).toBe(true);
    clock += 900;
    expect(await queue.lease(1, 'w2', 1000)).toEqual([]);
    expect(await queue.complete(d, ok)).toBe(true);
  });
});

describe('SqliteQueue operator actions', () => {
  it('retry(id) makes the waiting deliveries of a message due now, leaving one in flight alone', async () => {
    const id = await queue.enqueue(envelope(['a@phr.example', 'b@other.example']), body);
    const [a] = await queue.lease(1, 'w1', MINUTE); // a@phr.example
    await queue.defer(a as Delivery, busy, new Date(T0 + 60 * MINUTE));
    const inFlight = await leaseOne('w2'); // b@other.example
    expect(inFlight.recipient).toBe('b@other.example');
    clock += 1000;
    expect(await queue.retry(id)).toBe(1);
    expect(await stateOf(id, 0)).toMatchObject({ nextAttemptAt: new Date(T0 + 1000) });
    expect(await stateOf(id, 1)).toMatchObject({ leasedBy: 'w2' });
    expect((await leaseOne('w3')).recipient).toBe('a@phr.example');
    expect(await queue.retry('no-such-id')).toBe(0);
  });

  it('retry() without an id flushes every waiting delivery', async () => {
    for (let i = 0; i < 3; i++) {
      await queue.enqueue(envelope([`r${i}@phr.example`]), body);
      await queue.defer(await leaseOne(), busy, new Date(T0 + 60 * MINUTE));
    }
    expect(await queue.retry()).toBe(3);
    expect(await queue.lease(10, 'w1', MINUTE)).toHaveLength(3);
  });

  it('bounce(id, reason) fails the waiting deliveries with 554 5.0.0, the reason and the last remote reply; delivered and in-flight ones stay', async () => {
    const id = await queue.enqueue(envelope(['a@x.example', 'b@y.example', 'c@z.example']), body);
    const [a] = await queue.lease(1, 'w1', MINUTE);
    await queue.defer(a as Delivery, busy, new Date(T0 + 60 * MINUTE));
    const [b] = await queue.lease(1, 'w1', MINUTE);
    await queue.complete(b as Delivery, ok);
    await leaseOne('w2'); // c@z.example in flight
    expect(await queue.bounce(id, 'stuck for days')).toBe(1);
    const status = await queue.get(id);
    expect(status?.deliveries.map((d) => d.state)).toEqual(['failed', 'delivered', 'queued']);
    expect(status?.deliveries[0]?.lastReply).toEqual({
      code: 554,
      enhanced: '5.0.0',
      text: 'bounced by the operator: stuck for days (last reply: 451 4.3.0 try later)',
    });
    expect((await queue.pendingDsn()).map((p) => p.delivery.recipient)).toEqual(['a@x.example']);
  });
});

describe('SqliteQueue.list and get', () => {
  it('lists messages by the state of their deliveries, each with only the matching deliveries', async () => {
    const waiting = await queue.enqueue(envelope(['a@x.example']), body);
    const deferred = await queue.enqueue(envelope(['b@y.example']), body);
    const leased = await queue.enqueue(envelope(['c@z.example']), body);
    const mixed = await queue.enqueue(envelope(['d@v.example', 'e@w.example']), body);
    const inbound = await queue.enqueue(envelope(['f@local.example'], { direction: 'inbound' }), body);
    const leases = [...(await queue.lease(10, 'w1', MINUTE)), ...(await queue.lease(10, 'local', MINUTE, 'inbound'))];
    const by = (r: string) => leases.find((d) => d.recipient === r) as Delivery;
    await queue.release(by('a@x.example'));
    await queue.defer(by('b@y.example'), busy, new Date(T0 + MINUTE));
    await queue.complete(by('d@v.example'), ok);
    await queue.fail(by('e@w.example'), unknown);
    await queue.release(by('f@local.example'));

    const ids = async (state?: Parameters<SqliteQueue['list']>[0]) => (await queue.list(state)).map((m) => [m.queueId, m.deliveries.map((d) => d.recipient)]);
    expect(await ids({ state: 'queued', direction: 'outbound' })).toEqual([
      [waiting, ['a@x.example']],
      [deferred, ['b@y.example']],
      [leased, ['c@z.example']],
    ]);
    expect(await ids({ state: 'deferred' })).toEqual([[deferred, ['b@y.example']]]);
    expect(await ids({ state: 'leased' })).toEqual([[leased, ['c@z.example']]]);
    expect(await ids({ state: 'delivered' })).toEqual([[mixed, ['d@v.example']]]);
    expect(await ids({ state: 'failed' })).toEqual([[mixed, ['e@w.example']]]);
    expect(await ids({ direction: 'inbound' })).toEqual([[inbound, ['f@local.example']]]);
    expect(await ids({ limit: 2 })).toHaveLength(2);
  });

  it('get() finds a message by queue id, or the newest with a Message-ID', async () => {
    const older = await queue.enqueue(envelope(['a@x.example']), body);
    clock += 1000;
    const newer = await queue.enqueue(envelope(['a@x.example']), body);
    expect((await queue.get(older))?.queueId).toBe(older);
    expect((await queue.get('<m1@hospital.example>'))?.queueId).toBe(newer);
    expect(await queue.get('unknown@nowhere')).toBeUndefined();
  });
});

describe('SqliteQueue.purge', () => {
  it('deletes messages final before the date (failed ones only once their DSN is queued), not queued or quarantined ones', async () => {
    const delivered = await queue.enqueue(envelope(['a@x.example']), body);
    await queue.complete(await leaseOne(), ok);
    const failedNoDsn = await queue.enqueue(envelope(['b@x.example']), body);
    await queue.fail(await leaseOne(), unknown);
    const failedWithDsn = await queue.enqueue(envelope(['c@x.example']), body);
    const f = await leaseOne();
    await queue.fail(f, unknown);
    queue.markDsnQueued([f.id]);
    const stillQueued = await queue.enqueue(envelope(['d@x.example']), body);
    const quarantined = await new QuarantineStore(db, queue.messages, { now: () => clock }).store(
      envelope(['e@x.example'], { direction: 'inbound' }),
      body,
      'HISP_SIG_INVALID',
      'bad signature',
    );
    expect(await queue.purge(new Date(T0))).toBe(0); // finished at T0: not before T0
    clock += 1000;
    expect(await queue.purge(new Date(clock))).toBe(2);
    for (const gone of [delivered, failedWithDsn]) {
      expect(queue.messages.get(gone)).toBeUndefined();
      expect(existsSync(queue.messages.bodyPath(gone))).toBe(false);
    }
    for (const kept of [failedNoDsn, stillQueued, quarantined]) expect(queue.messages.get(kept)).toBeDefined();
  });
});

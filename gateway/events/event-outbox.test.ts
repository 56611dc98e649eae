import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Delivery } from '../queue/outbound-queue.js';
import { SqliteQueue } from '../queue/sqlite-queue.js';
import { HispDatabase } from '../store/database.js';
import type { MessageEnvelope } from '../store/message-store.js';
import { TrackingStore } from '../store/tracking-store.js';
import { EventOutbox } from './event-outbox.js';
import { recipientStatuses } from './message-status.js';

let dir: string;
let db: HispDatabase;
let clock: number;
let queue: SqliteQueue;
let tracking: TrackingStore;
let outbox: EventOutbox;
const T0 = Date.UTC(2026, 0, 1, 12);
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const body = Buffer.from('Subject: results\r\n\r\nhello\r\n');
const HOSPITAL = { sent: ['@hospital.example'], received: [] };

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-events-'));
  db = HispDatabase.open({ dataDir: dir });
  clock = T0;
  queue = new SqliteQueue(db, { now: () => clock });
  tracking = new TrackingStore(db);
  outbox = new EventOutbox(db);
});

afterEach(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

function envelope(recipients: string[], extra: Partial<MessageEnvelope> = {}): MessageEnvelope {
  return { direction: 'outbound', mailFrom: 'Doctor@Hospital.example', recipients, messageId: '<m1@hospital.example>', ...extra };
}

async function leaseAll(): Promise<Delivery[]> {
  return queue.lease(10, 'w1', MINUTE);
}

function track(d: Delivery): void {
  tracking.track({
    queueId: d.queueId,
    messageId: '<m1@hospital.example>',
    recipient: d.recipient,
    sender: 'doctor@hospital.example',
    sentAt: new Date(clock),
    processedTimeoutMs: HOUR,
    dispatchedTimeoutMs: HOUR,
    dispatchedRequested: true,
  });
}

describe('the event outbox: every state change of a recipient, written in the commit of the change', () => {
  it('queued → relayed → processed → dispatched, each with its time and evidence; the timeline folds to dispatched', async () => {
    const id = await queue.enqueue(envelope(['patient@phr.example']), body);
    const [d] = await leaseAll();
    clock += MINUTE;
    await db.batch(() => {
      queue.deliveries.complete(d!, { code: 250, enhanced: '2.0.0', text: 'queued as 42' }, clock);
      track(d!);
    });
    clock += MINUTE;
    await db.batch(() => tracking.record('m1@hospital.example', 'patient@phr.example', 'processed', new Date(clock), undefined, { messageId: '<mdn1@phr.example>', via: 'mdn' }));
    clock += MINUTE;
    await db.batch(() => tracking.record('m1@hospital.example', 'patient@phr.example', 'dispatched', new Date(clock), undefined, { messageId: '<mdn2@phr.example>', via: 'mdn' }));

    const events = outbox.after(0, HOSPITAL);
    expect(events.map((e) => [e.type, e.data.state, e.timestamp])).toEqual([
      ['message.queued', 'queued', new Date(T0).toISOString()],
      ['message.relayed', 'relayed', new Date(T0 + MINUTE).toISOString()],
      ['message.processed', 'processed', new Date(T0 + 2 * MINUTE).toISOString()],
      ['message.dispatched', 'dispatched', new Date(T0 + 3 * MINUTE).toISOString()],
    ]);
    expect(events[1]?.data.evidence).toEqual({ reply: '250 2.0.0 queued as 42' });
    expect(events[2]?.data.evidence).toEqual({ mdnMessageId: 'mdn1@phr.example' });
    expect(events[3]?.data).toMatchObject({ id, messageId: 'm1@hospital.example', recipient: 'patient@phr.example' });
    expect(new Set(events.map((e) => e.id)).size).toBe(4);
    expect(events.map((e) => Number(e.cursor))).toEqual([...events.map((e) => Number(e.cursor))].sort((a, b) => a - b));

    const status = await queue.get(id);
    const [r] = recipientStatuses(status!.recipients, outbox.forMessage(id), status!.deliveries);
    expect(r).toMatchObject({ address: 'patient@phr.example', state: 'dispatched', updatedAt: new Date(T0 + 3 * MINUTE).toISOString() });
    expect(r?.transitions.map((t) => t.state)).toEqual(['queued', 'relayed', 'processed', 'dispatched']);
  });

  it('a failure carries its reason: discovery (no-certificate), give-up (expired), operator (bounced), time-out, failure MDN, DSN', async () => {
    const id = await queue.enqueue(envelope(['a@nocert.example', 'b@slow.example', 'c@phr.example', 'd@phr.example', 'e@phr.example']), body);
    const [a, b, c, dd, e] = await leaseAll();
    await db.batch(() => queue.deliveries.fail(a!, { code: 554, enhanced: '5.7.5', text: 'no certificate [HISP_DISCOVERY_NO_CERT]', reason: 'no-certificate' }, clock));
    await db.batch(() => queue.deliveries.fail(b!, { code: 451, enhanced: '4.4.1', text: 'connection refused', reason: 'expired' }, clock));
    for (const x of [c!, dd!, e!]) {
      await db.batch(() => {
        queue.deliveries.complete(x, { code: 250, text: 'ok' }, clock);
        track(x);
      });
    }
    // c: no MDN at all within the hour.
    clock += HOUR + 1;
    const due = tracking.dueTimeouts(new Date(clock)).find((t) => t.entry.recipient === 'c@phr.example');
    await db.batch(() => tracking.markTimedOut(due!.id, new Date(clock)));
    await db.batch(() => tracking.record('m1@hospital.example', 'd@phr.example', 'failed', new Date(clock), undefined, { messageId: '<fail@phr.example>', via: 'mdn' }));
    await db.batch(() => tracking.record('m1@hospital.example', 'e@phr.example', 'failed', new Date(clock), undefined, { messageId: '<dsn@mta.example>', via: 'dsn' }));
    // A processed MDN for c after its time-out: in the timeline, flagged late; c stays failed.
    await db.batch(() => tracking.record('m1@hospital.example', 'c@phr.example', 'processed', new Date(clock + 1), undefined, { messageId: '<late@phr.example>', via: 'mdn' }));

    const status = await queue.get(id);
    const byAddress = new Map(recipientStatuses(status!.recipients, outbox.forMessage(id), status!.deliveries).map((r) => [r.address, r]));
    expect(byAddress.get('a@nocert.example')).toMatchObject({ state: 'failed', reason: 'no-certificate', detail: '554 5.7.5 no certificate [HISP_DISCOVERY_NO_CERT]' });
    expect(byAddress.get('b@slow.example')).toMatchObject({ state: 'failed', reason: 'expired' });
    expect(byAddress.get('c@phr.example')).toMatchObject({ state: 'failed', reason: 'processed-timeout' });
    expect(byAddress.get('c@phr.example')?.transitions.at(-1)).toMatchObject({ state: 'processed', late: true, evidence: { mdnMessageId: 'late@phr.example' } });
    expect(byAddress.get('d@phr.example')).toMatchObject({ state: 'failed', reason: 'failure-mdn' });
    expect(byAddress.get('d@phr.example')?.transitions.at(-1)?.evidence).toEqual({ mdnMessageId: 'fail@phr.example' });
    expect(byAddress.get('e@phr.example')).toMatchObject({ state: 'failed', reason: 'dsn' });
    expect(byAddress.get('e@phr.example')?.transitions.at(-1)?.evidence).toEqual({ dsnMessageId: 'dsn@mta.example' });

    const id2 = await queue.enqueue(envelope(['f@phr.example']), body);
    await queue.bounce(id2, 'wrong patient');
    const status2 = await queue.get(id2);
    expect(recipientStatuses(status2!.recipients, outbox.forMessage(id2), status2!.deliveries)[0]).toMatchObject({ state: 'failed', reason: 'bounced' });
  });

  it('a change rolled back announces nothing, and our own notices (null reverse-path) are no events', async () => {
    await queue.enqueue(envelope(['patient@phr.example']), body);
    const [d] = await leaseAll();
    await expect(
      db.batch(() => {
        expect(queue.deliveries.fail(d!, { code: 554, text: 'no', reason: 'untrusted' }, clock)).toBe(true);
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    expect(outbox.after(0, HOSPITAL).map((e) => e.type)).toEqual(['message.queued']);
    const before = outbox.last();
    await queue.enqueue(envelope(['doctor@hospital.example'], { mailFrom: '' }), body);
    expect(outbox.last()).toBe(before);
  });

  it('a reader sees only its scope and what came after its cursor, at most the limit', async () => {
    await queue.enqueue(envelope(['p1@phr.example']), body);
    await queue.enqueue(envelope(['p2@phr.example'], { mailFrom: 'nurse@clinic.example' }), body);
    await queue.enqueue(envelope(['p3@phr.example', 'p4@phr.example']), body);
    const mine = outbox.after(0, HOSPITAL);
    expect(mine.map((e) => e.data.recipient)).toEqual(['p1@phr.example', 'p3@phr.example', 'p4@phr.example']);
    expect(outbox.after(Number(mine[0]!.cursor), HOSPITAL).map((e) => e.data.recipient)).toEqual(['p3@phr.example', 'p4@phr.example']);
    expect(outbox.after(0, HOSPITAL, 1)).toHaveLength(1);
    expect(outbox.after(0, { sent: ['nurse@clinic.example'], received: [] }).map((e) => e.data.recipient)).toEqual(['p2@phr.example']);
    expect(outbox.after(0, { sent: ['other@hospital.example'], received: [] })).toEqual([]);
    expect(outbox.after(0, { sent: [], received: [] })).toEqual([]);
    expect(outbox.after(0, HOSPITAL, 10, ['message.failed'])).toEqual([]);
  });

  it('a message delivered to a local mailbox is a message.received event of that mailbox', async () => {
    await queue.enqueue(envelope(['Patient@PHR.example'], { direction: 'inbound', mailFrom: 'doctor@hospital.example' }), body);
    const [d] = await queue.lease(1, 'r1', MINUTE, 'inbound');
    await db.batch(() => queue.deliveries.complete(d!, { code: 250, text: 'delivered' }, clock));
    expect(outbox.after(0, HOSPITAL)).toEqual([]);
    expect(outbox.after(0, { sent: ['@phr.example'], received: [] })).toEqual([]);
    const received = outbox.after(0, { sent: [], received: ['@phr.example'] });
    expect(received.map((e) => [e.type, e.data.recipient, e.data.from])).toEqual([['message.received', 'Patient@PHR.example', 'doctor@hospital.example']]);
  });
});

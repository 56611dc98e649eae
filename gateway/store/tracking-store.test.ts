import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HispDatabase } from './database.js';
import { TrackingStore, type TrackOptions } from './tracking-store.js';

let dir: string;
let db: HispDatabase;
let tracking: TrackingStore;
const HOUR = 3_600_000;
const SENT = Date.UTC(2026, 0, 1, 12);
const at = (ms: number) => new Date(SENT + ms);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-tracking-'));
  db = HispDatabase.open({ dataDir: dir });
  tracking = new TrackingStore(db);
});

afterEach(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

function track(extra: Partial<TrackOptions> = {}): void {
  tracking.track({
    queueId: 'q1',
    messageId: '<m1@hospital.example>',
    recipient: 'Patient@PHR.example',
    sender: 'doctor@hospital.example',
    sentAt: new Date(SENT),
    processedTimeoutMs: HOUR,
    dispatchedTimeoutMs: HOUR,
    dispatchedRequested: true,
    ...extra,
  });
}

const record = (kind: 'processed' | 'dispatched' | 'failed', ms: number) => tracking.record('m1@hospital.example', 'patient@phr.example', kind, at(ms));

describe('TrackingStore: timely and reliable (dispatched requested)', () => {
  it('waits for processed until sent + timeout, then for dispatched until processed + timeout', () => {
    track();
    expect(tracking.get('<m1@hospital.example>', 'PATIENT@phr.example')).toMatchObject({
      state: 'awaiting-processed',
      processedDeadline: at(HOUR),
      dispatchedDeadline: null,
      nextDeadline: at(HOUR),
    });
    const processed = record('processed', 10 * 60_000);
    expect(processed.status).toBe('timely');
    expect(processed.entry).toMatchObject({ state: 'awaiting-dispatched', processedAt: at(600_000), dispatchedDeadline: at(600_000 + HOUR), nextDeadline: at(600_000 + HOUR) });
    const dispatched = record('dispatched', 20 * 60_000);
    expect(dispatched.status).toBe('timely');
    expect(dispatched.entry).toMatchObject({ state: 'dispatched', dispatchedAt: at(1_200_000), nextDeadline: null });
    expect(tracking.dueTimeouts(at(100 * HOUR))).toEqual([]);
  });

  it('a second MDN of the same kind is a duplicate and changes nothing', () => {
    track();
    record('processed', 1000);
    expect(record('processed', 2000).status).toBe('duplicate');
    expect(tracking.get('m1@hospital.example', 'patient@phr.example')?.processedAt).toEqual(at(1000));
    record('dispatched', 3000);
    expect(record('dispatched', 4000).status).toBe('duplicate');
    expect(record('failed', 5000).status).toBe('duplicate'); // after the positive final answer
    expect(record('processed', 6000).status).toBe('duplicate');
  });

  it('a processed MDN overtaken by the dispatched one is still timely once, and the outcome stays dispatched', () => {
    track();
    expect(record('dispatched', 2000).status).toBe('timely');
    const r = record('processed', 2500);
    expect(r.status).toBe('timely');
    expect(r.entry).toMatchObject({ state: 'dispatched', processedAt: at(2500), dispatchedAt: at(2000), nextDeadline: null });
    expect(record('processed', 3000).status).toBe('duplicate');
    expect(record('processed', HOUR + 1).status).toBe('duplicate');
  });

  it('a processed MDN after the dispatched one but past its deadline is late', () => {
    track();
    record('dispatched', 2000);
    expect(record('processed', HOUR + 1).status).toBe('late');
  });

  it('a dispatched MDN without a processed one before the processed deadline counts (it implies processed)', () => {
    track();
    const r = record('dispatched', HOUR - 1);
    expect(r.status).toBe('timely');
    expect(r.entry?.state).toBe('dispatched');
  });

  it('no processed MDN in time: the processed time-out is due once, and an MDN after it is late', () => {
    track();
    expect(tracking.dueTimeouts(at(HOUR - 1))).toEqual([]);
    const [due, ...more] = tracking.dueTimeouts(at(HOUR));
    expect(more).toEqual([]);
    expect(due).toMatchObject({ kind: 'processed', deadline: at(HOUR), entry: { queueId: 'q1', sender: 'doctor@hospital.example', recipient: 'patient@phr.example', messageId: 'm1@hospital.example' } });
    expect(tracking.markTimedOut(due?.id ?? -1, at(HOUR + 5))).toBe(true);
    expect(tracking.markTimedOut(due?.id ?? -1, at(HOUR + 6))).toBe(false); // claimed once
    expect(tracking.dueTimeouts(at(10 * HOUR))).toEqual([]);
    const late = record('processed', HOUR + 60_000);
    expect(late.status).toBe('late');
    expect(late.entry).toMatchObject({ state: 'timed-out', timedOut: 'processed', timedOutAt: at(HOUR + 5), processedAt: at(HOUR + 60_000), processedLate: true });
    expect(record('dispatched', HOUR + 120_000).status).toBe('late');
    expect(record('failed', HOUR + 180_000).status).toBe('late');
  });

  it('a processed MDN after its deadline but before the sweeper ran is late, and the time-out still fires', () => {
    track();
    expect(record('processed', HOUR + 1).status).toBe('late');
    const [due] = tracking.dueTimeouts(at(HOUR + 2));
    expect(due?.kind).toBe('processed');
    expect(tracking.markTimedOut(due?.id ?? -1, at(HOUR + 2))).toBe(true);
  });

  it('processed in time but no dispatched: the dispatched time-out is due', () => {
    track();
    record('processed', 1000);
    expect(tracking.dueTimeouts(at(1000 + HOUR - 1))).toEqual([]);
    const [due] = tracking.dueTimeouts(at(1000 + HOUR));
    expect(due).toMatchObject({ kind: 'dispatched', deadline: at(1000 + HOUR) });
    expect(tracking.markTimedOut(due?.id ?? -1, at(1000 + HOUR))).toBe(true);
    expect(tracking.get('m1@hospital.example', 'patient@phr.example')).toMatchObject({ state: 'timed-out', timedOut: 'dispatched' });
    expect(record('dispatched', 2 * HOUR).status).toBe('late');
  });

  it('markTimedOut is refused once an MDN ended the wait (the sweeper lost the race)', () => {
    track();
    const [due] = tracking.dueTimeouts(at(HOUR));
    record('failed', HOUR - 1); // arrives (timely) before the sweeper claims
    expect(tracking.markTimedOut(due?.id ?? -1, at(HOUR))).toBe(false);
    expect(tracking.get('m1@hospital.example', 'patient@phr.example')?.state).toBe('failed');
  });

  it('a failed MDN in time ends the wait as failed', () => {
    track();
    record('processed', 1000);
    const failed = record('failed', 2000);
    expect(failed.status).toBe('timely');
    expect(failed.entry).toMatchObject({ state: 'failed', failedAt: at(2000), nextDeadline: null });
    expect(record('dispatched', 3000).status).toBe('duplicate');
  });
});

describe('TrackingStore: processed only (no dispatched requested)', () => {
  it('a timely processed MDN is final; no dispatched time-out is ever due', () => {
    track({ dispatchedRequested: false });
    const r = record('processed', 1000);
    expect(r.status).toBe('timely');
    expect(r.entry).toMatchObject({ state: 'processed', nextDeadline: null, dispatchedDeadline: null });
    expect(tracking.dueTimeouts(at(100 * HOUR))).toEqual([]);
  });

  it('a dispatched or failed MDN afterwards is still recorded in time (no deadline applies)', () => {
    track({ dispatchedRequested: false });
    record('processed', 1000);
    expect(record('failed', 10 * HOUR).status).toBe('timely');
    expect(tracking.get('m1@hospital.example', 'patient@phr.example')?.state).toBe('failed');
  });
});

describe('TrackingStore bookkeeping', () => {
  it('an MDN for an unknown message or recipient is untracked', () => {
    track();
    expect(tracking.record('other@hospital.example', 'patient@phr.example', 'processed', at(1)).status).toBe('untracked');
    expect(tracking.record('m1@hospital.example', 'someone@phr.example', 'processed', at(1)).status).toBe('untracked');
  });

  it('tracks per (message, recipient): one recipient failing does not touch another (R-MDN-9)', () => {
    track({ recipient: 'a@phr.example' });
    track({ recipient: 'b@phr.example' });
    tracking.record('m1@hospital.example', 'a@phr.example', 'failed', at(1));
    expect(tracking.forQueueId('q1').map((e) => [e.recipient, e.state])).toEqual([
      ['a@phr.example', 'failed'],
      ['b@phr.example', 'awaiting-processed'],
    ]);
  });

  it('tracking the same (Message-ID, recipient) again keeps the first', () => {
    track();
    expect(tracking.forQueueId('q1')).toHaveLength(1);
    const again = tracking.track({
      queueId: 'q2',
      messageId: 'm1@hospital.example',
      recipient: 'patient@phr.example',
      sender: 'x@y',
      sentAt: new Date(SENT),
      processedTimeoutMs: 1,
      dispatchedTimeoutMs: 1,
      dispatchedRequested: false,
    });
    expect(again).toBe(false);
    expect(tracking.forQueueId('q2')).toEqual([]);
  });

  it('dueTimeouts returns the earliest first, up to the limit', () => {
    track({ messageId: 'late@x', sentAt: at(1000) });
    track({ messageId: 'early@x' });
    expect(tracking.dueTimeouts(at(2 * HOUR), 1).map((d) => d.entry.messageId)).toEqual(['early@x']);
    expect(tracking.dueTimeouts(at(2 * HOUR)).map((d) => d.entry.messageId)).toEqual(['early@x', 'late@x']);
  });

  it('purge deletes final entries sent before the date, never pending ones', () => {
    track({ messageId: 'done@x' });
    track({ messageId: 'pending@x' });
    tracking.record('done@x', 'patient@phr.example', 'dispatched', at(1000));
    expect(tracking.purge(at(1))).toBe(1);
    expect(tracking.forQueueId('q1').map((e) => e.messageId)).toEqual(['pending@x']);
  });
});

import { describe, expect, it } from 'vitest';
import type { MdnRecordResult, TrackingEntry } from '../store/tracking-store.js';
import { replayed } from './receive-worker.js';

const ARRIVED = new Date('2026-11-25T10:00:00Z');

function entry(extra: Partial<TrackingEntry>): TrackingEntry {
  return {
    id: 1,
    queueId: 'q1',
    messageId: '<m1@a.test>',
    recipient: 'patient@b.test',
    sender: 'provider@a.test',
    dispatchedRequested: true,
    sentAt: new Date('2026-11-25T09:59:00Z'),
    state: 'awaiting-dispatched',
    processedDeadline: new Date('2026-11-25T10:59:00Z'),
    dispatchedDeadline: new Date('2026-11-25T11:00:00Z'),
    processedAt: ARRIVED,
    processedLate: false,
    dispatchedAt: null,
    dispatchedLate: false,
    failedAt: null,
    failedLate: false,
    failureNote: null,
    timedOut: null,
    timedOutAt: null,
    nextDeadline: new Date('2026-11-25T11:00:00Z'),
    noticeAttempts: 0,
    noticeRetryAt: null,
    noticeError: null,
    ...extra,
  };
}

const duplicate = (e: TrackingEntry): MdnRecordResult => ({ status: 'duplicate', entry: e });

describe('replayed: a notification retried after its forward to the edge failed', () => {
  it('counts as timely when the record of its kind is its own arrival (the first attempt recorded it)', () => {
    expect(replayed(duplicate(entry({})), 'processed', ARRIVED).status).toBe('timely');
  });

  it('stays a duplicate when another copy recorded it (another instant)', () => {
    expect(replayed(duplicate(entry({})), 'processed', new Date(ARRIVED.getTime() + 1)).status).toBe('duplicate');
  });

  it('is late when its first attempt was late, or when a time-out fired since (the sender was told it failed)', () => {
    expect(replayed(duplicate(entry({ processedLate: true })), 'processed', ARRIVED).status).toBe('late');
    expect(replayed(duplicate(entry({ timedOut: 'dispatched', timedOutAt: new Date('2026-11-25T11:00:00Z') })), 'processed', ARRIVED).status).toBe('late');
  });

  it('leaves any other outcome as the store gave it', () => {
    const timely: MdnRecordResult = { status: 'timely', entry: entry({}) };
    expect(replayed(timely, 'processed', ARRIVED)).toBe(timely);
    expect(replayed({ status: 'untracked' }, 'dispatched', ARRIVED).status).toBe('untracked');
  });
});

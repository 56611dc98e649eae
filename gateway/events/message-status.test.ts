// provesNonDelivery on the recipient states the tracking folds from events: the rule that lets a
// Blue Button+ transmission go again (gateway/transmit/transmit-service.ts). The events as the
// triggers write them end to end: gateway/events/event-outbox.test.ts and the transmit tests.
import { describe, expect, it } from 'vitest';
import type { EventData, HispEvent } from './event-outbox.js';
import { FAILURE_REASONS, NON_DELIVERY_REASONS } from './failure-reason.js';
import { provesNonDelivery, recipientStatuses } from './message-status.js';

const R = 'jane@phr.example';

function status(...steps: Omit<EventData, 'id' | 'messageId' | 'recipient'>[]) {
  const events: HispEvent[] = steps.map((data, i) => ({
    id: `evt_${i}`,
    cursor: String(i + 1),
    type: data.state === 'failed' ? 'message.failed' : (`message.${data.state}` as HispEvent['type']),
    timestamp: new Date(Date.UTC(2026, 11, 8, 12, i)).toISOString(),
    data: { id: 'q1', messageId: 'm1@hospital.example', recipient: R, ...data },
  }));
  return recipientStatuses([R], events, [])[0]!;
}

describe('provesNonDelivery', () => {
  it('a failure for a reason that proves it: yes; the time-outs and an operator bounce: no', () => {
    for (const reason of FAILURE_REASONS) {
      const s = status({ state: 'queued' }, { state: 'relayed' }, { state: 'failed', reason });
      expect([reason, provesNonDelivery(s)]).toEqual([reason, NON_DELIVERY_REASONS.includes(reason)]);
    }
    expect(NON_DELIVERY_REASONS).not.toContain('processed-timeout');
    expect(NON_DELIVERY_REASONS).not.toContain('dispatched-timeout');
    expect(NON_DELIVERY_REASONS).not.toContain('bounced');
  });

  it('not while the message is on its way or after it arrived', () => {
    expect(provesNonDelivery(status({ state: 'queued' }))).toBe(false);
    expect(provesNonDelivery(status({ state: 'queued' }, { state: 'relayed' }, { state: 'processed' }))).toBe(false);
    expect(provesNonDelivery(status({ state: 'queued' }, { state: 'relayed' }, { state: 'processed' }, { state: 'dispatched' }))).toBe(false);
  });

  it('never once a dispatched MDN came, even a late one followed by a failed MDN', () => {
    const s = status({ state: 'queued' }, { state: 'relayed' }, { state: 'processed' }, { state: 'dispatched', late: true }, { state: 'failed', reason: 'failure-mdn', late: true });
    expect(s).toMatchObject({ state: 'failed', reason: 'failure-mdn' });
    expect(provesNonDelivery(s)).toBe(false);
  });

  it('a failure after a time-out keeps the time-out: the message may have arrived', () => {
    const s = status({ state: 'queued' }, { state: 'relayed' }, { state: 'failed', reason: 'processed-timeout' }, { state: 'failed', reason: 'failure-mdn', late: true });
    expect(s).toMatchObject({ state: 'failed', reason: 'processed-timeout' });
    expect(provesNonDelivery(s)).toBe(false);
  });
});

import { describe, expect, it } from 'vitest';
import type { StoredMessage } from '../store/message-store.js';
import { headerFacts } from './relay-worker.js';

const stored = (meta: Record<string, unknown>): StoredMessage => ({
  queueId: 'q1',
  direction: 'outbound',
  mailFrom: 'doctor@a.test',
  recipients: ['patient@b.test'],
  submittedBy: 'ehr',
  messageId: 'm1@a.test',
  receivedAt: new Date(0),
  size: 0,
  meta,
});

describe('headerFacts: what the relay needs of the header section', () => {
  const body = Buffer.from(
    'From: Dr. A <doctor@a.test>\r\nTo: patient@b.test\r\nDisposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\n\r\nbody\r\n',
  );

  it('takes the From field and the final-delivery request from the message when the meta lacks them (notices, earlier releases)', () => {
    expect(headerFacts(stored({ client: '127.0.0.1' }), body)).toEqual({ from: 'Dr. A <doctor@a.test>', finalDelivery: true });
    expect(headerFacts(stored({}), Buffer.from('From: doctor@a.test\r\nTo: patient@b.test\r\n\r\nbody\r\n'))).toEqual({ from: 'doctor@a.test', finalDelivery: false });
  });

  it('takes what the submission edge recorded, without reading the message', () => {
    expect(headerFacts(stored({ from: 'doctor@a.test', finalDelivery: false }), Buffer.from('not a message at all'))).toEqual({ from: 'doctor@a.test', finalDelivery: false });
  });
});

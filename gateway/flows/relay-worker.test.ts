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
    const facts = headerFacts(stored({ client: '127.0.0.1' }), body);
    expect([facts.sender.toString(), facts.finalDelivery]).toEqual(['doctor@a.test', true]);
    const plain = headerFacts(stored({}), Buffer.from('From: doctor@a.test\r\nTo: patient@b.test\r\n\r\nbody\r\n'));
    expect([plain.sender.toString(), plain.finalDelivery]).toEqual(['doctor@a.test', false]);
  });

  it('takes what the submission edge recorded, without reading the message; the address as it was, even one a header parser would split', () => {
    const facts = headerFacts(stored({ from: 'doctor@a.test', finalDelivery: false }), Buffer.from('not a message at all'));
    expect([facts.sender.toString(), facts.finalDelivery]).toEqual(['doctor@a.test', false]);
    // A quoted local part with a comma: as a field value it would be read as two addresses.
    expect(headerFacts(stored({ from: '"a,b"@a.test', finalDelivery: true }), Buffer.alloc(0)).sender.toString()).toBe('"a,b"@a.test');
  });
});

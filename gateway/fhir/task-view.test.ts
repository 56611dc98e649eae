// A recipient's delivery as a FHIR Task: each tracked state to Task.status (requested,
// in-progress, completed, failed), the failure's reason in statusReason and businessStatus, and
// focus, for, owner, input from the submission.
import { describe, expect, it } from 'vitest';
import type { MessageView } from '../events/message-tracker.js';
import type { RecipientState } from '../events/message-status.js';
import { DELIVERY_STATE_SYSTEM, FAILURE_REASON_SYSTEM, taskFor } from './task-view.js';

const row = { queueId: '0190abcd00010a0b0c', submissionId: 'ab'.repeat(12), recipient: 'phr@b.test', ownerType: 'Patient', patient: { reference: 'Patient/7' }, documents: [`${'ab'.repeat(12)}-1`], createdAt: 0 };
const view = (state: RecipientState, extra: Record<string, unknown> = {}): MessageView => ({
  id: row.queueId,
  messageId: 'x1@a.test',
  from: 'doctor@a.test',
  subject: 'Summary',
  clientRef: null,
  submittedVia: 'api',
  submittedAt: '2026-12-07T12:00:00.000Z',
  recipients: [{ address: 'PHR@b.test', state, updatedAt: '2026-12-07T12:05:00.000Z', transitions: [], ...extra }],
});

describe('taskFor', () => {
  it('maps each state to Task.status, the state itself in businessStatus', () => {
    const expected: [RecipientState, string][] = [
      ['queued', 'requested'],
      ['relayed', 'in-progress'],
      ['processed', 'in-progress'],
      ['dispatched', 'completed'],
      ['failed', 'failed'],
    ];
    for (const [state, status] of expected) {
      const task = taskFor(row, view(state));
      expect([task.status, task.businessStatus?.coding?.[0]]).toEqual([status, { system: DELIVERY_STATE_SYSTEM, code: state }]);
    }
  });

  it('a failure carries its reason and detail; the rest from the submission and the message', () => {
    const task = taskFor(row, view('failed', { reason: 'no-certificate', detail: 'no certificate for phr@b.test' }));
    expect(task.statusReason).toEqual({ coding: [{ system: FAILURE_REASON_SYSTEM, code: 'no-certificate' }], text: 'no-certificate: no certificate for phr@b.test' });
    expect(task.businessStatus?.text).toBe('no-certificate: no certificate for phr@b.test');
    expect(task).toMatchObject({
      id: row.queueId,
      intent: 'order',
      focus: { reference: `List/${row.submissionId}` },
      for: { reference: 'Patient/7' },
      owner: { display: 'phr@b.test' },
      requester: { display: 'doctor@a.test' },
      input: [{ valueReference: { reference: `DocumentReference/${row.documents[0]}` } }],
      authoredOn: '2026-12-07T12:00:00.000Z',
      lastModified: '2026-12-07T12:05:00.000Z',
    });
  });
});

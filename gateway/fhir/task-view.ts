import type { Task } from '@medplum/fhirtypes';
import type { MessageView } from '../events/message-tracker.js';
import type { RecipientState } from '../events/message-status.js';
import type { FhirTaskRow } from './fhir-task-store.js';

/** The code system of Task.businessStatus: hisp's recipient states (docs/fhir.md). */
export const DELIVERY_STATE_SYSTEM = 'tag:hisp.dev,2026:delivery-state';
/** The code system of a failure's reason (events/failure-reason.ts). */
export const FAILURE_REASON_SYSTEM = 'tag:hisp.dev,2026:failure-reason';

/**
 * FHIR R4 Task.status (valueset task-status) for a recipient's state: queued is requested (nobody
 * has taken it yet); relayed and processed are in-progress (the receiving HISP has it, then its
 * processed MDN came); dispatched is completed (the dispatched MDN: the final destination has it,
 * Direct Implementation Guide for Delivery Notification §3); failed is failed.
 */
export const TASK_STATUS: Readonly<Record<RecipientState, Task['status']>> = {
  queued: 'requested',
  relayed: 'in-progress',
  processed: 'in-progress',
  dispatched: 'completed',
  failed: 'failed',
};

/**
 * One recipient's delivery of an ITI-65 submission as a FHIR Task: `status` from the tracking,
 * `businessStatus` the state itself (and the failure's reason), `focus` the SubmissionSet,
 * `input` its DocumentReferences, `for` the patient as the submission named it, `owner` the
 * recipient (its Direct address as a mailto: identifier), `requester` the sender.
 */
export function taskFor(row: FhirTaskRow, view: MessageView): Task {
  const recipient = view.recipients.find((r) => r.address.toLowerCase() === row.recipient.toLowerCase()) ?? view.recipients[0];
  const state = recipient?.state ?? 'queued';
  const task: Task = {
    resourceType: 'Task',
    id: row.queueId,
    meta: { lastUpdated: recipient?.updatedAt ?? view.submittedAt },
    identifier: view.messageId ? [{ system: 'urn:ietf:rfc:3986', value: `mid:${encodeURIComponent(view.messageId)}` }] : [],
    status: TASK_STATUS[state],
    businessStatus: { coding: [{ system: DELIVERY_STATE_SYSTEM, code: state }], text: state },
    intent: 'order',
    focus: { reference: `List/${row.submissionId}`, type: 'List' },
    authoredOn: view.submittedAt,
    lastModified: recipient?.updatedAt ?? view.submittedAt,
    requester: { identifier: { system: 'urn:ietf:rfc:3986', value: `mailto:${view.from}` }, display: view.from },
    owner: { identifier: { system: 'urn:ietf:rfc:3986', value: `mailto:${row.recipient}` }, display: row.recipient },
    input: row.documents.map((id) => ({ type: { text: 'document' }, valueReference: { reference: `DocumentReference/${id}` } })),
  };
  if (row.patient) task.for = row.patient;
  if (state === 'failed' && recipient) {
    const text = recipient.detail ? `${recipient.reason ?? 'failed'}: ${recipient.detail}` : (recipient.reason ?? 'failed');
    task.businessStatus = { coding: [{ system: DELIVERY_STATE_SYSTEM, code: state }], text };
    if (recipient.reason) task.statusReason = { coding: [{ system: FAILURE_REASON_SYSTEM, code: recipient.reason }], text };
  }
  return task;
}

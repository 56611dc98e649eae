import type { SqliteConnection } from '../store/database.js';
import type { MhdPatientRef } from './mhd-bundle.js';

/** One Direct message sent for an ITI-65 submission: its Task (the id is the message's queue id). */
export interface FhirTaskRow {
  queueId: string;
  submissionId: string;
  recipient: string;
  ownerType: string;
  patient: MhdPatientRef | null;
  documents: string[];
  createdAt: number;
}

interface Row {
  queue_id: string;
  submission_id: string;
  recipient: string;
  owner_type: string;
  patient: string | null;
  documents: string;
  created_at: number;
}

/** A submission has one Task per recipient: at most the send's recipients, read in one go. */
const PER_SUBMISSION = 1000;

/**
 * Which messages were sent for which SubmissionSet (table fhir_tasks, schema.ts): what a Task adds
 * to the message's tracking (its focus, patient and owner). The state itself is never copied here:
 * it is read from the tracker each time, so a Task is never behind its message.
 */
export class FhirTaskStore {
  private readonly insert;
  private readonly one;
  private readonly bySubmission;

  constructor(sqlite: SqliteConnection) {
    this.insert = sqlite.prepare<[string, string, string, string, string | null, string, number]>(
      'INSERT INTO fhir_tasks (queue_id, submission_id, recipient, owner_type, patient, documents, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.one = sqlite.prepare<[string], Row>('SELECT * FROM fhir_tasks WHERE queue_id = ?');
    this.bySubmission = sqlite.prepare<[string], Row>(`SELECT * FROM fhir_tasks WHERE submission_id = ? ORDER BY queue_id LIMIT ${PER_SUBMISSION}`);
  }

  add(row: FhirTaskRow): void {
    this.insert.run(row.queueId, row.submissionId, row.recipient, row.ownerType, row.patient ? JSON.stringify(row.patient) : null, JSON.stringify(row.documents), row.createdAt);
  }

  get(queueId: string): FhirTaskRow | undefined {
    const row = this.one.get(queueId);
    return row ? toTask(row) : undefined;
  }

  ofSubmission(submissionId: string): FhirTaskRow[] {
    return this.bySubmission.all(submissionId).map(toTask);
  }
}

function toTask(row: Row): FhirTaskRow {
  return {
    queueId: row.queue_id,
    submissionId: row.submission_id,
    recipient: row.recipient,
    ownerType: row.owner_type,
    patient: row.patient === null ? null : (JSON.parse(row.patient) as MhdPatientRef),
    documents: JSON.parse(row.documents) as string[],
    createdAt: row.created_at,
  };
}

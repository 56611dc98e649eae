import type { SqliteConnection } from '../store/database.js';

/** What triggered a push (Blue Button+ "Transmit" §D, R-BB-3). */
export const RECORD_TRIGGERS = ['discharge', 'transition', 'encounter-end', 'new-result', 'claim', 'manual'] as const;
export type RecordTrigger = (typeof RECORD_TRIGGERS)[number];

/** A document pushed for a patient: its facts, never its octets (those went in the messages). */
export interface TransmitRecord {
  id: string;
  patientKey: string;
  sha256: string;
  filename: string;
  contentType: string;
  kind: string;
  trigger: RecordTrigger;
  madeAt: number;
  receivedAt: number;
  /** The API key that pushed it. */
  receivedBy: string;
}

/**
 * Why a destination got nothing from a push: it had the document (duplicate); it was sent to
 * within its authorization's interval; the authorization was revoked or expired while the push
 * ran (checked again in the message's commit: nothing goes after a revocation, R-BB-1); a
 * once-authorization another push fulfilled first with another document.
 */
export const SKIP_REASONS = ['duplicate', 'interval', 'revoked', 'expired', 'fulfilled'] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

/** One destination of one push. */
export interface Transmission {
  seq?: number;
  id: string;
  patientKey: string;
  recordId: string;
  authorizationId: string;
  destination: string;
  sha256: string;
  trigger: RecordTrigger;
  status: 'queued' | 'skipped';
  reason: SkipReason | null;
  queueId: string | null;
  messageId: string | null;
  createdAt: number;
  /** A queued transmission whose delivery surely failed, sent again: the transmission that re-sent it (migration 14). */
  resentBy: string | null;
}

interface Row {
  seq: number;
  id: string;
  patient_key: string;
  record_id: string;
  authorization_id: string;
  destination: string;
  sha256: string;
  trigger: string;
  status: string;
  reason: string | null;
  queue_id: string | null;
  message_id: string | null;
  created_at: number;
  resent_by: string | null;
}

const COLUMNS = 'seq, id, patient_key, record_id, authorization_id, destination, sha256, trigger, status, reason, queue_id, message_id, created_at, resent_by';

/**
 * Records pushed and their transmissions (schema.ts migration 11). Destinations are stored as
 * DirectAddress prints them, lower-cased, so that "the same destination" is one string. Writes run
 * in the caller's transaction: a queued transmission in the commit of its message.
 */
export class TransmissionStore {
  private readonly insertRecordRow;
  private readonly insertRow;
  private readonly current;
  private readonly supersedeRow;
  private readonly lastSentAt;
  private readonly page;

  constructor(sqlite: SqliteConnection) {
    this.insertRecordRow = sqlite.prepare<Record<string, unknown>>(
      `INSERT INTO transmit_records (id, patient_key, sha256, filename, content_type, kind, trigger, made_at, received_at, received_by)
       VALUES (@id, @patientKey, @sha256, @filename, @contentType, @kind, @trigger, @madeAt, @receivedAt, @receivedBy) ON CONFLICT DO NOTHING`,
    );
    this.insertRow = sqlite.prepare<Record<string, unknown>>(
      `INSERT INTO transmissions (id, patient_key, record_id, authorization_id, destination, sha256, trigger, status, reason, queue_id, message_id, created_at)
       VALUES (@id, @patientKey, @recordId, @authorizationId, @destination, @sha256, @trigger, @status, @reason, @queueId, @messageId, @createdAt)`,
    );
    this.current = sqlite.prepare<[string, string, string], { id: string; queue_id: string | null }>(
      "SELECT id, queue_id FROM transmissions WHERE patient_key = ? AND destination = ? AND sha256 = ? AND status = 'queued' AND resent_by IS NULL",
    );
    this.supersedeRow = sqlite.prepare<[string, string], unknown>("UPDATE transmissions SET resent_by = ? WHERE id = ? AND status = 'queued' AND resent_by IS NULL");
    this.lastSentAt = sqlite.prepare<[string, string], { at: number | null }>("SELECT max(created_at) AS at FROM transmissions WHERE authorization_id = ? AND destination = ? AND status = 'queued'");
    this.page = sqlite.prepare<[string, string, number, number], Row>(
      `SELECT ${COLUMNS} FROM transmissions WHERE patient_key = ? AND authorization_id IN (SELECT value FROM json_each(?)) AND seq > ? ORDER BY seq LIMIT ?`,
    );
  }

  /** Stores the record; false when it is stored already (its first commit wins). */
  insertRecord(r: TransmitRecord): boolean {
    return this.insertRecordRow.run({ ...r }).changes === 1;
  }

  /** Throws SQLITE_CONSTRAINT_UNIQUE for a second queued transmission of a document to a destination (none superseded). */
  insert(t: Transmission): void {
    this.insertRow.run({ ...t, seq: undefined });
  }

  /** The queued transmission of this document to this destination of the patient not superseded by a re-send, if any (at most one: the unique index). */
  lastQueued(patientKey: string, destination: string, sha256: string): { id: string; queueId: string | null } | undefined {
    const row = this.current.get(patientKey, destination, sha256);
    return row === undefined ? undefined : { id: row.id, queueId: row.queue_id };
  }

  /** Marks queued transmission `id` as re-sent by `by` (before `by` is inserted: the unique index); false when it was superseded already. */
  supersede(id: string, by: string): boolean {
    return this.supersedeRow.run(by, id).changes === 1;
  }

  /** When this authorization last sent to this destination (ms), if ever. */
  lastSent(authorizationId: string, destination: string): number | undefined {
    return this.lastSentAt.get(authorizationId, destination)?.at ?? undefined;
  }

  /** The patient's transmissions under these authorizations, oldest first, after the cursor (a seq). */
  list(patientKey: string, authorizationIds: readonly string[], after: number, limit: number): { transmissions: Transmission[]; nextCursor: number | null } {
    const rows = this.page.all(patientKey, JSON.stringify(authorizationIds), after, limit + 1);
    const transmissions = rows.slice(0, limit).map(toTransmission);
    return { transmissions, nextCursor: rows.length > limit ? transmissions[transmissions.length - 1]!.seq! : null };
  }
}

function toTransmission(r: Row): Transmission {
  return {
    seq: r.seq,
    id: r.id,
    patientKey: r.patient_key,
    recordId: r.record_id,
    authorizationId: r.authorization_id,
    destination: r.destination,
    sha256: r.sha256,
    trigger: r.trigger as RecordTrigger,
    status: r.status as Transmission['status'],
    reason: r.reason as SkipReason | null,
    queueId: r.queue_id,
    messageId: r.message_id,
    createdAt: r.created_at,
    resentBy: r.resent_by,
  };
}

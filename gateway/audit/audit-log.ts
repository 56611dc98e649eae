import { userInfo } from 'node:os';
import type { SqliteConnection } from '../store/database.js';
import { auditHash, GENESIS_HASH } from './audit-chain.js';
import { randomHexId } from '../core/random-id.js';

/** Who did it: an API key (its id), an SMTP user, an operator at the command line (the OS user), the remote side of a message, or hisp itself. */
export const AUDIT_ACTOR_KINDS = ['api-key', 'smtp-user', 'operator', 'remote', 'system'] as const;
export type AuditActorKind = (typeof AUDIT_ACTOR_KINDS)[number];

export interface AuditActor {
  kind: AuditActorKind;
  id: string;
}

export type AuditOutcome = 'success' | 'failure';

/** What the application appends: the rest (seq, id, the hashes) the log adds. */
export interface AuditRecord {
  actor: AuditActor;
  /** `<object>.<verb>`, e.g. `authorization.granted`, `api-key.revoked`, `message.queued`. */
  action: string;
  object: { kind: string; id: string };
  outcome: AuditOutcome;
  /** The data holder's patient reference, when the action concerns a patient. */
  patientRef?: string | undefined;
  /** Plain facts, never a secret or a document. */
  detail?: Record<string, unknown>;
  /** ms since the epoch; default now. */
  at?: number;
}

export interface AuditEntry {
  seq: number;
  id: string;
  at: number;
  actor: AuditActor;
  action: string;
  object: { kind: string; id: string };
  outcome: AuditOutcome;
  patientRef: string | null;
  detail: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export interface AuditQuery {
  /** Entries after this seq (the cursor). */
  after?: number | undefined;
  /** At or after (ms). */
  since?: number | undefined;
  /** Before (ms). */
  until?: number | undefined;
  /** An action (`authorization.granted`) or a family of them (`authorization.`). */
  action?: string | undefined;
  actorId?: string | undefined;
  objectKind?: string | undefined;
  objectId?: string | undefined;
  patientRef?: string | undefined;
  limit: number;
}

/** What `hisp audit verify` reports. */
export interface AuditVerification {
  ok: boolean;
  entries: number;
  /** The last entry: an operator may keep it elsewhere, to show later that nothing was cut off the end since. */
  head: { seq: number; hash: string; at: number } | null;
  /** The first entry where the chain breaks, and how. */
  problem?: { seq: number; reason: string };
}

interface AuditRow {
  seq: number;
  id: string;
  at: number;
  actor_kind: string;
  actor_id: string;
  action: string;
  object_kind: string;
  object_id: string;
  outcome: string;
  patient_ref: string | null;
  detail: string;
  prev_hash: string;
  hash: string;
}

const COLUMNS = 'seq, id, at, actor_kind, actor_id, action, object_kind, object_id, outcome, patient_ref, detail, prev_hash, hash';

/**
 * The audit log (issue 16, "Audit"; schema.ts migration 10): append-only, each entry chained to the
 * one before by its hash (audit-chain.ts). The application appends authorizations, transmissions,
 * API keys; the outbox's triggers append every message event in the transaction of the change. An
 * append takes the next seq and the last hash inside the write transaction it runs in: call it in
 * the transaction of the change it records (HispDatabase.transaction or batch), so that the entry
 * and the change commit together; called outside one it opens its own (IMMEDIATE: the write lock
 * first, so that two processes never read the same last hash).
 */
export class AuditLog {
  private readonly insert;
  private readonly byId;

  constructor(
    private readonly sqlite: SqliteConnection,
    private readonly now: () => number = Date.now,
  ) {
    // The same statement shape as the trigger's (schema.ts): seq from sqlite_sequence, the hash in SQL.
    this.insert = sqlite.prepare<Record<string, unknown>, AuditRow>(
      `INSERT INTO audit_log (${COLUMNS})
       SELECT s.seq, @id, @at, @actorKind, @actorId, @action, @objectKind, @objectId, @outcome, @patientRef, @detail, s.prev,
              hisp_audit_hash(s.prev, s.seq, @id, @at, @actorKind, @actorId, @action, @objectKind, @objectId, @outcome, @patientRef, @detail)
       FROM (SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'), 0), COALESCE((SELECT max(seq) FROM audit_log), 0)) + 1 AS seq,
                    COALESCE((SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), '${GENESIS_HASH}') AS prev) AS s
       RETURNING ${COLUMNS}`,
    );
    this.byId = sqlite.prepare<[string], AuditRow>(`SELECT ${COLUMNS} FROM audit_log WHERE id = ?`);
  }

  /** Appends one entry (see the class comment for the transaction it belongs in). */
  append(record: AuditRecord): AuditEntry {
    const run = () =>
      this.insert.get({
        id: `aud_${randomHexId(24)}`,
        at: record.at ?? this.now(),
        actorKind: record.actor.kind,
        actorId: record.actor.id,
        action: record.action,
        objectKind: record.object.kind,
        objectId: record.object.id,
        outcome: record.outcome,
        patientRef: record.patientRef ?? null,
        detail: JSON.stringify(record.detail ?? {}),
      })!;
    const row = this.sqlite.inTransaction ? run() : this.sqlite.transaction(run).immediate();
    return toEntry(row);
  }

  get(id: string): AuditEntry | undefined {
    const row = this.byId.get(id);
    return row ? toEntry(row) : undefined;
  }

  /** Entries in seq order (the order they were committed in), a page at a time. */
  list(query: AuditQuery): { entries: AuditEntry[]; nextCursor: number | null } {
    const where: string[] = ['seq > @after'];
    const params: Record<string, unknown> = { after: query.after ?? 0, limit: query.limit + 1 };
    const filter = (condition: string, values: Record<string, unknown>) => {
      where.push(condition);
      Object.assign(params, values);
    };
    if (query.since !== undefined) filter('at >= @since', { since: query.since });
    if (query.until !== undefined) filter('at < @until', { until: query.until });
    // A family (`authorization.`) by its prefix, as a range: the index stays usable ('/' follows '.').
    if (query.action?.endsWith('.')) filter('action >= @action AND action < @actionEnd', { action: query.action, actionEnd: `${query.action.slice(0, -1)}/` });
    else if (query.action !== undefined) filter('action = @action', { action: query.action });
    if (query.actorId !== undefined) filter('actor_id = @actorId', { actorId: query.actorId });
    if (query.objectKind !== undefined) filter('object_kind = @objectKind', { objectKind: query.objectKind });
    if (query.objectId !== undefined) filter('object_id = @objectId', { objectId: query.objectId });
    if (query.patientRef !== undefined) filter('patient_ref = @patientRef', { patientRef: query.patientRef });
    const rows = this.sqlite.prepare<Record<string, unknown>, AuditRow>(`SELECT ${COLUMNS} FROM audit_log WHERE ${where.join(' AND ')} ORDER BY seq LIMIT @limit`).all(params);
    const more = rows.length > query.limit;
    const entries = rows.slice(0, query.limit).map(toEntry);
    return { entries, nextCursor: more ? entries[entries.length - 1]!.seq : null };
  }

  /**
   * Walks the whole chain in seq order (streamed, one row at a time): seq counting 1, 2, 3…; each
   * prev_hash the hash of the entry before (the first: 64 zeros); each hash recomputed from the
   * stored columns; and the last seq the one SQLite handed out last (sqlite_sequence), so that
   * entries cut off the end show too. Stops at the first break.
   */
  verify(onProgress?: (entries: number) => void): AuditVerification {
    let expectedSeq = 1;
    let prev = GENESIS_HASH;
    let head: AuditVerification['head'] = null;
    const fail = (seq: number, reason: string): AuditVerification => ({ ok: false, entries: expectedSeq - 1, head, problem: { seq, reason } });
    for (const row of this.sqlite.prepare<[], AuditRow>(`SELECT ${COLUMNS} FROM audit_log ORDER BY seq`).iterate()) {
      if (row.seq !== expectedSeq) return fail(expectedSeq, row.seq > expectedSeq ? `entries ${expectedSeq}–${row.seq - 1} are missing` : `seq ${row.seq} out of order`);
      if (row.prev_hash !== prev) return fail(row.seq, 'its prev_hash is not the hash of the entry before: an entry before it was changed, removed or inserted');
      const hash = auditHash(row.prev_hash, {
        seq: row.seq,
        id: row.id,
        at: row.at,
        actorKind: row.actor_kind,
        actorId: row.actor_id,
        action: row.action,
        objectKind: row.object_kind,
        objectId: row.object_id,
        outcome: row.outcome,
        patientRef: row.patient_ref,
        detail: row.detail,
      });
      if (hash !== row.hash) return fail(row.seq, 'its content does not match its hash: the entry was changed');
      prev = row.hash;
      head = { seq: row.seq, hash: row.hash, at: row.at };
      expectedSeq++;
      if (onProgress && expectedSeq % 10_000 === 0) onProgress(expectedSeq - 1);
    }
    const issued = this.sqlite.prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'").get()?.seq ?? 0;
    if (issued > expectedSeq - 1) return fail(expectedSeq, `entries ${expectedSeq}–${issued} were issued and are missing: cut off the end`);
    return { ok: true, entries: expectedSeq - 1, head };
  }
}

function toEntry(row: AuditRow): AuditEntry {
  return {
    seq: row.seq,
    id: row.id,
    at: row.at,
    actor: { kind: row.actor_kind as AuditActorKind, id: row.actor_id },
    action: row.action,
    object: { kind: row.object_kind, id: row.object_id },
    outcome: row.outcome as AuditOutcome,
    patientRef: row.patient_ref,
    detail: parseDetail(row.detail),
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

function parseDetail(text: string): Record<string, unknown> {
  try {
    const v = JSON.parse(text) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : { value: v };
  } catch {
    // An entry edited into invalid JSON still lists (verify reports it).
    return { unreadable: text.slice(0, 200) };
  }
}

/** The operator at the command line: the OS user running the command (its uid where the system has no name for it). */
export function operatorActor(): AuditActor {
  try {
    return { kind: 'operator', id: userInfo().username };
  } catch {
    return { kind: 'operator', id: `uid:${process.getuid?.() ?? 'unknown'}` };
  }
}

import type { FailureReason } from '../events/failure-reason.js';
import type { SqliteConnection } from '../store/database.js';
import { LimitedStatement } from '../store/limited-statement.js';
import type { MessageDirection } from '../store/message-store.js';
import type { Delivery, DeliveryState, DeliveryStatus, QueueId, QueueListState, RemoteReply } from './outbound-queue.js';

interface DeliveryRow {
  id: number;
  queue_id: string;
  seq: number;
  recipient: string;
  domain: string;
  state: DeliveryState;
  attempts: number;
  leases: number;
  lease_owner: string | null;
  next_attempt_at: number | null;
  last_attempt_at: number | null;
  finished_at: number | null;
  completed_lease: number | null;
  reply_code: number | null;
  reply_enhanced: string | null;
  reply_text: string | null;
  dsn_queued_at: number | null;
  dsn_attempts: number;
  dsn_retry_at: number | null;
  dsn_error: string | null;
  failure_reason: FailureReason | null;
}

interface LeasedRow {
  id: number;
  queue_id: string;
  seq: number;
  recipient: string;
  domain: string;
  attempts: number;
  leases: number;
  reply_code: number | null;
  reply_enhanced: string | null;
  reply_text: string | null;
}

interface EnvelopeRow {
  mail_from: string;
  message_id: string | null;
  direction: MessageDirection;
  submitted_by: string | null;
  received_at: number;
}

interface Guard {
  id: number;
  attempt: number;
  owner: string;
}

interface ReplyParams {
  code: number;
  enhanced: string | null;
  text: string;
}

/** The reply of an operator's bounce (RFC 3463 X.0.0: other or undefined status). */
export const OPERATOR_BOUNCE = { code: 554, enhanced: '5.0.0' } as const;

/** SQL conditions of the list filters; `@now` is bound. */
const LIST_FILTERS: Record<QueueListState, string> = {
  queued: "d.state = 'queued'",
  deferred: "d.state = 'queued' AND d.attempts > 0 AND (d.lease_owner IS NULL OR d.next_attempt_at <= @now)",
  leased: "d.state = 'queued' AND d.lease_owner IS NOT NULL AND d.next_attempt_at > @now",
  delivered: "d.state = 'delivered'",
  failed: "d.state = 'failed'",
};

/**
 * The deliveries table: synchronous SQL, one method per state transition. Each runs in the
 * caller's transaction; {@link SqliteQueue} wraps them in group commits. Exposed so that a flow can
 * commit a transition together with another write (a DSN enqueued with markDsnQueued, say).
 *
 * Transitions: queued →(lease)→ queued+leased →(complete)→ delivered
 *                                             →(defer | release | lease expiry)→ queued
 *                                             →(fail | operator bounce)→ failed →(markDsnQueued)
 */
export class DeliveryTable {
  private readonly insertStmt;
  private readonly leaseStmt;
  private readonly envelopeStmt;
  private readonly completeStmt;
  private readonly completedByStmt;
  private readonly deferStmt;
  private readonly failStmt;
  private readonly releaseStmt;
  private readonly extendStmt;
  private readonly retryOneStmt;
  private readonly retryAllStmt;
  private readonly bounceStmt;
  private readonly byQueueIdStmt;
  private readonly pendingDsnStmt;
  private readonly markDsnStmt;
  private readonly deferDsnStmt;
  private readonly failDsnStmt;
  private readonly listStmts = new Map<string, ReturnType<SqliteConnection['prepare']>>();

  constructor(private readonly sqlite: SqliteConnection) {
    this.insertStmt = sqlite.prepare<[string, number, string, string, MessageDirection, number, string | null, number]>(
      'INSERT INTO deliveries (queue_id, seq, recipient, domain, direction, next_attempt_at, lease_owner, leases) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    // Pick the n earliest due rows by the partial index, widen them to their (message, domain)
    // groups, and claim those in one statement; next_attempt_at becomes the lease's expiry.
    // The LIMIT is in the text, not bound: see LimitedStatement.
    this.leaseStmt = new LimitedStatement<{ owner: string; now: number; until: number; direction: MessageDirection }, LeasedRow>(
      sqlite,
      (n) => `UPDATE deliveries SET lease_owner = @owner, leases = leases + 1, next_attempt_at = @until
       WHERE id IN (
         SELECT d.id FROM (
           SELECT DISTINCT queue_id, domain FROM (
             SELECT queue_id, domain FROM deliveries
             WHERE state = 'queued' AND direction = @direction AND next_attempt_at <= @now
             ORDER BY next_attempt_at LIMIT ${n})
         ) AS g
         JOIN deliveries AS d ON d.queue_id = g.queue_id AND d.domain = g.domain
         WHERE d.state = 'queued' AND d.next_attempt_at <= @now)
       RETURNING id, queue_id, seq, recipient, domain, attempts, leases, reply_code, reply_enhanced, reply_text`,
    );
    this.envelopeStmt = sqlite.prepare<[string], EnvelopeRow>(
      'SELECT mail_from, message_id, direction, submitted_by, received_at FROM messages WHERE queue_id = ?',
    );
    const reply = 'reply_code = @code, reply_enhanced = @enhanced, reply_text = @text';
    const guard = "id = @id AND state = 'queued' AND leases = @attempt AND lease_owner = @owner";
    this.completeStmt = sqlite.prepare<ReplyParams & { id: number; attempt: number; now: number }>(
      `UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, lease_owner = NULL, next_attempt_at = NULL,
         last_attempt_at = @now, finished_at = @now, completed_lease = @attempt, ${reply}
       WHERE id = @id AND state = 'queued'`,
    );
    this.completedByStmt = sqlite.prepare<[number], { state: DeliveryState; completed_lease: number | null }>(
      'SELECT state, completed_lease FROM deliveries WHERE id = ?',
    );
    this.deferStmt = sqlite.prepare<Guard & ReplyParams & { now: number; at: number }>(
      `UPDATE deliveries SET attempts = attempts + 1, lease_owner = NULL, next_attempt_at = @at, last_attempt_at = @now, ${reply}
       WHERE ${guard}`,
    );
    this.failStmt = sqlite.prepare<Guard & ReplyParams & { now: number; reason: string }>(
      `UPDATE deliveries SET state = 'failed', attempts = attempts + 1, lease_owner = NULL, next_attempt_at = NULL,
         last_attempt_at = @now, finished_at = @now, failure_reason = @reason, ${reply}
       WHERE ${guard}`,
    );
    this.releaseStmt = sqlite.prepare<Guard & { now: number }>(
      `UPDATE deliveries SET lease_owner = NULL, next_attempt_at = @now WHERE ${guard}`,
    );
    this.extendStmt = sqlite.prepare<Guard & { until: number }>(`UPDATE deliveries SET next_attempt_at = @until WHERE ${guard}`);
    // Waiting deliveries only: one in flight (an unexpired lease) is left to its worker.
    const waiting = "state = 'queued' AND lease_owner IS NULL AND next_attempt_at > @now";
    this.retryOneStmt = sqlite.prepare<{ id: string; now: number }>(
      `UPDATE deliveries SET next_attempt_at = @now WHERE queue_id = @id AND ${waiting}`,
    );
    this.retryAllStmt = sqlite.prepare<{ now: number }>(`UPDATE deliveries SET next_attempt_at = @now WHERE ${waiting}`);
    this.bounceStmt = sqlite.prepare<{ id: string; now: number; code: number; enhanced: string; text: string }>(
      `UPDATE deliveries SET state = 'failed', lease_owner = NULL, next_attempt_at = NULL, finished_at = @now, failure_reason = 'bounced',
         reply_text = @text || CASE WHEN reply_code IS NULL THEN ''
           ELSE ' (last reply: ' || reply_code || ' ' || COALESCE(reply_enhanced || ' ', '') || reply_text || ')' END,
         reply_code = @code, reply_enhanced = @enhanced
       WHERE queue_id = @id AND state = 'queued' AND (lease_owner IS NULL OR next_attempt_at <= @now)`,
    );
    this.byQueueIdStmt = sqlite.prepare<[string], DeliveryRow>('SELECT * FROM deliveries WHERE queue_id = ? ORDER BY seq');
    this.pendingDsnStmt = new LimitedStatement<[number], DeliveryRow>(
      sqlite,
      (n) =>
        `SELECT * FROM deliveries WHERE state = 'failed' AND dsn_queued_at IS NULL AND (dsn_retry_at IS NULL OR dsn_retry_at <= ?)
         ORDER BY finished_at, id LIMIT ${n}`,
    );
    this.markDsnStmt = sqlite.prepare<[number, number]>(
      "UPDATE deliveries SET dsn_queued_at = ?, dsn_retry_at = NULL, dsn_error = NULL WHERE id = ? AND state = 'failed' AND dsn_queued_at IS NULL",
    );
    this.deferDsnStmt = sqlite.prepare<[number, string, number]>(
      "UPDATE deliveries SET dsn_attempts = dsn_attempts + 1, dsn_retry_at = ?, dsn_error = ? WHERE id = ? AND state = 'failed' AND dsn_queued_at IS NULL",
    );
    this.failDsnStmt = sqlite.prepare<[number, string, number]>(
      "UPDATE deliveries SET dsn_attempts = dsn_attempts + 1, dsn_queued_at = ?, dsn_retry_at = NULL, dsn_error = ? WHERE id = ? AND state = 'failed' AND dsn_queued_at IS NULL",
    );
  }

  /** One queued delivery per recipient, due at `dueAt`; a recipient repeated (any case) counts once. */
  insert(queueId: QueueId, direction: MessageDirection, recipients: readonly string[], dueAt: number): number {
    return this.insertRows(queueId, direction, recipients, dueAt, null).length;
  }

  /**
   * The deliveries of a new message, already leased to `owner` until `until` (its first lease, as
   * lease() would give it): for a worker the message is handed to as it is stored, without the
   * lease query. Synchronous, in the commit that stores the message; the worker may use them once
   * that commit is durable (a crash before leaves them due at the next start, releaseAll).
   */
  insertLeased(
    message: { queueId: QueueId; direction: MessageDirection; mailFrom: string; messageId: string | null; submittedBy: string | null; receivedAt: Date },
    recipients: readonly string[],
    owner: string,
    until: number,
  ): Delivery[] {
    return this.insertRows(message.queueId, message.direction, recipients, until, owner).map(({ id, seq, recipient, domain }) => ({
      id,
      queueId: message.queueId,
      seq,
      recipient,
      domain,
      mailFrom: message.mailFrom,
      messageId: message.messageId,
      direction: message.direction,
      submittedBy: message.submittedBy,
      receivedAt: message.receivedAt,
      attempts: 0,
      attempt: 1,
      leaseOwner: owner,
      leaseUntil: new Date(until),
      lastReply: null,
    }));
  }

  /** One row per distinct recipient (case-insensitive), in RCPT order; leased to `owner` when given. */
  private insertRows(queueId: QueueId, direction: MessageDirection, recipients: readonly string[], nextAttemptAt: number, owner: string | null) {
    const seen = new Set<string>();
    const rows: { id: number; seq: number; recipient: string; domain: string }[] = [];
    for (const recipient of recipients) {
      const key = recipient.toLowerCase();
      if (seen.has(key)) continue;
      seen.add(key);
      const seq = rows.length;
      const domain = domainOf(recipient);
      const r = this.insertStmt.run(queueId, seq, recipient, domain, direction, nextAttemptAt, owner, owner === null ? 0 : 1);
      rows.push({ id: Number(r.lastInsertRowid), seq, recipient, domain });
    }
    return rows;
  }

  lease(n: number, owner: string, leaseMs: number, now: number, direction: MessageDirection = 'outbound'): Delivery[] {
    if (!(n >= 1)) return [];
    const until = now + Math.max(1, Math.floor(leaseMs));
    const rows = this.leaseStmt.limit(n).all({ owner, now, until, direction });
    rows.sort((a, b) => (a.queue_id < b.queue_id ? -1 : a.queue_id > b.queue_id ? 1 : a.seq - b.seq));
    const envelopes = new Map<string, EnvelopeRow | undefined>();
    const out: Delivery[] = [];
    for (const row of rows) {
      if (!envelopes.has(row.queue_id)) envelopes.set(row.queue_id, this.envelopeStmt.get(row.queue_id));
      const env = envelopes.get(row.queue_id);
      if (env === undefined) continue; // impossible with the foreign key; skip rather than crash a worker
      out.push({
        id: row.id,
        queueId: row.queue_id,
        seq: row.seq,
        recipient: row.recipient,
        domain: row.domain,
        mailFrom: env.mail_from,
        messageId: env.message_id,
        direction: env.direction,
        submittedBy: env.submitted_by,
        receivedAt: new Date(env.received_at),
        attempts: row.attempts,
        attempt: row.leases,
        leaseOwner: owner,
        leaseUntil: new Date(until),
        lastReply: toReply(row),
      });
    }
    return out;
  }

  /**
   * Delivered. Accepted from any attempt while the delivery is not final (the message did go out,
   * even if this worker's lease expired meanwhile); repeated by the same attempt, still true.
   */
  complete(d: Delivery, reply: RemoteReply, now: number): boolean {
    if (this.completeStmt.run({ id: d.id, attempt: d.attempt, now, ...replyParams(reply) }).changes > 0) return true;
    const row = this.completedByStmt.get(d.id);
    return row?.state === 'delivered' && row.completed_lease === d.attempt;
  }

  /** Only the holder of the current lease may defer, fail, release or extend. */
  defer(d: Delivery, reply: RemoteReply, at: number, now: number): boolean {
    return this.deferStmt.run({ ...guardOf(d), ...replyParams(reply), now, at }).changes > 0;
  }

  fail(d: Delivery, reply: RemoteReply, now: number): boolean {
    return this.failStmt.run({ ...guardOf(d), ...replyParams(reply), now, reason: reply.reason ?? 'rejected' }).changes > 0;
  }

  release(d: Delivery, now: number): boolean {
    return this.releaseStmt.run({ ...guardOf(d), now }).changes > 0;
  }

  /**
   * Every lease given back at once, due now: for a gateway starting on its data folder (which it
   * holds alone, DataFolderLock), whose earlier process died holding them. Returns how many.
   */
  releaseAll(now: number): number {
    return this.sqlite
      .prepare<[number]>("UPDATE deliveries SET lease_owner = NULL, next_attempt_at = ? WHERE state = 'queued' AND lease_owner IS NOT NULL")
      .run(now).changes;
  }

  extend(d: Delivery, leaseMs: number, now: number): boolean {
    return this.extendStmt.run({ ...guardOf(d), until: now + Math.max(1, Math.floor(leaseMs)) }).changes > 0;
  }

  retry(queueId: QueueId | undefined, now: number): number {
    return (queueId === undefined ? this.retryAllStmt.run({ now }) : this.retryOneStmt.run({ id: queueId, now })).changes;
  }

  bounce(queueId: QueueId, reason: string, now: number): number {
    const text = `bounced by the operator: ${reason}`;
    return this.bounceStmt.run({ id: queueId, now, code: OPERATOR_BOUNCE.code, enhanced: OPERATOR_BOUNCE.enhanced, text }).changes;
  }

  statuses(queueId: QueueId, now: number): DeliveryStatus[] {
    return this.byQueueIdStmt.all(queueId).map((row) => toStatus(row, now));
  }

  /** Messages with at least one delivery matching `state` (all with deliveries when undefined), oldest first. */
  listQueueIds(state: QueueListState | undefined, direction: MessageDirection | undefined, limit: number, now: number): QueueId[] {
    const conditions = [state === undefined ? '1' : LIST_FILTERS[state], direction === undefined ? '1' : 'm.direction = @direction'];
    const sql = `SELECT m.queue_id AS queue_id FROM messages AS m
      WHERE EXISTS (SELECT 1 FROM deliveries AS d WHERE d.queue_id = m.queue_id AND ${conditions[0]})
        AND ${conditions[1]}
      ORDER BY m.received_at, m.queue_id LIMIT @limit`;
    let stmt = this.listStmts.get(sql);
    if (stmt === undefined) {
      stmt = this.sqlite.prepare(sql);
      this.listStmts.set(sql, stmt);
    }
    const params: Record<string, unknown> = { limit };
    if (sql.includes('@now')) params.now = now;
    if (direction !== undefined) params.direction = direction;
    return (stmt.all(params) as { queue_id: string }[]).map((r) => r.queue_id);
  }

  /** Failed deliveries whose DSN is still to be queued and due (not backing off), oldest first, with their queue ids. */
  pendingDsn(limit: number, now: number): (DeliveryStatus & { queueId: QueueId })[] {
    return this.pendingDsnStmt.limit(limit).all(now).map((row) => ({ ...toStatus(row, now), queueId: row.queue_id }));
  }

  /** The DSN of these deliveries could not be queued for now: tried again at `retryAt`, `error` kept. */
  deferDsn(ids: readonly number[], retryAt: number, error: string): number {
    let n = 0;
    for (const id of ids) n += this.deferDsnStmt.run(retryAt, error, id).changes;
    return n;
  }

  /** The DSN of these deliveries can never be queued: settled at `now` with `error`, for the operator. */
  failDsn(ids: readonly number[], now: number, error: string): number {
    let n = 0;
    for (const id of ids) n += this.failDsnStmt.run(now, error, id).changes;
    return n;
  }

  /** Marks the DSN of failed deliveries as queued; run it in the commit that enqueues the DSN. */
  markDsnQueued(ids: readonly number[], now: number): number {
    let n = 0;
    for (const id of ids) n += this.markDsnStmt.run(now, id).changes;
    return n;
  }
}

/** Whether a status matches a list filter (the same rules as {@link LIST_FILTERS}). */
export function matchesListState(s: DeliveryStatus, state: QueueListState | undefined): boolean {
  switch (state) {
    case undefined:
      return true;
    case 'queued':
    case 'delivered':
    case 'failed':
      return s.state === state;
    case 'deferred':
      return s.state === 'queued' && s.attempts > 0 && s.leasedBy === null;
    case 'leased':
      return s.state === 'queued' && s.leasedBy !== null;
  }
}

export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

function guardOf(d: Delivery): Guard {
  return { id: d.id, attempt: d.attempt, owner: d.leaseOwner };
}

function replyParams(reply: RemoteReply): ReplyParams {
  return { code: Math.trunc(reply.code), enhanced: reply.enhanced ?? null, text: reply.text };
}

function toReply(row: { reply_code: number | null; reply_enhanced: string | null; reply_text: string | null }): RemoteReply | null {
  if (row.reply_code === null) return null;
  const reply: RemoteReply = { code: row.reply_code, text: row.reply_text ?? '' };
  if (row.reply_enhanced !== null) reply.enhanced = row.reply_enhanced;
  return reply;
}

function date(ms: number | null): Date | null {
  return ms === null ? null : new Date(ms);
}

function toStatus(row: DeliveryRow, now: number): DeliveryStatus {
  const leased = row.state === 'queued' && row.lease_owner !== null && row.next_attempt_at !== null && row.next_attempt_at > now;
  return {
    id: row.id,
    seq: row.seq,
    recipient: row.recipient,
    domain: row.domain,
    state: row.state,
    attempts: row.attempts,
    leases: row.leases,
    nextAttemptAt: row.state === 'queued' && !leased ? date(row.next_attempt_at) : null,
    leasedBy: leased ? row.lease_owner : null,
    leasedUntil: leased ? date(row.next_attempt_at) : null,
    lastAttemptAt: date(row.last_attempt_at),
    finishedAt: date(row.finished_at),
    lastReply: toReply(row),
    failureReason: row.state === 'failed' ? (row.failure_reason ?? null) : null,
    dsnQueuedAt: row.dsn_error !== null && row.dsn_queued_at !== null ? null : date(row.dsn_queued_at),
    dsnAttempts: row.dsn_attempts,
    dsnRetryAt: date(row.dsn_retry_at),
    dsnError: row.dsn_error,
  };
}

import type { HispDatabase } from './database.js';
import { LimitedStatement } from './limited-statement.js';
import { normalizeMessageId } from './message-store.js';

export type MdnKind = 'processed' | 'dispatched' | 'failed';

/** What a tracked (message, recipient) waits for, or how it ended. */
export type TrackingState =
  | 'awaiting-processed'
  | 'awaiting-dispatched'
  /** Final: processed, and no dispatched MDN was asked for. */
  | 'processed'
  /** Final: the receiving HISP delivered it (the positive final notification, R-MDN-7). */
  | 'dispatched'
  /** Final: a failed MDN arrived in time. */
  | 'failed'
  /** Final: a time-out fired (see timedOut); the sender was told it failed. */
  | 'timed-out';

export interface TrackOptions {
  queueId: string;
  /** The Message-ID of the message as sent (the MDN's Original-Message-ID). */
  messageId: string;
  recipient: string;
  /** The envelope sender, who hears of a time-out. */
  sender: string;
  sentAt: Date;
  /** Decision 6: default one hour, from sentAt. */
  processedTimeoutMs: number;
  /** Decision 6: default one hour, from the processed MDN. */
  dispatchedTimeoutMs: number;
  /** Timely and reliable delivery was asked for (X-DIRECT-FINAL-DESTINATION-DELIVERY, R-MDN-4). */
  dispatchedRequested: boolean;
}

export interface TrackingEntry {
  id: number;
  queueId: string;
  messageId: string;
  recipient: string;
  sender: string;
  dispatchedRequested: boolean;
  sentAt: Date;
  state: TrackingState;
  processedDeadline: Date;
  /** Set once a timely processed MDN started the dispatched wait. */
  dispatchedDeadline: Date | null;
  processedAt: Date | null;
  processedLate: boolean;
  dispatchedAt: Date | null;
  dispatchedLate: boolean;
  failedAt: Date | null;
  failedLate: boolean;
  /** How a failure was learnt when not from a signed MDN, e.g. "unauthenticated DSN from mx.example.org". */
  failureNote: string | null;
  timedOut: 'processed' | 'dispatched' | null;
  timedOutAt: Date | null;
  /** The deadline still pending; null once final. */
  nextDeadline: Date | null;
  /** The time-out's failure notice: failed attempts to queue it, when it is tried again, why it failed (issue 14, item 1). */
  noticeAttempts: number;
  noticeRetryAt: Date | null;
  noticeError: string | null;
}

/**
 * `timely`: first of its kind, in time: it may go to the edge. `late`: recorded, but after its
 * deadline or after the time-out fired: it must never reach the edge (the sender already was, or
 * will be, told the message failed). `duplicate`: this kind was already recorded, or the outcome was
 * already final: nothing recorded. `untracked`: no such (Message-ID, recipient).
 */
export type MdnRecordStatus = 'timely' | 'late' | 'duplicate' | 'untracked';

export interface MdnRecordResult {
  status: MdnRecordStatus;
  /** The entry after recording (absent when untracked). */
  entry?: TrackingEntry;
}

export interface DueTimeout {
  id: number;
  kind: 'processed' | 'dispatched';
  deadline: Date;
  entry: TrackingEntry;
}

interface Row {
  id: number;
  queue_id: string;
  message_id: string;
  recipient: string;
  sender: string;
  dispatched_requested: number;
  sent_at: number;
  processed_deadline: number;
  dispatched_timeout_ms: number;
  dispatched_deadline: number | null;
  processed_at: number | null;
  processed_late: number;
  dispatched_at: number | null;
  dispatched_late: number;
  failed_at: number | null;
  failed_late: number;
  failure_note: string | null;
  timed_out: 'processed' | 'dispatched' | null;
  timed_out_at: number | null;
  next_deadline: number | null;
  notice_attempts: number;
  notice_retry_at: number | null;
  notice_error: string | null;
  processed_evidence: string | null;
  dispatched_evidence: string | null;
  failed_evidence: string | null;
  failed_via: 'mdn' | 'dsn' | null;
}

/** What reported an outcome (issue 15: the evidence the API shows with each state). */
export interface MdnEvidence {
  /** The Message-ID of the MDN or DSN, without angle brackets. */
  messageId?: string | undefined;
  /** A failure: reported by a signed MDN, or by a DSN. */
  via: 'mdn' | 'dsn';
}

/**
 * MDN tracking per (message, recipient) on the sending side (R-MDN-7/8/9, decision 6): the sender
 * of every relayed message waits for a processed MDN, and when timely and reliable delivery was
 * asked for, for a dispatched one after it; missing either in time, the sender is told the message
 * failed. MDNs that come after that are recorded and flagged late, so they never reach the edge.
 *
 * Methods are synchronous SQL in the caller's transaction: run them in `db.batch(() => …)` with the
 * write they belong to (the relay's complete, the DSN's enqueue); alone, each commits by itself.
 */
export class TrackingStore {
  private readonly insertStmt;
  private readonly byKeyStmt;
  private readonly byIdStmt;
  private readonly byQueueIdStmt;
  private readonly updateStmt;
  private readonly dueStmt;
  private readonly deferNoticeStmt;
  private readonly noticeFailedStmt;
  private readonly timeOutStmt;
  private readonly purgeStmt;

  constructor(db: HispDatabase) {
    const sql = db.sqlite;
    this.insertStmt = sql.prepare<{
      queueId: string;
      messageId: string;
      recipient: string;
      sender: string;
      requested: number;
      sentAt: number;
      processedDeadline: number;
      dispatchedTimeoutMs: number;
    }>(
      `INSERT INTO mdn_tracking (queue_id, message_id, recipient, sender, dispatched_requested, sent_at,
         processed_deadline, dispatched_timeout_ms, next_deadline)
       VALUES (@queueId, @messageId, @recipient, @sender, @requested, @sentAt, @processedDeadline, @dispatchedTimeoutMs, @processedDeadline)
       ON CONFLICT (message_id, recipient) DO NOTHING`,
    );
    this.byKeyStmt = sql.prepare<[string, string], Row>('SELECT * FROM mdn_tracking WHERE message_id = ? AND recipient = ?');
    this.byIdStmt = sql.prepare<[number], Row>('SELECT * FROM mdn_tracking WHERE id = ?');
    this.byQueueIdStmt = sql.prepare<[string], Row>('SELECT * FROM mdn_tracking WHERE queue_id = ? ORDER BY id');
    this.updateStmt = sql.prepare<Row>(
      `UPDATE mdn_tracking SET dispatched_deadline = @dispatched_deadline, processed_at = @processed_at,
         processed_late = @processed_late, dispatched_at = @dispatched_at, dispatched_late = @dispatched_late,
         failed_at = @failed_at, failed_late = @failed_late, failure_note = @failure_note, next_deadline = @next_deadline,
         processed_evidence = @processed_evidence, dispatched_evidence = @dispatched_evidence,
         failed_evidence = @failed_evidence, failed_via = @failed_via
       WHERE id = @id`,
    );
    this.dueStmt = new LimitedStatement<[{ now: number }], Row>(
      sql,
      (n) =>
        `SELECT * FROM mdn_tracking WHERE next_deadline IS NOT NULL AND next_deadline <= @now AND (notice_retry_at IS NULL OR notice_retry_at <= @now)
         ORDER BY next_deadline, id LIMIT ${n}`,
    );
    this.deferNoticeStmt = sql.prepare<[number, string, number]>(
      'UPDATE mdn_tracking SET notice_attempts = notice_attempts + 1, notice_retry_at = ?, notice_error = ? WHERE id = ? AND next_deadline IS NOT NULL',
    );
    this.noticeFailedStmt = sql.prepare<[string, number]>('UPDATE mdn_tracking SET notice_attempts = notice_attempts + 1, notice_retry_at = NULL, notice_error = ? WHERE id = ?');
    this.timeOutStmt = sql.prepare<{ id: number; kind: string; at: number }>(
      `UPDATE mdn_tracking SET timed_out = @kind, timed_out_at = @at, next_deadline = NULL, notice_retry_at = NULL, notice_error = NULL
       WHERE id = @id AND next_deadline IS NOT NULL AND next_deadline <= @at`,
    );
    this.purgeStmt = sql.prepare<[number]>('DELETE FROM mdn_tracking WHERE next_deadline IS NULL AND sent_at < ?');
  }

  /** Starts tracking a relayed message for one recipient. False when that (Message-ID, recipient) is already tracked. */
  track(o: TrackOptions): boolean {
    const sentAt = o.sentAt.getTime();
    return (
      this.insertStmt.run({
        queueId: o.queueId,
        messageId: normalizeMessageId(o.messageId) ?? '',
        recipient: normalizeAddress(o.recipient),
        sender: o.sender,
        requested: o.dispatchedRequested ? 1 : 0,
        sentAt,
        processedDeadline: sentAt + o.processedTimeoutMs,
        dispatchedTimeoutMs: o.dispatchedTimeoutMs,
      }).changes > 0
    );
  }

  /**
   * Records an MDN (or a DSN taken as a failed one) for (Original-Message-ID, Final-Recipient)
   * arriving at `at`, and says whether it came in time; see {@link MdnRecordStatus}.
   */
  record(messageId: string, recipient: string, kind: MdnKind, at: Date, failureNote?: string, evidence?: MdnEvidence): MdnRecordResult {
    const row = this.byKeyStmt.get(normalizeMessageId(messageId) ?? '', normalizeAddress(recipient));
    if (row === undefined) return { status: 'untracked' };
    const t = at.getTime();
    const status = transition(row, kind, t);
    if (kind === 'failed' && status !== 'duplicate' && failureNote !== undefined) row.failure_note = failureNote;
    if (status !== 'duplicate' && evidence) {
      const id = evidence.messageId === undefined ? null : (normalizeMessageId(evidence.messageId) ?? null);
      if (kind === 'processed') row.processed_evidence = id;
      else if (kind === 'dispatched') row.dispatched_evidence = id;
      else {
        row.failed_evidence = id;
        row.failed_via = evidence.via;
      }
    }
    if (status !== 'duplicate') this.updateStmt.run(row);
    return { status, entry: toEntry(row) };
  }

  /** Entries whose pending deadline passed, earliest first: each needs a failure notice to its sender. */
  dueTimeouts(now: Date, limit = 100): DueTimeout[] {
    return this.dueStmt.limit(limit).all({ now: now.getTime() }).map((row) => ({
      id: row.id,
      kind: pendingKind(row),
      deadline: new Date(row.next_deadline ?? 0),
      entry: toEntry(row),
    }));
  }

  /**
   * Claims a due time-out: true once, for the caller that must now tell the sender (do it in the
   * same commit as the DSN's enqueue); false when it is no longer due (an MDN came, or another
   * caller claimed it).
   */
  markTimedOut(id: number, at: Date): boolean {
    const row = this.byIdStmt.get(id);
    if (row === undefined) return false;
    return this.timeOutStmt.run({ id, kind: pendingKind(row), at: at.getTime() }).changes > 0;
  }

  /** The time-out's notice could not be queued for now: tried again at `retryAt` (the notifier's back-off). */
  deferNotice(id: number, retryAt: Date, error: string): boolean {
    return this.deferNoticeStmt.run(retryAt.getTime(), error, id).changes > 0;
  }

  /**
   * The time-out's notice can never be queued: the time-out is claimed (as markTimedOut) and the
   * reason kept for the operator (hisp status). False when it was no longer due.
   */
  noticeFailed(id: number, at: Date, error: string): boolean {
    if (!this.markTimedOut(id, at)) return false;
    this.noticeFailedStmt.run(error, id);
    return true;
  }

  get(messageId: string, recipient: string): TrackingEntry | undefined {
    const row = this.byKeyStmt.get(normalizeMessageId(messageId) ?? '', normalizeAddress(recipient));
    return row === undefined ? undefined : toEntry(row);
  }

  /** Every recipient's tracking of a queued message (for `hisp status`). */
  forQueueId(queueId: string): TrackingEntry[] {
    return this.byQueueIdStmt.all(queueId).map(toEntry);
  }

  /** Deletes final entries sent before `before`. */
  purge(before: Date): number {
    return this.purgeStmt.run(before.getTime()).changes;
  }
}

/** Applies an MDN to a row in place; returns how it counts. */
function transition(row: Row, kind: MdnKind, t: number): MdnRecordStatus {
  const processedTimely = row.processed_at !== null && row.processed_late === 0;
  // A failed MDN after a processed one (no dispatched asked for) still counts: the receiving HISP
  // could not deliver after all (R-MDN-5). After a dispatched one it contradicts a final answer.
  const dispatchedFinal = row.dispatched_at !== null && row.dispatched_late === 0;
  const failedFinal = row.failed_at !== null && row.failed_late === 0;
  const timedOut = row.timed_out !== null;

  switch (kind) {
    case 'processed': {
      if (row.processed_at !== null || failedFinal) return 'duplicate';
      row.processed_at = t;
      if (timedOut || t > row.processed_deadline) {
        // Late: the processed time-out fires (or fired) regardless.
        row.processed_late = 1;
        return 'late';
      }
      // Overtaken by the dispatched MDN (the two travel separately and can swap on the way): the
      // outcome is final already; the processed one is still the first of its kind, in time.
      if (dispatchedFinal) return 'timely';
      if (row.dispatched_requested === 1) {
        row.dispatched_deadline = t + row.dispatched_timeout_ms;
        row.next_deadline = row.dispatched_deadline;
      } else {
        row.next_deadline = null;
      }
      return 'timely';
    }
    case 'dispatched': {
      if (row.dispatched_at !== null || failedFinal) return 'duplicate';
      row.dispatched_at = t;
      // A dispatched MDN implies processed: without a timely processed one, it answers the processed deadline.
      const deadline = processedTimely ? (row.dispatched_deadline ?? Number.POSITIVE_INFINITY) : row.processed_deadline;
      if (timedOut || t > deadline) {
        row.dispatched_late = 1;
        return 'late';
      }
      row.next_deadline = null;
      return 'timely';
    }
    case 'failed': {
      if (row.failed_at !== null || dispatchedFinal) return 'duplicate';
      row.failed_at = t;
      if (timedOut || (row.next_deadline !== null && t > row.next_deadline)) {
        row.failed_late = 1;
        return 'late';
      }
      row.next_deadline = null;
      return 'timely';
    }
  }
}

function pendingKind(row: Row): 'processed' | 'dispatched' {
  return row.processed_at !== null && row.processed_late === 0 ? 'dispatched' : 'processed';
}

function stateOf(row: Row): TrackingState {
  if (row.timed_out !== null) return 'timed-out';
  if (row.failed_at !== null && row.failed_late === 0) return 'failed';
  if (row.dispatched_at !== null && row.dispatched_late === 0) return 'dispatched';
  if (row.processed_at !== null && row.processed_late === 0) return row.dispatched_requested === 1 ? 'awaiting-dispatched' : 'processed';
  return 'awaiting-processed';
}

function date(ms: number | null): Date | null {
  return ms === null ? null : new Date(ms);
}

function toEntry(row: Row): TrackingEntry {
  return {
    id: row.id,
    queueId: row.queue_id,
    messageId: row.message_id,
    recipient: row.recipient,
    sender: row.sender,
    dispatchedRequested: row.dispatched_requested === 1,
    sentAt: new Date(row.sent_at),
    state: stateOf(row),
    processedDeadline: new Date(row.processed_deadline),
    dispatchedDeadline: date(row.dispatched_deadline),
    processedAt: date(row.processed_at),
    processedLate: row.processed_late === 1,
    dispatchedAt: date(row.dispatched_at),
    dispatchedLate: row.dispatched_late === 1,
    failedAt: date(row.failed_at),
    failedLate: row.failed_late === 1,
    failureNote: row.failure_note,
    timedOut: row.timed_out,
    timedOutAt: date(row.timed_out_at),
    nextDeadline: date(row.next_deadline),
    noticeAttempts: row.notice_attempts,
    noticeRetryAt: date(row.notice_retry_at),
    noticeError: row.notice_error,
  };
}

/** Tracking and de-duplication keys: trimmed, without angle brackets, lowercased. */
export function normalizeAddress(address: string): string {
  let a = address.trim();
  if (a.startsWith('<') && a.endsWith('>')) a = a.slice(1, -1);
  return a.toLowerCase();
}

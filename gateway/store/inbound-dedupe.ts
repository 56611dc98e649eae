import type { HispDatabase } from './database.js';
import { normalizeMessageId } from './message-store.js';
import { normalizeAddress } from './tracking-store.js';

export interface InboundDedupeOptions {
  /** Default Date.now. */
  now?: () => number;
}

/**
 * The receive side's memory of what it accepted, per (envelope sender, Message-ID, recipient): a
 * sending HISP that relayed a message, got our 250 and died before it recorded that, sends it again;
 * we acknowledge the copy and do not deliver it twice (issue 5). Keys are compared case-insensitively
 * for addresses, exactly for the Message-ID (without its angle brackets).
 */
export class InboundDedupe {
  private readonly now: () => number;
  private readonly upsert;
  private readonly pruneStmt;
  private readonly forgetStmt;

  constructor(db: HispDatabase, options: InboundDedupeOptions = {}) {
    this.now = options.now ?? Date.now;
    // Inserted, or refreshed when the earlier sighting is out of the window: a row comes back. Seen
    // within the window: the conflict's WHERE is false, nothing changes and no row comes back.
    this.upsert = db.sqlite.prepare<{ sender: string; messageId: string; recipient: string; now: number; cutoff: number }, { seen_at: number }>(
      `INSERT INTO inbound_seen (sender, message_id, recipient, seen_at) VALUES (@sender, @messageId, @recipient, @now)
       ON CONFLICT (sender, message_id, recipient) DO UPDATE SET seen_at = excluded.seen_at
         WHERE inbound_seen.seen_at <= @cutoff
       RETURNING seen_at`,
    );
    this.pruneStmt = db.sqlite.prepare<[number]>('DELETE FROM inbound_seen WHERE seen_at < ?');
    this.forgetStmt = db.sqlite.prepare<[string, string, string]>(
      'DELETE FROM inbound_seen WHERE sender = ? AND message_id = ? AND recipient = ?',
    );
  }

  /**
   * Atomically: true when this (sender, Message-ID, recipient) was already seen less than `windowMs`
   * ago (a duplicate: acknowledge, do not deliver); otherwise records it now and returns false. Run it
   * in the commit that stores the inbound message, so that a message not stored is not remembered
   * either. A message without a Message-ID is never a duplicate.
   */
  seen(envelopeSender: string, messageId: string | null | undefined, recipient: string, windowMs: number, now = this.now()): boolean {
    const id = normalizeMessageId(messageId);
    if (id === null) return false;
    const row = this.upsert.get({
      sender: normalizeAddress(envelopeSender),
      messageId: id,
      recipient: normalizeAddress(recipient),
      now,
      cutoff: now - Math.max(0, windowMs),
    });
    return row === undefined;
  }

  /** Forgets one sighting (a delivery that failed for good and may be sent again). */
  forget(envelopeSender: string, messageId: string, recipient: string): boolean {
    const id = normalizeMessageId(messageId);
    if (id === null) return false;
    return this.forgetStmt.run(normalizeAddress(envelopeSender), id, normalizeAddress(recipient)).changes > 0;
  }

  /** Deletes sightings older than `windowMs` (they no longer de-duplicate anything). */
  prune(windowMs: number, now = this.now()): number {
    return this.pruneStmt.run(now - windowMs).changes;
  }
}

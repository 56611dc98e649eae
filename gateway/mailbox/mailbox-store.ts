import { mkdirSync } from 'node:fs';
import { open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { HispError } from '../core/errors.js';
import type { HispDatabase } from '../store/database.js';
import { fsyncDirectory } from '../store/directory-sync.js';
import { randomHexId } from '../core/random-id.js';

/** A received message as it is delivered to an API mailbox. */
export interface MailboxDelivery {
  /** The queue delivery's id (gateway/delivery/delivery-id.ts): the same on every try. */
  deliveryId: string;
  mailbox: string;
  queueId: string;
  mailFrom: string;
  messageId: string | null;
  receivedAt: Date;
  /** Authentication-Results, trace, and the decrypted message as it was signed. */
  message: Buffer;
  /** The signer metadata of the trust check (gateway/flows/signer-metadata.ts). */
  security: Record<string, unknown>;
  /** The sender asked for the dispatched MDN (R-MDN-5): it goes when the PHR acknowledges. */
  dispatchedRequested: boolean;
}

export interface MailboxEntry {
  id: string;
  /** The position in the mailbox, the cursor of the listing. */
  seq: number;
  mailbox: string;
  queueId: string;
  mailFrom: string;
  messageId: string | null;
  receivedAt: Date;
  size: number;
  security: Record<string, unknown>;
  dispatchedRequested: boolean;
  ackedAt: Date | null;
  ackedBy: string | null;
}

interface Row {
  seq: number;
  id: string;
  mailbox: string;
  queue_id: string;
  mail_from: string;
  message_id: string | null;
  received_at: number;
  size: number;
  file: string;
  security: string;
  dispatched_requested: number;
  acked_at: number | null;
  acked_by: string | null;
}

/** Which messages a listing returns: those waiting for the PHR (default), those it took, or all. */
export type MailboxListState = 'waiting' | 'acknowledged' | 'all';

const STATE_FILTER: Readonly<Record<MailboxListState, string>> = {
  waiting: 'AND acked_at IS NULL',
  acknowledged: 'AND acked_at IS NOT NULL',
  all: '',
};

/**
 * The API mailboxes (issue 15, "Receive"; schema migration 7): received messages for the
 * addresses whose delivery is `api`, waiting until the PHR takes them. The message is written to
 * its own file (`<dataDir>/mailboxes/<id>.eml`: written, fdatasync'd, renamed, the folder synced)
 * before its row commits, so an acknowledged delivery is never a row without its file; a crash
 * between the two leaves a file that no row names, removed at start ({@link sweep}).
 */
export class MailboxStore {
  private readonly dir: string;
  private readonly byDeliveryStmt;
  private readonly byIdStmt;
  private readonly insertStmt;
  private readonly ackStmt;

  constructor(
    private readonly db: HispDatabase,
    private readonly now: () => number = Date.now,
  ) {
    this.dir = join(db.dataDir, 'mailboxes');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const sql = db.sqlite;
    this.byDeliveryStmt = sql.prepare<[string], Row>('SELECT * FROM mailbox_messages WHERE delivery_id = ?');
    this.byIdStmt = sql.prepare<[string], Row>('SELECT * FROM mailbox_messages WHERE id = ?');
    this.insertStmt = sql.prepare<Omit<Row, 'seq' | 'acked_at' | 'acked_by'> & { delivery_id: string }>(
      `INSERT INTO mailbox_messages (id, delivery_id, mailbox, queue_id, mail_from, message_id, received_at, size, file, security, dispatched_requested)
       VALUES (@id, @delivery_id, @mailbox, @queue_id, @mail_from, @message_id, @received_at, @size, @file, @security, @dispatched_requested)
       ON CONFLICT (delivery_id) DO NOTHING`,
    );
    this.ackStmt = sql.prepare<[number, string, string]>('UPDATE mailbox_messages SET acked_at = ?, acked_by = ? WHERE id = ? AND acked_at IS NULL');
  }

  /**
   * Puts a received message in its mailbox, once per delivery: a try after a crash (or a retry
   * whose first outcome was lost) finds the entry and writes nothing. Resolves with the entry once
   * it is durable.
   */
  async deliver(item: MailboxDelivery): Promise<MailboxEntry> {
    const existing = this.byDeliveryStmt.get(item.deliveryId);
    if (existing) return toEntry(existing);
    const id = `msg_${randomHexId(24)}`;
    const name = `${id}.eml`;
    const path = join(this.dir, name);
    const temp = `${path}.tmp`;
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(item.message);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
    await fsyncDirectory(this.dir);
    const inserted = await this.db.batch(() => {
      const changes = this.insertStmt.run({
        id,
        delivery_id: item.deliveryId,
        mailbox: item.mailbox.toLowerCase(),
        queue_id: item.queueId,
        mail_from: item.mailFrom,
        message_id: item.messageId,
        received_at: item.receivedAt.getTime(),
        size: item.message.length,
        file: join('mailboxes', name),
        security: JSON.stringify(item.security),
        dispatched_requested: item.dispatchedRequested ? 1 : 0,
      }).changes;
      return changes > 0;
    });
    if (!inserted) {
      // Another try of the same delivery committed first: its entry stands, this copy goes.
      await rm(path, { force: true });
    }
    const row = this.byDeliveryStmt.get(item.deliveryId);
    if (!row) throw new HispError('HISP_IO', 'the mailbox entry was not stored');
    return toEntry(row);
  }

  /**
   * A mailbox's messages after `cursor` (the seq of the last one seen; 0: from the start), oldest
   * first, at most `limit`.
   */
  list(mailbox: string, cursor: number, limit: number, state: MailboxListState = 'waiting'): MailboxEntry[] {
    const n = Math.max(1, Math.min(500, Math.floor(limit)));
    return this.db.sqlite
      .prepare<[string, number], Row>(`SELECT * FROM mailbox_messages WHERE mailbox = ? AND seq > ? ${STATE_FILTER[state]} ORDER BY seq LIMIT ${n}`)
      .all(mailbox.toLowerCase(), Math.max(0, Math.floor(cursor)))
      .map(toEntry);
  }

  get(id: string): MailboxEntry | undefined {
    const row = this.byIdStmt.get(id);
    return row ? toEntry(row) : undefined;
  }

  /** Where the message of an entry is (absolute path). */
  fileOf(id: string): string | undefined {
    const row = this.byIdStmt.get(id);
    return row ? join(this.db.dataDir, row.file) : undefined;
  }

  /**
   * The PHR took the message: its final delivery. True the first time (the caller then sends the
   * dispatched MDN), false when it was acknowledged before (an acknowledgement is idempotent).
   */
  async acknowledge(id: string, by: string): Promise<boolean> {
    return this.db.batch(() => this.ackStmt.run(this.now(), by, id).changes > 0);
  }

  /**
   * Removes files that no entry names (a crash between the write and the commit); returns how
   * many. Only at start, before any delivery: a delivery in progress has a file and no row yet.
   */
  async sweep(): Promise<number> {
    const named = new Set(this.db.sqlite.prepare<[], { file: string }>('SELECT file FROM mailbox_messages').all().map((r) => r.file));
    let removed = 0;
    for (const name of await readdir(this.dir)) {
      if (!named.has(join('mailboxes', name))) {
        await rm(join(this.dir, name), { force: true });
        removed++;
      }
    }
    return removed;
  }
}

function toEntry(row: Row): MailboxEntry {
  return {
    id: row.id,
    seq: row.seq,
    mailbox: row.mailbox,
    queueId: row.queue_id,
    mailFrom: row.mail_from,
    messageId: row.message_id,
    receivedAt: new Date(row.received_at),
    size: row.size,
    security: JSON.parse(row.security) as Record<string, unknown>,
    dispatchedRequested: row.dispatched_requested === 1,
    ackedAt: row.acked_at === null ? null : new Date(row.acked_at),
    ackedBy: row.acked_by,
  };
}

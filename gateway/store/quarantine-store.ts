import { HispError } from '../core/errors.js';
import type { HispDatabase } from './database.js';
import { LimitedStatement } from './limited-statement.js';
import type { MessageEnvelope, MessageStore, StoredMessage } from './message-store.js';

export interface QuarantineEntry {
  /** The queue id of the stored raw message; the id `hisp quarantine show|delete` take. */
  id: string;
  /** Why: a HISP_… error code as a rule (HISP_SIG_INVALID, HISP_TRUST_NO_ANCHOR…). */
  reasonCode: string;
  detail: string;
  quarantinedAt: Date;
  message: StoredMessage;
}

export interface QuarantineListOptions {
  /** Default 100, newest first. */
  limit?: number;
  /** Only entries quarantined before this (paging). */
  before?: Date;
}

export interface QuarantineStoreOptions {
  /** Default Date.now. */
  now?: () => number;
}

interface Row {
  queue_id: string;
  reason_code: string;
  detail: string;
  quarantined_at: number;
}

/**
 * Inbound messages kept for the operator instead of being delivered (a signature that does not
 * verify, a sender not trusted…), with the reason: `hisp quarantine list|show|delete`. The raw
 * message is a stored message (MessageStore); deleting the entry deletes it.
 */
export class QuarantineStore {
  private readonly now: () => number;
  private readonly insertStmt;
  private readonly getStmt;
  private readonly listStmt;

  constructor(
    private readonly db: HispDatabase,
    private readonly messages: MessageStore,
    options: QuarantineStoreOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.insertStmt = db.sqlite.prepare<[string, string, string, number]>(
      `INSERT INTO quarantine (queue_id, reason_code, detail, quarantined_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (queue_id) DO UPDATE SET reason_code = excluded.reason_code, detail = excluded.detail`,
    );
    this.getStmt = db.sqlite.prepare<[string], Row>('SELECT * FROM quarantine WHERE queue_id = ?');
    this.listStmt = new LimitedStatement<[number], Row>(
      db.sqlite,
      (n) => `SELECT * FROM quarantine WHERE quarantined_at < ? ORDER BY quarantined_at DESC, queue_id DESC LIMIT ${n}`,
    );
  }

  /**
   * Quarantines a stored message (synchronous SQL, for the caller's transaction). Quarantining it
   * again replaces the reason. HISP_USAGE when there is no such message.
   */
  add(queueId: string, reasonCode: string, detail: string): void {
    if (!this.messages.has(queueId)) throw new HispError('HISP_USAGE', `no stored message ${queueId} to quarantine`);
    this.insertStmt.run(queueId, reasonCode, detail, this.now());
  }

  /** Quarantines a stored message (group commit). */
  quarantine(queueId: string, reasonCode: string, detail: string): Promise<void> {
    return this.db.batch(() => this.add(queueId, reasonCode, detail));
  }

  /** Stores a raw inbound message and quarantines it, in one commit; returns its id. */
  async store(envelope: MessageEnvelope, raw: Uint8Array, reasonCode: string, detail: string): Promise<string> {
    // A file of its own: kept until the operator deletes it, it must not hold a spool segment.
    const prepared = await this.messages.writeBody(raw, { file: true });
    return this.messages.commitOrDiscard([prepared], () =>
      this.db.batch(() => {
        const stored = this.messages.insert(envelope, prepared);
        this.add(stored.queueId, reasonCode, detail);
        return stored.queueId;
      }),
    );
  }

  list(options: QuarantineListOptions = {}): QuarantineEntry[] {
    const before = options.before?.getTime() ?? Number.MAX_SAFE_INTEGER;
    return this.listStmt.limit(Math.max(1, options.limit ?? 100)).all(before).flatMap((row) => {
      const entry = this.toEntry(row);
      return entry === undefined ? [] : [entry];
    });
  }

  get(id: string): QuarantineEntry | undefined {
    const row = this.getStmt.get(id);
    return row === undefined ? undefined : this.toEntry(row);
  }

  /** The entry and the raw message as received. */
  async show(id: string): Promise<{ entry: QuarantineEntry; raw: Buffer } | undefined> {
    const entry = this.get(id);
    if (entry === undefined) return undefined;
    return { entry, raw: await this.messages.readBody(id) };
  }

  /** Deletes the entry and its raw message. False when there was no such entry. */
  async delete(id: string): Promise<boolean> {
    if (this.getStmt.get(id) === undefined) return false;
    return this.messages.delete(id);
  }

  private toEntry(row: Row): QuarantineEntry | undefined {
    const message = this.messages.get(row.queue_id);
    if (message === undefined) return undefined;
    return {
      id: row.queue_id,
      reasonCode: row.reason_code,
      detail: row.detail,
      quarantinedAt: new Date(row.quarantined_at),
      message,
    };
  }
}

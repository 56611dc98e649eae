import type { HispDatabase } from '../store/database.js';
import { MessageStore, type BodySource, type MessageDirection, type MessageEnvelope, type PreparedBody, type StoredMessage } from '../store/message-store.js';
import { DeliveryTable, matchesListState } from './delivery-table.js';
import type {
  Delivery,
  DeliveryStatus,
  EnqueueItem,
  MessageStatus,
  OutboundQueue,
  QueueId,
  QueueListOptions,
  RemoteReply,
} from './outbound-queue.js';

export interface SqliteQueueOptions {
  /** Default Date.now; tests drive leases and due times with their own clock. */
  now?: () => number;
  /** Default: a MessageStore on the same database and clock. */
  messages?: MessageStore;
  /** Passed to the default MessageStore (see MessageStoreOptions.onEraseFailure). */
  onEraseFailure?: (err: unknown) => void;
}

export interface EnqueueOptions {
  /**
   * Runs inside the commit that stores the message, after its rows are inserted: whatever it
   * writes commits with the message, and if it throws, the message is not stored and enqueue
   * rejects with its error. For example, marking the failures a DSN reports as notified.
   */
  withinCommit?: (message: StoredMessage) => void;
  /** The recipients to create deliveries for, default all of the envelope (inbound de-duplication drops some). */
  deliverTo?: readonly string[];
}

/** A failed delivery whose DSN is still to be sent, with its message. */
export interface PendingDsn {
  delivery: DeliveryStatus;
  message: StoredMessage;
}

/**
 * The embedded {@link OutboundQueue}: envelopes and deliveries in hisp.sqlite, bodies in
 * `<dataDir>/messages/`. Every write goes through the database's group commit, so concurrent SMTP
 * sessions, workers and their complete/defer calls share fsyncs and none resolves before its COMMIT.
 * Reads are synchronous SQLite reads returned as promises (the interface is async for a networked
 * implementation).
 */
export class SqliteQueue implements OutboundQueue {
  readonly messages: MessageStore;
  readonly deliveries: DeliveryTable;
  private readonly now: () => number;

  constructor(
    private readonly db: HispDatabase,
    options: SqliteQueueOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.messages = options.messages ?? new MessageStore(db, { now: this.now, ...(options.onEraseFailure ? { onEraseFailure: options.onEraseFailure } : {}) });
    this.deliveries = new DeliveryTable(db.sqlite);
  }

  /**
   * The message row and its deliveries for a body already written; synchronous, for a caller's
   * transaction (`db.batch(() => queue.insert(…))`).
   */
  insert(envelope: MessageEnvelope, prepared: PreparedBody, deliverTo: readonly string[] = envelope.recipients): StoredMessage {
    const stored = this.messages.insert(envelope, prepared);
    this.deliveries.insert(stored.queueId, stored.direction, deliverTo, stored.receivedAt.getTime());
    return stored;
  }

  async enqueue(envelope: MessageEnvelope, body: BodySource, options: EnqueueOptions = {}): Promise<QueueId> {
    const prepared = await this.messages.writeBody(body);
    return this.messages.commitOrDiscard([prepared], () =>
      this.db.batch(() => {
        const stored = this.insert(envelope, prepared, options.deliverTo);
        options.withinCommit?.(stored);
        return stored.queueId;
      }),
    );
  }

  /**
   * Stores a message with its deliveries already leased to `owner` for `leaseMs` (DeliveryTable
   * .insertLeased): the worker it is handed to starts on it without the lease query. Resolves once
   * durable, with what that worker needs.
   */
  async enqueueLeased(
    envelope: MessageEnvelope,
    body: BodySource,
    owner: string,
    leaseMs: number,
    options: Pick<EnqueueOptions, 'withinCommit'> = {},
  ): Promise<{ message: StoredMessage; deliveries: Delivery[] }> {
    const prepared = await this.messages.writeBody(body);
    return this.messages.commitOrDiscard([prepared], () =>
      this.db.batch(() => {
        const message = this.messages.insert(envelope, prepared);
        const deliveries = this.deliveries.insertLeased(message, envelope.recipients, owner, this.now() + Math.max(1, Math.floor(leaseMs)));
        options.withinCommit?.(message);
        return { message, deliveries };
      }),
    );
  }

  /**
   * Stores the message only if `decide`, run inside the commit, says so: it returns the recipients
   * to create deliveries for, or false (or none) to store nothing — the body written beforehand is
   * then removed. For writes that must be decided with the message: the inbound de-duplication,
   * the "sent once" records of MDNs and DSNs. Resolves with the queue id, or undefined.
   */
  async enqueueWhen(envelope: MessageEnvelope, body: BodySource, decide: () => readonly string[] | false): Promise<QueueId | undefined> {
    const prepared = await this.messages.writeBody(body);
    const queueId = await this.messages.commitOrDiscard([prepared], () =>
      this.db.batch(() => {
        const recipients = decide();
        if (recipients === false || recipients.length === 0) return undefined;
        return this.insert(envelope, prepared, recipients).queueId;
      }),
    );
    if (queueId === undefined) await this.messages.discard(prepared);
    return queueId;
  }

  async enqueueMany(items: readonly EnqueueItem[]): Promise<QueueId[]> {
    const settled = await Promise.allSettled(items.map((item) => this.messages.writeBody(item.body)));
    const prepared = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    return this.messages.commitOrDiscard(prepared, async () => {
      if (failed !== undefined) throw failed.reason;
      return this.db.batch(() => items.map((item, i) => this.insert(item.envelope, prepared[i] as PreparedBody).queueId));
    });
  }

  /** Outbound deliveries by default; the local delivery of received messages leases `'inbound'` ones. */
  lease(n: number, workerId: string, leaseMs: number, direction: MessageDirection = 'outbound'): Promise<Delivery[]> {
    return this.db.batch(() => this.deliveries.lease(n, workerId, leaseMs, this.now(), direction));
  }

  body(queueId: QueueId): Promise<Buffer> {
    return this.messages.readBody(queueId);
  }

  complete(d: Delivery, reply: RemoteReply): Promise<boolean> {
    return this.db.batch(() => this.deliveries.complete(d, reply, this.now()));
  }

  defer(d: Delivery, reply: RemoteReply, at: Date): Promise<boolean> {
    return this.db.batch(() => this.deliveries.defer(d, reply, at.getTime(), this.now()));
  }

  fail(d: Delivery, reply: RemoteReply): Promise<boolean> {
    return this.db.batch(() => this.deliveries.fail(d, reply, this.now()));
  }

  release(d: Delivery): Promise<boolean> {
    return this.db.batch(() => this.deliveries.release(d, this.now()));
  }

  /** Keeps a lease for `leaseMs` more from now (a long transfer). False when it was lost. */
  extendLease(d: Delivery, leaseMs: number): Promise<boolean> {
    return this.db.batch(() => this.deliveries.extend(d, leaseMs, this.now()));
  }

  retry(id?: QueueId): Promise<number> {
    return this.db.batch(() => this.deliveries.retry(id, this.now()));
  }

  bounce(id: QueueId, reason: string): Promise<number> {
    return this.db.batch(() => this.deliveries.bounce(id, reason, this.now()));
  }

  list(options: QueueListOptions = {}): Promise<MessageStatus[]> {
    const now = this.now();
    const ids = this.deliveries.listQueueIds(options.state, options.direction, Math.max(1, options.limit ?? 100), now);
    const out: MessageStatus[] = [];
    for (const id of ids) {
      const status = this.status(id, now);
      if (status === undefined) continue;
      out.push({ ...status, deliveries: status.deliveries.filter((d) => matchesListState(d, options.state)) });
    }
    return Promise.resolve(out);
  }

  get(ref: string): Promise<MessageStatus | undefined> {
    const now = this.now();
    const direct = this.messages.has(ref) ? this.status(ref, now) : undefined;
    if (direct !== undefined) return Promise.resolve(direct);
    const latest = this.messages.findByMessageId(ref)[0];
    return Promise.resolve(latest === undefined ? undefined : this.status(latest.queueId, now));
  }

  /** Failed deliveries whose DSN is still to be queued (the operator's bounces included), oldest first. */
  pendingDsn(limit = 100): Promise<PendingDsn[]> {
    const out: PendingDsn[] = [];
    for (const d of this.deliveries.pendingDsn(limit, this.now())) {
      const message = this.messages.get(d.queueId);
      if (message === undefined) continue;
      const { queueId: _queueId, ...delivery } = d;
      out.push({ delivery, message });
    }
    return Promise.resolve(out);
  }

  /** Synchronous, for `withinCommit` of the DSN's own enqueue. */
  markDsnQueued(deliveryIds: readonly number[]): number {
    return this.deliveries.markDsnQueued(deliveryIds, this.now());
  }

  /** The DSN could not be queued: tried again at `retryAt` (the notifier's back-off), with why. */
  deferDsn(deliveryIds: readonly number[], retryAt: Date, error: string): Promise<number> {
    return this.db.batch(() => this.deliveries.deferDsn(deliveryIds, retryAt.getTime(), error));
  }

  /** The DSN can never be queued: settled now with why, for the operator (hisp status, hisp queue list). */
  failDsn(deliveryIds: readonly number[], error: string): Promise<number> {
    return this.db.batch(() => this.deliveries.failDsn(deliveryIds, this.now(), error));
  }

  /**
   * Deletes messages whose deliveries are all final (failed ones with their DSN queued) since
   * before `before`, not in quarantine; then their bodies. Returns the number deleted.
   */
  async purge(before: Date, limit = 1000): Promise<number> {
    const ids = await this.db.batch(() => {
      const rows = this.db.sqlite
        .prepare<{ before: number; limit: number }, { queue_id: string; in_file: number }>(
          `SELECT m.queue_id, m.body IS NULL AND m.spool_segment IS NULL AS in_file FROM messages AS m
           WHERE m.received_at < @before
             AND NOT EXISTS (SELECT 1 FROM quarantine AS q WHERE q.queue_id = m.queue_id)
             AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.queue_id = m.queue_id
                   AND (d.state = 'queued' OR (d.state = 'failed' AND d.dsn_queued_at IS NULL) OR d.finished_at >= @before))
           ORDER BY m.received_at LIMIT @limit`,
        )
        .all({ before: before.getTime(), limit });
      const spooled = this.messages.spooledBodies(rows.map((r) => r.queue_id));
      this.messages.deleteRows(rows.map((r) => r.queue_id));
      return { rows, spooled };
    });
    // Inline bodies went with their rows; files are removed, spooled bodies overwritten (their
    // segment goes once none refers to it, reclaimSpool). A spooled message may have a file too:
    // the copy of a quarantine set-aside cut short by a crash (MessageStore.setAside).
    const spooledIds = new Set(ids.spooled.map((b) => b.queueId));
    await this.messages.unlinkBodies(ids.rows.filter((r) => r.in_file === 1 || spooledIds.has(r.queue_id)).map((r) => r.queue_id));
    await this.messages.eraseSpooled(ids.spooled);
    return ids.rows.length;
  }

  private status(queueId: QueueId, now: number): MessageStatus | undefined {
    const message = this.messages.get(queueId);
    return message === undefined ? undefined : { ...message, deliveries: this.deliveries.statuses(queueId, now) };
  }
}

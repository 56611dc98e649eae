import type { FailureReason } from '../events/failure-reason.js';
import type { BodySource, MessageDirection, MessageEnvelope, StoredMessage } from '../store/message-store.js';

/** The id of a queued message (its body and envelope); the CLI's `hisp queue retry ID`. */
export type QueueId = string;

export type DeliveryState = 'queued' | 'delivered' | 'failed';

/**
 * A remote (or synthesized) reply: the SMTP reply of the last try, or for a connection error a
 * reply made up by the worker (`451 4.4.1 connection refused`). Structurally an `SmtpReply`.
 */
export interface RemoteReply {
  code: number;
  enhanced?: string;
  text: string;
  /** For a failure: why, in the API's words (gateway/events/failure-reason.ts); default `rejected`. */
  reason?: FailureReason;
}

/** A delivery leased to a worker: one recipient of one message. */
export interface Delivery {
  readonly id: number;
  readonly queueId: QueueId;
  /** The recipient's position in the envelope (0-based). */
  readonly seq: number;
  readonly recipient: string;
  /** Lowercased domain of the recipient: deliveries of one message and domain are leased together. */
  readonly domain: string;
  readonly mailFrom: string;
  readonly messageId: string | null;
  readonly direction: MessageDirection;
  readonly submittedBy: string | null;
  /** When the message was accepted: the start of its give-up time (RetrySchedule.deadline). */
  readonly receivedAt: Date;
  /** Tries that ended with a reply before this one. */
  readonly attempts: number;
  /** This lease's number (1 for the first): the token that makes complete/defer/fail idempotent. */
  readonly attempt: number;
  readonly leaseOwner: string;
  readonly leaseUntil: Date;
  /** The reply of the previous try, if any. */
  readonly lastReply: RemoteReply | null;
}

/** A recipient's state as `hisp status` and `hisp queue list` show it. */
export interface DeliveryStatus {
  id: number;
  seq: number;
  recipient: string;
  domain: string;
  state: DeliveryState;
  attempts: number;
  leases: number;
  /** Due time of the next try (queued and not leased). */
  nextAttemptAt: Date | null;
  /** An unexpired lease: who holds it and until when. */
  leasedBy: string | null;
  leasedUntil: Date | null;
  lastAttemptAt: Date | null;
  finishedAt: Date | null;
  lastReply: RemoteReply | null;
  /** Failed: why, in the API's words (gateway/events/failure-reason.ts); null for failures recorded before it was kept. */
  failureReason: FailureReason | null;
  /** Failed: when the DSN to the sender was queued (null: still to do, or it could not be). */
  dsnQueuedAt: Date | null;
  /** Failed attempts to queue the DSN (issue 14, item 1). */
  dsnAttempts: number;
  /** When the DSN is tried again after a failed attempt (null: not backing off). */
  dsnRetryAt: Date | null;
  /** Why the DSN could not be queued: with dsnRetryAt, for now; without, for good (the operator must tell the sender). */
  dsnError: string | null;
}

export interface MessageStatus extends StoredMessage {
  deliveries: DeliveryStatus[];
}

/**
 * Filters of {@link OutboundQueue.list}: `queued` is every delivery not final; `deferred` those of
 * them that were tried at least once and are waiting; `leased` those a worker holds now.
 */
export type QueueListState = DeliveryState | 'deferred' | 'leased';

export interface QueueListOptions {
  state?: QueueListState;
  direction?: MessageDirection;
  /** Most messages returned, oldest first. Default 100. */
  limit?: number;
}

export interface EnqueueItem {
  envelope: MessageEnvelope;
  body: Uint8Array;
}

/**
 * The queue between the SMTP edge and the delivery workers: a body stored once, with a delivery
 * record per recipient; a defer keeps the remote reply (design rule 17, zone-mta mail-queue).
 *
 * @example
 * const id = await queue.enqueue({ direction: 'outbound', mailFrom, recipients }, body); // then 250
 * for (const d of await queue.lease(10, 'worker-1', 60_000)) {
 *   const reply = await relay(d, await queue.body(d.queueId));
 *   if (reply.code < 300) await queue.complete(d, reply);
 *   else if (reply.code >= 500) await queue.fail(d, reply);
 *   else {
 *     const next = schedule.next(d.attempts + 1, d.receivedAt, new Date()); // RetrySchedule
 *     if (next.action === 'retry') await queue.defer(d, reply, next.at);
 *     else await queue.fail(d, reply);
 *   }
 * }
 */
export interface OutboundQueue {
  /** Stores the body and one delivery per recipient in one commit; resolves once durable. */
  enqueue(envelope: MessageEnvelope, body: BodySource): Promise<QueueId>;
  /** Several messages in one commit. */
  enqueueMany(items: readonly EnqueueItem[]): Promise<QueueId[]>;
  /**
   * Claims due deliveries: state queued, next try due, no unexpired lease. At least the `n`
   * earliest due, with the other due deliveries of their (message, domain) groups, so that one
   * worker secures one copy per recipient domain. A lease not ended by complete/defer/fail/release
   * expires after `leaseMs` and the delivery is due again (the worker died). Outbound deliveries
   * (relay) unless `direction` is 'inbound' (local delivery of received messages).
   */
  lease(n: number, workerId: string, leaseMs: number, direction?: MessageDirection): Promise<Delivery[]>;
  /** The message body. */
  body(queueId: QueueId): Promise<Buffer>;
  /**
   * The remote accepted it. True when this attempt delivered it (also when repeated by the same
   * attempt); false when it was already final by another attempt, or bounced.
   */
  complete(d: Delivery, reply: RemoteReply): Promise<boolean>;
  /** Try again at `at`, keeping the reply; attempts+1. False when the lease was lost or it is final. */
  defer(d: Delivery, reply: RemoteReply, at: Date): Promise<boolean>;
  /** Permanent failure (a DSN is then due). False when the lease was lost or it is final. */
  fail(d: Delivery, reply: RemoteReply): Promise<boolean>;
  /** Gives a lease back untried (shutdown): due now, attempts unchanged. */
  release(d: Delivery): Promise<boolean>;
  /** Operator: makes the waiting deliveries of a message (or all, without id) due now. Returns how many. */
  retry(id?: QueueId): Promise<number>;
  /** Operator: fails the deliveries of a message not final and not in flight, with `reason`. Returns how many. */
  bounce(id: QueueId, reason: string): Promise<number>;
  list(options?: QueueListOptions): Promise<MessageStatus[]>;
  /** By queue id, else by Message-ID (the newest with it): every recipient's state, times and last reply. */
  get(ref: string): Promise<MessageStatus | undefined>;
}

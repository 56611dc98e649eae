import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { HispError } from '../core/errors.js';
import type { GatewayContext } from '../flows/gateway-context.js';
import { queueMdn } from '../flows/notices.js';
import { readMailboxMessage, readMailboxPart, type MailboxMessageView, type MessagePart, type ReceivedDocumentTools } from './mailbox-message.js';
import type { MailboxEntry, MailboxListState, MailboxStore } from './mailbox-store.js';

/** One message of a mailbox listing. */
export interface MailboxListItem {
  id: string;
  from: string;
  messageId: string | null;
  receivedAt: string;
  size: number;
  acknowledgedAt: string | null;
}

/**
 * What the PHR does with its API mailboxes (issue 15, "Receive"): list, read, take the parts, and
 * acknowledge, which is the final delivery (Direct Implementation Guide for Delivery Notification
 * §3: the dispatched MDN says the message reached the final destination; here, the PHR's system).
 * The API routes and any later surface call this one service.
 */
export class MailboxService {
  constructor(
    private readonly ctx: GatewayContext,
    private readonly store: MailboxStore,
    private readonly tools: ReceivedDocumentTools,
  ) {}

  list(mailbox: string, cursor: number, limit: number, state: MailboxListState): { messages: MailboxListItem[]; nextCursor: string | null } {
    const entries = this.store.list(mailbox, cursor, limit, state);
    const last = entries.at(-1);
    return {
      messages: entries.map((e) => ({
        id: e.id,
        from: e.mailFrom,
        messageId: e.messageId,
        receivedAt: e.receivedAt.toISOString(),
        size: e.size,
        acknowledgedAt: e.ackedAt?.toISOString() ?? null,
      })),
      nextCursor: last && entries.length >= limit ? String(last.seq) : null,
    };
  }

  /** The entry of `id` in `mailbox`; HISP_NOT_FOUND otherwise (another mailbox's message is not found either). */
  entry(mailbox: string, id: string): MailboxEntry {
    const entry = this.store.get(id);
    if (!entry || entry.mailbox !== mailbox.toLowerCase()) throw new HispError('HISP_NOT_FOUND', 'no such message in this mailbox');
    return entry;
  }

  /** The mailbox a message id is in (for a view addressed by id alone, then scoped by that mailbox); undefined when there is none. */
  mailboxOf(id: string): string | undefined {
    return this.store.get(id)?.mailbox;
  }

  async read(mailbox: string, id: string): Promise<MailboxMessageView> {
    const entry = this.entry(mailbox, id);
    return readMailboxMessage(entry, this.fileOf(entry), this.tools);
  }

  async part(mailbox: string, id: string, partId: string): Promise<{ part: MessagePart; bytes: Buffer }> {
    return readMailboxPart(this.fileOf(this.entry(mailbox, id)), partId);
  }

  /**
   * The PHR took the message. The first acknowledgement sends the dispatched MDN when the sender
   * asked for one (R-MDN-5); a repeated one changes nothing. When the message has left the queue
   * meanwhile (purged a week after delivery), the MDN is not sent: the sender's dispatched
   * time-out has long passed, and it was told of a failure then.
   */
  async acknowledge(mailbox: string, id: string, by: string, log: Pick<Logger, 'info' | 'warn'>): Promise<{ acknowledgedAt: string; dispatchedMdn: boolean }> {
    const entry = this.entry(mailbox, id);
    const first = await this.store.acknowledge(id, by);
    let dispatchedMdn = false;
    if (first && entry.dispatchedRequested) {
      if (this.ctx.queue.messages.has(entry.queueId)) {
        const bytes = await readFile(this.fileOf(entry));
        dispatchedMdn = await queueMdn(this.ctx, { queueId: entry.queueId, recipient: entry.mailbox }, bytes, 'dispatched', { finalDeliveryExtension: true });
      } else {
        log.warn({ id, queueId: entry.queueId }, 'acknowledged after the message left the queue: no dispatched MDN');
      }
    }
    log.info({ id, mailbox: entry.mailbox, first, dispatchedMdn }, 'acknowledged');
    const now = this.store.get(id);
    return { acknowledgedAt: (now?.ackedAt ?? new Date(this.ctx.now())).toISOString(), dispatchedMdn };
  }

  private fileOf(entry: MailboxEntry): string {
    const file = this.store.fileOf(entry.id);
    if (!file) throw new HispError('HISP_NOT_FOUND', 'no such message in this mailbox');
    return file;
  }
}

import type { Logger } from 'pino';
import { MimeEntity } from '../agent/mime-entity.js';
import { failedRecipient } from '../queue/dsn.js';
import type { GatewayContext } from './gateway-context.js';
import { describeError, dsnFor, dsnRecipientFor, kindOf, queueNotice, trackedMessage } from './notices.js';

/**
 * The send side's bookkeeping of failures (R-MDN-7, R-MDN-8, R-DSN-1): a DSN to the edge sender for
 * every failed delivery (one per message, listing its failed recipients, each with its reason), and
 * one for every MDN time-out (no processed MDN, or no dispatched one when asked for, in time). Each
 * DSN is stored in the same commit that marks what it reports, so none is sent twice or lost.
 * Messages with the null sender (MDNs we sent) and received messages get no DSN (RFC 3464 §2,
 * RFC 5321 §4.5.5); the receive side answers with MDNs instead.
 */
export class Notifier {
  private readonly log: Logger;

  constructor(private readonly ctx: GatewayContext) {
    this.log = ctx.logger.child({ component: 'notifier' });
  }

  /** One round of both duties; returns how many items were handled. */
  async runOnce(): Promise<number> {
    return (await this.failedDeliveries()) + (await this.mdnTimeouts());
  }

  private async failedDeliveries(): Promise<number> {
    const pending = await this.ctx.queue.pendingDsn(100);
    const byMessage = new Map<string, typeof pending>();
    for (const p of pending) {
      const list = byMessage.get(p.message.queueId) ?? [];
      list.push(p);
      byMessage.set(p.message.queueId, list);
    }
    for (const [queueId, items] of byMessage) {
      const message = items[0]!.message;
      const ids = items.map((i) => i.delivery.id);
      const noDsn = message.direction !== 'outbound' || message.mailFrom === '' || kindOf(message) !== undefined;
      try {
        if (noDsn) {
          await this.ctx.db.batch(() => this.ctx.queue.markDsnQueued(ids));
          continue;
        }
        const body = await this.ctx.queue.body(queueId);
        const headers = MimeEntity.parse(body).headerSection;
        const recipients = items.map((i) => dsnRecipientFor(i.delivery.recipient, i.delivery.lastReply, this.ctx.config.queue.giveUpHours, i.delivery.lastAttemptAt));
        const dsn = dsnFor(this.ctx, message, headers, recipients);
        await queueNotice(this.ctx, message.mailFrom, dsn.message, dsn.messageId, () => this.ctx.queue.markDsnQueued(ids) > 0);
        this.log.info({ queueId, to: message.mailFrom, recipients: recipients.map((r) => r.finalRecipient) }, 'failure DSN queued');
      } catch (err) {
        this.log.error({ queueId, err: describeError(err) }, 'cannot queue the DSN');
      }
    }
    return pending.length;
  }

  private async mdnTimeouts(): Promise<number> {
    const now = new Date(this.ctx.now());
    const due = this.ctx.tracking.dueTimeouts(now, 100);
    for (const t of due) {
      const sent = this.ctx.queue.messages.get(t.entry.queueId);
      try {
        const minutes = Math.round(((t.kind === 'processed' ? t.entry.processedDeadline.getTime() - t.entry.sentAt.getTime() : t.deadline.getTime() - (t.entry.processedAt?.getTime() ?? t.entry.sentAt.getTime())) / 60_000) * 100) / 100;
        const recipient = failedRecipient(t.entry.recipient, { kind: 'mdn-timeout', awaited: t.kind, minutes });
        const message = trackedMessage(this.ctx, t.entry);
        const headers = sent ? MimeEntity.parse(await this.ctx.queue.body(sent.queueId)).headerSection : undefined;
        const dsn = dsnFor(this.ctx, message, headers, [recipient]);
        const queued = await queueNotice(this.ctx, t.entry.sender, dsn.message, dsn.messageId, () => this.ctx.tracking.markTimedOut(t.id, now));
        if (queued) this.log.info({ queueId: t.entry.queueId, recipient: t.entry.recipient, awaited: t.kind }, 'MDN time-out: failure DSN queued');
      } catch (err) {
        this.log.error({ queueId: t.entry.queueId, err: describeError(err) }, 'cannot queue the time-out DSN');
      }
    }
    return due.length;
  }
}

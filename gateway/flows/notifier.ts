import type { Logger } from 'pino';
import { readFileHead } from '../agent/envelope-file.js';
import { MimeEntity } from '../mime/mime-entity.js';
import { isHispError } from '../core/errors.js';
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
        const headers = await this.originalHeaders(queueId);
        const recipients = items.map((i) => dsnRecipientFor(i.delivery.recipient, i.delivery.lastReply, this.ctx.config.queue.giveUpHours, i.delivery.lastAttemptAt));
        const dsn = dsnFor(this.ctx, message, headers, recipients);
        await queueNotice(this.ctx, message.mailFrom, dsn.message, dsn.messageId, () => this.ctx.queue.markDsnQueued(ids) > 0);
        this.log.info({ queueId, to: message.mailFrom, recipients: recipients.map((r) => r.finalRecipient), withHeaders: headers !== undefined }, 'failure DSN queued');
      } catch (err) {
        // Tried again on the retry schedule (never at the next round), or settled for good with its
        // reason: the loop must not spin on what keeps failing (issue 14, item 1).
        const first = items.reduce((a, i) => Math.max(a, i.delivery.dsnAttempts), 0) + 1;
        const since = items[0]!.delivery.finishedAt ?? new Date(this.ctx.now());
        const retry = this.retryAt(err, first, since);
        const why = describeError(err);
        if (retry) {
          await this.ctx.queue.deferDsn(ids, retry, why);
          this.log.warn({ queueId, err: why, attempts: first, retryAt: retry.toISOString() }, 'cannot queue the failure DSN for now: tried again later');
        } else {
          await this.ctx.queue.failDsn(ids, why);
          this.log.error({ queueId, to: message.mailFrom, err: why }, 'the failure DSN cannot be queued: recorded for the operator (hisp status), the sender is not told');
        }
      }
    }
    return pending.length;
  }

  /**
   * The header section of the original message, returned in the DSN (RFC 3464 §2: text/rfc822-headers
   * is optional): undefined when it cannot be read as one, so that the sender still hears of the
   * failure. A body that cannot be read at all (HISP_IO) is a failure of the notice.
   */
  private async originalHeaders(queueId: string): Promise<Buffer | undefined> {
    // A large body is not read whole for its header section (outside the memory gate).
    const file = this.ctx.queue.messages.fileOf(queueId);
    const body = file === undefined ? await this.ctx.queue.body(queueId) : await readFileHead(file);
    try {
      const entity = MimeEntity.parse(body);
      // Read from the file's first octets: a header section that does not end there is not returned cut.
      if (file !== undefined && entity.body.length === 0 && entity.headerSection.length === body.length) throw new Error('the header section is longer than the octets read');
      return entity.headerSection;
    } catch (err) {
      this.log.warn({ queueId, err: describeError(err) }, 'the header section of the original message cannot be read: the DSN goes without it');
      return undefined;
    }
  }

  /** When to try a notice again after `err` (its `attempts`-th failure): a transient error on the retry schedule, else never. */
  private retryAt(err: unknown, attempts: number, since: Date): Date | undefined {
    if (!isHispError(err) || !err.transient) return undefined;
    const next = this.ctx.schedule.next(attempts, since, new Date(this.ctx.now()));
    return next.action === 'retry' ? next.at : undefined;
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
        const headers = sent ? await this.originalHeaders(sent.queueId) : undefined;
        const dsn = dsnFor(this.ctx, message, headers, [recipient]);
        const queued = await queueNotice(this.ctx, t.entry.sender, dsn.message, dsn.messageId, () => this.ctx.tracking.markTimedOut(t.id, now));
        if (queued) this.log.info({ queueId: t.entry.queueId, recipient: t.entry.recipient, awaited: t.kind }, 'MDN time-out: failure DSN queued');
      } catch (err) {
        const why = describeError(err);
        const retry = this.retryAt(err, t.entry.noticeAttempts + 1, t.deadline);
        if (retry) {
          await this.ctx.db.batch(() => this.ctx.tracking.deferNotice(t.id, retry, why));
          this.log.warn({ queueId: t.entry.queueId, err: why, retryAt: retry.toISOString() }, 'cannot queue the time-out DSN for now: tried again later');
        } else {
          await this.ctx.db.batch(() => this.ctx.tracking.noticeFailed(t.id, now, why));
          this.log.error({ queueId: t.entry.queueId, recipient: t.entry.recipient, err: why }, 'the time-out DSN cannot be queued: recorded for the operator (hisp status), the sender is not told');
        }
      }
    }
    return due.length;
  }
}

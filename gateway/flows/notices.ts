import { MimeEntity } from '../mime/mime-entity.js';
import { DirectAddress } from '../core/direct-address.js';
import { HispError, isHispError, type HispErrorCode, ERROR_CODES } from '../core/errors.js';
import { buildMdn, type MdnDisposition } from '../mdn/mdn-builder.js';
import { buildDsn, failedRecipient, type DsnRecipient } from '../queue/dsn.js';
import type { RemoteReply } from '../queue/outbound-queue.js';
import type { StoredMessage } from '../store/message-store.js';
import type { TrackingEntry } from '../store/tracking-store.js';
import type { GatewayContext } from './gateway-context.js';

/** What a stored message is, in `meta.kind`: an edge notice (DSN, forwarded MDN) or an MDN we send. */
export type MessageKind = 'notice' | 'mdn';

export function kindOf(message: StoredMessage): MessageKind | undefined {
  const k = message.meta.kind;
  return k === 'notice' || k === 'mdn' ? k : undefined;
}

/**
 * Queues a notice for a local edge address (a DSN, or an MDN passed on): delivered as it is to the
 * address's endpoint by the receive worker, never relayed (the edge sits inside this HISP). Null
 * reverse-path (RFC 5321 §4.5.5: notifications never cause notifications). `withinCommit` runs in
 * the commit that stores it; returning false there drops the notice (already done).
 */
export async function queueNotice(
  ctx: GatewayContext,
  to: string,
  message: Buffer,
  messageId: string | null,
  withinCommit?: () => boolean,
): Promise<string | undefined> {
  const queueId = await ctx.queue.enqueueWhen(
    { direction: 'inbound', mailFrom: '', recipients: [to], messageId, receivedAt: new Date(ctx.now()), meta: { kind: 'notice' } },
    message,
    () => (withinCommit && !withinCommit() ? false : [to]),
  );
  if (queueId !== undefined) ctx.wake('inbound');
  return queueId;
}

/**
 * Queues the receive side's MDN about `original` for one recipient (RFC 8098; to its
 * Disposition-Notification-To, else its From), relayed — signed and encrypted — like any outgoing
 * message. Recorded per (message, recipient, disposition) in the same commit, so a retried delivery
 * never sends one twice. False when not queued (already sent, or nothing to answer to).
 */
export async function queueMdn(
  ctx: GatewayContext,
  inbound: { queueId: string; recipient: string },
  original: Buffer,
  disposition: MdnDisposition,
  extra: { failure?: string; finalDeliveryExtension: boolean },
): Promise<boolean> {
  const entity = MimeEntity.parse(original);
  const messageId = entity.header('message-id');
  const from = entity.header('from');
  if (!messageId || !from) return false; // nothing to answer to (R-MDN-9 needs the Original-Message-ID)
  const dnt = entity.header('disposition-notification-to');
  let built;
  try {
    built = buildMdn({
      original: {
        messageId,
        from: DirectAddress.fromHeader(from).toString(),
        ...(dnt ? { dispositionNotificationTo: dnt } : {}),
        to: inbound.recipient,
        headers: entity.headerSection,
      },
      disposition,
      reportingUa: { name: ctx.config.hostname, product: 'hisp' },
      finalDeliveryExtension: extra.finalDeliveryExtension,
      ...(extra.failure ? { failure: extra.failure } : {}),
    });
  } catch (err) {
    ctx.logger.warn({ queueId: inbound.queueId, err: err instanceof Error ? err.message : String(err) }, 'cannot build MDN');
    return false;
  }
  const to = MimeEntity.parse(built.message).header('to') ?? '';
  const recipients = to.split(',').map((x) => DirectAddress.fromHeader(x).toString());
  const insertSent = ctx.db.sqlite.prepare<[string, string, string, number]>(
    'INSERT OR IGNORE INTO mdn_sent (queue_id, recipient, disposition, queued_at) VALUES (?, ?, ?, ?)',
  );
  const queued = await ctx.queue.enqueueWhen(
    { direction: 'outbound', mailFrom: '', recipients, messageId: built.messageId, receivedAt: new Date(ctx.now()), meta: { kind: 'mdn', disposition, for: inbound.queueId } },
    built.message,
    () => (insertSent.run(inbound.queueId, inbound.recipient.toLowerCase(), disposition, ctx.now()).changes === 0 ? false : recipients),
  );
  if (queued === undefined) return false;
  ctx.wake('outbound');
  return true;
}

/** The HISP error code a reply carries in its text (`… [HISP_…]`, see replyForError), if any. */
export function codeInReply(reply: RemoteReply | null): HispErrorCode | undefined {
  const m = reply ? /\[(HISP_[A-Z0-9_]+)\]\s*$/.exec(reply.text) : null;
  const code = m?.[1];
  return code !== undefined && Object.prototype.hasOwnProperty.call(ERROR_CODES, code) ? (code as HispErrorCode) : undefined;
}

/** A failed delivery as a DSN recipient, with the reason the edge user can read. */
export function dsnRecipientFor(recipient: string, reply: RemoteReply | null, giveUpHours: number, at: Date | null): DsnRecipient {
  const options = at ? { lastAttemptDate: at } : {};
  // A transient reply that ended the delivery means the give-up time passed, whatever caused it
  // (a remote 4xx, even one carrying a hisp code of the peer, or a discovery time-out here).
  if (reply !== null && reply.code < 500) return failedRecipient(recipient, { kind: 'expired', hours: giveUpHours, lastError: `${reply.code} ${reply.enhanced ?? ''} ${reply.text}` }, options);
  const code = codeInReply(reply);
  if (code === 'HISP_DISCOVERY_NO_CERT') return failedRecipient(recipient, { kind: 'no-certificate' }, options);
  if (code !== undefined) return failedRecipient(recipient, { kind: 'error', error: new HispError(code, reply?.text.replace(/\s*\[HISP_[A-Z0-9_]+\]\s*$/, '') ?? code) }, options);
  if (reply === null) return failedRecipient(recipient, { kind: 'error', error: new HispError('HISP_IO', 'delivery failed') }, options);
  return failedRecipient(recipient, { kind: 'rejected', reply }, options);
}

/** A DSN (RFC 3464) to the edge sender of `message` for `recipients`. */
export function dsnFor(ctx: GatewayContext, message: StoredMessage, originalHeaders: Buffer | undefined, recipients: DsnRecipient[]): { message: Buffer; messageId: string } {
  const senderDomain = message.mailFrom.slice(message.mailFrom.lastIndexOf('@') + 1);
  return buildDsn({
    reportingMta: ctx.config.hostname,
    arrivalDate: message.receivedAt,
    recipients,
    ...(originalHeaders ? { originalHeaders } : {}),
    ...(message.messageId ? { originalMessageId: `<${message.messageId}>` } : {}),
    to: message.mailFrom,
    from: `mailer-daemon@${senderDomain}`,
  });
}

/** A short text of an error for logs and replies. */
export function describeError(err: unknown): string {
  if (isHispError(err)) return `${err.code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

/**
 * The message a tracking entry is about, for a DSN to its sender: the stored one, or — when it was
 * purged meanwhile — what the entry remembers of it (sender, Message-ID, time).
 */
export function trackedMessage(ctx: GatewayContext, entry: TrackingEntry): StoredMessage {
  const stored = ctx.queue.messages.get(entry.queueId);
  if (stored) return { ...stored, mailFrom: entry.sender };
  return {
    queueId: entry.queueId,
    direction: 'outbound',
    mailFrom: entry.sender,
    recipients: [entry.recipient],
    submittedBy: null,
    messageId: entry.messageId,
    receivedAt: entry.sentAt,
    size: 0,
    meta: {},
  };
}

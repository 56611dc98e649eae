import type { Logger } from 'pino';
import { deliveryFor, findDomain, substituteAddress, type DeliveryConfig } from '../config/schema.js';
import { DirectAddress } from '../core/direct-address.js';
import { isHispError } from '../core/errors.js';
import { readEnvelopeFile } from '../agent/envelope-file.js';
import { deliverLocally } from '../delivery/local-delivery.js';
import { notificationKind, parseMdn } from '../mdn/mdn-parser.js';
import { notificationOptionsOf, type NotificationOptions } from '../mdn/notification-options.js';
import { planMdns } from '../mdn/mdn-builder.js';
import { MimeEntity } from '../mime/mime-entity.js';
import { parseDsn } from '../queue/dsn-parser.js';
import type { DsnRecipient } from '../queue/dsn.js';
import type { Delivery, RemoteReply } from '../queue/outbound-queue.js';
import { replyForError } from '../smtp/reply-mapping.js';
import { receivedField } from '../smtp/received-field.js';
import type { StoredMessage } from '../store/message-store.js';
import type { MdnKind, MdnRecordResult } from '../store/tracking-store.js';
import { authenticationResultsField, withoutOwnResults } from './authentication-results.js';
import type { GatewayContext } from './gateway-context.js';
import { describeError, dsnFor, kindOf, queueMdn, queueNotice, trackedMessage } from './notices.js';
import { processIncoming, type IncomingResult } from './process-incoming.js';
import { signerMetadata, type SignerMetadata } from './signer-metadata.js';

const LEASE_MS = 5 * 60_000;

/** What to do with a received message for one recipient after decryption and trust. */
type Disposition =
  | { action: 'deliver'; message: Buffer; mdn: boolean; options: NotificationOptions }
  | { action: 'drop'; why: string };

/**
 * The receive side's worker (issue 5): leases inbound deliveries, decrypts and verifies each message
 * for its recipient (every key of the domain, retired ones included) and checks the signer against
 * the recipient's incoming anchors and bundles (R-TRU-5). A message that fails is kept in quarantine
 * with the reason and gets no MDN. A trusted one gets a processed MDN (R-MDN-1), is delivered to the
 * address's endpoint, then gets a dispatched MDN when the sender asked for it (R-MDN-5, R-MDN-6) or
 * a failed one when delivery finally fails. MDNs and DSNs for messages this HISP sent update the
 * tracking (R-MDN-7..9) and reach the edge only when timely and wanted; none is ever answered.
 */
export class ReceiveWorker {
  private readonly log: Logger;

  constructor(
    private readonly ctx: GatewayContext,
    readonly id: string,
  ) {
    this.log = ctx.logger.child({ component: 'receive', worker: id });
  }

  async runOnce(n = 20): Promise<number> {
    const leased = await this.ctx.queue.lease(n, this.id, LEASE_MS, 'inbound');
    for (const d of leased) {
      try {
        await this.receive(d);
      } catch (err) {
        this.log.error({ queueId: d.queueId, recipient: d.recipient, err: describeError(err) }, 'receive failed unexpectedly');
        await this.retryOrFail(d, replyForError(err), undefined).catch(() => undefined);
      }
    }
    return leased.length;
  }

  private async receive(d: Delivery): Promise<void> {
    const message = this.ctx.queue.messages.get(d.queueId);
    if (!message) return;
    // A large message waits for memory (issue 14, item 6): a worker holds it decoded and decrypted.
    const gate = this.ctx.memoryGate;
    const leave = await (gate?.enter(message.size) ?? Promise.resolve(() => undefined));
    try {
      // Waiting for room may have outlasted the lease: renewed, or left to the worker that took it.
      if (gate && message.size > gate.thresholdBytes && !(await this.ctx.queue.extendLease(d, LEASE_MS))) return;
      await this.process(d, message);
    } finally {
      leave();
    }
  }

  private async process(d: Delivery, message: StoredMessage): Promise<void> {
    const log = this.log.child({ queueId: d.queueId, recipient: d.recipient, messageId: message.messageId });
    // A body kept as a file is never read whole: its header is parsed and its body decoded from
    // the file (envelope-file.ts), so the raw message and its decoding are not in memory together.
    const file = this.ctx.queue.messages.fileOf(d.queueId);
    const raw = file === undefined ? await this.ctx.queue.body(d.queueId) : undefined;
    const whole = async (): Promise<Buffer> => raw ?? this.ctx.queue.body(d.queueId);
    if (kindOf(message) === 'notice') {
      // A notice this gateway made (a DSN to a local sender): nobody's signature to report.
      const own = this.ctx.config.hostname;
      await this.deliver(d, message, Buffer.concat([authenticationResultsField(own, undefined), ...withoutOwnResults(await whole(), own)]), undefined, log);
      return;
    }
    const domain = DirectAddress.parse(d.recipient).domain;
    const policy = this.ctx.registry.policy(domain);
    let incoming: IncomingResult;
    try {
      incoming = await processIncoming(raw ?? (await readEnvelopeFile(file!)), {
        credentials: this.ctx.registry.decryptors(domain),
        anchors: this.ctx.registry.anchorsFor(d.recipient, 'incoming'),
        policy,
        validator: this.ctx.validator,
        at: new Date(this.ctx.now()),
      });
    } catch (err) {
      if (isHispError(err) && err.transient) {
        log.info({ err: describeError(err) }, 'trust check failed for now: deferred');
        await this.retryOrFail(d, replyForError(err), undefined);
        return;
      }
      await this.refuse(d, message, raw, whole, err, log);
      return;
    }
    log.info({ signer: incoming.accepted[0]?.certificate.subject, sender: incoming.sender.toString() }, 'decrypted and trusted');
    const inner = incoming.unwrapped.message;
    const disposition = (await this.notification(inner, d, log)) ?? this.plainMessage(inner);
    if (disposition.action === 'drop') {
      log.info({ why: disposition.why }, 'not delivered');
      await this.ctx.queue.complete(d, { code: 250, enhanced: '2.0.0', text: disposition.why });
      return;
    }
    if (disposition.mdn) {
      const plan = planMdns(disposition.options);
      if (plan.failedOnly !== undefined) {
        await queueMdn(this.ctx, d, inner, 'failed', { failure: plan.failedOnly, finalDeliveryExtension: false });
        await this.failInbound(d, { code: 554, enhanced: '5.6.0', text: plan.failedOnly });
        return;
      }
      await queueMdn(this.ctx, d, inner, 'processed', { finalDeliveryExtension: false });
    }
    const trace = receivedField({
      ...(typeof message.meta.helo === 'string' ? { helo: message.meta.helo } : {}),
      ...(typeof message.meta.client === 'string' ? { remoteAddress: message.meta.client } : {}),
      by: this.ctx.config.hostname,
      protocol: message.meta.handoff === 'local' ? 'local' : message.meta.tls === true ? 'ESMTPS' : 'ESMTP',
      id: d.queueId,
      recipient: d.recipient,
      date: new Date(message.receivedAt),
    });
    // What was verified reaches the endpoint (issue 14, item 13): an Authentication-Results field
    // above our Received field (RFC 8601 §4: prepended, like a trace field), any in the message
    // that claims our authserv-id removed (§5), and the signers in a webhook's metadata.
    const own = this.ctx.config.hostname;
    const bytes = Buffer.concat([authenticationResultsField(own, incoming.accepted, incoming.sender.toString()), trace, ...withoutOwnResults(disposition.message, own)]);
    const metadata = signerMetadata(incoming, (anchor) => this.ctx.registry.bundleOf(anchor, domain, 'incoming'));
    await this.deliver(d, message, bytes, disposition.mdn ? { inner, options: disposition.options } : undefined, log, metadata);
  }

  /** An ordinary message: delivered, with MDNs. */
  private plainMessage(inner: Buffer): Disposition {
    return { action: 'deliver', message: inner, mdn: true, options: notificationOptionsOf(inner) };
  }

  /**
   * An MDN or DSN (never answered, RFC 8098 §3, RFC 3464): applied to the tracking of the message
   * we sent, then passed to the edge only when timely and wanted (failures always; positive ones per
   * `mdn.forwardPositive`); late and duplicate ones never reach the edge (issue 5). Undefined when
   * `inner` is not a notification.
   */
  private async notification(inner: Buffer, d: Delivery, log: Logger): Promise<Disposition | undefined> {
    let kind;
    try {
      kind = notificationKind(inner);
    } catch {
      return undefined;
    }
    if (kind !== 'mdn' && kind !== 'dsn') return undefined;
    const options = notificationOptionsOf(inner);
    const forward: Disposition = { action: 'deliver', message: inner, mdn: false, options };
    // Timeliness is judged at the notification's arrival here, not when a worker got to it; the
    // same instant on every attempt also lets a retry recognise what its first attempt recorded.
    const now = d.receivedAt;
    const domain = findDomain(this.ctx.config, DirectAddress.parse(d.recipient).domain);
    const forwardPositive = domain?.mdn.forwardPositive ?? 'processed';
    try {
      if (kind === 'mdn') {
        const mdn = parseMdn(inner);
        const recordAs: MdnKind | undefined = mdn.disposition === 'processed' || mdn.disposition === 'dispatched' ? mdn.disposition : mdn.disposition === 'failed' || mdn.disposition === 'denied' || mdn.disposition === 'deleted' ? 'failed' : undefined;
        if (!mdn.originalMessageId || !mdn.finalRecipient || recordAs === undefined) return forward;
        const { originalMessageId, finalRecipient } = mdn;
        // In the group commit like every write: alone, it would be its own fsync on the event loop.
        const r = replayed(await this.ctx.db.batch(() => this.ctx.tracking.record(originalMessageId, finalRecipient, recordAs, now, undefined, { messageId: messageIdOf(inner), via: 'mdn' })), recordAs, now);
        log.info({ mdn: mdn.disposition, original: mdn.originalMessageId, finalRecipient: mdn.finalRecipient, status: r.status }, 'MDN received');
        if (r.status === 'untracked') return forward;
        if (r.status !== 'timely') return { action: 'drop', why: `MDN ${mdn.disposition} ${r.status}: not passed to the edge` };
        if (recordAs === 'failed') return forward;
        if (forwardPositive === 'processed' || (forwardPositive === 'dispatched' && recordAs === 'dispatched')) return forward;
        return { action: 'drop', why: `MDN ${mdn.disposition} recorded (mdn.forwardPositive = ${forwardPositive})` };
      }
      const dsn = parseDsn(inner);
      let timely = false;
      let tracked = false;
      await this.ctx.db.batch(() => {
        for (const r of dsn.recipients) {
          if (r.action !== 'failed' || !dsn.originalMessageId || !r.finalRecipient) continue;
          const rec = replayed(this.ctx.tracking.record(dsn.originalMessageId, r.finalRecipient, 'failed', now, undefined, { messageId: messageIdOf(inner), via: 'dsn' }), 'failed', now);
          tracked ||= rec.status !== 'untracked';
          timely ||= rec.status === 'timely';
        }
      });
      log.info({ original: dsn.originalMessageId, tracked, timely }, 'DSN received');
      if (tracked && !timely) return { action: 'drop', why: 'DSN late or duplicate: not passed to the edge' };
      return forward;
    } catch (err) {
      log.warn({ err: describeError(err) }, 'unreadable notification: delivered as it is');
      return forward;
    }
  }

  /**
   * Not decryptable, not signed, not trusted: no delivery and no MDN; kept in quarantine with the
   * reason. A plain DSN from an ordinary mail server still updates the tracking, marked
   * unauthenticated, and the edge sender hears of the failure (issue 5).
   */
  private async refuse(d: Delivery, message: StoredMessage, raw: Buffer | undefined, whole: () => Promise<Buffer>, err: unknown, log: Logger): Promise<void> {
    const code = isHispError(err) ? err.code : 'HISP_IO';
    const detail = err instanceof Error ? err.message : String(err);
    log.warn({ code, detail }, 'quarantined');
    if (code === 'HISP_SMIME_NOT_ENCRYPTED' || code === 'HISP_SMIME_NOT_SIGNED') await whole().then((body) => this.applyPlainDsn(body, log)).catch(() => undefined);
    // Kept until the operator deletes it: as a file of its own, not holding its spool segment (a
    // body already in a file stays where it is).
    const aside = raw === undefined ? undefined : await this.ctx.queue.messages.setAside(message.queueId, raw).catch((err: unknown) => {
      log.warn({ err: describeError(err) }, 'cannot set the quarantined message aside as a file: it stays in the spool');
      return undefined;
    });
    try {
      await this.ctx.db.batch(() => {
        aside?.commit();
        this.ctx.quarantine.add(message.queueId, code, detail);
        this.ctx.queue.deliveries.fail(d, replyForError(err), this.ctx.now());
        this.ctx.queue.markDsnQueued([d.id]); // the receive side answers with MDNs, never DSNs
        this.forget(message, d);
      });
    } catch (batchErr) {
      // Not quarantined: the file copy goes (unless the commit may be on disk after all).
      await aside?.abandon(batchErr);
      throw batchErr;
    }
    await aside?.after();
  }

  private async applyPlainDsn(raw: Buffer, log: Logger): Promise<void> {
    if (notificationKind(raw) !== 'dsn') return;
    const dsn = parseDsn(raw);
    if (!dsn.originalMessageId) return;
    const note = `unauthenticated DSN from ${dsn.reportingMta ?? 'an unknown MTA'}`;
    const dsnMessageId = messageIdOf(raw);
    for (const r of dsn.recipients) {
      if ((r.action !== 'failed' && r.action !== 'delayed') || !r.finalRecipient) continue;
      if (r.action === 'delayed') {
        log.info({ original: dsn.originalMessageId, recipient: r.finalRecipient }, `delay reported by an ${note}`);
        continue;
      }
      const original = dsn.originalMessageId;
      const finalRecipient = r.finalRecipient;
      const rec = await this.ctx.db.batch(() => this.ctx.tracking.record(original, finalRecipient, 'failed', new Date(this.ctx.now()), note, { messageId: dsnMessageId, via: 'dsn' }));
      log.info({ original: dsn.originalMessageId, recipient: r.finalRecipient, status: rec.status }, `failure reported by an ${note}`);
      if (rec.status !== 'timely' || !rec.entry) continue;
      const sent = trackedMessage(this.ctx, rec.entry);
      const recipient: DsnRecipient = {
        finalRecipient: r.finalRecipient,
        action: 'failed',
        status: r.status.startsWith('5') ? r.status : '5.0.0',
        ...(r.diagnosticCode ? { diagnosticCode: r.diagnosticCode } : {}),
        ...(r.remoteMta ? { remoteMta: r.remoteMta } : {}),
        reason: `delivery failed, as reported by an ${note} (not signed: it could not be authenticated)`,
      };
      const built = dsnFor(this.ctx, sent, undefined, [recipient]);
      await queueNotice(this.ctx, sent.mailFrom, built.message, built.messageId);
    }
  }

  /** Delivers to the address's endpoint; MDNs after the outcome when `mdn` is given. */
  private async deliver(
    d: Delivery,
    message: StoredMessage,
    bytes: Buffer,
    mdn: { inner: Buffer; options: NotificationOptions } | undefined,
    log: Logger,
    metadata?: SignerMetadata,
  ): Promise<void> {
    const target = this.targetFor(d.recipient, kindOf(message) === 'notice');
    if (!target) {
      await this.failInbound(d, { code: 550, enhanced: '5.1.1', text: `no delivery configured for ${d.recipient}` });
      if (mdn) await queueMdn(this.ctx, d, mdn.inner, 'failed', { failure: 'no such recipient', finalDeliveryExtension: planMdns(mdn.options).finalDeliveryExtension });
      return;
    }
    const outcome = await deliverLocally(
      target,
      { recipient: d.recipient, sender: message.mailFrom, messageId: message.messageId, queueId: d.queueId, receivedAt: message.receivedAt, message: bytes, ...(metadata ? { metadata } : {}) },
      // The first lease of this delivery cannot find a copy of an earlier try (issue 14, item 7).
      {
        hostname: this.ctx.config.hostname,
        tryNumber: d.attempts + 1,
        firstTry: d.attempt === 1,
        ...(this.ctx.mailboxes ? { mailboxes: this.ctx.mailboxes } : {}),
        dispatchedRequested: mdn !== undefined && planMdns(mdn.options).dispatched,
      },
    );
    if (outcome.outcome === 'delivered') {
      log.info({ endpoint: target.type, location: outcome.location }, 'delivered');
      await this.ctx.queue.complete(d, outcome.reply);
      // An API mailbox is not the final destination: the PHR taking the message is, and its
      // acknowledgement sends the dispatched MDN (gateway/mailbox/mailbox-service.ts).
      if (mdn && planMdns(mdn.options).dispatched && target.type !== 'api') {
        await queueMdn(this.ctx, d, mdn.inner, 'dispatched', { finalDeliveryExtension: true });
      }
      return;
    }
    log.warn({ endpoint: target.type, outcome: outcome.outcome, reply: outcome.reply }, 'local delivery did not succeed');
    if (outcome.outcome === 'transient') await this.retryOrFail(d, outcome.reply, mdn);
    else {
      await this.failInbound(d, outcome.reply);
      if (mdn) await queueMdn(this.ctx, d, mdn.inner, 'failed', { failure: publicFailure('the final destination refused the message', outcome.reply), finalDeliveryExtension: planMdns(mdn.options).finalDeliveryExtension });
    }
  }

  private targetFor(address: string, notice: boolean): DeliveryConfig | undefined {
    const own = deliveryFor(this.ctx.config, address);
    if (own || !notice) return own;
    // A notice for an edge address not listed (a sender allowed by `@domain`): the domain's delivery.
    const domain = findDomain(this.ctx.config, DirectAddress.parse(address).domain);
    return domain ? substituteAddress(domain.delivery, address) : undefined;
  }

  private async failInbound(d: Delivery, reply: RemoteReply): Promise<void> {
    const message = this.ctx.queue.messages.get(d.queueId);
    await this.ctx.db.batch(() => {
      this.ctx.queue.deliveries.fail(d, reply, this.ctx.now());
      this.ctx.queue.markDsnQueued([d.id]);
      if (message) this.forget(message, d);
    });
  }

  /**
   * A message that was not delivered is no longer "already received": the sender may send it again
   * (after the operator added its anchor, after the endpoint was repaired) and that copy must be
   * processed, not swallowed by the de-duplication meant for deliveries (issue 5).
   */
  private forget(message: StoredMessage, d: Delivery): void {
    if (message.messageId !== null && kindOf(message) === undefined) this.ctx.dedupe.forget(message.mailFrom, message.messageId, d.recipient);
  }

  private async retryOrFail(d: Delivery, reply: RemoteReply, mdn: { inner: Buffer; options: NotificationOptions } | undefined): Promise<void> {
    const next = this.ctx.schedule.next(d.attempts + 1, d.receivedAt, new Date(this.ctx.now()));
    if (next.action === 'retry') {
      await this.ctx.queue.defer(d, reply, next.at);
      return;
    }
    await this.failInbound(d, reply);
    if (mdn) {
      await queueMdn(this.ctx, d, mdn.inner, 'failed', {
        failure: publicFailure('delivery kept failing', reply),
        finalDeliveryExtension: planMdns(mdn.options).finalDeliveryExtension,
      });
    }
  }
}

/**
 * The Failure text of a failed MDN, which goes to another organisation: the reply codes only, never
 * the reply text (it may name internal hosts, ports or paths: `connect ECONNREFUSED 10.0.0.5:24`).
 * The whole reply stays in the delivery's record for the operator (`hisp status`).
 */
function publicFailure(what: string, reply: RemoteReply): string {
  return `${what} (${reply.code}${reply.enhanced ? ` ${reply.enhanced}` : ''})`;
}

/**
 * A notification whose forward to the edge failed for now is processed again on the retry; its
 * tracking was recorded by the first attempt, so the store answers `duplicate`. When the recorded
 * instant of that kind is this notification's own arrival, it is that first attempt's record: it
 * counts as what it was then (timely or late), so the edge still gets it.
 */
export function replayed(r: MdnRecordResult, kind: MdnKind, at: Date): MdnRecordResult {
  const e = r.entry;
  if (r.status !== 'duplicate' || e === undefined) return r;
  const [recordedAt, late] =
    kind === 'processed' ? [e.processedAt, e.processedLate] : kind === 'dispatched' ? [e.dispatchedAt, e.dispatchedLate] : [e.failedAt, e.failedLate];
  if (recordedAt?.getTime() !== at.getTime()) return r;
  // A time-out fired since the first attempt: the sender was told the message failed, and a
  // positive notification after that must not reach the edge.
  return { status: late || e.timedOut !== null ? 'late' : 'timely', entry: e };
}

/** The Message-ID field of a small message (a DSN), undefined when it has none or cannot be read. */
function messageIdOf(raw: Buffer): string | undefined {
  try {
    return MimeEntity.parse(raw).header('message-id');
  } catch {
    return undefined;
  }
}

import { failureReasonForError } from '../events/failure-reason.js';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { Certificate } from '../core/certificate.js';
import { MimeEntity } from '../mime/mime-entity.js';
import { wrapMessageAsync } from '../agent/wrap-message.js';
import { remoteDomainSettings } from '../config/schema.js';
import { DirectAddress } from '../core/direct-address.js';
import { HispError, isHispError } from '../core/errors.js';
import { resolveNextHops, type NextHop } from '../delivery/next-hop.js';
import { vouchTransparent } from '../delivery/relay-connection.js';
import { relayMessage, type RelayRecipientResult } from '../delivery/smtp-relay.js';
import { notificationOptionsOf } from '../mdn/notification-options.js';
import type { Delivery, RemoteReply } from '../queue/outbound-queue.js';
import { replyForError } from '../smtp/reply-mapping.js';
import { storeInbound } from '../smtp/inbound-edge.js';
import type { StoredMessage } from '../store/message-store.js';
import { discoverRecipient } from './discover-recipient.js';
import type { GatewayContext } from './gateway-context.js';
import { describeError, kindOf } from './notices.js';

/** How long a relay worker holds its deliveries before another may take them (a worker that died). */
export const RELAY_LEASE_MS = 5 * 60_000;

/**
 * What the relay needs of a message's header section: the address of its From field and whether
 * it asks for timely and reliable delivery (X-DIRECT-FINAL-DESTINATION-DELIVERY, R-MDN-4). The
 * submission edge records both in the message's meta as it stores it (it has just parsed the
 * header: `from` is the address itself, not a field value); a notice hisp built, or a message
 * stored by an earlier release, is parsed here. Throws HispError when the From field holds no address.
 */
export function headerFacts(message: StoredMessage, body: Buffer): { sender: DirectAddress; finalDelivery: boolean } {
  const { from, finalDelivery } = message.meta;
  if (typeof from === 'string' && typeof finalDelivery === 'boolean') return { sender: DirectAddress.parse(from), finalDelivery };
  const entity = MimeEntity.parse(body);
  return { sender: DirectAddress.fromHeader(entity.header('from') ?? ''), finalDelivery: notificationOptionsOf(entity).finalDeliveryRequested };
}

/**
 * The send side's worker (issue 5): leases due outbound deliveries grouped by (message, recipient
 * domain), finds and trusts each recipient's certificates (discovery, R-DIS-*, R-TRU-5), signs and
 * encrypts one copy per domain to every trusted certificate (R-ENC-5, R-MULT-1), and relays it to
 * the domain's servers (MX, RFC 5321 §5.1) with opportunistic or required STARTTLS. Every recipient
 * ends on its own: delivered (then tracked for MDNs, R-MDN-7), deferred on a 4xx, a connection
 * failure or a transient discovery failure (requirements §5.9), failed on a 5xx, no usable
 * certificate, or the give-up time (the DSN follows). Local domains are handed to the receive side
 * directly, still signed and encrypted, so the same checks apply to them.
 */
export class RelayWorker {
  private readonly log: Logger;

  constructor(
    private readonly ctx: GatewayContext,
    readonly id: string,
  ) {
    this.log = ctx.logger.child({ component: 'relay', worker: id });
  }

  /** One round: leases up to `n` due deliveries and processes them. Returns how many were leased. */
  async runOnce(n = 20): Promise<number> {
    const leased = await this.ctx.queue.lease(n, this.id, RELAY_LEASE_MS, 'outbound');
    await this.process(leased);
    return leased.length;
  }

  /**
   * Relays deliveries this worker holds the lease of: leased by runOnce, or stored leased to it
   * and handed over with their message (GatewayContext.claimRelay), one group per (message, domain).
   */
  async process(deliveries: readonly Delivery[], message?: StoredMessage): Promise<void> {
    const groups = new Map<string, Delivery[]>();
    for (const d of deliveries) {
      const key = `${d.queueId}\u0000${d.domain}`;
      const list = groups.get(key) ?? [];
      list.push(d);
      groups.set(key, list);
    }
    for (const group of groups.values()) {
      try {
        await this.relayGroup(group, message?.queueId === group[0]?.queueId ? message : undefined);
      } catch (err) {
        // A bug or an I/O failure: give the leases back for a later try rather than lose them.
        this.log.error({ queueId: group[0]?.queueId, err: describeError(err) }, 'relay failed unexpectedly');
        for (const d of group) await this.retryOrFail(d, replyForError(err)).catch(() => undefined);
      }
    }
  }

  /** The leased deliveries of one message to one domain; `known` is the message when the caller has it. */
  private async relayGroup(group: Delivery[], known?: StoredMessage): Promise<void> {
    const first = group[0];
    if (!first) return;
    const message = known ?? this.ctx.queue.messages.get(first.queueId);
    if (!message) return;
    // A large message waits for memory (issue 14, item 6): signed and encrypted, it is held 2-3 times.
    const gate = this.ctx.memoryGate;
    const leave = await (gate?.enter(message.size) ?? Promise.resolve(() => undefined));
    try {
      // Waiting for room may have outlasted the leases: renewed, and a delivery whose lease another
      // worker took meanwhile is that worker's (never relayed twice).
      let held = group;
      if (gate && message.size > gate.thresholdBytes) {
        held = [];
        for (const d of group) if (await this.ctx.queue.extendLease(d, RELAY_LEASE_MS)) held.push(d);
      }
      if (held[0]) await this.relayMessage(held, held[0], message);
    } finally {
      leave();
    }
  }

  private async relayMessage(group: Delivery[], first: Delivery, message: StoredMessage): Promise<void> {
    const log = this.log.child({ queueId: message.queueId, messageId: message.messageId, domain: first.domain });
    const body = await this.ctx.queue.body(message.queueId);
    let sender: DirectAddress;
    let requested: boolean;
    try {
      ({ sender, finalDelivery: requested } = headerFacts(message, body));
      if (!this.ctx.registry.isLocalDomain(sender.domain)) throw new HispError('HISP_CONFIG_INVALID', `${sender.domain} is not a local domain: nothing to sign with`);
    } catch (err) {
      for (const d of group) await this.fail(d, failureReply(err), log);
      return;
    }
    const signers = this.ctx.registry.signers(sender.domain);

    // Certificates to encrypt to, per recipient.
    const ready: Delivery[] = [];
    const certificates: Certificate[] = [];
    const local = this.ctx.registry.isLocalDomain(first.domain);
    if (local) {
      // The same acceptance as the inbound port's RCPT (550 5.1.1 for an address the domain does not know).
      for (const d of group) {
        if (this.ctx.registry.acceptance(d.recipient) === 'accept') ready.push(d);
        else await this.fail(d, replyForError(new HispError('HISP_SMTP_UNKNOWN_RECIPIENT', `no such recipient here: ${d.recipient}`)), log);
      }
      certificates.push(...this.ctx.registry.encryptionCertificates(first.domain));
    } else {
      const patientDirected = message.meta.patientDirected === true;
      const anchors = this.ctx.registry.anchorsFor(sender, 'outgoing', { patientDirected });
      const policy = this.ctx.registry.policy(sender.domain);
      for (const d of group) {
        const found = await discoverRecipient(DirectAddress.parse(d.recipient), {
          discovery: this.ctx.discovery,
          validator: this.ctx.validator,
          anchors,
          policy,
          at: new Date(this.ctx.now()),
          patientDirected,
        });
        if (found.status === 'selected') {
          ready.push(d);
          for (const s of found.selected) if (!certificates.some((c) => c.sha256 === s.certificate.sha256)) certificates.push(s.certificate);
          continue;
        }
        const reply = failureReply(new HispError(found.code ?? 'HISP_DISCOVERY_NO_CERT', found.reason ?? 'no certificate', { transient: found.status === 'transient' }));
        if (found.status === 'transient') {
          log.info({ recipient: d.recipient, reason: found.reason }, 'discovery failed for now: deferred');
          await this.retryOrFail(d, reply);
        } else {
          log.info({ recipient: d.recipient, code: found.code, reason: found.reason }, 'no trusted certificate: failed');
          await this.fail(d, reply, log);
        }
      }
    }
    if (ready.length === 0) return;

    const settings = remoteDomainSettings(this.ctx.config, first.domain);
    let wrapped: Buffer;
    try {
      const wrapOptions = {
        signers,
        recipients: certificates,
        cipher: settings.cipher,
        keyTransport: settings.keyTransport,
        messageIdDomain: this.ctx.config.hostname,
        // Submitted over SMTP: the edge refused bare CR and LF before storing it.
        canonical: message.meta.client !== undefined,
      };
      // The body is ours alone (read for this relay): given, it goes to the wrap thread without a copy
      // when it does not go through a slot.
      const w = await (this.ctx.wrapPool ? this.ctx.wrapPool.wrap(body, wrapOptions, true) : wrapMessageAsync(body, wrapOptions));
      wrapped = w.message;
      // Its base64 body needs no dot-stuffing: the relay's DATA stream skips scanning it.
      vouchTransparent(wrapped, w.headerLength);
    } catch (err) {
      // A message that cannot be wrapped fails; a wrap thread that died meanwhile is tried again.
      for (const d of ready) {
        if (isHispError(err) && err.transient) await this.retryOrFail(d, replyForError(err));
        else await this.fail(d, failureReply(err), log);
      }
      return;
    }

    await this.handOver(wrapped, { domain: first.domain, local, ready, message, requested, senderDomain: sender.domain, settings }, log);
  }

  /** The wrapped copy to the domain's next hop (MX, or the configured route), or to our own receive side. */
  private async handOver(
    wrapped: Buffer,
    to: { domain: string; local: boolean; ready: Delivery[]; message: StoredMessage; requested: boolean; senderDomain: string; settings: ReturnType<typeof remoteDomainSettings> },
    log: Logger,
  ): Promise<void> {
    const { ready, message, requested, settings } = to;
    if (to.local) {
      // Handed to our own receive side: the same decrypt/verify/trust/deliver path as from a peer.
      await storeInbound(this.ctx, { mailFrom: message.mailFrom, recipients: ready.map((d) => d.recipient), meta: { handoff: 'local' } }, wrapped);
      const reply: RemoteReply = { code: 250, enhanced: '2.0.0', text: `handed to the local domain ${to.domain}` };
      for (const d of ready) await this.complete(d, reply, message, requested, log);
      return;
    }

    let hops: NextHop[];
    try {
      hops = settings.route
        ? [{ host: settings.route, preference: 0, addresses: isIP(settings.route) ? [settings.route] : await this.ctx.dns.lookupHost(settings.route) }]
        : await resolveNextHops(to.domain, this.ctx.dns);
    } catch (err) {
      const reply = failureReply(err);
      for (const d of ready) {
        if (isHispError(err) && !err.transient) await this.fail(d, reply, log);
        else await this.retryOrFail(d, reply);
      }
      return;
    }

    let results: RelayRecipientResult[] | undefined;
    let via = '';
    attempts: for (const hop of hops) {
      for (const address of hop.addresses) {
        const r = await relayMessage(
          address,
          settings.port,
          { from: message.mailFrom, to: ready.map((d) => d.recipient) },
          wrapped,
          {
            name: this.ctx.config.hostname,
            tlsRequired: settings.tlsRequired || this.ctx.registry.domainConfig(to.senderDomain).relay.tlsRequired,
            servername: hop.host,
            cache: this.ctx.relayConnections,
            ...(this.ctx.relayTls ? { tls: this.ctx.relayTls } : {}),
          },
        );
        results = r.recipients;
        via = `${hop.host} [${address}]:${settings.port}${r.tls ? ' TLS' : ''}`;
        // RFC 5321 §5.1: try the next address when this one could not take the message at all.
        if (!r.recipients.every((x) => x.outcome === 'transient')) break attempts;
        log.info({ via, reply: r.recipients[0]?.reply }, 'next hop failed for now; trying the next one');
      }
    }
    const byRecipient = new Map((results ?? []).map((r) => [r.recipient.toLowerCase(), r]));
    for (const d of ready) {
      const r = byRecipient.get(d.recipient.toLowerCase());
      const reply: RemoteReply = r ? { code: r.reply.code, ...(r.reply.enhanced ? { enhanced: r.reply.enhanced } : {}), text: r.reply.text } : { code: 451, enhanced: '4.4.1', text: 'no next hop answered' };
      if (r?.outcome === 'delivered') {
        log.info({ recipient: d.recipient, via, reply: `${reply.code} ${reply.text}` }, 'relayed');
        await this.complete(d, reply, message, requested, log);
      } else if (r?.outcome === 'permanent') {
        log.info({ recipient: d.recipient, via, reply }, 'refused by the remote HISP');
        await this.fail(d, reply, log);
      } else {
        await this.retryOrFail(d, reply);
      }
    }
  }

  /** Delivered: recorded, and tracked for MDNs in the same commit (R-MDN-7) unless it is itself a notification. */
  private async complete(d: Delivery, reply: RemoteReply, message: StoredMessage, requested: boolean, log: Logger): Promise<void> {
    const now = this.ctx.now();
    const trackable = message.mailFrom !== '' && kindOf(message) === undefined && message.messageId !== null;
    const mdn = this.ctx.registry.isLocalDomain(message.mailFrom.slice(message.mailFrom.lastIndexOf('@') + 1))
      ? this.ctx.registry.domainConfig(message.mailFrom.slice(message.mailFrom.lastIndexOf('@') + 1)).mdn
      : undefined;
    await this.ctx.db.batch(() => {
      const done = this.ctx.queue.deliveries.complete(d, reply, now);
      if (done && trackable && mdn && message.messageId !== null) {
        this.ctx.tracking.track({
          queueId: message.queueId,
          messageId: message.messageId,
          recipient: d.recipient,
          sender: message.mailFrom,
          sentAt: new Date(now),
          processedTimeoutMs: Math.round(mdn.processedTimeoutMinutes * 60_000),
          dispatchedTimeoutMs: Math.round(mdn.dispatchedTimeoutMinutes * 60_000),
          dispatchedRequested: requested,
        });
      }
      return done;
    });
    log.debug({ recipient: d.recipient }, 'delivery complete');
  }

  private async fail(d: Delivery, reply: RemoteReply, log: Logger): Promise<void> {
    log.info({ recipient: d.recipient, reply: `${reply.code} ${reply.enhanced ?? ''} ${reply.text}` }, 'delivery failed');
    await this.ctx.queue.fail(d, reply);
    this.ctx.wake('outbound');
  }

  /** A transient outcome: try again per the retry schedule, or fail once the give-up time has passed. */
  private async retryOrFail(d: Delivery, reply: RemoteReply): Promise<void> {
    const next = this.ctx.schedule.next(d.attempts + 1, d.receivedAt, new Date(this.ctx.now()));
    if (next.action === 'retry') await this.ctx.queue.defer(d, reply, next.at);
    else await this.fail(d, { ...reply, reason: 'expired' }, this.log);
  }
}

/** The reply a local failure is recorded with, and its reason in the API's words (no-certificate, untrusted, no-route…). */
function failureReply(err: unknown): RemoteReply {
  return { ...replyForError(err), reason: failureReasonForError(err) };
}

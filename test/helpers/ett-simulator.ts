/**
 * A simulated receiving HISP that plays the ETT delivery-notification mailboxes (requirements §2.2,
 * onc-healthit/ett `ListenerProcessor.groovy`): a real SMTP server (smtp-server) per simulated
 * domain that decrypts and verifies every message with hisp's own agent (processIncoming: decrypt,
 * signature, trust in the sender's certificate, name binding) and answers, per recipient mailbox,
 * with MDNs built by buildMdn, signed and encrypted by wrapMessage to the sending HISP's certificate
 * and relayed to its inbound port, as a remote HISP would. The ETT time-outs are scaled by the
 * caller: the late dispatched MDN goes after `lateDispatchedDelayMs`, and a `beforeMdn` gate lets a
 * test hold any MDN until the sending side reached a given state (e.g. its time-out fired).
 *
 * Nothing here keeps a message: the simulator records what it received, refused and sent.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { MimeEntity } from '../../gateway/mime/mime-entity.js';
import { loadCredential, readCertificates, type PrivateCredential } from '../../gateway/agent/key-material.js';
import { wrapMessage } from '../../gateway/agent/wrap-message.js';
import type { Certificate } from '../../gateway/core/certificate.js';
import { DirectAddress } from '../../gateway/core/direct-address.js';
import { isHispError } from '../../gateway/core/errors.js';
import { relayMessage, type RelayReply } from '../../gateway/delivery/smtp-relay.js';
import { processIncoming } from '../../gateway/flows/process-incoming.js';
import { buildMdn, type MdnDisposition } from '../../gateway/mdn/mdn-builder.js';
import { notificationOptionsOf, type NotificationOptions } from '../../gateway/mdn/notification-options.js';
import { TrustValidator } from '../../gateway/trust/trust-validator.js';

/** How a mailbox answers, after the ETT mailboxes of the same behaviour. */
export type EttBehaviour =
  /** `processedonly5`: a processed MDN, never a dispatched one (ETT MT 27). */
  | 'processed-only'
  /** `processeddispatched6`: processed, then dispatched (MT 29, the positive final notification). */
  | 'processed-and-dispatched'
  /** `processdelayeddispatch7`: processed at once, dispatched only after the sender's time-out (MT 28). */
  | 'dispatched-too-late'
  /** `nomdn8`: no MDN at all (MT 4/8/12, 26). */
  | 'no-mdn'
  /** `noaddressfailure9`: processed, then a failed MDN with a Failure field (MT 41 seen from the sender). */
  | 'failed';

export interface SimulatedDomain {
  domain: string;
  /** Port to listen on (127.0.0.1); 0 for any free one. */
  port: number;
  /** Key and certificate (chain) files: without them the domain cannot decrypt anything it gets. */
  credential?: { keyFile: string; certFile: string };
}

export interface SimulatorPeer {
  /** The sending HISP's inbound SMTP port (127.0.0.1), where its MDNs go. */
  port: number;
  /** Its certificate file (leaf first): MDNs are encrypted to the leaf. */
  certFile: string;
}

export interface EttSimulatorOptions {
  domains: readonly SimulatedDomain[];
  /** Local part (lowercase) → behaviour. Other local parts are refused at RCPT (550 5.1.1, ETT MT 1). */
  mailboxes: Readonly<Record<string, EttBehaviour>>;
  /** Anchor files the simulator trusts senders' signatures to (incoming anchors). */
  anchors: readonly string[];
  /** Sending HISPs by domain: where an MDN to an address of that domain goes. */
  peers: Readonly<Record<string, SimulatorPeer>>;
  /** Pause between processed and dispatched/failed ("delivery to the final destination"); default 100 ms. */
  dispatchedDelayMs?: number;
  /** Pause before the late dispatched MDN (ETT: 65 min; scale it down); default 5 s. */
  lateDispatchedDelayMs?: number;
  /** Holds each MDN until it resolves (after the delays above); a rejection drops that MDN and is recorded. */
  beforeMdn?: (step: MdnStep) => Promise<void>;
}

/** One MDN the simulator is about to send. */
export interface MdnStep {
  receipt: SimulatedReceipt;
  recipient: string;
  behaviour: EttBehaviour;
  disposition: MdnDisposition;
  /** Dispositions already sent for this (message, recipient). */
  sent: MdnDisposition[];
}

/** A message the simulator received (accepted at SMTP), with what its agent made of it. */
export interface SimulatedReceipt {
  domain: string;
  mailFrom: string;
  recipients: string[];
  at: number;
  /** `trusted`: decrypted, signature verified, signer trusted and bound to the inner From. */
  outcome: 'trusted' | 'refused';
  /** The HISP error code and text when refused. */
  error?: string;
  /** Inner (signed) Message-ID, when it could be read. */
  messageId?: string;
  /** Subject of the signer's certificate. */
  signer?: string;
  options?: NotificationOptions;
  /** The decrypted, unwrapped message. */
  inner?: Buffer;
}

export interface SentMdn {
  finalRecipient: string;
  originalMessageId: string;
  disposition: MdnDisposition;
  /** Message-ID of the MDN itself. */
  messageId: string;
  at: number;
  /** The sending HISP's reply to the relay (250 when it took it). */
  reply: RelayReply;
  delivered: boolean;
}

interface Listening {
  domain: SimulatedDomain;
  server: SMTPServer;
  credential: PrivateCredential | undefined;
  port: number;
}

export class EttSimulator {
  readonly received: SimulatedReceipt[] = [];
  readonly sent: SentMdn[] = [];
  /** Failures of the simulator itself (relay errors, dropped MDNs): a test should expect none. */
  readonly errors: string[] = [];
  /** SMTP connections per simulated domain (also those that sent nothing). */
  readonly connections: Record<string, number> = {};
  private readonly listening: Listening[] = [];
  private readonly anchors: Certificate[];
  private readonly peerCerts = new Map<string, { port: number; certificate: Certificate }>();
  private readonly validator = new TrustValidator();
  private readonly pending = new Set<Promise<void>>();
  private readonly timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  private stopped = false;

  private constructor(private readonly options: EttSimulatorOptions) {
    this.anchors = options.anchors.flatMap((f) => readCertificates(readFileSync(f), f));
    for (const [domain, peer] of Object.entries(options.peers)) {
      const [leaf] = readCertificates(readFileSync(peer.certFile), peer.certFile);
      if (!leaf) throw new Error(`no certificate in ${peer.certFile}`);
      this.peerCerts.set(domain.toLowerCase(), { port: peer.port, certificate: leaf });
    }
  }

  static async start(options: EttSimulatorOptions): Promise<EttSimulator> {
    const sim = new EttSimulator(options);
    try {
      for (const d of options.domains) await sim.listen(d);
    } catch (err) {
      await sim.stop();
      throw err;
    }
    return sim;
  }

  /** The port a simulated domain listens on. */
  port(domain: string): number {
    const l = this.listening.find((x) => x.domain.domain === domain);
    if (!l) throw new Error(`not simulated: ${domain}`);
    return l.port;
  }

  /** What was received for a recipient address (lowercase compare). */
  receivedFor(recipient: string): SimulatedReceipt[] {
    const r = recipient.toLowerCase();
    return this.received.filter((x) => x.recipients.some((y) => y.toLowerCase() === r));
  }

  sentFor(originalMessageId: string): SentMdn[] {
    return this.sent.filter((m) => m.originalMessageId === originalMessageId);
  }

  private async listen(domain: SimulatedDomain): Promise<void> {
    const credential = domain.credential ? loadCredential(domain.credential.keyFile, domain.credential.certFile) : undefined;
    this.connections[domain.domain] = 0;
    const server = new SMTPServer({
      name: `hisp.${domain.domain}`,
      authOptional: true,
      logger: false,
      // STARTTLS is offered (smtp-server's own certificate); hisp uses it opportunistically (R-SMTP-3).
      onConnect: (_session, cb) => {
        this.connections[domain.domain] = (this.connections[domain.domain] ?? 0) + 1;
        cb();
      },
      onRcptTo: (address, _session, cb) => {
        let parsed: DirectAddress;
        try {
          parsed = DirectAddress.parse(address.address);
        } catch {
          cb(Object.assign(new Error('5.1.3 bad recipient address syntax'), { responseCode: 553 }));
          return;
        }
        if (parsed.domain !== domain.domain) {
          cb(Object.assign(new Error(`5.7.1 relaying denied: not a mailbox of ${domain.domain}`), { responseCode: 550 }));
          return;
        }
        if (this.options.mailboxes[parsed.local.toLowerCase()] === undefined) {
          cb(Object.assign(new Error('5.1.1 no such mailbox here'), { responseCode: 550 }));
          return;
        }
        cb();
      },
      onData: (stream, session, cb) => {
        // Read now: smtp-server resets the envelope once the reply is given.
        const envelope = {
          mailFrom: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
          recipients: session.envelope.rcptTo.map((r) => r.address),
        };
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('error', (err) => cb(err));
        stream.on('end', () => {
          cb(); // 250: the message is ours; the agent works on it afterwards, as a HISP's queue would
          this.track(this.handle(domain.domain, credential, envelope, Buffer.concat(chunks)));
        });
      },
    });
    server.on('error', (err) => this.errors.push(`${domain.domain} server: ${err.message}`));
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(domain.port, '127.0.0.1', () => {
        server.server.removeListener('error', reject);
        resolve();
      });
    });
    this.listening.push({ domain, server, credential, port: (server.server.address() as AddressInfo).port });
  }

  private track(p: Promise<void>): void {
    const q = p.catch((err: unknown) => {
      this.errors.push(err instanceof Error ? err.message : String(err));
    });
    this.pending.add(q);
    void q.finally(() => this.pending.delete(q));
  }

  private async handle(domain: string, credential: PrivateCredential | undefined, envelope: { mailFrom: string; recipients: string[] }, raw: Buffer): Promise<void> {
    const receipt: SimulatedReceipt = { domain, mailFrom: envelope.mailFrom, recipients: envelope.recipients, at: Date.now(), outcome: 'refused' };
    this.received.push(receipt);
    if (!credential) {
      receipt.error = 'HISP_KEY_UNREADABLE: no private key to decrypt with';
      return;
    }
    let incoming;
    try {
      incoming = await processIncoming(raw, { credentials: [credential], anchors: this.anchors, validator: this.validator });
    } catch (err) {
      // Not decryptable, not signed or not trusted: no MDN (a HISP never confirms what it cannot trust).
      receipt.error = isHispError(err) ? `${err.code}: ${err.message}` : String(err);
      return;
    }
    const inner = incoming.unwrapped.message;
    const entity = MimeEntity.parse(inner);
    receipt.outcome = 'trusted';
    receipt.inner = inner;
    receipt.signer = incoming.accepted[0]?.certificate.subject;
    receipt.options = notificationOptionsOf(inner);
    const messageId = entity.header('message-id')?.trim();
    if (messageId !== undefined) receipt.messageId = messageId;
    await Promise.all(envelope.recipients.map((r) => this.answer(receipt, entity, r)));
  }

  /** The MDNs of one recipient mailbox, per its behaviour. */
  private async answer(receipt: SimulatedReceipt, entity: MimeEntity, recipient: string): Promise<void> {
    const behaviour = this.options.mailboxes[DirectAddress.parse(recipient).local.toLowerCase()];
    const sent: MdnDisposition[] = [];
    const step = async (disposition: MdnDisposition, delayMs: number, failure?: string) => {
      if (delayMs > 0) await this.sleep(delayMs);
      if (this.stopped) return false;
      if (this.options.beforeMdn) {
        try {
          await this.options.beforeMdn({ receipt, recipient, behaviour: behaviour!, disposition, sent: [...sent] });
        } catch (err) {
          this.errors.push(`${disposition} MDN for ${recipient} held back: ${err instanceof Error ? err.message : String(err)}`);
          return false;
        }
      }
      if (this.stopped) return false;
      await this.sendMdn(receipt, entity, recipient, disposition, failure);
      sent.push(disposition);
      return true;
    };
    const dispatchedDelay = this.options.dispatchedDelayMs ?? 100;
    switch (behaviour) {
      case undefined:
      case 'no-mdn':
        return;
      case 'processed-only':
        await step('processed', 0);
        return;
      case 'processed-and-dispatched':
        if (await step('processed', 0)) await step('dispatched', dispatchedDelay);
        return;
      case 'dispatched-too-late':
        if (await step('processed', 0)) await step('dispatched', this.options.lateDispatchedDelayMs ?? 5000);
        return;
      case 'failed':
        if (await step('processed', 0)) await step('failed', dispatchedDelay, `mailbox unavailable: ${recipient} does not exist at the final destination`);
        return;
    }
  }

  private async sendMdn(receipt: SimulatedReceipt, entity: MimeEntity, recipient: string, disposition: MdnDisposition, failure?: string): Promise<void> {
    const listening = this.listening.find((l) => l.domain.domain === receipt.domain);
    const credential = listening?.credential;
    const from = entity.header('from');
    const messageId = receipt.messageId;
    if (!credential || !from || !messageId) throw new Error(`cannot answer ${recipient}: no credential, From or Message-ID`);
    const dnt = entity.header('disposition-notification-to');
    const built = buildMdn({
      original: {
        messageId,
        from: DirectAddress.fromHeader(from).toString(),
        ...(dnt ? { dispositionNotificationTo: dnt } : {}),
        to: recipient,
        headers: entity.headerSection,
      },
      disposition,
      reportingUa: { name: `hisp.${receipt.domain}`, product: 'ETT mailbox simulator' },
      // R-MDN-6: dispatched and failed carry the extension field when the request was valid.
      finalDeliveryExtension: receipt.options?.finalDeliveryRequested ?? false,
      ...(failure !== undefined ? { failure } : {}),
    });
    const to = (MimeEntity.parse(built.message).header('to') ?? '').split(',').map((x) => DirectAddress.fromHeader(x));
    for (const addressee of to) {
      const peer = this.peerCerts.get(addressee.domain);
      if (!peer) throw new Error(`no peer HISP for ${addressee.toString()}`);
      // R-MDN-1, R-SIG-1: every MDN is signed and encrypted, like any Direct message.
      const wrapped = wrapMessage(built.message, { signers: [credential], recipients: [peer.certificate] });
      const r = await relayMessage('127.0.0.1', peer.port, { from: '', to: [addressee.toString()] }, wrapped.message, {
        name: `hisp.${receipt.domain}`,
        connectTimeoutMs: 5000,
        socketTimeoutMs: 10_000,
      });
      const result = r.recipients[0]!;
      this.sent.push({
        finalRecipient: recipient,
        originalMessageId: messageId,
        disposition,
        messageId: built.messageId,
        at: Date.now(),
        reply: result.reply,
        delivered: result.outcome === 'delivered',
      });
      if (result.outcome !== 'delivered') this.errors.push(`${disposition} MDN for ${recipient} not taken: ${result.reply.code} ${result.reply.text}`);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          this.timers.delete(entry);
          resolve();
        }, ms),
        resolve,
      };
      this.timers.add(entry);
    });
  }

  /** Closes the servers; MDNs still waiting are dropped; work in hand is awaited. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) {
      clearTimeout(t.timer);
      t.resolve();
    }
    this.timers.clear();
    await Promise.all(this.listening.map((l) => new Promise<void>((resolve) => l.server.close(() => resolve()))));
    await Promise.race([Promise.all([...this.pending]), new Promise((r) => setTimeout(r, 5000).unref())]);
  }
}

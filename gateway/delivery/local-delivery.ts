import type { MailboxStore } from '../mailbox/mailbox-store.js';
import { substituteAddress, type DeliveryConfig, type WebhookDelivery } from '../config/schema.js';
import { HispError, isHispError } from '../core/errors.js';
import { deliveryId } from './delivery-id.js';
import { deliverToMaildir } from './maildir.js';
import { relayMessage, type RelayReply } from './smtp-relay.js';
import { WebhookDeliverer, type WebhookPayload, type WebhookResult } from './webhook.js';

/**
 * One received message for one local recipient, as the inbound worker has it after unwrapping:
 * exactly what a webhook is handed (the other endpoints ignore `metadata`).
 */
export type LocalDeliveryItem = WebhookPayload;

export interface LocalDeliveryOptions {
  /** This gateway's host name: the LHLO/EHLO name, and the host part of maildir file names. */
  hostname: string;
  /**
   * The webhook deliverers by configuration object. Default: one cache for the process. A caller
   * may pre-fill its own (a deliverer with TLS trust roots, in tests).
   */
  webhooks?: WeakMap<WebhookDelivery, WebhookDeliverer>;
  /**
   * Overrides the endpoint's time-out: the webhook's `timeoutMs`; for LMTP and SMTP the connection
   * time-out and that of each command (default 30 s and 5 minutes, RFC 5321 §4.5.3.2).
   */
  timeoutMs?: number;
  /**
   * Which try this is, 1 for the first (the queue's failed attempts + 1). A webhook's `retries`
   * caps the tries: a transient outcome of try `retries + 1` or later is made permanent. Default 1.
   */
  tryNumber?: number;
  /**
   * True when no earlier try of this delivery can have reached the endpoint: the queue's first lease
   * of it (a crash does not count as a failed attempt, so `tryNumber` cannot say this). A maildir then
   * skips looking for an earlier copy. Default false: look.
   */
  firstTry?: boolean;
  /** The API mailboxes (delivery type `api`); a delivery to `api` without them is a configuration error. */
  mailboxes?: MailboxStore;
  /** For `api`: the sender asked for the dispatched MDN, which goes when the PHR takes the message. */
  dispatchedRequested?: boolean;
}

export interface LocalDeliveryOutcome {
  /** delivered: durable at the endpoint (ack/MDN may go); transient: the queue retries; permanent: fail (DSN). */
  outcome: 'delivered' | 'transient' | 'permanent';
  /** An SMTP-style reply for the queue, logs and DSNs: the server's own over LMTP/SMTP, else synthesized. */
  reply: RelayReply;
  /** Where it went: the maildir file, the webhook's delivery id, or the LMTP/SMTP server. */
  location?: string;
  /** The failure behind a maildir or webhook outcome, for the log (its message may name paths the reply leaves out). */
  error?: HispError;
}

/**
 * The deliverers outlive a single delivery because each reads its HMAC secret (maybe a file) once.
 * A WeakMap keyed by the (deep-frozen) configuration object rather than a class holding them: the
 * inbound worker needs no object to keep, `deliveryFor` hands out the same webhook object for every
 * message of an address, and a new configuration object (a test's; hisp has no configuration reload)
 * gets a deliverer of its own, while the old one goes with its object, without any bookkeeping.
 */
const processWebhooks = new WeakMap<WebhookDelivery, WebhookDeliverer>();

/**
 * Delivers a received message to the recipient's configured endpoint and says how it went, in the
 * terms the queue needs (2xx delivered, 4xx transient, 5xx permanent, with the reply to record):
 * - maildir: {@link deliverToMaildir} (a domain's path with `{address}` is resolved here too);
 *   exactly once per delivery: the file is named after the delivery id;
 * - webhook: one signed POST ({@link WebhookDeliverer}); the reply is synthesized from the status;
 *   every try carries the same delivery id, on which the receiver de-duplicates;
 * - lmtp (RFC 2033): to host and port, or to the Unix `socket` when given; smtp: to host and port.
 *   Both through nodemailer's SMTPConnection, with MAIL FROM the original envelope sender and the
 *   one recipient; the server's per-recipient reply is the outcome. At least once: a reply lost
 *   after the server took the message (a broken connection, a crash before the queue recorded it)
 *   makes the queue send it again, and SMTP has no way to ask whether it arrived. RFC 1047
 *   ("Duplicate messages and SMTP") explains the window and why a duplicate is the lesser evil than
 *   a loss; the Received field's `id` (the queue id) and the Message-ID let a store recognise one.
 *
 * It does not throw: every failure, including a bug's exception, is an outcome (unknown ones are
 * transient, so that no message is failed to its sender by accident; the queue's give-up bounds them).
 */
export async function deliverLocally(target: DeliveryConfig, item: LocalDeliveryItem, options: LocalDeliveryOptions): Promise<LocalDeliveryOutcome> {
  try {
    switch (target.type) {
      case 'maildir': {
        // A domain's delivery still holding `{address}` is resolved here; a resolved one is unchanged.
        const resolved = substituteAddress(target, item.recipient);
        return await toMaildir(resolved.type === 'maildir' ? resolved.path : target.path, item, options);
      }
      case 'webhook':
        return capTries(target, await toWebhook(target, item, options), options.tryNumber ?? 1);
      case 'lmtp':
        return await toRelay('lmtp', target.host, target.port, item, options, target.socket);
      case 'smtp':
        return await toRelay('smtp', target.host, target.port, item, options);
      case 'api':
        return await toMailbox(item, options);
    }
  } catch (err) {
    return failure('local', err);
  }
}

// ------------------------------------------------------------------------------------------------
// Maildir

/**
 * Once per delivery (issue 14, item 7): the file is named after the delivery id, so a try after a
 * crash between the file and the queue's record of it finds the copy and reports it delivered
 * ("maildir: delivered earlier") instead of writing a second one.
 */
async function toMaildir(path: string, item: LocalDeliveryItem, options: LocalDeliveryOptions): Promise<LocalDeliveryOutcome> {
  try {
    const r = await deliverToMaildir(
      path,
      item.message,
      { deliveryId: deliveryId(item.queueId, item.recipient), receivedAt: item.receivedAt, mayExist: options.firstTry !== true },
      { hostname: options.hostname },
    );
    const text = r.alreadyDelivered ? 'maildir: delivered earlier' : 'maildir: delivered';
    return { outcome: 'delivered', reply: { code: 250, enhanced: '2.0.0', text }, location: r.file };
  } catch (err) {
    return failure('maildir', err);
  }
}

// ------------------------------------------------------------------------------------------------
// API mailbox

/** Once per delivery, as a maildir: the entry is keyed by the delivery id. */
async function toMailbox(item: LocalDeliveryItem, options: LocalDeliveryOptions): Promise<LocalDeliveryOutcome> {
  if (!options.mailboxes) return failure('local', new HispError('HISP_CONFIG_INVALID', 'delivery type api, but the API mailboxes are not open', { transient: true }));
  try {
    const entry = await options.mailboxes.deliver({
      deliveryId: deliveryId(item.queueId, item.recipient),
      mailbox: item.recipient,
      queueId: item.queueId,
      mailFrom: item.sender,
      messageId: item.messageId,
      receivedAt: item.receivedAt,
      message: item.message,
      security: item.metadata ?? {},
      dispatchedRequested: options.dispatchedRequested ?? false,
    });
    return { outcome: 'delivered', reply: { code: 250, enhanced: '2.0.0', text: 'api mailbox: waiting for the recipient' }, location: entry.id };
  } catch (err) {
    return failure('local', err);
  }
}

/**
 * A maildir (or other local) failure as an outcome with a synthesized reply (RFC 3463 codes):
 * a full disk 452 4.3.1 (mail system full), a full quota 452 4.2.2 (mailbox full), a path that
 * cannot be a maildir 451 4.3.5 (system incorrectly configured), other transient ones 451 4.3.0;
 * permanent: a file too large 552 5.3.4 (message too big for system), else 554 5.3.0.
 * With an errno, the text names it and the error code but not the path: it may end up in a DSN to
 * the sender (the path is in `error`, for the log).
 */
function failure(what: 'maildir' | 'webhook' | 'local', err: unknown): LocalDeliveryOutcome {
  const e = isHispError(err) ? err : new HispError('HISP_IO', err instanceof Error ? err.message : String(err), { transient: true, cause: err });
  const errno = typeof e.details?.errno === 'string' ? e.details.errno : undefined;
  const text = `${what}: ${errno === undefined ? e.message : `${errno} ${describeErrno(e)}`} [${e.code}]`.replace(/\s+/g, ' ');
  let reply: RelayReply;
  if (e.transient) {
    if (errno === 'ENOSPC') reply = { code: 452, enhanced: '4.3.1', text };
    else if (errno === 'EDQUOT') reply = { code: 452, enhanced: '4.2.2', text };
    else if (e.code === 'HISP_CONFIG_INVALID') reply = { code: 451, enhanced: '4.3.5', text };
    else reply = { code: 451, enhanced: '4.3.0', text };
  } else {
    reply = errno === 'EFBIG' ? { code: 552, enhanced: '5.3.4', text } : { code: 554, enhanced: '5.3.0', text };
  }
  return { outcome: e.transient ? 'transient' : 'permanent', reply, error: e };
}

/** "ENOSPC: no space left on device, open '/x'" → "no space left on device" (the path left out). */
function describeErrno(e: HispError): string {
  const m = /^[A-Z0-9_]+: ([^,]+)/.exec(e.cause instanceof Error ? e.cause.message : '');
  return m ? `(${m[1]!.trim()})` : '';
}

// ------------------------------------------------------------------------------------------------
// Webhook

async function toWebhook(target: WebhookDelivery, item: LocalDeliveryItem, options: LocalDeliveryOptions): Promise<LocalDeliveryOutcome> {
  const cache = options.webhooks ?? processWebhooks;
  let deliverer = cache.get(target);
  if (deliverer === undefined) {
    try {
      deliverer = new WebhookDeliverer(target);
    } catch (err) {
      return failure('webhook', err); // not cached: the next try reads the secret again
    }
    cache.set(target, deliverer);
  }
  let result: WebhookResult;
  try {
    result = await deliverer.deliver(item, options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs });
  } catch (err) {
    return failure('webhook', err);
  }
  return { outcome: result.outcome, reply: webhookReply(result), location: result.deliveryId };
}

/**
 * An HTTP outcome as an SMTP-style reply (RFC 3463 codes): 2xx `250 2.0.0 webhook 200 …`;
 * no answer or no connection `451 4.4.1`; 429 and 503 `451 4.3.2` (system not accepting messages),
 * 408 and other 5xx `451 4.3.0`; a redirect `554 5.3.5` (system incorrectly configured: the URL);
 * 413 `552 5.3.4` (message too big), 401 and 403 `554 5.7.1` (delivery not authorized, usually
 * the signature's secret), other 4xx `554 5.6.0`. The text carries the status and the first line of
 * the response body.
 */
function webhookReply(r: WebhookResult): RelayReply {
  const text = r.status === undefined ? `webhook ${r.failure ?? 'failure'}: ${r.text}` : `webhook ${r.status} ${r.text}`.trim();
  if (r.outcome === 'delivered') return { code: 250, enhanced: '2.0.0', text };
  if (r.failure === 'timeout' || r.failure === 'connection') return { code: 451, enhanced: '4.4.1', text };
  if (r.failure === 'redirect') return { code: 554, enhanced: '5.3.5', text };
  const status = r.status ?? 0;
  if (r.outcome === 'transient') return { code: 451, enhanced: status === 429 || status === 503 ? '4.3.2' : '4.3.0', text };
  if (status === 413) return { code: 552, enhanced: '5.3.4', text };
  if (status === 401 || status === 403) return { code: 554, enhanced: '5.7.1', text };
  return { code: 554, enhanced: '5.6.0', text };
}

/**
 * The webhook's `retries` (tries after the first): a transient outcome of the last allowed try
 * becomes permanent, 554 5.4.7 (delivery time expired), so that the queue fails it with a DSN
 * instead of retrying until its own give-up time (whichever comes first ends the retries).
 */
function capTries(target: WebhookDelivery, r: LocalDeliveryOutcome, tryNumber: number): LocalDeliveryOutcome {
  if (r.outcome !== 'transient' || tryNumber <= target.retries) return r;
  return { ...r, outcome: 'permanent', reply: { code: 554, enhanced: '5.4.7', text: `gave up after ${tryNumber} tries: ${r.reply.code} ${r.reply.text}` } };
}

// ------------------------------------------------------------------------------------------------
// LMTP and SMTP

const CONNECT_TIMEOUT_MS = 30_000;
const COMMAND_TIMEOUT_MS = 300_000;

async function toRelay(
  kind: 'lmtp' | 'smtp',
  host: string,
  port: number,
  item: LocalDeliveryItem,
  options: LocalDeliveryOptions,
  socketPath?: string,
): Promise<LocalDeliveryOutcome> {
  const r = await relayMessage(host, port, { from: item.sender, to: [item.recipient] }, item.message, {
    name: options.hostname,
    lmtp: kind === 'lmtp',
    connectTimeoutMs: options.timeoutMs ?? CONNECT_TIMEOUT_MS,
    socketTimeoutMs: options.timeoutMs ?? COMMAND_TIMEOUT_MS,
    ...(socketPath !== undefined ? { socketPath } : {}),
  });
  const one = r.recipients[0];
  if (one === undefined) throw new HispError('HISP_USAGE', 'the relay returned no result for the recipient', { transient: true });
  const location = socketPath !== undefined ? `lmtp:unix:${socketPath}` : `${kind}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return { outcome: one.outcome, reply: one.reply, location };
}


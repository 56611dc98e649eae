import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { ConnectionOptions } from 'node:tls';
import type { WebhookDelivery } from '../config/schema.js';
import { HispError } from '../core/errors.js';
import { deliveryId } from './delivery-id.js';
import { TLS_PROFILE } from '../core/tls-profile.js';

/** What is handed to the endpoint: the message as received, with its envelope and queue identity. */
export interface WebhookPayload {
  recipient: string;
  /** The envelope sender (MAIL FROM); '' for the null reverse-path. */
  sender: string;
  messageId: string | null;
  queueId: string;
  receivedAt: Date;
  /** The plain RFC 5322 message (decrypted and verified). */
  message: Buffer;
  /** Facts the caller adds (signer subject, trust anchor, …): must be JSON-serializable. */
  metadata?: Record<string, unknown>;
}

export interface WebhookAttemptOptions {
  /** Time allowed for the whole attempt (connect, send, response). Default: the config's timeoutMs. */
  timeoutMs?: number;
  /** The signature's time stamp. Default: now. */
  now?: () => Date;
}

/** The outcome of one attempt, classified for the queue. */
export interface WebhookResult {
  /** delivered: 2xx; transient: 408, 429, 5xx, time-out, connection failure; permanent: other statuses. */
  outcome: 'delivered' | 'transient' | 'permanent';
  /** The `X-Hisp-Delivery-Id` sent: the same on every try of one (queueId, recipient). */
  deliveryId: string;
  /** The HTTP status, when a response came. */
  status?: number;
  /** Why it was not delivered: no response in time, no connection, a refused redirect, or the status. */
  failure?: 'timeout' | 'connection' | 'redirect' | 'status';
  /** One printable line: the start of the response body, the refused Location, or the network error. */
  text: string;
}

export interface WebhookDelivererOptions {
  /** TLS settings for an https: URL (trust roots, …); the certificate is always verified. */
  tls?: ConnectionOptions;
}

/** The response body read for the reply text: enough for an error message, no more. */
const MAX_RESPONSE_BYTES = 4096;
/** The reply text kept from it. */
const MAX_TEXT_CHARS = 200;

/**
 * Delivers received messages to an HTTP endpoint (the `webhook` delivery of an address): one signed
 * JSON POST per message and recipient. Construct one per configuration object and reuse it: the
 * HMAC secret (inline `hmacSecret`, or the trimmed UTF-8 content of `hmacSecretFile`) is read once,
 * here; a new secret takes a restart (hisp has no configuration reload).
 *
 * The request (docs/delivery.md has the receiver's side):
 *
 *     POST <url>
 *     Content-Type: application/json
 *     X-Hisp-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *     X-Hisp-Delivery-Id: <32 hex>            (also as Idempotency-Key)
 *
 *     { "recipient": "…", "sender": "…" (envelope; "" for the null reverse-path),
 *       "messageId": "…" | null, "receivedAt": "<ISO 8601>", "queueId": "…", "deliveryId": "…",
 *       "size": <bytes>, "sha256": "<hex of the message>", "metadata": { … } ({} when none),
 *       "message": "<base64 of the raw RFC 5322 message>" }
 *
 * The signature follows Stripe's webhook scheme: the time stamp is signed with the body, so that a
 * receiver can reject a replay older than its tolerance (5 minutes, say) as well as a forgery. The
 * delivery id is derived from the queue id and the recipient, not drawn (delivery-id.ts): every retry
 * of the same delivery, also after a crash and restart, carries the same one, with the same body
 * (only `t` and the signature change), so that a receiver that got a request but whose answer was
 * lost (time-out, crash) can recognise the retry and not store the message twice. That is the
 * semantics of Standard Webhooks' `webhook-id` and of the IETF Idempotency-Key header draft
 * (draft-ietf-httpapi-idempotency-key-header); the id is also inside the signed body.
 *
 * One call is ONE attempt with a time-out: the queue retries transient outcomes with its back-off
 * (and the config's `retries` caps the tries, see local-delivery.ts). Redirects are not followed: a
 * signed request carrying a medical record goes to the configured URL or nowhere (3xx: permanent).
 * node:http, not fetch: fetch refuses some ports (the WHATWG "bad ports") and its time-outs and
 * redirect handling are harder to pin down.
 */
export class WebhookDeliverer {
  readonly url: URL;
  private readonly secret: Buffer;
  private readonly tls: ConnectionOptions;

  constructor(
    readonly config: WebhookDelivery,
    options: WebhookDelivererOptions = {},
  ) {
    try {
      this.url = new URL(config.url);
    } catch (err) {
      throw new HispError('HISP_CONFIG_INVALID', `the webhook url is not a URL: ${JSON.stringify(config.url)}`, { transient: true, cause: err });
    }
    if (this.url.protocol !== 'https:' && this.url.protocol !== 'http:') {
      throw new HispError('HISP_CONFIG_INVALID', `the webhook url must be https: (or http:), not ${this.url.protocol}`, { transient: true });
    }
    this.secret = readSecret(config);
    this.tls = options.tls ?? {};
  }

  /** The delivery id of a (queue id, recipient): see delivery-id.ts (the Maildir's file name uses the same). */
  static deliveryId(queueId: string, recipient: string): string {
    return deliveryId(queueId, recipient);
  }

  /** One POST of the message; resolves with the classified outcome (it rejects only on a malformed payload). */
  async deliver(payload: WebhookPayload, options: WebhookAttemptOptions = {}): Promise<WebhookResult> {
    const deliveryId = WebhookDeliverer.deliveryId(payload.queueId, payload.recipient);
    const parts = requestBody(payload, deliveryId);
    const length = parts.reduce((n, p) => n + p.byteLength, 0);
    const t = Math.floor((options.now?.() ?? new Date()).getTime() / 1000);
    const hmac = createHmac('sha256', this.secret).update(`${t}.`);
    for (const p of parts) hmac.update(p);
    const headers: http.OutgoingHttpHeaders = {
      'Content-Type': 'application/json',
      'Content-Length': length,
      'User-Agent': 'hisp',
      'X-Hisp-Signature': `t=${t},v1=${hmac.digest('hex')}`,
      'X-Hisp-Delivery-Id': deliveryId,
      'Idempotency-Key': deliveryId,
    };
    const timeoutMs = options.timeoutMs ?? this.config.timeoutMs;
    return await new Promise<WebhookResult>((resolve) => {
      let settled = false;
      let timedOut = false;
      let status: number | undefined;
      let location: string | undefined;
      const chunks: Buffer[] = [];
      let received = 0;
      const finish = (networkError?: NodeJS.ErrnoException): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        if (status !== undefined) {
          resolve(classify(deliveryId, status, location, Buffer.concat(chunks)));
        } else if (timedOut) {
          resolve({ outcome: 'transient', deliveryId, failure: 'timeout', text: `no response within ${timeoutMs} ms` });
        } else {
          const e = networkError;
          // Node's messages mostly name the code ("connect ECONNREFUSED …"); TLS ones do not.
          const text = oneLine(e?.code && !e.message.includes(e.code) ? `${e.code} ${e.message}` : (e?.message ?? 'connection closed'));
          resolve({ outcome: 'transient', deliveryId, failure: 'connection', text });
        }
      };
      // agent: false: a fresh connection per attempt, so that the time-out covers connecting and a
      // kept-alive socket the server has since closed cannot fail the attempt.
      const request = this.url.protocol === 'https:' ? https.request : http.request;
      const req = request(this.url, {
        method: 'POST',
        headers,
        agent: false,
        ...(this.url.protocol === 'https:' ? { ...this.tls, ...TLS_PROFILE, rejectUnauthorized: true } : {}),
      });
      // One deadline for the whole attempt. Once the status is in, the outcome is decided: a body
      // that does not come in time only shortens the reply text.
      const timer = setTimeout(() => {
        timedOut = true;
        finish();
      }, timeoutMs);
      req.on('error', (err) => finish(err));
      req.on('response', (res) => {
        status = res.statusCode ?? 0;
        location = res.headers.location;
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          received += chunk.byteLength;
          if (received >= MAX_RESPONSE_BYTES) finish();
        });
        res.on('end', () => finish());
        res.on('error', () => finish());
        res.on('close', () => finish());
      });
      for (const p of parts) req.write(p);
      req.end();
    });
  }
}

/**
 * The JSON body in three parts, so that a large message is base64-encoded once and never copied
 * into one more string: `{…fields…,"message":"` + base64 + `"}`. Base64 needs no JSON escaping.
 */
function requestBody(payload: WebhookPayload, deliveryId: string): Buffer[] {
  if (!(payload.receivedAt instanceof Date) || Number.isNaN(payload.receivedAt.getTime())) {
    throw new HispError('HISP_USAGE', 'webhook payload: receivedAt is not a valid date');
  }
  let head: string;
  try {
    head = JSON.stringify({
      recipient: payload.recipient,
      sender: payload.sender,
      messageId: payload.messageId,
      receivedAt: payload.receivedAt.toISOString(),
      queueId: payload.queueId,
      deliveryId,
      size: payload.message.byteLength,
      sha256: createHash('sha256').update(payload.message).digest('hex'),
      metadata: payload.metadata ?? {},
    });
  } catch (err) {
    throw new HispError('HISP_USAGE', `webhook payload: the metadata is not JSON-serializable: ${(err as Error).message}`, { cause: err });
  }
  return [Buffer.from(`${head.slice(0, -1)},"message":"`, 'utf8'), Buffer.from(payload.message.toString('base64'), 'latin1'), Buffer.from('"}', 'latin1')];
}

/** An HTTP status to an outcome: 2xx delivered; 408, 429 and 5xx transient; 3xx and other 4xx permanent. */
function classify(deliveryId: string, status: number, location: string | undefined, body: Buffer): WebhookResult {
  const text = firstLine(body);
  if (status >= 200 && status < 300) return { outcome: 'delivered', deliveryId, status, text };
  if (status >= 300 && status < 400) {
    const where = location === undefined ? 'no Location' : `Location: ${oneLine(location)}`;
    return { outcome: 'permanent', deliveryId, status, failure: 'redirect', text: `redirects are not followed (${where})` };
  }
  const transient = status === 408 || status === 429 || (status >= 500 && status < 600);
  return { outcome: transient ? 'transient' : 'permanent', deliveryId, status, failure: 'status', text };
}

/** The first non-empty line of a response body, printable, at most MAX_TEXT_CHARS. */
function firstLine(body: Buffer): string {
  const s = body.subarray(0, MAX_RESPONSE_BYTES).toString('utf8');
  const line = s.split(/\r?\n/).find((l) => l.trim() !== '') ?? '';
  return oneLine(line);
}

function oneLine(s: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what is removed
  return s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim().slice(0, MAX_TEXT_CHARS);
}

/**
 * The HMAC key: inline, or the file's trimmed content (as the configuration loader checks it).
 * Configuration errors are transient, as everywhere in local delivery: the operator fixes them and
 * the queued messages go through, instead of failing to their senders at once (the configuration
 * loader refuses these cases anyway; this is the second line).
 */
function readSecret(config: WebhookDelivery): Buffer {
  let secret: string;
  if (config.hmacSecret !== undefined) {
    secret = config.hmacSecret;
  } else if (config.hmacSecretFile !== undefined) {
    try {
      secret = readFileSync(config.hmacSecretFile, 'utf8').trim();
    } catch (err) {
      // Transient: a secrets mount may come late; the next try constructs the deliverer again.
      throw new HispError('HISP_IO', `cannot read the webhook secret ${config.hmacSecretFile}: ${(err as Error).message}`, {
        transient: true,
        cause: err,
        details: { errno: (err as NodeJS.ErrnoException).code ?? null, path: config.hmacSecretFile },
      });
    }
  } else {
    throw new HispError('HISP_CONFIG_INVALID', `the webhook ${config.url} has no hmacSecret or hmacSecretFile`, { transient: true });
  }
  if (secret.length === 0) throw new HispError('HISP_CONFIG_INVALID', `the webhook secret of ${config.url} is empty`, { transient: true });
  return Buffer.from(secret, 'utf8');
}

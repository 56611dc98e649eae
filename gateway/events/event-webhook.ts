import { lookup as dnsLookup } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { Webhook } from 'standardwebhooks';
import { TLS_PROFILE } from '../core/tls-profile.js';
import type { FetchAddressPolicy } from '../trust/fetch-address-policy.js';
import { pinnedLookup, resolveAllowed } from '../trust/pinned-lookup.js';
import type { HispEvent } from './event-outbox.js';

export interface EventPostOptions {
  policy: FetchAddressPolicy;
  /** DNS resolution (tests, the configured resolver); default node's. */
  lookup?: LookupFunction;
  timeoutMs: number;
  tls?: ConnectionOptions;
  now?: () => Date;
}

/** The outcome of one POST: delivered on 2xx; anything else is tried again later, on the back-off. */
export interface EventPostResult {
  delivered: boolean;
  status?: number;
  /** One line: why it was not delivered. */
  error?: string;
}

/** A webhook secret as Standard Webhooks writes it: `whsec_` and 32 random bytes in base64. */
export const WEBHOOK_SECRET_PREFIX = 'whsec_';

/**
 * One event to a subscriber, signed per Standard Webhooks (standard-webhooks spec, "Signature
 * scheme", with the `standardwebhooks` library): headers `webhook-id` (the event id: the same on
 * every retry, for the receiver to de-duplicate), `webhook-timestamp` (seconds) and
 * `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under the secret); the
 * body is the event's JSON. The URL is the subscriber's, so it is treated as hostile: its host must
 * resolve only to addresses the fetch policy allows (`[fetch] allowAddresses` for private ones),
 * the connection is pinned to them, redirects are not followed, and the response is not read
 * beyond its status.
 */
export async function postEvent(url: URL, secret: string, event: HispEvent, options: EventPostOptions): Promise<EventPostResult> {
  const body = Buffer.from(JSON.stringify(event), 'utf8');
  const at = options.now?.() ?? new Date();
  const signature = new Webhook(secret.startsWith(WEBHOOK_SECRET_PREFIX) ? secret.slice(WEBHOOK_SECRET_PREFIX.length) : secret).sign(event.id, at, body);
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  let resolved;
  try {
    resolved = await resolveAllowed(options.lookup ?? dnsLookup, host, options.policy);
  } catch (err) {
    return { delivered: false, error: `cannot resolve ${host}: ${(err as Error).message}` };
  }
  if ('refused' in resolved) {
    return { delivered: false, error: `${host} resolves to ${resolved.refused.address}, which is not an allowed address (${resolved.refused.range ?? 'not allowed'}; see [fetch] allowAddresses)` };
  }
  const addresses = resolved.addresses;
  return new Promise<EventPostResult>((resolve) => {
    let settled = false;
    const finish = (r: EventPostResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const common: http.RequestOptions = {
      method: 'POST',
      agent: false,
      lookup: pinnedLookup(addresses),
      headers: {
        'content-type': 'application/json',
        'content-length': body.length,
        'user-agent': 'hisp',
        'webhook-id': event.id,
        'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
        'webhook-signature': signature,
      },
    };
    const req = url.protocol === 'https:' ? https.request(url, { ...common, ...(options.tls ?? {}), ...TLS_PROFILE, rejectUnauthorized: true }) : http.request(url, common);
    const timer = setTimeout(() => finish({ delivered: false, error: `no response within ${options.timeoutMs} ms` }), options.timeoutMs);
    req.on('error', (err) => finish({ delivered: false, error: err.message.slice(0, 200) }));
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      finish(status >= 200 && status < 300 ? { delivered: true, status } : { delivered: false, status, error: `HTTP ${status}` });
    });
    req.end(body);
  });
}

import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { HispError } from '../core/errors.js';
import type { HispDatabase } from '../store/database.js';
import type { EventOutbox, EventScope } from './event-outbox.js';
import { WEBHOOK_SECRET_PREFIX, type EventPostOptions, type EventPostResult } from './event-webhook.js';
import { postEvent } from './event-webhook.js';

/** A subscription as `hisp api-key` and the API show it (never its secret, but once at creation). */
export interface WebhookSubscription {
  apiKeyId: string;
  url: string;
  /** The last event delivered (its cursor). */
  cursor: string;
  failures: number;
  nextAttemptAt: Date | null;
  lastError: string | null;
  lastSuccessAt: Date | null;
}

interface Row {
  api_key_id: string;
  url: string;
  secret: string;
  cursor: number;
  failures: number;
  next_attempt_at: number;
  last_error: string | null;
  last_success_at: number | null;
  created_at: number;
}

/**
 * The waits after consecutive failures: 5 s, 30 s, 2, 10 and 30 minutes, then hourly. A subscriber
 * that is down gets its events in order once it is back; nothing is retried faster than this.
 */
export const WEBHOOK_BACKOFF_MS: readonly number[] = [5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000];

/** Events posted per subscription and round: a busy subscription does not hold up the others. */
const EVENTS_PER_ROUND = 20;

export interface WebhookDispatcherOptions {
  /** The scope of an API key's events, undefined when the key is revoked or gone (its webhook then stops). */
  scopeOf: (apiKeyId: string) => EventScope | undefined;
  post: Omit<EventPostOptions, 'now'>;
  logger: Logger;
  now?: () => number;
  /** Tests: replaces the HTTP POST. */
  send?: (url: URL, secret: string, event: Parameters<typeof postEvent>[2], options: EventPostOptions) => Promise<EventPostResult>;
}

/**
 * Delivers the event outbox to the API keys' webhooks (issue 15, "Events"): at least once and in
 * order per subscriber (the cursor moves only past an event a 2xx acknowledged; a crash between
 * the POST and the cursor's commit sends that event again, with the same `webhook-id`), with
 * back-off on failure ({@link WEBHOOK_BACKOFF_MS}). Events come from the outbox, which the
 * database's triggers write in the commit of each change: none can be lost between the change and
 * its delivery.
 */
export class WebhookDispatcher {
  private readonly dueStmt;
  private readonly advanceStmt;
  private readonly failStmt;
  private readonly now: () => number;

  constructor(
    private readonly db: HispDatabase,
    private readonly outbox: EventOutbox,
    private readonly options: WebhookDispatcherOptions,
  ) {
    this.now = options.now ?? Date.now;
    const sql = db.sqlite;
    this.dueStmt = sql.prepare<[number], Row>('SELECT * FROM webhooks WHERE next_attempt_at <= ? ORDER BY next_attempt_at LIMIT 100');
    this.advanceStmt = sql.prepare<[number, number, string, number]>(
      'UPDATE webhooks SET cursor = ?, failures = 0, next_attempt_at = 0, last_error = NULL, last_success_at = ? WHERE api_key_id = ? AND cursor < ?',
    );
    this.failStmt = sql.prepare<[number, string, string]>('UPDATE webhooks SET failures = failures + 1, next_attempt_at = ?, last_error = ? WHERE api_key_id = ?');
  }

  /**
   * Subscribes an API key (replacing its subscription): events from now on go to `url`. Returns
   * the signing secret, shown once. https only, or http to a loopback host (a receiver on the same
   * machine); where the host may resolve to is checked at each delivery.
   */
  subscribe(apiKeyId: string, url: string): { secret: string; subscription: WebhookSubscription } {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new HispError('HISP_API_INVALID_REQUEST', 'the webhook url is not a URL');
    }
    const loopbackHttp = u.protocol === 'http:' && (u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]');
    if (u.protocol !== 'https:' && !loopbackHttp) throw new HispError('HISP_API_INVALID_REQUEST', 'the webhook url must be https: (http: only to a loopback host)');
    if (u.username || u.password) throw new HispError('HISP_API_INVALID_REQUEST', 'the webhook url must not carry credentials');
    const secret = `${WEBHOOK_SECRET_PREFIX}${randomBytes(32).toString('base64')}`;
    this.db.sqlite
      .prepare<[string, string, string, number, number]>(
        `INSERT INTO webhooks (api_key_id, url, secret, cursor, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (api_key_id) DO UPDATE SET url = excluded.url, secret = excluded.secret, cursor = excluded.cursor,
           failures = 0, next_attempt_at = 0, last_error = NULL, created_at = excluded.created_at`,
      )
      .run(apiKeyId, u.href, secret, this.outbox.last(), this.now());
    return { secret, subscription: this.get(apiKeyId)! };
  }

  unsubscribe(apiKeyId: string): boolean {
    return this.db.sqlite.prepare<[string]>('DELETE FROM webhooks WHERE api_key_id = ?').run(apiKeyId).changes > 0;
  }

  get(apiKeyId: string): WebhookSubscription | undefined {
    const row = this.db.sqlite.prepare<[string], Row>('SELECT * FROM webhooks WHERE api_key_id = ?').get(apiKeyId);
    return row ? toSubscription(row) : undefined;
  }

  /** One round: every due subscription gets what came after its cursor, up to a few events. Returns the events delivered. */
  async runOnce(): Promise<number> {
    let delivered = 0;
    for (const row of this.dueStmt.all(this.now())) {
      const scope = this.options.scopeOf(row.api_key_id);
      if (!scope) continue; // a revoked key's subscription delivers nothing more
      const events = this.outbox.after(row.cursor, scope, EVENTS_PER_ROUND);
      for (const event of events) {
        const send = this.options.send ?? postEvent;
        const result = await send(new URL(row.url), row.secret, event, { ...this.options.post, now: () => new Date(this.now()) });
        if (result.delivered) {
          await this.db.batch(() => this.advanceStmt.run(Number(event.cursor), this.now(), row.api_key_id, Number(event.cursor)));
          delivered++;
          continue;
        }
        const wait = WEBHOOK_BACKOFF_MS[Math.min(row.failures, WEBHOOK_BACKOFF_MS.length - 1)]!;
        await this.db.batch(() => this.failStmt.run(this.now() + wait, (result.error ?? 'failed').slice(0, 300), row.api_key_id));
        this.options.logger.warn({ apiKey: row.api_key_id, event: event.id, error: result.error, retryInMs: wait }, 'webhook delivery failed');
        break;
      }
    }
    return delivered;
  }
}

function toSubscription(row: Row): WebhookSubscription {
  return {
    apiKeyId: row.api_key_id,
    url: row.url,
    cursor: String(row.cursor),
    failures: row.failures,
    nextAttemptAt: row.next_attempt_at > 0 ? new Date(row.next_attempt_at) : null,
    lastError: row.last_error,
    lastSuccessAt: row.last_success_at === null ? null : new Date(row.last_success_at),
  };
}

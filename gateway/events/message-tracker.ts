import { HispError } from '../core/errors.js';
import type { SqliteQueue } from '../queue/sqlite-queue.js';
import type { HispDatabase } from '../store/database.js';
import type { AddressScope, EventOutbox } from './event-outbox.js';
import { recipientStatuses, type RecipientState, type RecipientStatus } from './message-status.js';

/** A sent message as `GET /v1/messages/{id}` shows it (issue 15, "Send"). */
export interface MessageView {
  id: string;
  messageId: string | null;
  from: string;
  subject: string | null;
  clientRef: string | null;
  /** How it came in: the API or SMTP submission (both are tracked alike). */
  submittedVia: 'api' | 'smtp';
  submittedAt: string;
  recipients: RecipientStatus[];
}

export interface MessageListQuery {
  scope: AddressScope;
  /** Only messages with at least one recipient in this state now. */
  state?: RecipientState | undefined;
  /** Only messages submitted at or after this time. */
  since?: Date | undefined;
  /** Opaque: the `nextCursor` of the previous page. */
  cursor?: string | undefined;
  limit: number;
}

interface Row {
  queue_id: string;
  received_at: number;
}

/** Messages looked at for one page at most, when a state filter skips most of them. */
const SCAN_LIMIT = 2000;

/**
 * The sending side's view of its messages: each recipient's state and timeline from the event
 * outbox, for the messages of the addresses and domains of a scope (an API key's send-as scopes).
 * Submitted over SMTP or through the API, a message is tracked the same way.
 */
export class MessageTracker {
  constructor(
    private readonly db: HispDatabase,
    private readonly queue: SqliteQueue,
    private readonly outbox: EventOutbox,
  ) {}

  /** One message; HISP_NOT_FOUND when there is none, or it is not in `scope` (existence is not revealed). */
  async get(id: string, scope: AddressScope): Promise<MessageView> {
    const status = this.queue.messages.has(id) ? await this.queue.get(id) : undefined;
    if (!status || status.direction !== 'outbound' || status.mailFrom === '' || !inScope(status.mailFrom, scope)) {
      throw new HispError('HISP_NOT_FOUND', 'no such message');
    }
    const meta = status.meta;
    return {
      id: status.queueId,
      messageId: status.messageId,
      from: typeof meta.from === 'string' ? meta.from : status.mailFrom,
      subject: typeof meta.subject === 'string' ? meta.subject : null,
      clientRef: typeof meta.clientRef === 'string' ? meta.clientRef : null,
      submittedVia: meta.api === true ? 'api' : 'smtp',
      submittedAt: status.receivedAt.toISOString(),
      recipients: recipientStatuses(status.recipients, this.outbox.forMessage(id), status.deliveries),
    };
  }

  /**
   * One recipient's state now, read synchronously (for a check inside a caller's commit), with no
   * scope: undefined when the message is no longer stored (purged after its retention). The time
   * given to the delivery rows only tells a leased delivery from a waiting one: both are `queued`.
   */
  recipientNow(id: string, recipient: string): RecipientStatus | undefined {
    if (!this.queue.messages.has(id)) return undefined;
    return recipientStatuses([recipient], this.outbox.forMessage(id), this.queue.deliveries.statuses(id, Date.now()))[0];
  }

  /**
   * Messages oldest first after the cursor, at most `limit`; `nextCursor` is null at the end. With
   * a state filter a page may hold fewer than `limit` and still have a next cursor: at most 2,000
   * messages are looked at per page.
   */
  async list(query: MessageListQuery): Promise<{ messages: MessageView[]; nextCursor: string | null }> {
    const addresses = query.scope.filter((s) => !s.startsWith('@')).map((s) => s.toLowerCase());
    const domains = query.scope.filter((s) => s.startsWith('@')).map((s) => s.slice(1).toLowerCase());
    if (addresses.length + domains.length === 0) return { messages: [], nextCursor: null };
    const after = decodeCursor(query.cursor);
    const limit = Math.max(1, Math.min(100, Math.floor(query.limit)));
    const who: string[] = [];
    if (addresses.length > 0) who.push(`lower(mail_from) IN (${addresses.map(() => '?').join(', ')})`);
    if (domains.length > 0) who.push(`lower(substr(mail_from, instr(mail_from, '@') + 1)) IN (${domains.map(() => '?').join(', ')})`);
    const scan = query.state ? SCAN_LIMIT : limit + 1;
    const rows = this.db.sqlite
      .prepare<unknown[], Row>(
        `SELECT queue_id, received_at FROM messages
         WHERE direction = 'outbound' AND mail_from <> '' AND (${who.join(' OR ')})
           AND received_at >= ? AND (received_at > ? OR (received_at = ? AND queue_id > ?))
         ORDER BY received_at, queue_id LIMIT ${scan}`,
      )
      .all(...addresses, ...domains, query.since?.getTime() ?? 0, after.at, after.at, after.id);
    const messages: MessageView[] = [];
    let last: Row | undefined;
    for (const row of rows) {
      if (messages.length === limit) break;
      last = row;
      const view = await this.get(row.queue_id, query.scope);
      if (query.state && !view.recipients.some((r) => r.state === query.state)) continue;
      messages.push(view);
    }
    const more = last !== undefined && (rows.length === scan || rows.indexOf(last) < rows.length - 1);
    return { messages, nextCursor: more && last ? encodeCursor(last) : null };
  }
}

function inScope(address: string, scope: AddressScope): boolean {
  const a = address.toLowerCase();
  const domain = a.slice(a.lastIndexOf('@') + 1);
  return scope.some((s) => (s.startsWith('@') ? s.slice(1).toLowerCase() === domain : s.toLowerCase() === a));
}

function encodeCursor(row: Row): string {
  return Buffer.from(`${row.received_at}:${row.queue_id}`, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string | undefined): { at: number; id: string } {
  if (cursor === undefined || cursor === '') return { at: -1, id: '' };
  const m = /^(\d{1,15}):([A-Za-z0-9_-]{1,64})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw new HispError('HISP_API_INVALID_REQUEST', 'cursor is not one this API gave');
  return { at: Number(m[1]), id: m[2]! };
}

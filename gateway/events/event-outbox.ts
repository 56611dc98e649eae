import type { HispDatabase } from '../store/database.js';

/** The kinds of event (issue 15, "Events"): one per state change of a recipient, and one per message received. */
export type EventType = 'message.queued' | 'message.relayed' | 'message.processed' | 'message.dispatched' | 'message.failed' | 'message.received';

export const EVENT_TYPES: readonly EventType[] = ['message.queued', 'message.relayed', 'message.processed', 'message.dispatched', 'message.failed', 'message.received'];

/**
 * An event as the API and the webhooks carry it, in the shape Standard Webhooks recommends for a
 * payload (`type`, `timestamp`, `data`; standard-webhooks spec, "Payload structure"), plus the
 * event id that receivers de-duplicate on (the same id on every retry) and the cursor to poll
 * after (`GET /v1/events?after=`).
 */
export interface HispEvent {
  id: string;
  /** The position in the outbox, as a string: pass it as `after` to read what came since. */
  cursor: string;
  type: EventType;
  /** When the change happened (ISO 8601, UTC). */
  timestamp: string;
  data: EventData;
}

export interface EventData {
  /** hisp's id of the message (the queue id; `GET /v1/messages/{id}`). */
  id: string;
  /** Its Message-ID, without angle brackets. */
  messageId: string | null;
  /** The recipient whose state changed, or the mailbox that received the message. */
  recipient: string;
  state: 'queued' | 'relayed' | 'processed' | 'dispatched' | 'failed' | 'received';
  reason?: string;
  detail?: string;
  /** What shows it: the MDN's or DSN's Message-ID, the remote server's reply. */
  evidence?: Record<string, string | null>;
  /** An MDN that came after its time-out (the sender was told of a failure already). */
  late?: boolean;
  /** A received message: its envelope sender. */
  from?: string;
}

/** Addresses (`alice@x`) and domains (`@x`), as an API key's scopes are written. */
export type AddressScope = readonly string[];

/**
 * Whose events a reader may see: the state changes of messages sent from `sent` (an API key's
 * send-as scopes), and the messages received into the mailboxes of `received` (its mailboxes).
 */
export interface EventScope {
  sent: AddressScope;
  received: AddressScope;
}

interface EventRow {
  seq: number;
  id: string;
  type: EventType;
  queue_id: string;
  recipient: string;
  at: number;
  data: string;
}

/** The most events one read returns. */
export const MAX_EVENTS_PER_READ = 500;

/**
 * The event outbox (schema migration 6). Rows are written only by the database's triggers, in the
 * transaction of the change they announce; this class reads them: after a cursor (polling, replay,
 * the webhook dispatcher), per message (a message's timeline), and drops old ones.
 */
export class EventOutbox {
  private readonly byQueueIdStmt;
  private readonly purgeStmt;
  private readonly lastStmt;

  constructor(private readonly db: HispDatabase) {
    this.byQueueIdStmt = db.sqlite.prepare<[string], EventRow>('SELECT seq, id, type, queue_id, recipient, at, data FROM events WHERE queue_id = ? ORDER BY seq');
    this.purgeStmt = db.sqlite.prepare<[number]>('DELETE FROM events WHERE at < ?');
    this.lastStmt = db.sqlite.prepare<[], { seq: number | null }>('SELECT max(seq) AS seq FROM events');
  }

  /**
   * Events after `cursor` (exclusive; 0: from the start of what is kept) of `scope`, oldest
   * first, at most `limit` (≤ {@link MAX_EVENTS_PER_READ}). An empty scope sees nothing.
   */
  after(cursor: number, scope: EventScope, limit = 100, types?: readonly EventType[]): HispEvent[] {
    const n = Math.max(1, Math.min(MAX_EVENTS_PER_READ, Math.floor(limit)));
    const params: unknown[] = [Math.max(0, Math.floor(cursor))];
    const whose: string[] = [];
    const part = (list: AddressScope, received: boolean) => {
      const addresses = list.filter((x) => !x.startsWith('@')).map((x) => x.toLowerCase());
      const domains = list.filter((x) => x.startsWith('@')).map((x) => x.slice(1).toLowerCase());
      if (addresses.length + domains.length === 0) return;
      const who: string[] = [];
      if (addresses.length > 0) who.push(`address IN (${addresses.map(() => '?').join(', ')})`);
      if (domains.length > 0) who.push(`domain IN (${domains.map(() => '?').join(', ')})`);
      whose.push(`(type ${received ? '=' : '<>'} 'message.received' AND (${who.join(' OR ')}))`);
      params.push(...addresses, ...domains);
    };
    part(scope.sent, false);
    part(scope.received, true);
    if (whose.length === 0) return [];
    const kinds = types && types.length > 0 ? ` AND type IN (${types.map(() => '?').join(', ')})` : '';
    params.push(...(types ?? []));
    // Prepared per call: a scope has at most a few dozen entries; the index on seq does the work.
    const rows = this.db.sqlite
      .prepare<unknown[], EventRow>(`SELECT seq, id, type, queue_id, recipient, at, data FROM events WHERE seq > ? AND (${whose.join(' OR ')})${kinds} ORDER BY seq LIMIT ${n}`)
      .all(...params);
    return rows.map(toEvent);
  }

  /** Every event of one message, oldest first: its recipients' timelines. */
  forMessage(queueId: string): HispEvent[] {
    return this.byQueueIdStmt.all(queueId).map(toEvent);
  }

  /** The cursor of the newest event (0 when there is none): where a new webhook subscription starts. */
  last(): number {
    return this.lastStmt.get()?.seq ?? 0;
  }

  /** Deletes events older than `before`; returns how many. */
  purge(before: Date): number {
    return this.purgeStmt.run(before.getTime()).changes;
  }
}

function toEvent(row: EventRow): HispEvent {
  const stored = JSON.parse(row.data) as Omit<EventData, 'id' | 'recipient'> & { evidence?: Record<string, string | null> };
  const data: EventData = { id: row.queue_id, recipient: row.recipient, ...stored, messageId: stored.messageId ?? null };
  // json_object() writes SQL NULLs as JSON nulls; an evidence without any value says nothing.
  if (data.evidence && Object.values(data.evidence).every((v) => v === null || v === '')) delete data.evidence;
  if (data.late === false) delete data.late;
  return { id: row.id, cursor: String(row.seq), type: row.type, timestamp: new Date(row.at).toISOString(), data };
}

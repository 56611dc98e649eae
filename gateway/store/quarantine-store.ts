import { HispError } from '../core/errors.js';
import type { SpoolRecord } from './body-spool.js';
import type { HispDatabase } from './database.js';
import { isDiskFull, type DiskReserve } from './disk-reserve.js';
import { LimitedStatement } from './limited-statement.js';
import type { MessageEnvelope, MessageStore, StoredMessage } from './message-store.js';

export interface QuarantineEntry {
  /** The queue id of the stored raw message; the id `hisp quarantine show|delete` take. */
  id: string;
  /** Why: a HISP_… error code as a rule (HISP_SIG_INVALID, HISP_TRUST_NO_ANCHOR…). */
  reasonCode: string;
  detail: string;
  quarantinedAt: Date;
  message: StoredMessage;
}

export interface QuarantineListOptions {
  /** Default 100, newest first. */
  limit?: number;
  /** Only entries quarantined before this (paging). */
  before?: Date;
}

/** The bounds of the quarantine (configuration `[quarantine]`). */
export interface QuarantineLimits {
  /** Entries quarantined longer ago than this are dropped (housekeeping). */
  readonly retentionDays: number;
  /**
   * The most the entries may count together, each its size plus {@link ENTRY_OVERHEAD_BYTES}: the
   * oldest are dropped to stay within it, when an entry is added and by housekeeping.
   */
  readonly maxBytes: number;
}

/** What the store logs: a pino logger, or anything with its `info` and `warn`. */
export interface QuarantineLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface QuarantineStoreOptions {
  /** Default Date.now. */
  now?: () => number;
  /** Default none: unbounded (the operator commands, which only read and delete). */
  limits?: QuarantineLimits;
  /** Released to delete on a full disk, written again afterwards. Default none. */
  reserve?: DiskReserve;
  /** Where drops and the reserve's use are logged. Default: nowhere. */
  logger?: QuarantineLogger;
}

/** Why the gateway dropped an entry by itself: past the retention, or over the size cap. */
export type QuarantineDropCause = 'retention' | 'cap';

/** An entry dropped or purged, as logged and reported. */
export interface QuarantineRemoved {
  id: string;
  reasonCode: string;
  detail: string;
  mailFrom: string;
  messageId: string | null;
  quarantinedAt: Date;
  size: number;
}

export interface QuarantineUsage {
  entries: number;
  /** The sizes of the entries' messages. */
  bytes: number;
  /** What counts against `maxBytes`: bytes plus {@link ENTRY_OVERHEAD_BYTES} per entry. */
  charged: number;
}

export interface QuarantineDropTally {
  entries: number;
  bytes: number;
}

export interface QuarantinePurgeOptions {
  /** Entries quarantined before this instant (an `--all` passes now). */
  before: Date;
  /** Only entries with this reason code. */
  reasonCode?: string;
  /** List what would be deleted, delete nothing. */
  dryRun?: boolean;
}

/**
 * What an entry counts against the cap besides its message's bytes: the file system block of its
 * body file, its inode and its rows (message, delivery, quarantine, their indexes) take about that
 * much, so a flood of tiny messages is bounded as well as one of large ones (without it, a million
 * 100-byte messages would count 100 MB and take 5 GB).
 */
export const ENTRY_OVERHEAD_BYTES = 4096;

/** Entries removed per transaction: a purge of a million entries commits in steps, each a short write lock. */
const CHUNK = 500;
/** Automatic drops are counted per UTC day for this long (`hisp quarantine list` shows the last 30 days). */
const TALLY_KEPT_MS = 90 * 86_400_000;

interface Row {
  queue_id: string;
  reason_code: string;
  detail: string;
  quarantined_at: number;
  size: number;
}

interface RemovableRow extends Row {
  mail_from: string;
  message_id: string | null;
}

/** What one transaction removed: the entries, and the messages that went with them (their bodies go after the commit). */
interface Removal {
  rows: RemovableRow[];
  messages: string[];
  spooled: SpoolRecord[];
}

/** The columns of an entry to remove: its own and what the log tells of its message. */
const REMOVABLE = 'q.queue_id, q.reason_code, q.detail, q.quarantined_at, q.size, m.mail_from, m.message_id';

/**
 * Inbound messages kept for the operator instead of being delivered (a signature that does not
 * verify, a sender not trusted…), with the reason: `hisp quarantine list|show|delete|purge`. The raw
 * message is a stored message (MessageStore).
 *
 * Bounded, since anyone may send to the inbound port (issue 14, item 5): with `limits`, entries
 * older than `retentionDays` are dropped by {@link housekeeping} (hourly), and the entries count
 * together at most `maxBytes`: an {@link add} that goes over it starts a check that drops entries
 * too large for the cap by themselves, then the oldest, until the total fits (in the commit right
 * after the one that added it). Each drop is logged (info past retention, warn over the cap: the
 * quarantine is being filled faster than it empties) and counted per day for `hisp quarantine list`.
 *
 * Removing an entry (drop, delete, purge) removes its message too, unless a delivery of that
 * message is still to be made (a message for two recipients, quarantined for one, still queued for
 * the other): then the message stays in the queue, which purges it once it is final. Rows first,
 * bodies after the commit (a crash in between leaves only a body file no row refers to, removed at
 * start). On a full disk the removal releases the {@link DiskReserve} and tries again.
 */
export class QuarantineStore {
  private readonly now: () => number;
  private readonly limits: QuarantineLimits | undefined;
  private readonly reserve: DiskReserve | undefined;
  private readonly logger: QuarantineLogger | undefined;
  private readonly insertStmt;
  private readonly getStmt;
  private readonly listStmt;
  private readonly removableStmt;
  private readonly deleteEntryStmt;
  private readonly unfinishedStmt;
  private readonly usageStmt;
  private readonly expiredStmt;
  private readonly oversizeStmt;
  private readonly oldestStmt;
  private readonly purgeStmt;
  private readonly purgePageStmt;
  private readonly tallyStmt;
  private readonly tallySinceStmt;
  private readonly pruneTallyStmt;
  /** The cap check started by add(), while it runs; `capAgain`: an add() came meanwhile. */
  private capCheck: Promise<void> | undefined;
  private capAgain = false;

  constructor(
    private readonly db: HispDatabase,
    private readonly messages: MessageStore,
    options: QuarantineStoreOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.limits = options.limits;
    this.reserve = options.reserve;
    this.logger = options.logger;
    const sql = db.sqlite;
    // The size comes from the message row, so the entry and the usage triggers agree with it.
    this.insertStmt = sql.prepare<[string, string, number, string]>(
      `INSERT INTO quarantine (queue_id, reason_code, detail, quarantined_at, size)
       SELECT queue_id, ?, ?, ?, size FROM messages WHERE queue_id = ?
       ON CONFLICT (queue_id) DO UPDATE SET reason_code = excluded.reason_code, detail = excluded.detail`,
    );
    this.getStmt = sql.prepare<[string], Row>('SELECT queue_id, reason_code, detail, quarantined_at, size FROM quarantine WHERE queue_id = ?');
    this.listStmt = new LimitedStatement<[number], Row>(
      sql,
      (n) =>
        `SELECT queue_id, reason_code, detail, quarantined_at, size FROM quarantine WHERE quarantined_at < ?
         ORDER BY quarantined_at DESC, queue_id DESC LIMIT ${n}`,
    );
    this.removableStmt = sql.prepare<[string], RemovableRow>(`SELECT ${REMOVABLE} FROM quarantine AS q JOIN messages AS m USING (queue_id) WHERE q.queue_id = ?`);
    this.deleteEntryStmt = sql.prepare<[string]>('DELETE FROM quarantine WHERE queue_id = ?');
    // As SqliteQueue.purge: a delivery queued, or failed with its DSN still to send, is not final.
    this.unfinishedStmt = sql.prepare<[string], { one: number }>(
      `SELECT 1 AS one FROM deliveries WHERE queue_id = ? AND (state = 'queued' OR (state = 'failed' AND dsn_queued_at IS NULL)) LIMIT 1`,
    );
    this.usageStmt = sql.prepare<[], { entries: number; bytes: number }>('SELECT entries, bytes FROM quarantine_usage WHERE id = 1');
    this.expiredStmt = sql.prepare<[number], RemovableRow>(
      `SELECT ${REMOVABLE} FROM quarantine AS q JOIN messages AS m USING (queue_id)
       WHERE q.quarantined_at < ? ORDER BY q.quarantined_at, q.queue_id LIMIT ${CHUNK}`,
    );
    this.oversizeStmt = sql.prepare<[number], RemovableRow>(
      `SELECT ${REMOVABLE} FROM quarantine AS q JOIN messages AS m USING (queue_id)
       WHERE q.size > ? ORDER BY q.quarantined_at, q.queue_id LIMIT ${CHUNK}`,
    );
    this.oldestStmt = sql.prepare<[], RemovableRow>(
      `SELECT ${REMOVABLE} FROM quarantine AS q JOIN messages AS m USING (queue_id) ORDER BY q.quarantined_at, q.queue_id LIMIT ${CHUNK}`,
    );
    const purgeWhere = 'q.quarantined_at < @before AND (@reason IS NULL OR q.reason_code = @reason)';
    this.purgeStmt = sql.prepare<{ before: number; reason: string | null }, RemovableRow>(
      `SELECT ${REMOVABLE} FROM quarantine AS q JOIN messages AS m USING (queue_id)
       WHERE ${purgeWhere} ORDER BY q.quarantined_at, q.queue_id LIMIT ${CHUNK}`,
    );
    this.purgePageStmt = sql.prepare<{ before: number; reason: string | null; at: number; id: string }, RemovableRow>(
      `SELECT ${REMOVABLE} FROM quarantine AS q JOIN messages AS m USING (queue_id)
       WHERE ${purgeWhere} AND (q.quarantined_at, q.queue_id) > (@at, @id) ORDER BY q.quarantined_at, q.queue_id LIMIT ${CHUNK}`,
    );
    this.tallyStmt = sql.prepare<[number, QuarantineDropCause, number, number]>(
      `INSERT INTO quarantine_drops (day, cause, entries, bytes) VALUES (?, ?, ?, ?)
       ON CONFLICT (day, cause) DO UPDATE SET entries = entries + excluded.entries, bytes = bytes + excluded.bytes`,
    );
    this.tallySinceStmt = sql.prepare<[number], { cause: QuarantineDropCause; entries: number; bytes: number }>(
      'SELECT cause, SUM(entries) AS entries, SUM(bytes) AS bytes FROM quarantine_drops WHERE day >= ? GROUP BY cause',
    );
    this.pruneTallyStmt = sql.prepare<[number]>('DELETE FROM quarantine_drops WHERE day < ?');
  }

  /**
   * Quarantines a stored message (synchronous SQL, for the caller's transaction). Quarantining it
   * again replaces the reason. HISP_USAGE when there is no such message. When the quarantine is now
   * over its cap, a check runs in the next commit and drops what it must (see the class comment).
   */
  add(queueId: string, reasonCode: string, detail: string): void {
    if (this.insertStmt.run(reasonCode, detail, this.now(), queueId).changes === 0) {
      throw new HispError('HISP_USAGE', `no stored message ${queueId} to quarantine`);
    }
    if (this.limits !== undefined && this.usage().charged > this.limits.maxBytes) this.scheduleCapCheck();
  }

  /** Quarantines a stored message (group commit). */
  quarantine(queueId: string, reasonCode: string, detail: string): Promise<void> {
    return this.db.batch(() => this.add(queueId, reasonCode, detail));
  }

  /** Stores a raw inbound message and quarantines it, in one commit; returns its id. */
  async store(envelope: MessageEnvelope, raw: Uint8Array, reasonCode: string, detail: string): Promise<string> {
    // A file of its own: kept until the operator deletes it, it must not hold a spool segment.
    const prepared = await this.messages.writeBody(raw, { file: true });
    return this.messages.commitOrDiscard([prepared], () =>
      this.db.batch(() => {
        const stored = this.messages.insert(envelope, prepared);
        this.add(stored.queueId, reasonCode, detail);
        return stored.queueId;
      }),
    );
  }

  list(options: QuarantineListOptions = {}): QuarantineEntry[] {
    const before = options.before?.getTime() ?? Number.MAX_SAFE_INTEGER;
    return this.listStmt.limit(Math.max(1, options.limit ?? 100)).all(before).flatMap((row) => {
      const entry = this.toEntry(row);
      return entry === undefined ? [] : [entry];
    });
  }

  get(id: string): QuarantineEntry | undefined {
    const row = this.getStmt.get(id);
    return row === undefined ? undefined : this.toEntry(row);
  }

  /** The entry and the raw message as received. */
  async show(id: string): Promise<{ entry: QuarantineEntry; raw: Buffer } | undefined> {
    const entry = this.get(id);
    if (entry === undefined) return undefined;
    return { entry, raw: await this.messages.readBody(id) };
  }

  /** How many entries there are and what they count against the cap. */
  usage(): QuarantineUsage {
    const row = this.usageStmt.get() ?? { entries: 0, bytes: 0 };
    return { entries: row.entries, bytes: row.bytes, charged: row.bytes + row.entries * ENTRY_OVERHEAD_BYTES };
  }

  /** The entries the gateway dropped by itself since `since` (counted per UTC day: from that day's start). */
  drops(since: Date): Record<QuarantineDropCause, QuarantineDropTally> {
    const out: Record<QuarantineDropCause, QuarantineDropTally> = { retention: { entries: 0, bytes: 0 }, cap: { entries: 0, bytes: 0 } };
    for (const r of this.tallySinceStmt.all(utcDay(since.getTime()))) out[r.cause] = { entries: r.entries, bytes: r.bytes };
    return out;
  }

  /**
   * Deletes the entry and its raw message (kept when another recipient's delivery of it is still to
   * be made; see the class comment). False when there was no such entry. Works on a full disk while
   * there is a reserve.
   */
  async delete(id: string): Promise<boolean> {
    const removal = await this.withRoom(() =>
      this.db.batch(() => {
        const row = this.removableStmt.get(id);
        return row === undefined ? undefined : this.removeRows([row]);
      }),
    );
    if (removal === undefined) return false;
    await this.removeBodies(removal);
    await this.restoreReserve();
    return true;
  }

  /**
   * Deletes the entries quarantined before `before` (with `reasonCode`, when given), oldest first,
   * in commits of 500, as {@link delete} does; with `dryRun`, only lists them. Returns them.
   */
  async purge(options: QuarantinePurgeOptions): Promise<QuarantineRemoved[]> {
    const params = { before: options.before.getTime(), reason: options.reasonCode ?? null };
    const out: QuarantineRemoved[] = [];
    if (options.dryRun) {
      for (let page = this.purgeStmt.all(params); page.length > 0; ) {
        out.push(...page.map(removed));
        if (page.length < CHUNK) break;
        const last = page[page.length - 1] as RemovableRow;
        page = this.purgePageStmt.all({ ...params, at: last.quarantined_at, id: last.queue_id });
      }
      return out;
    }
    for (;;) {
      const removal = await this.withRoom(() => this.db.batch(() => this.removeRows(this.purgeStmt.all(params))));
      await this.removeBodies(removal);
      out.push(...removal.rows.map(removed));
      if (removal.rows.length < CHUNK) break;
    }
    await this.restoreReserve();
    return out;
  }

  /**
   * Applies the limits now: drops the entries past the retention, then, while the total is over the
   * cap, those too large for it by themselves and the oldest. Logs and counts each drop. Returns how
   * many went for each cause. Without limits, does nothing.
   */
  async enforce(): Promise<Record<QuarantineDropCause, number>> {
    const dropped = { retention: 0, cap: 0 };
    if (this.limits === undefined) return dropped;
    const cutoff = this.now() - this.limits.retentionDays * 86_400_000;
    for (;;) {
      const n = await this.dropBatch('retention', () => this.expiredStmt.all(cutoff));
      dropped.retention += n;
      if (n < CHUNK) break;
    }
    dropped.cap = await this.enforceCap();
    return dropped;
  }

  /**
   * The gateway's housekeeping (at start and hourly): {@link enforce}, forget the daily drop counts
   * older than 90 days, and write the disk reserve when it is missing. Logs what it did; never rejects.
   */
  async housekeeping(): Promise<void> {
    try {
      const dropped = await this.enforce();
      await this.db.batch(() => this.pruneTallyStmt.run(utcDay(this.now() - TALLY_KEPT_MS)));
      if (dropped.retention + dropped.cap > 0) {
        const u = this.usage();
        this.logger?.info({ dropped, entries: u.entries, bytes: u.bytes }, 'quarantine housekeeping');
      }
    } catch (err) {
      this.logger?.warn({ err: describe(err) }, 'quarantine housekeeping failed');
    }
    await this.restoreReserve();
  }

  /** Resolves once the cap check started by add() (if any) has ended. */
  async settled(): Promise<void> {
    while (this.capCheck !== undefined) await this.capCheck;
  }

  private scheduleCapCheck(): void {
    if (this.capCheck !== undefined) {
      this.capAgain = true;
      return;
    }
    // Started from inside the caller's transaction: its first batch joins the commit right after
    // that one, so it sees the entry just added (or, if that transaction rolled back, not).
    this.capCheck = (async () => {
      do {
        this.capAgain = false;
        try {
          await this.enforceCap();
        } catch (err) {
          if (this.db.isOpen) this.logger?.warn({ err: describe(err) }, 'quarantine size check failed: housekeeping will try again');
        }
      } while (this.capAgain && this.db.isOpen);
    })().finally(() => {
      this.capCheck = undefined;
    });
  }

  /** Drops entries until the total is within the cap; returns how many. */
  private async enforceCap(): Promise<number> {
    const limits = this.limits;
    if (limits === undefined) return 0;
    let dropped = 0;
    for (;;) {
      if (!this.db.isOpen) return dropped;
      const n = await this.dropBatch('cap', () => this.overCap(limits.maxBytes));
      dropped += n;
      if (n === 0) return dropped;
    }
  }

  /**
   * The entries to drop so that the total fits under `maxBytes` (at most one chunk): first those
   * that cannot fit by themselves (an operator who lowered the cap; a message larger than it, which
   * would otherwise push out every other entry and still not fit), then the oldest.
   */
  private overCap(maxBytes: number): RemovableRow[] {
    let excess = this.usage().charged - maxBytes;
    if (excess <= 0) return [];
    const rows = this.oversizeStmt.all(maxBytes - ENTRY_OVERHEAD_BYTES);
    for (const r of rows) excess -= r.size + ENTRY_OVERHEAD_BYTES;
    if (excess <= 0 || rows.length >= CHUNK) return rows;
    const taken = new Set(rows.map((r) => r.queue_id));
    for (const r of this.oldestStmt.all()) {
      if (excess <= 0 || rows.length >= CHUNK) break;
      if (taken.has(r.queue_id)) continue;
      rows.push(r);
      excess -= r.size + ENTRY_OVERHEAD_BYTES;
    }
    return rows;
  }

  /** One commit of automatic drops: removes the rows `select` finds, counts them; after it, bodies and log. */
  private async dropBatch(cause: QuarantineDropCause, select: () => RemovableRow[]): Promise<number> {
    const now = this.now();
    const removal = await this.withRoom(() =>
      this.db.batch(() => {
        const r = this.removeRows(select());
        if (r.rows.length > 0) this.tallyStmt.run(utcDay(now), cause, r.rows.length, r.rows.reduce((n, row) => n + row.size, 0));
        return r;
      }),
    );
    await this.removeBodies(removal);
    for (const row of removal.rows) {
      const fields = { ...logFields(removed(row), now), cause };
      // Past retention: the operator's decision, made in the configuration. Over the cap: the
      // quarantine fills faster than it empties (a flood?), worth a look.
      if (cause === 'retention') this.logger?.info(fields, 'quarantine entry dropped: older than quarantine.retentionDays');
      else this.logger?.warn({ ...fields, maxBytes: this.limits?.maxBytes }, 'quarantine entry dropped: the quarantine is over quarantine.maxBytes (oldest first)');
    }
    return removal.rows.length;
  }

  /** Synchronous SQL, in the caller's transaction: the entries, and their messages when nothing else needs them. */
  private removeRows(rows: RemovableRow[]): Removal {
    const messages: string[] = [];
    for (const r of rows) {
      this.deleteEntryStmt.run(r.queue_id);
      if (this.unfinishedStmt.get(r.queue_id) === undefined) messages.push(r.queue_id);
    }
    const spooled = this.messages.spooledBodies(messages);
    this.messages.deleteRows(messages);
    return { rows, messages, spooled };
  }

  /**
   * After the commit: the body files of the messages removed (a quarantined body is a file of its
   * own; a spooled one may have a file too, a set-aside cut short by a crash) and their spool records.
   */
  private async removeBodies(removal: Removal): Promise<void> {
    await this.messages.unlinkBodies(removal.messages);
    await this.messages.eraseSpooled(removal.spooled);
  }

  /**
   * Runs `op` (a commit that removes rows); when it fails because the disk is full and there is a
   * reserve, releases the reserve and runs it once more.
   */
  private async withRoom<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (!isDiskFull(err) || this.reserve === undefined) throw err;
      const freed = this.reserve.release();
      if (freed === 0) throw err;
      this.logger?.warn({ reserve: this.reserve.path, bytes: freed }, 'the disk is full: released the reserve to delete; it is written again once there is room');
      return await op();
    }
  }

  /** Writes the reserve again if it is missing (after a release, or a start on a full disk). */
  private async restoreReserve(): Promise<void> {
    if (this.reserve === undefined) return;
    try {
      if (!(await this.reserve.ensure())) {
        this.logger?.warn({ reserve: this.reserve.path, available: this.reserve.available() }, 'no room for the disk reserve: written again when there is');
      }
    } catch (err) {
      this.logger?.warn({ reserve: this.reserve.path, err: describe(err) }, 'cannot write the disk reserve');
    }
  }

  private toEntry(row: Row): QuarantineEntry | undefined {
    const message = this.messages.get(row.queue_id);
    if (message === undefined) return undefined;
    return {
      id: row.queue_id,
      reasonCode: row.reason_code,
      detail: row.detail,
      quarantinedAt: new Date(row.quarantined_at),
      message,
    };
  }
}

function removed(row: RemovableRow): QuarantineRemoved {
  return {
    id: row.queue_id,
    reasonCode: row.reason_code,
    detail: row.detail,
    mailFrom: row.mail_from,
    messageId: row.message_id,
    quarantinedAt: new Date(row.quarantined_at),
    size: row.size,
  };
}

/** The fields of a drop's log line: enough to answer "what happened to the message from X?" later. */
function logFields(r: QuarantineRemoved, now: number): Record<string, unknown> {
  return {
    queueId: r.id,
    reasonCode: r.reasonCode,
    detail: r.detail,
    mailFrom: r.mailFrom,
    messageId: r.messageId,
    size: r.size,
    quarantinedAt: r.quarantinedAt.toISOString(),
    ageHours: Math.round((now - r.quarantinedAt.getTime()) / 360_000) / 10,
  };
}

/** The start of the UTC day of `ms`. */
function utcDay(ms: number): number {
  return Math.floor(ms / 86_400_000) * 86_400_000;
}

function describe(err: unknown): string {
  if (err instanceof HispError) return `${err.code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

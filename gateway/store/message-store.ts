import { randomBytes } from 'node:crypto';
import { close, constants, fdatasync, link, mkdirSync, open, read, readFile, write } from 'node:fs';
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { HispError, isHispError } from '../core/errors.js';
import { BodySpool, type BodySpoolOptions, type SpoolRecord, type SpoolRef } from './body-spool.js';
import { maybeCommitted } from './commit-batcher.js';
import type { HispDatabase } from './database.js';
import { DirectorySync } from './directory-sync.js';

export type MessageDirection = 'outbound' | 'inbound';

/** What the SMTP edge knows of a message when it accepts it. */
export interface MessageEnvelope {
  /** The reverse-path without angle brackets; '' for the null reverse-path (DSNs). */
  mailFrom: string;
  /** The forward-paths, in RCPT order. */
  recipients: readonly string[];
  direction: MessageDirection;
  /** The authenticated SMTP user that submitted it (outbound). */
  submittedBy?: string | null;
  /** The Message-ID header, with or without its angle brackets. */
  messageId?: string | null;
  /** Default: the store's clock. */
  receivedAt?: Date;
  /** Small JSON facts kept with the message (client address, HELO, TLS, MDN request). */
  meta?: Readonly<Record<string, unknown>>;
}

export interface StoredMessage {
  queueId: string;
  direction: MessageDirection;
  mailFrom: string;
  recipients: string[];
  submittedBy: string | null;
  /** Without angle brackets. */
  messageId: string | null;
  receivedAt: Date;
  /** Body size in bytes. */
  size: number;
  meta: Record<string, unknown>;
}

/**
 * A body ready for {@link MessageStore.insert}, already durable unless it goes into the row: in the
 * spool, in a file, or held in memory for an inline row. Insert it or discard it.
 */
export interface PreparedBody {
  readonly queueId: string;
  readonly size: number;
  /** The bytes, when the body is stored inline in its row. */
  readonly inline?: Uint8Array;
  /** Where the body is in the spool. */
  readonly spool?: SpoolRef;
  /** The bytes of a spooled body, handed to the first reader in this process (see MessageStore.readBody). */
  readonly bytes?: Uint8Array;
}

/**
 * A body received into a file (gateway/smtp/mail-data.ts), stored as `prefix` followed by the
 * file's octets from `from` on: the trace field and the edge's edits of the header section, then
 * the rest of the message as it came. The file stays the caller's (it may remove it afterwards).
 */
export interface BodyFile {
  readonly file: string;
  /** Octets in the file. */
  readonly size: number;
  readonly prefix?: readonly Uint8Array[];
  /** Where in the file the octets that follow the prefix start; default 0. */
  readonly from?: number;
}

/** What a message body can be stored from: bytes in memory, or a received file. */
export type BodySource = Uint8Array | BodyFile;

export interface MessageStoreOptions {
  /** Default Date.now. */
  now?: () => number;
  /** Default: 22 hex digits, time-ordered (see defaultId). */
  newId?: () => string;
  /** Bodies up to this size go into their row (a BLOB). Default 0: none (see the class comment). */
  inlineMaxBytes?: number;
  /** Bodies up to this size (and above inlineMaxBytes) go into the spool, larger ones into files. Default 128 KiB. */
  spoolMaxBytes?: number;
  /** The spool's segment size, reclaim age (and an fdatasync for tests); its sync failures stop the database. */
  spool?: Omit<BodySpoolOptions, 'onSyncFailure'>;
  /** Bytes of recently stored bodies kept in memory for their first reader; default 16 MiB. */
  recentBytes?: number;
  /**
   * Told when the spooled body of a deleted (or never committed) message could not be overwritten:
   * the deletion stands, the bytes stay until their segment is reclaimed. Default: ignored.
   */
  onEraseFailure?: (err: unknown) => void;
}

interface MessageRow {
  queue_id: string;
  direction: MessageDirection;
  mail_from: string;
  rcpt_to: string;
  submitted_by: string | null;
  message_id: string | null;
  received_at: number;
  size: number;
  meta: string | null;
}

interface BodyRow {
  body: Buffer | null;
  spool_segment: number | null;
  spool_offset: number | null;
  size: number;
}

/** The envelope columns: never `SELECT *`, which would read inline bodies for a listing. */
const ENVELOPE = 'queue_id, direction, mail_from, rcpt_to, submitted_by, message_id, received_at, size, meta';

/**
 * Callback fs wrapped once: on Node 20 the FileHandle API of fs/promises cost 0.28 ms of main-thread
 * time per 10 KB body (open, write, sync, close) against 0.05 ms for these (measured, 20 writers).
 */
const openAsync = promisify(open);
const closeAsync = promisify(close);
const readFileAsync = promisify(readFile);
const fdatasyncAsync = promisify(fdatasync);
const linkAsync = promisify(link);
const readAsync = (fd: number, buffer: Uint8Array, length: number, position: number): Promise<number> =>
  new Promise((resolve, reject) => read(fd, buffer, 0, length, position, (err, n) => (err ? reject(err) : resolve(n))));
const writeAsync = (fd: number, data: Uint8Array, offset: number, length: number): Promise<number> =>
  new Promise((resolve, reject) => write(fd, data, offset, length, null, (err, n) => (err ? reject(err) : resolve(n))));
/**
 * A new body: created exclusively, and written with O_DSYNC, so that each write(2) returns only
 * "as though followed by fdatasync(2)" (open(2)): the data and the file size are durable without a
 * separate fsync call, one thread-pool round trip less per message.
 */
const CREATE_DURABLE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC;
/** For a file no row refers to yet whose name may be taken by a leftover (see MessageStore.setAside). */
const REPLACE_DURABLE = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_DSYNC;

/** Queue ids become file names: only this alphabet, whatever an operator types. */
const SAFE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Message bodies, stored once, and their envelopes.
 *
 * A body of up to `spoolMaxBytes` (128 KiB) is appended to the spool (`<dataDir>/spool/`,
 * {@link BodySpool}) and synced there before the row that refers to it commits. A larger one is a
 * file `<dataDir>/messages/<queueId>.eml` (mode 0600) written with O_DSYNC, its directory fsynced,
 * before the row commits. Either way a committed row always has its body; a crash in between leaves
 * an unreferenced record (reclaimed with its segment) or file (removed by {@link sweepOrphans}).
 * Rows written by earlier releases may hold their body inline (a BLOB), which is still read; new
 * rows do so only below `inlineMaxBytes` (default 0).
 *
 * The bytes of a body just stored stay in memory (up to `recentBytes`) for its first reader in this
 * process, the relay or the receive worker, which then reads nothing back from disk.
 *
 * Spool against BLOB against file (bench/queue-bench.ts, 20 producers, on the 2-vCPU development VM
 * in a slow hour): 100 KB 1,770 against 660 against 1,560 msg/s, 0.25 against 1.31 against 0.21 ms
 * of event loop per message, p99 17 against 52 against 22 ms; 10 KB 3,770 against 4,030 against
 * 2,250 msg/s, 0.16 against 0.18 against 0.19 ms. The spool is as fast as a BLOB for small bodies
 * and much faster for large ones, which a BLOB copies through the WAL and again by checkpoint.
 *
 * Before the spool (kept for the record; why the large bodies are files): bodies up to 128 KiB were
 * BLOBs in their row. Measured then (bench/queue-bench.ts and variants; WAL, synchronous=FULL, 20 concurrent producers, on the
 * 2-vCPU development VM shared with other work, so ranges): a BLOB costs no fsync of its own, it
 * rides in the WAL fsync of its group commit, but better-sqlite3 copies it on the main thread (WAL,
 * then checkpoint). A file is written by libuv's thread pool, but each new file costs the file
 * system a journal commit, and its throughput varied four-fold with the disk's other load.
 * Inline against file, per message: 10 KB 10,800-13,900 against 1,000-4,700 msg/s, 0.07-0.09
 * against 0.13-0.53 ms of event loop, 0.06-0.08 against 0.25-1.1 ms of CPU (thread pool included);
 * 100 KB 2,000-2,650 against 980-2,420 msg/s, 0.38-0.50 against 0.17-0.48 ms of event loop,
 * 0.27-0.35 against 0.76-1.18 ms of CPU; 1 MB 140-250 against 310-570 msg/s, 4-7 against 0.4-0.9 ms
 * of event loop. Up to about 100 KB inline is as fast or faster and a third of the CPU, for at most
 * 0.2 ms more of the thread that runs SMTP and S/MIME; beyond, a file keeps a large message (10 MB)
 * from stalling every session.
 */
export class MessageStore {
  readonly dir: string;
  private readonly now: () => number;
  private readonly newId: () => string;
  private readonly dirSync: DirectorySync;
  private readonly inlineMaxBytes: number;
  private readonly spoolMaxBytes: number;
  /** Bodies up to spoolMaxBytes; its first segment is created by the first append (a CLI process that only reads creates none). */
  readonly spool: BodySpool;
  private readonly recent: RecentBodies;
  private readonly insertRow;
  private readonly bodyRow;
  private readonly getRow;
  private readonly byMessageId;
  private readonly deleteRow;
  private readonly existsRow;
  private readonly segmentLive;
  private readonly unspoolRow;
  private readonly onEraseFailure: (err: unknown) => void;
  /** Queue ids whose body is being set aside as a file now (setAside until commit or abandon). */
  private readonly settingAside = new Set<string>();

  constructor(
    private readonly db: HispDatabase,
    options: MessageStoreOptions = {},
  ) {
    this.dir = join(db.dataDir, 'messages');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.now = options.now ?? Date.now;
    this.newId = options.newId ?? (() => defaultId(this.now()));
    this.dirSync = new DirectorySync(this.dir);
    this.inlineMaxBytes = options.inlineMaxBytes ?? 0;
    this.spoolMaxBytes = Math.max(this.inlineMaxBytes, options.spoolMaxBytes ?? 128 * 1024);
    this.spool = new BodySpool(join(db.dataDir, 'spool'), {
      ...options.spool,
      // Fail-stop, as for the WAL: nothing may be acknowledged after a failed sync.
      onSyncFailure: (err) => db.syncFailed(err),
    });
    this.recent = new RecentBodies(options.recentBytes ?? 16 * 1024 * 1024);
    this.onEraseFailure = options.onEraseFailure ?? (() => undefined);
    const sql = db.sqlite;
    this.insertRow = sql.prepare<
      [string, string, string, string, string | null, string | null, number, number, string | null, Uint8Array | null, number | null, number | null]
    >(
      `INSERT INTO messages (queue_id, direction, mail_from, rcpt_to, submitted_by, message_id, received_at, size, meta, body, spool_segment, spool_offset)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.getRow = sql.prepare<[string], MessageRow>(`SELECT ${ENVELOPE} FROM messages WHERE queue_id = ?`);
    this.bodyRow = sql.prepare<[string], BodyRow>('SELECT body, spool_segment, spool_offset, size FROM messages WHERE queue_id = ?');
    this.segmentLive = sql.prepare<[number], { one: number }>('SELECT 1 AS one FROM messages WHERE spool_segment = ? LIMIT 1');
    this.unspoolRow = sql.prepare<[string, number, number]>(
      'UPDATE messages SET spool_segment = NULL, spool_offset = NULL WHERE queue_id = ? AND spool_segment = ? AND spool_offset = ?',
    );
    this.byMessageId = sql.prepare<[string], MessageRow>(
      `SELECT ${ENVELOPE} FROM messages WHERE message_id = ? ORDER BY received_at DESC, queue_id DESC`,
    );
    this.deleteRow = sql.prepare<[string]>('DELETE FROM messages WHERE queue_id = ?');
    this.existsRow = sql.prepare<[string], { one: number }>('SELECT 1 AS one FROM messages WHERE queue_id = ?');
  }

  /** Where the body of `queueId` lives when it is a file (for streaming a large one). */
  bodyPath(queueId: string): string {
    if (!SAFE_ID.test(queueId)) throw new HispError('HISP_USAGE', `not a queue id: ${JSON.stringify(queueId.slice(0, 80))}`);
    return join(this.dir, `${queueId}.eml`);
  }

  /**
   * Prepares a body under a new queue id and makes it durable: appended to the spool and synced, or
   * written to a file (file and directory fsynced); below `inlineMaxBytes` it stays in memory for
   * its row. Nothing refers to it until {@link insert} commits; {@link discard} it if that does not
   * happen. The caller must not use `body` afterwards: it is kept for the first reader, which may
   * take its memory (the relay hands it to a wrap thread). `file`: a file whatever its size (a
   * message kept for the operator, which must not hold a spool segment).
   */
  async writeBody(source: BodySource, options: { file?: boolean } = {}): Promise<PreparedBody> {
    if (!(source instanceof Uint8Array)) return this.writeBodyFile(source);
    const body = source;
    if (!options.file && body.byteLength <= this.inlineMaxBytes) return { queueId: this.newId(), size: body.byteLength, inline: body };
    if (!options.file && body.byteLength <= this.spoolMaxBytes) {
      const queueId = this.newId();
      return { queueId, size: body.byteLength, spool: await this.spool.append(queueId, body), bytes: body };
    }
    for (let tries = 0; ; tries++) {
      const queueId = this.newId();
      try {
        await this.writeFile(queueId, body);
      } catch (err) {
        if (isHispError(err) && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'EEXIST' && tries < 5) continue;
        throw err;
      }
      return { queueId, size: body.byteLength };
    }
  }

  /**
   * A received file as the body of a new queue id (issue 14, item 6: a large message is never
   * held whole in memory): the file itself when nothing goes before it (synced, then linked under
   * `messages/<queueId>.eml`), else a new file of the prefix and the file's octets from `from`,
   * copied a MiB at a time. Durable on return, like {@link writeFile}.
   */
  private async writeBodyFile(source: BodyFile): Promise<PreparedBody> {
    const from = source.from ?? 0;
    const prefix = source.prefix ?? [];
    const size = prefix.reduce((n, p) => n + p.byteLength, 0) + source.size - from;
    if (prefix.length === 0 && from === 0) {
      try {
        const fd = await openAsync(source.file, constants.O_RDONLY);
        try {
          await fdatasyncAsync(fd);
        } finally {
          await closeAsync(fd);
        }
      } catch (err) {
        throw ioError('cannot sync the received message', err);
      }
      for (let tries = 0; ; tries++) {
        const queueId = this.newId();
        try {
          await linkAsync(source.file, this.bodyPath(queueId));
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'EEXIST' && tries < 5) continue;
          // Another file system (a test's temporary folder): copied instead.
          if (code === 'EXDEV') break;
          throw ioError('cannot store the received message', err);
        }
        try {
          await this.dirSync.sync();
        } catch (err) {
          await unlink(this.bodyPath(queueId)).catch(() => undefined);
          throw ioError('cannot store the received message', err);
        }
        return { queueId, size };
      }
    }
    for (let tries = 0; ; tries++) {
      const queueId = this.newId();
      try {
        await this.copyIntoFile(queueId, prefix, source.file, from, source.size);
      } catch (err) {
        if (isHispError(err) && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'EEXIST' && tries < 5) continue;
        throw err;
      }
      return { queueId, size };
    }
  }

  /** `<queueId>.eml` of `prefix` and `file`[from, end): created exclusively, synced once written, its directory fsynced. */
  private copyIntoFile(queueId: string, prefix: readonly Uint8Array[], file: string, from: number, end: number): Promise<void> {
    return this.createBodyFile(queueId, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, async (fd) => {
      for (const p of prefix) for (let off = 0; off < p.byteLength; ) off += await writeAsync(fd, p, off, p.byteLength - off);
      const input = await openAsync(file, constants.O_RDONLY);
      try {
        const chunk = Buffer.allocUnsafe(Math.min(1024 * 1024, Math.max(1, end - from)));
        for (let at = from; at < end; ) {
          const n = await readAsync(input, chunk, Math.min(chunk.length, end - at), at);
          if (n === 0) throw new Error(`the received message ended at octet ${at} of ${end}`);
          for (let off = 0; off < n; ) off += await writeAsync(fd, chunk, off, n - off);
          at += n;
        }
      } finally {
        await closeAsync(input).catch(() => undefined);
      }
      await fdatasyncAsync(fd);
    });
  }

  /**
   * `<queueId>.eml`, created exclusively with O_DSYNC, its directory fsynced: durable on return.
   * `replace`: a file of that name is overwritten (only for a name no committed row refers to).
   */
  private writeFile(queueId: string, body: Uint8Array, replace = false): Promise<void> {
    return this.createBodyFile(queueId, replace ? REPLACE_DURABLE : CREATE_DURABLE, async (fd) => {
      // O_DSYNC: each write returns once its data, and the size needed to read it back, are on disk.
      for (let off = 0; off < body.byteLength; ) off += await writeAsync(fd, body, off, body.byteLength - off);
    });
  }

  /**
   * Creates `<queueId>.eml` (mode 0600) with `flags`, lets `fill` write it (and make its data
   * durable), closes it and fsyncs the folder; on any failure the file is removed (HISP_IO).
   */
  private async createBodyFile(queueId: string, flags: number, fill: (fd: number) => Promise<void>): Promise<void> {
    const path = this.bodyPath(queueId);
    let fd: number;
    try {
      fd = await openAsync(path, flags, 0o600);
    } catch (err) {
      throw ioError(`cannot create ${path}`, err);
    }
    try {
      await fill(fd);
      await closeAsync(fd);
      await this.dirSync.sync();
    } catch (err) {
      await closeAsync(fd).catch(() => undefined);
      await unlink(path).catch(() => undefined);
      throw ioError(`cannot write ${path}`, err);
    }
  }

  /**
   * A spooled body set aside as a file of its own: for a message the operator keeps (quarantine),
   * which would otherwise hold its spool segment, and the bodies around it, for as long. `body` is
   * the message's stored body. Writes the file durably now; `commit` (synchronous SQL, in the
   * commit that quarantines) points the row at it; `after` erases the spool record once that
   * commit is durable; `abandon(err)` when that commit failed with `err` (the file goes, unless
   * the commit may be on disk: maybeCommitted). Undefined when the body is not in the spool, or is being
   * set aside by another call already (a second recipient of the same message).
   */
  async setAside(queueId: string, body: Uint8Array): Promise<{ commit(): void; after(): Promise<void>; abandon(err: unknown): Promise<void> } | undefined> {
    const record = this.spoolRecordOf(queueId);
    if (record === undefined || this.settingAside.has(queueId)) return undefined;
    this.settingAside.add(queueId);
    try {
      // The row still refers to the spool, so a file of this name is a leftover (a crash, or an
      // earlier attempt whose commit failed): written over, not taken for this message's copy.
      await this.writeFile(queueId, body, true);
    } catch (err) {
      this.settingAside.delete(queueId);
      throw err;
    }
    return {
      commit: () => {
        this.settingAside.delete(queueId);
        this.unspoolRow.run(queueId, record.ref.segment, record.ref.offset);
      },
      after: () => this.eraseSpooled([record]),
      abandon: async (err) => {
        this.settingAside.delete(queueId);
        if (!maybeCommitted(err)) await unlink(this.bodyPath(queueId)).catch(() => undefined);
      },
    };
  }

  /**
   * Removes a prepared body whose row was not committed: its file, or its spool record overwritten
   * (the segment itself goes once no row refers to it). Never throws. Not for a row that may have
   * committed (maybeCommitted): a restart could find it without its body.
   */
  async discard(prepared: PreparedBody): Promise<void> {
    this.recent.forget(prepared.queueId);
    if (prepared.inline !== undefined) return;
    if (prepared.spool !== undefined) {
      await this.eraseSpooled([{ ref: prepared.spool, size: prepared.size, queueId: prepared.queueId }]);
      return;
    }
    await unlink(this.bodyPath(prepared.queueId)).catch(() => undefined);
  }

  /**
   * Inserts the envelope row of a prepared body. Synchronous SQL: run it inside
   * `db.batch(() => …)` (group commit) or `db.transaction`, together with what must commit with it.
   */
  insert(envelope: MessageEnvelope, prepared: PreparedBody): StoredMessage {
    const stored: StoredMessage = {
      queueId: prepared.queueId,
      direction: envelope.direction,
      mailFrom: envelope.mailFrom,
      recipients: [...envelope.recipients],
      submittedBy: envelope.submittedBy ?? null,
      messageId: normalizeMessageId(envelope.messageId),
      receivedAt: envelope.receivedAt ?? new Date(this.now()),
      size: prepared.size,
      meta: { ...(envelope.meta ?? {}) },
    };
    this.insertRow.run(
      stored.queueId,
      stored.direction,
      stored.mailFrom,
      JSON.stringify(stored.recipients),
      stored.submittedBy,
      stored.messageId,
      stored.receivedAt.getTime(),
      stored.size,
      Object.keys(stored.meta).length === 0 ? null : JSON.stringify(stored.meta),
      prepared.inline ?? null,
      prepared.spool?.segment ?? null,
      prepared.spool?.offset ?? null,
    );
    if (prepared.bytes !== undefined) this.recent.remember(prepared.queueId, prepared.bytes);
    return stored;
  }

  /** Writes the body and commits its envelope (group commit); resolves once both are durable. */
  async put(envelope: MessageEnvelope, body: BodySource): Promise<StoredMessage> {
    const prepared = await this.writeBody(body);
    return this.commitOrDiscard([prepared], () => this.db.batch(() => this.insert(envelope, prepared)));
  }

  /**
   * Runs `commit`, the group commit that inserts the rows of `prepared` bodies. When it fails, the
   * bodies are discarded, unless the commit may be on disk (its log sync failed, maybeCommitted):
   * after a restart those rows must find their bodies.
   */
  async commitOrDiscard<T>(prepared: readonly PreparedBody[], commit: () => Promise<T>): Promise<T> {
    try {
      return await commit();
    } catch (err) {
      if (!maybeCommitted(err)) await Promise.all(prepared.map((p) => this.discard(p)));
      throw err;
    }
  }

  get(queueId: string): StoredMessage | undefined {
    const row = this.getRow.get(queueId);
    return row === undefined ? undefined : toStored(row);
  }

  has(queueId: string): boolean {
    return this.existsRow.get(queueId) !== undefined;
  }

  /** The messages carrying a Message-ID (with or without brackets), newest first. */
  findByMessageId(messageId: string): StoredMessage[] {
    const id = normalizeMessageId(messageId);
    return id === null ? [] : this.byMessageId.all(id).map(toStored);
  }

  /**
   * The body, in a buffer the caller may keep, change or hand to a thread (the first read of a body
   * this process stored gets the bytes it was given; later ones read the disk). HISP_IO when it is gone.
   */
  async readBody(queueId: string): Promise<Buffer> {
    const recent = this.recent.take(queueId);
    if (recent !== undefined) return Buffer.isBuffer(recent) ? recent : Buffer.from(recent.buffer, recent.byteOffset, recent.byteLength);
    const path = this.bodyPath(queueId);
    const row = this.bodyRow.get(queueId);
    if (row?.body !== null && row?.body !== undefined) return row.body;
    const record = spoolRecord(queueId, row);
    if (record !== undefined) return this.spool.read(record.ref, queueId, record.size);
    try {
      return await readFileAsync(path);
    } catch (err) {
      throw ioError(`cannot read the body of ${queueId}`, err);
    }
  }

  /**
   * Deletes a message (its deliveries and quarantine entry go with it), then its body file if it has
   * one. A crash between the two leaves an orphan file for {@link sweepOrphans}. False when there was
   * no such row.
   */
  async delete(queueId: string): Promise<boolean> {
    this.recent.forget(queueId);
    let spooled: SpoolRecord[] = [];
    const deleted = await this.db.batch(() => {
      spooled = this.spooledBodies([queueId]);
      return this.deleteRow.run(queueId).changes > 0;
    });
    if (deleted) {
      await unlink(this.bodyPath(queueId)).catch(() => undefined);
      await this.eraseSpooled(spooled); // deleted even when this fails (onEraseFailure)
    }
    return deleted;
  }

  /**
   * Deletes the rows of messages in the caller's transaction; after it committed, unlink their
   * files ({@link unlinkBodies}) and erase their spooled bodies ({@link spooledBodies} before this,
   * then {@link eraseSpooled}).
   */
  deleteRows(queueIds: readonly string[]): number {
    let n = 0;
    for (const id of queueIds) {
      this.recent.forget(id);
      n += this.deleteRow.run(id).changes;
    }
    return n;
  }

  /** Where the spooled bodies of these messages are (synchronous SQL: read before deleting their rows). */
  spooledBodies(queueIds: readonly string[]): SpoolRecord[] {
    return queueIds.flatMap((id) => this.spoolRecordOf(id) ?? []);
  }

  /**
   * The file holding the body of `queueId` when it is kept as one (a large body, a quarantined
   * one), for a reader that streams it; undefined when it is in the spool, inline or gone.
   */
  fileOf(queueId: string): string | undefined {
    const row = this.bodyRow.get(queueId);
    if (row === undefined || row.body !== null || row.spool_segment !== null) return undefined;
    return this.bodyPath(queueId);
  }

  /** Where the body of `queueId` is in the spool; undefined when it is not there (a file, inline, no row). */
  private spoolRecordOf(queueId: string): SpoolRecord | undefined {
    return spoolRecord(queueId, this.bodyRow.get(queueId));
  }

  /**
   * Overwrites the spool records of deleted messages with zeros (BodySpool.erase). Never throws:
   * the messages are deleted whatever happens here; a failure goes to onEraseFailure and the bytes
   * stay until their segment is reclaimed.
   */
  async eraseSpooled(bodies: readonly SpoolRecord[]): Promise<void> {
    if (bodies.length === 0) return;
    try {
      await this.spool.erase(bodies);
    } catch (err) {
      this.onEraseFailure(err);
    }
  }

  /**
   * Removes the spool segments no row refers to any more (see BodySpool.reclaim): before removing
   * any, an empty commit makes what is committed durable (the WAL synced), deletes of other
   * processes (the CLI) included. Returns how many were removed.
   */
  reclaimSpool(): Promise<number> {
    return this.spool.reclaim(
      (segment) => this.segmentLive.get(segment) !== undefined,
      () => this.db.batch(() => undefined),
    );
  }

  /** Closes the spool's descriptors (after its writes and syncs in flight). */
  close(): Promise<void> {
    return this.spool.close();
  }

  async unlinkBodies(queueIds: readonly string[]): Promise<void> {
    await Promise.all(queueIds.map((id) => unlink(this.bodyPath(id)).catch(() => undefined)));
  }

  /**
   * Removes body files that no row refers to and that are older than `olderThanMs` (default one
   * hour: a younger one may be a body whose row is about to commit, in this or another process).
   * Returns the number removed.
   */
  async sweepOrphans(olderThanMs = 3_600_000): Promise<number> {
    const cutoff = this.now() - olderThanMs;
    let removed = 0;
    for (const name of await readdir(this.dir)) {
      if (!name.endsWith('.eml')) continue;
      const queueId = name.slice(0, -4);
      if (!SAFE_ID.test(queueId) || this.has(queueId)) continue;
      const path = join(this.dir, name);
      const info = await stat(path).catch(() => undefined);
      if (info === undefined || info.mtimeMs > cutoff) continue;
      // Re-check after the await: the row may have committed meanwhile.
      if (this.has(queueId)) continue;
      await unlink(path).catch(() => undefined);
      removed++;
    }
    return removed;
  }
}

/**
 * The bodies stored last, for their first reader (the relay or receive worker right behind the SMTP
 * edge): a bounded FIFO by bytes, each entry given out once.
 */
class RecentBodies {
  private readonly entries = new Map<string, Uint8Array>();
  /** The buffers held: one stored under two ids (a caller that enqueued it twice) is kept for the first only. */
  private readonly held = new WeakSet<Uint8Array>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  remember(queueId: string, body: Uint8Array): void {
    // Its first reader may take its memory (the relay hands it to a wrap thread): never give it twice.
    // (An empty one is not worth keeping, and a moved one looks empty.)
    if (body.byteLength === 0 || body.byteLength > this.maxBytes || this.held.has(body)) return;
    this.forget(queueId);
    this.entries.set(queueId, body);
    this.held.add(body);
    this.bytes += body.byteLength;
    for (const [id] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.forget(id);
    }
  }

  take(queueId: string): Uint8Array | undefined {
    const b = this.entries.get(queueId);
    if (b !== undefined) this.forget(queueId);
    return b;
  }

  forget(queueId: string): void {
    const b = this.entries.get(queueId);
    if (b === undefined) return;
    this.entries.delete(queueId);
    this.held.delete(b);
    this.bytes -= b.byteLength;
  }
}

function spoolRecord(queueId: string, row: BodyRow | undefined): SpoolRecord | undefined {
  if (row === undefined || row.spool_segment === null || row.spool_offset === null) return undefined;
  return { ref: { segment: row.spool_segment, offset: row.spool_offset }, size: row.size, queueId };
}

/** `<id@host>` or `id@host` → `id@host`; empty → null. */
export function normalizeMessageId(messageId: string | null | undefined): string | null {
  if (messageId === null || messageId === undefined) return null;
  let id = messageId.trim();
  if (id.startsWith('<') && id.endsWith('>')) id = id.slice(1, -1).trim();
  return id === '' ? null : id;
}

let idCounter = randomBytes(2).readUInt16BE();
/** Random octets for ids, drawn 3 at a time: one randomBytes call per 1,365 ids instead of one each. */
let idRandom = Buffer.alloc(0);
let idRandomAt = 0;

/** 12 hex digits of the time, 4 of a per-process counter, 6 random: ordered by arrival within a process. */
function defaultId(now: number): string {
  idCounter = (idCounter + 1) & 0xffff;
  if (idRandomAt + 3 > idRandom.length) {
    idRandom = randomBytes(4095);
    idRandomAt = 0;
  }
  const random = idRandom.toString('hex', idRandomAt, idRandomAt + 3);
  idRandomAt += 3;
  const time = Math.max(0, Math.floor(now)).toString(16).padStart(12, '0').slice(-12);
  return time + idCounter.toString(16).padStart(4, '0') + random;
}

function toStored(row: MessageRow): StoredMessage {
  return {
    queueId: row.queue_id,
    direction: row.direction,
    mailFrom: row.mail_from,
    recipients: JSON.parse(row.rcpt_to) as string[],
    submittedBy: row.submitted_by,
    messageId: row.message_id,
    receivedAt: new Date(row.received_at),
    size: row.size,
    meta: row.meta === null ? {} : (JSON.parse(row.meta) as Record<string, unknown>),
  };
}

function ioError(what: string, err: unknown): HispError {
  return new HispError('HISP_IO', `${what}: ${(err as Error).message}`, { transient: true, cause: err });
}

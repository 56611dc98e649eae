import { close, closeSync, constants, fdatasync, mkdirSync, open, openSync, readdirSync, readv, writev } from 'node:fs';
import { stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';
import { HispError } from '../core/errors.js';
import { fsyncDirectory } from './directory-sync.js';
import { GroupSync } from './group-sync.js';

/** Where a spooled body is: its segment and the offset of its record there. */
export interface SpoolRef {
  readonly segment: number;
  readonly offset: number;
}

/** A stored record: where, how many octets of body, and whose (checked against its header). */
export interface SpoolRecord {
  readonly ref: SpoolRef;
  readonly size: number;
  readonly queueId: string;
}

export interface BodySpoolOptions {
  /** A segment is closed for writing once the next record would take it past this. Default 64 MiB. */
  segmentBytes?: number;
  /**
   * Called once when an fdatasync failed. The spool then refuses every append: after an fsync error
   * the kernel may drop the dirty pages and report the next sync as a success, so nothing written
   * may be counted on any more (the gateway stops itself, see CommitBatcherOptions.onSyncFailure).
   */
  onSyncFailure?: (err: Error) => void;
  /** A segment is removed by {@link BodySpool.reclaim} only when it was last written this long ago; default one hour. */
  reclaimAgeMs?: number;
  /** fdatasync, for tests that make it fail. */
  fdatasync?: (fd: number, done: (err: NodeJS.ErrnoException | null) => void) => void;
}

/**
 * A record: `HSB1`, the body's length (uint32, big-endian), the CRC-32 of its queue id (a read at a
 * wrong offset or of another message is caught), the CRC-32 of the body (a damaged body is never
 * relayed: signed and encrypted, it would reach the patient as a valid message), the body.
 */
const MAGIC = 0x48534231; // "HSB1"
export const SPOOL_RECORD_HEADER_BYTES = 16;
const SEGMENT_NAME = /^(\d{10})\.spool$/;
/** What erase() writes. */
const ZEROS = Buffer.alloc(64 * 1024);
/** Read descriptors kept open (a backlog is read segment by segment). */
const READERS = 16;

interface Reader {
  readonly fd: Promise<number>;
  /** Reads in progress. */
  users: number;
  /** Forgotten: closes when the last read ends. */
  dropped: boolean;
}

function closeReader(r: Reader): void {
  void r.fd.then(
    (d) => close(d, () => undefined),
    () => undefined,
  );
}

interface Segment {
  readonly number: number;
  readonly fd: number;
  /** Bytes reserved so far (the next record's offset). */
  size: number;
  /** Writes started and not yet ended. */
  inflight: number;
  /** Written since the last fdatasync started. */
  dirty: boolean;
  /** fdatasyncs in flight on its descriptor. */
  syncing: number;
  /** No record goes in any more; its descriptor closes once its writes are synced. */
  sealed: boolean;
}

const fdatasyncAsync = (sync: NonNullable<BodySpoolOptions['fdatasync']>, fd: number): Promise<void> =>
  new Promise((resolve, reject) => sync(fd, (err) => (err ? reject(err) : resolve())));

/** writev at `position` until every octet is written (a short write continues where it stopped). */
function writeAll(fd: number, pieces: Uint8Array[], position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (views: Uint8Array[], at: number): void => {
      writev(fd, views, at, (err, written) => {
        if (err) return reject(err);
        let rest = written;
        const left: Uint8Array[] = [];
        for (const v of views) {
          if (rest >= v.byteLength) rest -= v.byteLength;
          else {
            left.push(rest === 0 ? v : v.subarray(rest));
            rest = 0;
          }
        }
        if (left.length === 0) resolve();
        else if (written === 0) reject(new Error('the file system wrote nothing'));
        else step(left, at + written);
      });
    };
    step(pieces, position);
  });
}

/** readv of a record at `position` into its header and a body buffer of its own; returns the octets read. */
function readRecord(fd: number, header: Buffer, body: Buffer, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const total = header.length + body.length;
    const step = (got: number): void => {
      // Whatever of the header and the body is still missing, from where the last read stopped.
      const views = got < header.length ? [header.subarray(got), body] : [body.subarray(got - header.length)];
      readv(fd, views, position + got, (err, n) => {
        if (err) return reject(err);
        if (n === 0 || got + n === total) resolve(got + n);
        else step(got + n);
      });
    };
    step(0);
  });
}

function ioError(what: string, err: unknown, transient = true): HispError {
  return new HispError('HISP_IO', `${what}: ${(err as Error).message}`, { transient, cause: err });
}

/**
 * Message bodies appended to segment files `<dir>/NNNNNNNNNN.spool`, each written once by the
 * thread pool and made durable by a shared fdatasync before its row is committed.
 *
 * Why not BLOBs in SQLite (the earlier design): a 100 KB body there is copied into 25 pages on the
 * event loop, checksummed into the WAL, then copied again into the database file by a checkpoint
 * that runs inside some later COMMIT (a stall for every session); the relay copies it out again.
 * Bodies held outside SQLite relayed ≈ 15 % more 100 KB messages per second on the sending hop
 * (bench/e2e-bench.ts --compare, six alternating rounds). Here the body is written once, by
 * libuv's thread pool, and the WAL carries only the small rows.
 *
 * Durability: {@link append} resolves only after an fdatasync of the segment that started after the
 * write ended (and an fsync of the directory when the segment is new), so a row that refers to a
 * record commits after the record is on disk, as a row and its body file did before: a committed
 * row always has its body, whatever the moment of a crash. The fdatasync is shared by every append
 * that arrives while one runs ({@link GroupSync}); the WAL's own sync, which follows, is then small.
 *
 * A record is never changed in place except to be erased ({@link erase}: zeros over a deleted
 * message's body). A process appends only to segments it created (the tail of a segment from
 * before a crash may hold half a record that no row refers to). A segment is removed
 * by {@link reclaim} once no row refers to it any more.
 */
export class BodySpool {
  readonly dir: string;
  private readonly segmentBytes: number;
  private readonly reclaimAgeMs: number;
  private readonly onSyncFailure: BodySpoolOptions['onSyncFailure'];
  private readonly fdatasync: NonNullable<BodySpoolOptions['fdatasync']>;
  private current: Segment | undefined;
  /** Segments with a write descriptor: the current one, sealed ones until their last sync. */
  private readonly writers = new Map<number, Segment>();
  private readonly dirtySegments = new Set<Segment>();
  private newSegmentSinceSync = false;
  /** The spool folder was created by this process and its entry in the data folder not yet synced. */
  private parentUnsynced: boolean;
  private nextNumber: number | undefined;
  private failure: HispError | undefined;
  private readonly group: GroupSync;
  private readonly readers = new Map<number, Reader>();
  private closed = false;
  /** Writes in flight in every segment, and who waits for them to end (close). */
  private inflight = 0;
  private writesEnded: (() => void)[] = [];

  constructor(dir: string, options: BodySpoolOptions = {}) {
    this.dir = dir;
    // Created now: its name in the data folder is made durable with the first sync.
    this.parentUnsynced = mkdirSync(dir, { recursive: true, mode: 0o700 }) !== undefined;
    this.segmentBytes = Math.max(1, options.segmentBytes ?? 64 * 1024 * 1024);
    this.reclaimAgeMs = options.reclaimAgeMs ?? 3_600_000;
    this.onSyncFailure = options.onSyncFailure;
    this.fdatasync = options.fdatasync ?? fdatasync;
    this.group = new GroupSync(() => this.syncDirty());
  }

  /** The segment file of a number. */
  segmentPath(segment: number): string {
    if (!Number.isSafeInteger(segment) || segment < 0 || segment > 9_999_999_999) throw new HispError('HISP_USAGE', `not a spool segment: ${segment}`);
    return join(this.dir, `${String(segment).padStart(10, '0')}.spool`);
  }

  /**
   * Appends the body of `queueId`; resolves once it is durable (see the class comment). HISP_IO
   * (transient) when it cannot be written or synced.
   */
  async append(queueId: string, body: Uint8Array): Promise<SpoolRef> {
    if (this.failure) throw this.failure;
    if (this.closed) throw new HispError('HISP_IO', 'the body spool is closed', { transient: true });
    const length = SPOOL_RECORD_HEADER_BYTES + body.byteLength;
    const segment = this.segmentFor(length);
    const offset = segment.size;
    segment.size += length;
    segment.inflight++;
    this.inflight++;
    const header = Buffer.alloc(SPOOL_RECORD_HEADER_BYTES);
    header.writeUInt32BE(MAGIC, 0);
    header.writeUInt32BE(body.byteLength, 4);
    header.writeUInt32BE(crc32(queueId), 8);
    header.writeUInt32BE(crc32(body), 12);
    try {
      await writeAll(segment.fd, [header, body], offset);
    } catch (err) {
      throw ioError(`cannot write the body of ${queueId} to ${this.segmentPath(segment.number)}`, err);
    } finally {
      segment.inflight--;
      // Even after a failed write: what part of it reached the page cache is synced like the rest.
      segment.dirty = true;
      this.dirtySegments.add(segment);
      if (--this.inflight === 0) for (const w of this.writesEnded.splice(0)) w();
    }
    await this.group.request();
    return { segment: segment.number, offset };
  }

  /**
   * The body of `queueId` stored at `ref`, `size` octets, in a buffer of its own (its memory can be
   * moved to another thread). HISP_IO (permanent) when the record is not there.
   */
  async read(ref: SpoolRef, queueId: string, size: number): Promise<Buffer> {
    const where = `${this.segmentPath(ref.segment)} at ${ref.offset}`;
    const header = Buffer.alloc(SPOOL_RECORD_HEADER_BYTES);
    const body = Buffer.allocUnsafeSlow(size);
    let got: number;
    try {
      got = await this.withReader(ref.segment, (fd) => readRecord(fd, header, body, ref.offset));
    } catch (err) {
      throw ioError(`cannot read the body of ${queueId} (${where})`, err, (err as NodeJS.ErrnoException).code !== 'ENOENT');
    }
    if (
      got !== SPOOL_RECORD_HEADER_BYTES + size ||
      header.readUInt32BE(0) !== MAGIC ||
      header.readUInt32BE(4) !== size ||
      header.readUInt32BE(8) !== crc32(queueId) ||
      header.readUInt32BE(12) !== crc32(body)
    ) {
      throw new HispError('HISP_IO', `the stored body of ${queueId} is missing or damaged (${where})`);
    }
    return body;
  }

  /** The segment numbers on disk, ascending. */
  segments(): number[] {
    const out: number[] = [];
    for (const name of readdirSync(this.dir)) {
      const m = SEGMENT_NAME.exec(name);
      if (m) out.push(Number(m[1]));
    }
    return out.sort((a, b) => a - b);
  }

  /**
   * Removes the segments that no row refers to (`isLive` says which are referred to), except the one
   * being written and those written in the last `reclaimAgeMs` (a body whose row has not committed
   * yet, in this process or another one). `settle` is awaited before anything is removed, and every
   * candidate asked about again after it: it must make durable what the store committed so far (a
   * delete that is visible but not yet on disk would come back after a power loss, and its row
   * with it, without its body). Returns how many were removed.
   */
  async reclaim(isLive: (segment: number) => boolean, settle: () => Promise<unknown>): Promise<number> {
    const cutoff = Date.now() - this.reclaimAgeMs;
    const candidates: number[] = [];
    for (const n of this.segments()) {
      if (this.writers.has(n) || isLive(n)) continue;
      const info = await stat(this.segmentPath(n)).catch(() => undefined);
      if (info !== undefined && info.mtimeMs <= cutoff) candidates.push(n);
    }
    if (candidates.length === 0) return 0;
    await settle();
    let removed = 0;
    for (const n of candidates) {
      // Asked again after the awaits: a row may have committed meanwhile.
      if (this.writers.has(n) || isLive(n)) continue;
      this.dropReader(n);
      await unlink(this.segmentPath(n)).catch(() => undefined);
      removed++;
    }
    return removed;
  }

  /**
   * Overwrites records with zeros and syncs them: the bodies of deleted messages do not stay on
   * disk until their whole segment goes (PHI kept no longer than its message). Only a record whose
   * header is still the one {@link append} wrote for that queue id and size is overwritten, so a
   * stale reference (a segment number used again after a reclaim) can never zero another message.
   * A record whose segment is gone, or that is erased already, is skipped. Returns how many were
   * erased.
   */
  async erase(records: readonly SpoolRecord[]): Promise<number> {
    const bySegment = new Map<number, SpoolRecord[]>();
    for (const r of records) {
      const list = bySegment.get(r.ref.segment) ?? [];
      list.push(r);
      bySegment.set(r.ref.segment, list);
    }
    let erased = 0;
    for (const [segment, list] of bySegment) {
      let fd: number;
      try {
        fd = await new Promise<number>((resolve, reject) => open(this.segmentPath(segment), constants.O_RDWR, (err, d) => (err ? reject(err) : resolve(d))));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw ioError(`cannot erase bodies in ${this.segmentPath(segment)}`, err);
      }
      try {
        let wrote = false;
        const header = Buffer.alloc(SPOOL_RECORD_HEADER_BYTES);
        for (const { ref, size, queueId } of list) {
          header.fill(0);
          const got = await readRecord(fd, header, Buffer.alloc(0), ref.offset);
          if (got !== SPOOL_RECORD_HEADER_BYTES || header.readUInt32BE(0) !== MAGIC || header.readUInt32BE(4) !== size || header.readUInt32BE(8) !== crc32(queueId)) continue;
          const length = SPOOL_RECORD_HEADER_BYTES + size;
          for (let at = 0; at < length; at += ZEROS.length) {
            await writeAll(fd, [ZEROS.subarray(0, Math.min(ZEROS.length, length - at))], ref.offset + at);
          }
          wrote = true;
          erased++;
        }
        if (wrote) await fdatasyncAsync(this.fdatasync, fd);
      } catch (err) {
        throw ioError(`cannot erase bodies in ${this.segmentPath(segment)}`, err);
      } finally {
        close(fd, () => undefined);
      }
    }
    return erased;
  }

  /** Refuses new appends, waits for the writes and syncs in flight, then closes every descriptor. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.inflight > 0) await new Promise<void>((resolve) => this.writesEnded.push(resolve));
    await this.group.idle();
    for (const s of this.writers.values()) closeSync(s.fd);
    this.writers.clear();
    this.current = undefined;
    for (const n of [...this.readers.keys()]) this.dropReader(n);
  }

  /** The segment the next record of `length` octets goes to: the current one, or a new one when it is full. */
  private segmentFor(length: number): Segment {
    const cur = this.current;
    if (cur !== undefined && (cur.size === 0 || cur.size + length <= this.segmentBytes)) return cur;
    if (cur !== undefined) {
      // Sealed for good, even if the next one cannot be created: nothing is written to it again.
      this.current = undefined;
      cur.sealed = true;
      this.closeIfDone(cur);
    }
    this.nextNumber ??= (this.segments().at(-1) ?? 0) + 1;
    for (;;) {
      const number = this.nextNumber++;
      let fd: number;
      try {
        // A new file only: never append behind what an earlier process (or another one) wrote.
        fd = openSync(this.segmentPath(number), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw ioError(`cannot create a spool segment in ${this.dir}`, err);
      }
      const segment: Segment = { number, fd, size: 0, inflight: 0, dirty: false, syncing: 0, sealed: false };
      this.writers.set(number, segment);
      this.current = segment;
      this.newSegmentSinceSync = true;
      return segment;
    }
  }

  /** One group sync: fdatasync of every segment written since the last one, fsync of the directory after a new segment. */
  private async syncDirty(): Promise<void> {
    if (this.failure) throw this.failure;
    const segments = [...this.dirtySegments];
    this.dirtySegments.clear();
    for (const s of segments) {
      s.dirty = false;
      s.syncing++;
    }
    const directory = this.newSegmentSinceSync;
    this.newSegmentSinceSync = false;
    const parent = this.parentUnsynced;
    // A directory that cannot even be opened (EMFILE…) is no sync failure: the appends waiting for
    // it are refused for now (transient) and its fsync is tried again with the next sync.
    let notOpened: NodeJS.ErrnoException | undefined;
    const syncDirectory = (path: string) =>
      fsyncDirectory(path).catch((err: NodeJS.ErrnoException) => {
        if (err.syscall !== 'open') throw err;
        notOpened = err;
      });
    try {
      await Promise.all([
        ...segments.map((s) => fdatasyncAsync(this.fdatasync, s.fd)),
        directory ? syncDirectory(this.dir) : undefined,
        parent ? syncDirectory(dirname(this.dir)) : undefined,
      ]);
    } catch (err) {
      if (!this.failure) {
        this.failure = ioError(`the body spool could not sync ${this.dir} (nothing is accepted until hisp restarts)`, err);
        this.onSyncFailure?.(err as Error);
      }
      throw this.failure;
    } finally {
      for (const s of segments) s.syncing--;
    }
    // The segments were synced: a sealed one is done with, whatever became of the directories.
    for (const s of segments) this.closeIfDone(s);
    if (notOpened !== undefined) {
      // A new segment's name is synced by the next sync, before anything that waits on it is answered.
      this.newSegmentSinceSync ||= directory;
      throw ioError(`cannot open ${this.dir} to sync it`, notOpened);
    }
    if (parent) this.parentUnsynced = false;
  }

  /** Closes a sealed segment's write descriptor once nothing is in flight or unsynced there. */
  private closeIfDone(s: Segment): void {
    // Never under a write or an fdatasync in flight: the number could name another file by then.
    if (!s.sealed || s.inflight > 0 || s.dirty || s.syncing > 0 || !this.writers.has(s.number)) return;
    this.writers.delete(s.number);
    close(s.fd, () => undefined);
  }

  /** Runs `fn` with a read descriptor of the segment, kept open for the next reads (at most READERS, the idle ones closed first). */
  private async withReader<T>(segment: number, fn: (fd: number) => Promise<T>): Promise<T> {
    let r = this.readers.get(segment);
    if (r === undefined) {
      const opened = new Promise<number>((resolve, reject) => open(this.segmentPath(segment), 'r', (err, d) => (err ? reject(err) : resolve(d))));
      const reader: Reader = { fd: opened, users: 0, dropped: false };
      r = reader;
      this.readers.set(segment, reader);
      opened.catch(() => {
        if (this.readers.get(segment) === reader) this.readers.delete(segment);
      });
      if (this.readers.size > READERS) {
        for (const [n, other] of this.readers) {
          if (other.users === 0 && other !== reader) {
            this.dropReader(n);
            break;
          }
        }
      }
    }
    r.users++;
    try {
      return await fn(await r.fd);
    } finally {
      r.users--;
      if (r.dropped && r.users === 0) closeReader(r);
    }
  }

  /** Forgets a segment's read descriptor; it closes when its last read ended (never under a read in progress). */
  private dropReader(segment: number): void {
    const r = this.readers.get(segment);
    if (r === undefined) return;
    this.readers.delete(segment);
    r.dropped = true;
    if (r.users === 0) closeReader(r);
  }
}

import { randomBytes } from 'node:crypto';
import { close, constants, open, unlink, write } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MimeEntity } from '../mime/mime-entity.js';
import { HispError } from '../core/errors.js';

const openAsync = promisify(open);
const closeAsync = promisify(close);
const unlinkAsync = promisify(unlink);
const writeAsync = (fd: number, data: Uint8Array, offset: number, length: number): Promise<number> =>
  new Promise((resolve, reject) => write(fd, data, offset, length, null, (err, n) => (err ? reject(err) : resolve(n))));

export interface MailDataOptions {
  /** Folder of the files of messages too large to keep in memory (created by the caller, mode 0700). */
  dir: string;
  /**
   * Messages up to this size stay in memory; a larger one goes to a file as it arrives, and only
   * its first `memoryBytes` (where its header section must end) are kept. Default 256 KiB.
   */
  memoryBytes?: number;
  /** SIZE (RFC 1870): past it, the rest is read and dropped (the client is still sending). */
  maxBytes: number;
  /**
   * Free space the file system of `dir` must keep: checked before a message goes to a file and at
   * every 8 MiB written; below it, the rest of the message is dropped (fault `storage`), so that
   * messages in transfer never fill the disk the store needs. Default 256 MiB; 0: not checked.
   */
  minFreeBytes?: number;
  /** Free octets of the file system of `dir` (tests). Default statfs. */
  freeBytes?: (dir: string) => Promise<number>;
}

/** statfs(2): octets available to an unprivileged writer. */
async function statfsFree(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

const FREE_SPACE_EVERY = 8 * 1024 * 1024;

/** Why the data cannot be taken, found while it arrived: reported once the client has sent all of it. */
export type MailDataFault =
  | { kind: 'too-big' }
  | { kind: 'bare-line-end'; at: number; octet: 'CR' | 'LF' }
  | { kind: 'nul'; at: number }
  /** Too little free space for it (minFreeBytes). */
  | { kind: 'storage' }
  /** The caller refused the rest (the client's rate). */
  | { kind: 'rate' };

/**
 * The mail data of one SMTP transaction (RFC 5321 §4.1.1.4, already dot-unstuffed), received as
 * it arrives with bounded memory (issue 14, item 6): up to `memoryBytes` in memory, beyond that
 * written to a file of its own (mode 0600) with back-pressure (the caller awaits each write, so
 * the socket is not read faster than the disk takes it). While it arrives, each chunk is checked
 * for what no message may hold: a bare CR or LF (RFC 5321 §2.3.8; relaying one to a lax peer is
 * how a second message is smuggled, CVE-2023-51764) and NUL (RFC 5322 §2.3, and RFC 6152 for
 * 8BITMIME). The first fault is kept and the rest of the data is only counted.
 */
export class MailData {
  private readonly memoryBytes: number;
  private readonly chunks: Buffer[] = [];
  private held = 0;
  private size = 0;
  private fd: number | undefined;
  private path: string | undefined;
  private lastWasCr = false;
  /** `size` when the free space was last checked. */
  private checkedAt = 0;
  private fault: MailDataFault | undefined;
  private ended = false;

  constructor(private readonly options: MailDataOptions) {
    this.memoryBytes = options.memoryBytes ?? 256 * 1024;
  }

  /** Octets received so far (all of them, also past SIZE). */
  get received(): number {
    return this.size;
  }

  /** Takes the next chunk; resolves once it is in memory or written. */
  async write(chunk: Buffer): Promise<void> {
    if (this.ended) throw new Error('MailData: write after end');
    const offset = this.size;
    this.size += chunk.length;
    if (this.fault !== undefined) return;
    if (this.size > this.options.maxBytes) return this.refuse({ kind: 'too-big' });
    this.scan(chunk, offset);
    if (this.fault !== undefined) return;
    if (this.fd === undefined && this.held + chunk.length <= this.memoryBytes) {
      this.chunks.push(chunk);
      this.held += chunk.length;
      return;
    }
    if (this.fd === undefined || this.size - this.checkedAt >= FREE_SPACE_EVERY) {
      if (!(await this.roomFor())) return this.refuse({ kind: 'storage' });
      this.checkedAt = this.size;
    }
    if (this.fd === undefined) await this.spill();
    await this.writeAll(chunk);
  }

  /** The rest of the message is dropped (what is held goes now); `end` reports `fault`. */
  async refuse(fault: MailDataFault): Promise<void> {
    this.fault ??= fault;
    this.chunks.length = 0;
    this.held = 0;
    await this.dropFile();
  }

  private async roomFor(): Promise<boolean> {
    const floor = this.options.minFreeBytes ?? 256 * 1024 * 1024;
    if (floor <= 0) return true;
    try {
      return (await (this.options.freeBytes ?? statfsFree)(this.options.dir)) >= floor;
    } catch {
      return true; // the write itself will tell
    }
  }

  /**
   * The end of the data: the first fault if there was one (the file, if any, is gone then), or
   * the message. A message in a file is the caller's to move or {@link discard}.
   */
  async end(): Promise<{ fault: MailDataFault } | { message: ReceivedMessage }> {
    this.ended = true;
    if (this.fault === undefined && this.lastWasCr) this.fault = { kind: 'bare-line-end', at: this.size - 1, octet: 'CR' };
    if (this.fault !== undefined) {
      await this.discard();
      return { fault: this.fault };
    }
    const head = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.held);
    this.chunks.length = 0;
    if (this.fd === undefined) return { message: { size: this.size, head, whole: true } };
    const fd = this.fd;
    this.fd = undefined;
    try {
      // The file is made durable by whoever keeps it (the store syncs it before its row commits);
      // here it is only closed.
      await closeAsync(fd);
    } catch (err) {
      await this.discard();
      throw ioError('cannot close the received message', err);
    }
    return { message: { size: this.size, head, whole: false, file: this.path! } };
  }

  /** Drops whatever is held: the file (closed and removed) and the memory. Never throws. */
  async discard(): Promise<void> {
    this.chunks.length = 0;
    this.held = 0;
    await this.dropFile();
  }

  private async dropFile(): Promise<void> {
    const fd = this.fd;
    const path = this.path;
    this.fd = undefined;
    this.path = undefined;
    if (fd !== undefined) await closeAsync(fd).catch(() => undefined);
    if (path !== undefined) await unlinkAsync(path).catch(() => undefined);
  }

  /** From memory to a file: what is held is written first and kept as the head. */
  private async spill(): Promise<void> {
    const path = join(this.options.dir, `${Date.now().toString(36)}-${randomBytes(8).toString('hex')}.data`);
    try {
      this.fd = await openAsync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (err) {
      throw ioError('cannot create a file for the received message', err);
    }
    this.path = path;
    for (const c of this.chunks) await this.writeAll(c);
  }

  private async writeAll(chunk: Buffer): Promise<void> {
    try {
      for (let off = 0; off < chunk.length; ) off += await writeAsync(this.fd!, chunk, off, chunk.length - off);
    } catch (err) {
      await this.dropFile();
      throw ioError('cannot write the received message', err);
    }
  }

  /** Bare CR, bare LF and NUL in `chunk`, which starts at `offset` of the data; CRLF may straddle chunks. */
  private scan(chunk: Buffer, offset: number): void {
    if (chunk.length === 0) return;
    const nul = chunk.indexOf(0);
    let from = 0;
    if (this.lastWasCr) {
      if (chunk[0] !== 0x0a) return this.found({ kind: 'bare-line-end', at: offset - 1, octet: 'CR' }, nul, offset);
      from = 1;
    } else if (chunk[0] === 0x0a) {
      return this.found({ kind: 'bare-line-end', at: offset, octet: 'LF' }, nul, offset);
    }
    // A CR that ends the chunk is judged with the next one.
    const to = chunk[chunk.length - 1] === 0x0d ? chunk.length - 1 : chunk.length;
    this.lastWasCr = to < chunk.length;
    if (from < to) {
      const at = bareLineEnd(chunk, from, to);
      if (at !== -1) return this.found({ kind: 'bare-line-end', at: offset + at, octet: chunk[at] === 0x0d ? 'CR' : 'LF' }, nul, offset);
    }
    if (nul !== -1) this.fault = { kind: 'nul', at: offset + nul };
  }

  /** Keeps the first fault in the data: the bare line end, or a NUL before it. */
  private found(fault: MailDataFault & { at: number }, nul: number, offset: number): void {
    this.fault = nul !== -1 && offset + nul < fault.at ? { kind: 'nul', at: offset + nul } : fault;
  }
}

/** A message received whole: in memory (`whole`), or in `file` with its first octets in `head`. */
export interface ReceivedMessage {
  readonly size: number;
  /** The whole message when `whole`; else its first octets (at least the memory limit). */
  readonly head: Buffer;
  readonly whole: boolean;
  /** The file holding all `size` octets, when not `whole`. Not yet synced. */
  readonly file?: string;
}

/**
 * The message's header section, parsed (MimeEntity, HISP_MIME_MALFORMED when it is not one). Of a
 * message in a file, the header section must end within the octets held in memory (256 KiB by
 * default; RFC 5322 sets no limit, Postfix's header_size_limit is 100 KiB).
 */
export function headerOf(message: ReceivedMessage): MimeEntity {
  const entity = MimeEntity.parse(message.head);
  if (!message.whole && entity.headerSection.length === message.head.length && entity.body.length === 0) {
    throw new HispError('HISP_MIME_MALFORMED', `the header section does not end within its first ${message.head.length} octets`);
  }
  return entity;
}

/**
 * Index of the first bare CR or LF in bytes[from, to), or -1; bytes[to], if any, is readable and
 * a CR at to - 1 is not bare when bytes[to] is LF.
 */
function bareLineEnd(bytes: Buffer, from: number, to: number): number {
  let lf = bytes.indexOf(0x0a, from);
  while (lf !== -1 && lf < to && lf > from && bytes[lf - 1] === 0x0d) lf = bytes.indexOf(0x0a, lf + 1);
  if (lf === from) return lf;
  const limit = lf === -1 || lf >= to ? to : lf;
  for (let cr = bytes.indexOf(0x0d, from); cr !== -1 && cr < limit; cr = bytes.indexOf(0x0d, cr + 1)) {
    if (bytes[cr + 1] !== 0x0a) return cr;
  }
  return lf === -1 || lf >= to ? -1 : lf;
}

function ioError(what: string, err: unknown): HispError {
  return new HispError('HISP_IO', `${what}: ${(err as Error).message}`, { transient: true, cause: err });
}

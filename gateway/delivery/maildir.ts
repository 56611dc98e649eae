import { randomBytes } from 'node:crypto';
import { close, constants, fsync, open, write } from 'node:fs';
import { link, mkdir, readdir, rename, unlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { hostname as osHostname } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { HispError } from '../core/errors.js';

export interface MaildirOptions {
  /** The host part of the unique name. Default: os.hostname(). */
  hostname?: string;
}

/** Mode of the folders created (tmp, new, cur and any missing parent): the recipient's mail is private. */
const DIR_MODE = 0o700;
/** Mode of a delivered message. */
const FILE_MODE = 0o600;
/**
 * O_EXCL: a name that already exists, including a symbolic link somebody planted in tmp/, is never
 * opened (POSIX open(2): with O_CREAT|O_EXCL "symbolic links are not followed"); O_NOFOLLOW says so
 * twice, for file systems that bend O_EXCL.
 */
const CREATE_EXCLUSIVE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * The callback fs API, wrapped once: on Node 20 the FileHandle API of fs/promises costs several
 * times the event-loop time per file (measured for message bodies, see gateway/store/message-store.ts;
 * the gateway's end-to-end profile had maildir delivery at 11 % of its event loop with it).
 */
const openFd = promisify(open);
const closeFd = promisify(close);
const fsyncFd = promisify(fsync);
const writeFd = (fd: number, data: Uint8Array, offset: number, length: number): Promise<number> =>
  new Promise((resolve, reject) => write(fd, data, offset, length, null, (err, n) => (err ? reject(err) : resolve(n))));

/** Maildirs known to exist with their tmp/, new/ and cur/ (created or checked by this process). */
const ensured = new Set<string>();

/**
 * errno values after which the same delivery will never succeed: the message is larger than the file
 * system takes a file to be. Every other failure is transient: the disk or quota fills and empties
 * (ENOSPC, EDQUOT), storage hiccups (EIO, ESTALE and ETIMEDOUT over NFS, EBUSY, EAGAIN), the process
 * runs out of descriptors (EMFILE, ENFILE), a mount is missing or read-only for now (ENOENT, EROFS),
 * and permissions or a path that cannot be a maildir (EACCES, EPERM, ENOTDIR, EEXIST, ELOOP).
 *
 * Permissions and paths count as transient on purpose: a wrong owner, mode or path is an operator's
 * mistake, fixed in minutes, and a transient outcome keeps the message in the queue until then
 * (bounded by `queue.giveUpHours`, after which it fails with a DSN) instead of failing it to the
 * sender at once. Postfix's local(8) and virtual(8) make the same choice (a mailbox they cannot
 * write is "deferred", not bounced); an unknown error is treated the same way, for the same reason.
 */
const PERMANENT_ERRNO = new Set(['EFBIG']);

/**
 * errno values that say the configured path cannot hold a maildir (a file where a folder must be, a
 * symbolic-link loop, a name too long): HISP_CONFIG_INVALID rather than HISP_IO.
 */
const CONFIG_ERRNO = new Set(['ENOTDIR', 'EEXIST', 'ELOOP', 'ENAMETOOLONG']);

/** What the unique name's middle may hold: no dot (the field separator), colon, slash or comma. */
const DELIVERY_ID = /^[A-Za-z0-9_-]{1,128}$/;

/** One final delivery, as the file name holds it: the same on every try (issue 14, item 7). */
export interface MaildirDeliveryKey {
  /** The delivery's id (gateway/delivery/delivery-id.ts): letters, digits, `-` and `_`. */
  deliveryId: string;
  /** When the message was accepted: the left part of the unique name (its seconds), never now. */
  receivedAt: Date;
  /**
   * False when no earlier try of this delivery can have written anything (the queue's first lease of
   * it): the folders are then not searched for an earlier copy, which costs a listing of new/ and
   * cur/. Default true.
   */
  mayExist?: boolean;
}

export interface MaildirResult {
  /** The message's file: `path/new/<unique>`, or where an earlier try's copy is now (new/ or cur/). */
  file: string;
  /** True when an earlier try had delivered it already: nothing was written. */
  alreadyDelivered: boolean;
}

/**
 * Delivers one message into the Maildir at `path` (an absolute folder), **once per delivery**: the
 * file is named after the delivery (`key`), so a try after a crash, which finds the copy an earlier
 * try wrote, reports it delivered without writing a second one. The message is stored byte for byte
 * as given (CRLF line ends stay CRLF: Dovecot and Courier read both).
 *
 * The procedure is the Maildir specification's (D. J. Bernstein, https://cr.yp.to/proto/maildir.html,
 * "How a message is delivered"), made durable the way Dovecot and Courier do, and idempotent:
 * 1. create `path`, `path/tmp`, `path/new` and `path/cur` (mode 0700) when missing, and fsync the
 *    folders that got a new entry;
 * 2. unless `key.mayExist` is false, look for an earlier copy: a name in new/, then in cur/, whose
 *    unique part (before the `:` a mail reader appends when it moves the file new/ → cur/, which
 *    "must preserve the uniq string", says the specification) starts with `<seconds>.<deliveryId>.`.
 *    Found: its folder is fsynced (the crashed try may not have got that far) and the delivery is
 *    done. Files of this delivery left in tmp/ by a crashed try are removed;
 * 3. create `tmp/<unique>.<random>` exclusively (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600), write the
 *    message, fsync it ("the file must be fsync'd before it is linked into new/");
 * 4. link(2) it to `new/<unique>` (link, not rename, fails with EEXIST rather than replace a file of
 *    the same name: then this delivery is there already, and is not written twice), then unlink the
 *    tmp/ name; on a file system without hard links (EPERM, ENOTSUP, ENOSYS, EXDEV) rename(2)
 *    instead, as Dovecot does;
 * 5. fsync `new/`: the name is on disk, so the caller may record the delivery and acknowledge the
 *    message (MDN) once this resolves. A crash before the caller recorded it makes the queue try
 *    again, and step 2 or 4 finds this copy.
 *
 * The unique name is the specification's three dot-separated pieces, with Courier's size suffix
 * (which Dovecot reads for quotas): `<seconds>.<deliveryId>.<host>,S=<size>`. The seconds are those
 * of `key.receivedAt` and the middle is the delivery id, so the name is the same on every try and
 * still unique per delivery, as the specification asks of the middle piece. The host name has `/`,
 * `:` and `,` (and any other byte outside `[A-Za-z0-9._-]`) written as `\ooo` octal as the
 * specification asks. Nothing of the message (Message-ID, addresses) ever goes into the path. The
 * tmp/ name adds 64 random bits, so that two tries at once never write into the same file.
 *
 * Errors are HispErrors whose `details.errno` names the system error: HISP_CONFIG_INVALID when the
 * path cannot be a maildir (ENOTDIR, EEXIST, ELOOP, ENAMETOOLONG), HISP_USAGE for a relative path or
 * a malformed key (a caller's bug: permanent), HISP_IO otherwise. `transient` is true for everything
 * but EFBIG (the message is larger than the file system takes): see PERMANENT_ERRNO above for why
 * permissions and configuration mistakes are transient.
 */
export async function deliverToMaildir(path: string, message: Buffer, key: MaildirDeliveryKey, options: MaildirOptions = {}): Promise<MaildirResult> {
  if (!isAbsolute(path)) throw new HispError('HISP_USAGE', `the maildir path must be absolute, not ${JSON.stringify(path)}`, { details: { path } });
  if (!DELIVERY_ID.test(key.deliveryId)) throw new HispError('HISP_USAGE', `not a delivery id for a maildir name: ${JSON.stringify(key.deliveryId)}`);
  const seconds = Math.floor(key.receivedAt.getTime() / 1000);
  if (!Number.isSafeInteger(seconds) || seconds < 0) throw new HispError('HISP_USAGE', 'the maildir delivery has no valid receivedAt');
  const host = encodeHost(options.hostname ?? osHostname());
  const prefix = `${seconds}.${key.deliveryId}.`;
  const name = `${prefix}${host},S=${message.byteLength}`;
  if (!ensured.has(path)) {
    await ensureMaildir(path);
    ensured.add(path);
  }
  const tmpDir = join(path, 'tmp');
  const newDir = join(path, 'new');
  const newPath = join(newDir, name);

  if (key.mayExist !== false) {
    const earlier = await earlierCopy(path, prefix).catch((err: unknown) => {
      throw maildirError(`cannot look for an earlier copy in ${path}`, err, path);
    });
    if (earlier !== undefined) return { file: earlier, alreadyDelivered: true };
  }

  for (let tries = 1; ; tries++) {
    const tmpPath = join(tmpDir, `${name}.${randomBytes(8).toString('hex')}`);
    const fd = await openFd(tmpPath, CREATE_EXCLUSIVE, FILE_MODE).catch(async (err: unknown) => {
      // Removed since we checked it (an operator cleaning up): create it again, once.
      if (errnoOf(err) === 'ENOENT' && ensured.delete(path)) {
        await ensureMaildir(path);
        ensured.add(path);
        return undefined;
      }
      if (errnoOf(err) !== 'EEXIST') throw maildirError(`cannot create ${tmpPath}`, err, path);
      if (tries < 3) return undefined;
      throw new HispError('HISP_IO', `cannot deliver into ${tmpDir}: the name ${basename(tmpPath)} exists already, three times`, {
        transient: true,
        details: { errno: 'EEXIST', path },
      });
    });
    if (fd === undefined) continue;
    let linked = false;
    try {
      try {
        for (let off = 0; off < message.byteLength; ) off += await writeFd(fd, message, off, message.byteLength - off);
        await fsyncFd(fd);
      } finally {
        await closeFd(fd);
      }
      try {
        linked = await moveIntoNew(tmpPath, newPath);
      } catch (err) {
        // ENOENT: our tmp/ file is gone (a concurrent try of this delivery removed it as a crashed
        // one's leftover, step 2), or new/ is (an operator): the folders again, then write again;
        // the link of the next round says whether the other try got there first.
        if (errnoOf(err) !== 'ENOENT' || tries >= 3) throw err;
        await unlink(tmpPath).catch(() => undefined);
        await ensureMaildir(path);
        continue;
      }
      if (!linked) {
        // new/<unique> exists: this delivery, by another try (a concurrent one, or an earlier one
        // that was not looked for). Delivered, once; its name is made durable as in step 2.
        await unlink(tmpPath).catch(() => undefined);
        await fsyncDirectory(newDir);
        return { file: newPath, alreadyDelivered: true };
      }
      await fsyncDirectory(newDir);
      return { file: newPath, alreadyDelivered: false };
    } catch (err) {
      await unlink(tmpPath).catch(() => undefined);
      // The fsync of new/ failed after the link: take the name back (best effort), so that the
      // queue's next try writes it again rather than trust a name that may not be on disk (a reader
      // may have seen it already: at least once, never lost).
      if (linked) await unlink(newPath).catch(() => undefined);
      if (err instanceof HispError) throw err;
      throw maildirError(`cannot deliver ${tmpPath} into ${newDir}`, err, path);
    }
  }
}

/**
 * Step 2 of deliverToMaildir: the file of this delivery in new/ or cur/ (new/ first: a mail reader
 * moves files new/ → cur/, so a file moved while we look is seen in cur/), its folder fsynced; and
 * the crashed tries' files of this delivery in tmp/ removed. Undefined when there is none.
 */
async function earlierCopy(path: string, prefix: string): Promise<string | undefined> {
  const ours = (entry: string): boolean => entry.startsWith(prefix);
  // A folder removed since it was checked holds nothing: the delivery below creates it again.
  const list = async (dir: string): Promise<string[]> => {
    try {
      return await readdir(dir);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return [];
      throw err;
    }
  };
  for (const sub of ['new', 'cur']) {
    const dir = join(path, sub);
    // The unique part is what precedes the `:` of the info (`:2,S` …); the prefix never holds one.
    const found = (await list(dir)).find((e) => ours(e.split(':', 1)[0] ?? ''));
    if (found !== undefined) {
      await fsyncDirectory(dir);
      return join(dir, found);
    }
  }
  const tmpDir = join(path, 'tmp');
  for (const leftover of (await list(tmpDir)).filter(ours)) await unlink(join(tmpDir, leftover)).catch(() => undefined);
  return undefined;
}

/**
 * tmp/ to new/ (step 4 above). False when the new/ name exists already: this delivery is there. After
 * a rename fallback the name is checked first, so that it too never replaces a file.
 */
async function moveIntoNew(tmpPath: string, newPath: string): Promise<boolean> {
  try {
    await link(tmpPath, newPath);
  } catch (err) {
    const errno = errnoOf(err);
    if (errno === 'EEXIST') return false;
    if (errno !== 'EPERM' && errno !== 'ENOTSUP' && errno !== 'EOPNOTSUPP' && errno !== 'ENOSYS' && errno !== 'EXDEV') throw err;
    // No hard links here (some FUSE and network file systems): rename, which is atomic within one
    // file system but replaces an existing name: make sure there is none. Only two tries of the same
    // delivery at once could race between this check and the rename, and both write the same bytes.
    const exists = await openFd(newPath, constants.O_RDONLY | constants.O_NOFOLLOW).then(
      async (fd) => {
        await closeFd(fd);
        return true;
      },
      (e: unknown) => {
        if (errnoOf(e) === 'ENOENT') return false;
        throw e; // not knowing is not "there already"
      },
    );
    if (exists) return false;
    await rename(tmpPath, newPath);
    return true;
  }
  await unlink(tmpPath);
  return true;
}

/** Creates the maildir and its three folders when missing; fsyncs the folders that got a new name. */
async function ensureMaildir(path: string): Promise<void> {
  const created: string[] = [];
  try {
    // The first folder mkdir created (undefined when the path existed): every folder from it down to
    // `path` is new, so each one's parent needs an fsync for the new name to survive a crash.
    const first = await mkdir(path, { recursive: true, mode: DIR_MODE });
    if (first !== undefined) {
      for (let d = path; ; d = dirname(d)) {
        created.push(d);
        if (d === first || dirname(d) === d) break;
      }
    }
    for (const sub of ['tmp', 'new', 'cur']) {
      try {
        await mkdir(join(path, sub), { mode: DIR_MODE });
        created.push(join(path, sub));
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
      }
    }
    // A path (or tmp, new, cur) that exists as a file fails here or below with EEXIST or ENOTDIR:
    // HISP_CONFIG_INVALID. An existing folder is used as it is (its mode is the operator's choice).
    const parents = new Set(created.map((d) => dirname(d)));
    for (const p of parents) await fsyncDirectory(p);
  } catch (err) {
    throw maildirError(`cannot create the maildir ${path}`, err, path);
  }
}

/** fsync(2) of a folder: makes the names created in it durable (POSIX leaves that to the caller). */
async function fsyncDirectory(dir: string): Promise<void> {
  const fd = await openFd(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fsyncFd(fd);
  } catch (err) {
    // Some file systems (and platforms) refuse fsync on a directory: nothing more can be done there.
    if (errnoOf(err) !== 'EINVAL' && errnoOf(err) !== 'ENOTSUP') throw err;
  } finally {
    await closeFd(fd);
  }
}

/**
 * The host name as the specification asks ("replace / with \057 and : with \072"), extended to `,`
 * (Courier's and Dovecot's field separator) and to anything outside `[A-Za-z0-9._-]`, so that the
 * name can never hold a path separator or a control character whatever the system reports.
 */
function encodeHost(host: string): string {
  const encoded = [...Buffer.from(host || 'localhost', 'utf8')]
    .map((b) => (/[A-Za-z0-9._-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `\\${b.toString(8).padStart(3, '0')}`))
    .join('');
  // A leading dot would make the tmp/new name look hidden to some tools; harmless, but keep it plain.
  return encoded.startsWith('.') ? `\\056${encoded.slice(1)}` : encoded;
}

function errnoOf(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function maildirError(what: string, err: unknown, path: string): HispError {
  const errno = errnoOf(err);
  const reason = err instanceof Error ? err.message : String(err);
  const details = { errno: errno ?? null, path };
  const transient = errno === undefined || !PERMANENT_ERRNO.has(errno);
  if (errno !== undefined && CONFIG_ERRNO.has(errno)) {
    return new HispError('HISP_CONFIG_INVALID', `${what}: not usable as a maildir: ${reason}`, { transient, cause: err, details });
  }
  return new HispError('HISP_IO', `${what}: ${reason}`, { transient, cause: err, details });
}

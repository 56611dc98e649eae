import { randomBytes } from 'node:crypto';
import { close, constants, fsync, open, write } from 'node:fs';
import { link, mkdir, rename, unlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { hostname as osHostname } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
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

/** Deliveries made by this process: the `Q` field of the unique name (Maildir spec, "modern" names). */
let deliveries = 0;

/**
 * Delivers one message into the Maildir at `path` (an absolute folder) and returns the path of the
 * new file (`path/new/<unique>`). The message is stored byte for byte as given (CRLF line ends stay
 * CRLF: Dovecot and Courier read both).
 *
 * The procedure is the Maildir specification's (D. J. Bernstein, https://cr.yp.to/proto/maildir.html,
 * "How a message is delivered"), made durable the way Dovecot and Courier do:
 * 1. create `path`, `path/tmp`, `path/new` and `path/cur` (mode 0700) when missing, and fsync the
 *    folders that got a new entry;
 * 2. create `tmp/<unique>` exclusively (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600), write the message,
 *    fsync it ("the file must be fsync'd before it is linked into new/");
 * 3. link(2) it to `new/<unique>` (link, not rename, fails with EEXIST rather than replace a file
 *    of the same name), then unlink the tmp/ name; on a file system without hard links (EPERM,
 *    ENOTSUP, ENOSYS, EXDEV) rename(2) instead, as Dovecot does;
 * 4. fsync `new/`: the name is on disk, so the caller may acknowledge the message (MDN) once this
 *    resolves. A crash before that leaves at most a file in tmp/, which readers delete after 36
 *    hours (the specification's rule) and the queue delivers again.
 *
 * The unique name (the specification's "modern" form, with Courier's `,S=` size suffix that Dovecot
 * also reads for quotas) is `<seconds>.M<microseconds>P<pid>Q<deliveries>R<random>.<host>,S=<size>`:
 * seconds and microseconds of the wall clock, the process id, this process's delivery counter, 64
 * random bits (two containers sharing a volume may share a pid and a host name), the host name with
 * `/`, `:` and `,` (and any other byte outside `[A-Za-z0-9._-]`) written as `\ooo` octal as the
 * specification asks, and the size in bytes. Nothing of the message (Message-ID, addresses) ever goes
 * into the path. A name that exists already (EEXIST) is drawn again, up to three times.
 *
 * Errors are HispErrors whose `details.errno` names the system error: HISP_CONFIG_INVALID when the
 * path cannot be a maildir (ENOTDIR, EEXIST, ELOOP, ENAMETOOLONG), HISP_USAGE for a relative path
 * (a caller's bug: permanent), HISP_IO otherwise. `transient` is true for everything but EFBIG (the
 * message is larger than the file system takes): see PERMANENT_ERRNO above for why permissions and
 * configuration mistakes are transient.
 */
export async function deliverToMaildir(path: string, message: Buffer, options: MaildirOptions = {}): Promise<string> {
  if (!isAbsolute(path)) throw new HispError('HISP_USAGE', `the maildir path must be absolute, not ${JSON.stringify(path)}`, { details: { path } });
  const host = encodeHost(options.hostname ?? osHostname());
  if (!ensured.has(path)) {
    await ensureMaildir(path);
    ensured.add(path);
  }
  const tmpDir = join(path, 'tmp');
  const newDir = join(path, 'new');

  for (let tries = 1; ; tries++) {
    const name = uniqueName(host, message.byteLength);
    const tmpPath = join(tmpDir, name);
    const newPath = join(newDir, name);
    const fd = await openFd(tmpPath, CREATE_EXCLUSIVE, FILE_MODE).catch(async (err: unknown) => {
      // Removed since we checked it (an operator cleaning up): create it again, once.
      if (errnoOf(err) === 'ENOENT' && ensured.delete(path)) {
        await ensureMaildir(path);
        ensured.add(path);
        return undefined;
      }
      if (errnoOf(err) !== 'EEXIST') throw maildirError(`cannot create ${tmpPath}`, err, path);
      if (tries < 3) return undefined;
      throw nameTaken(tmpDir, name, path);
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
      linked = await moveIntoNew(tmpPath, newPath);
      if (!linked) {
        await unlink(tmpPath).catch(() => undefined);
        if (tries < 3) continue;
        throw nameTaken(newDir, name, path);
      }
      await fsyncDirectory(newDir);
      return newPath;
    } catch (err) {
      await unlink(tmpPath).catch(() => undefined);
      // The fsync of new/ failed after the link: take the name back (best effort), so that the
      // queue's next try does not leave a second copy (a reader may have seen it already: at least
      // once, never lost).
      if (linked) await unlink(newPath).catch(() => undefined);
      if (err instanceof HispError) throw err;
      throw maildirError(`cannot deliver ${tmpPath} into ${newDir}`, err, path);
    }
  }
}

/**
 * tmp/ to new/ (step 3 above). False when the new/ name exists already (the caller draws another);
 * after a rename fallback the name is also checked first, so that it too never replaces a message.
 */
async function moveIntoNew(tmpPath: string, newPath: string): Promise<boolean> {
  try {
    await link(tmpPath, newPath);
  } catch (err) {
    const errno = errnoOf(err);
    if (errno === 'EEXIST') return false;
    if (errno !== 'EPERM' && errno !== 'ENOTSUP' && errno !== 'EOPNOTSUPP' && errno !== 'ENOSYS' && errno !== 'EXDEV') throw err;
    // No hard links here (some FUSE and network file systems): rename, which is atomic within one
    // file system but replaces an existing name: make sure there is none (the random part makes a
    // race between this check and the rename practically impossible).
    const exists = await openFd(newPath, constants.O_RDONLY | constants.O_NOFOLLOW).then(
      async (fd) => {
        await closeFd(fd);
        return true;
      },
      (e: unknown) => errnoOf(e) !== 'ENOENT',
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

/** `<seconds>.M<usec>P<pid>Q<n>R<random>.<host>,S=<size>` (see deliverToMaildir). */
function uniqueName(host: string, size: number): string {
  // performance.timeOrigin + now(): the wall clock with sub-millisecond resolution (Date has ms only).
  const micros = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  const seconds = Math.floor(micros / 1_000_000);
  const usec = micros % 1_000_000;
  deliveries += 1;
  return `${seconds}.M${usec}P${process.pid}Q${deliveries}R${randomBytes(8).toString('hex')}.${host},S=${size}`;
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

function nameTaken(dir: string, name: string, path: string): HispError {
  return new HispError('HISP_IO', `cannot deliver into ${dir}: the unique name ${name} exists already, three times`, {
    transient: true,
    details: { errno: 'EEXIST', path },
  });
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

import { close, fstat, open, read } from 'node:fs';
import { promisify } from 'node:util';
import { HispError } from '../core/errors.js';
import { Base64Decoder } from '../mime/base64-decoder.js';
import { MimeEntity } from '../mime/mime-entity.js';

const openAsync = promisify(open);
const closeAsync = promisify(close);
const fstatAsync = promisify(fstat);
const readAsync = (fd: number, buffer: Uint8Array, length: number, position: number): Promise<number> =>
  new Promise((resolve, reject) => read(fd, buffer, 0, length, position, (err, n) => (err ? reject(err) : resolve(n))));

/** The outer message of an S/MIME message read from a file: its header section parsed, its body decoded. */
export interface EnvelopeFromFile {
  /** The outer header section (its `body` is only what followed it in the first octets read). */
  readonly outer: MimeEntity;
  /** The body decoded (base64, or the DER as it is); undefined when the header is not S/MIME's. */
  readonly der: Buffer | undefined;
  /** The base64 body held characters that base64 does not (then a CMS error is told as a MIME one). */
  readonly notBase64: boolean;
}

const ENVELOPE_TYPES = new Set(['application/pkcs7-mime', 'application/x-pkcs7-mime']);
/** Where a header section read from a file must end (as at the SMTP edges, mail-data.ts). */
const HEADER_BYTES = 256 * 1024;
const CHUNK = 1024 * 1024;

/** The first `maxBytes` octets of a file (a header section, without reading a large body). */
export async function readFileHead(path: string, maxBytes = HEADER_BYTES): Promise<Buffer> {
  let fd: number;
  try {
    fd = await openAsync(path, 'r');
  } catch (err) {
    throw new HispError('HISP_IO', `cannot read ${path}: ${(err as Error).message}`, { transient: true, cause: err });
  }
  try {
    const head = Buffer.allocUnsafe(maxBytes);
    return head.subarray(0, await readAsync(fd, head, maxBytes, 0));
  } catch (err) {
    throw new HispError('HISP_IO', `cannot read ${path}: ${(err as Error).message}`, { transient: true, cause: err });
  } finally {
    await closeAsync(fd).catch(() => undefined);
  }
}

/**
 * The outer message of a large received message, from its file, without holding the file's octets
 * and their decoding at once (issue 14, item 6): the header section is read from the first
 * `maxHeaderBytes` (it must end there), and the body is decoded a MiB at a time into one buffer.
 * The decoded DER is the caller's: unwrapMessage decrypts it in place. A message whose header does
 * not name an S/MIME envelope gets no body read at all (unwrapMessage refuses it from the header).
 */
export async function readEnvelopeFile(path: string, maxHeaderBytes = HEADER_BYTES): Promise<EnvelopeFromFile> {
  let fd: number;
  try {
    fd = await openAsync(path, 'r');
  } catch (err) {
    throw new HispError('HISP_IO', `cannot read the received message: ${(err as Error).message}`, { transient: true, cause: err });
  }
  try {
    const size = (await fstatAsync(fd)).size;
    const head = Buffer.allocUnsafe(Math.min(size, maxHeaderBytes));
    const got = await readAsync(fd, head, head.length, 0);
    const outer = MimeEntity.parse(head.subarray(0, got));
    if (outer.body.length === 0 && outer.headerSection.length === got && got < size) {
      throw new HispError('HISP_MIME_MALFORMED', `the header section does not end within its first ${got} octets`);
    }
    if (!ENVELOPE_TYPES.has(outer.contentType().mediaType)) return { outer, der: undefined, notBase64: false };
    const from = outer.headerSection.length;
    const cte = (outer.header('content-transfer-encoding') ?? '').trim().toLowerCase();
    const chunk = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, size - from)));
    // DER as it is (binary transfer), recognised as withBody does: a SEQUENCE's first octet.
    if (cte !== 'base64' && ['', 'binary', '8bit', '7bit'].includes(cte) && outer.body[0] === 0x30) {
      const der = Buffer.allocUnsafe(size - from);
      let at = from;
      while (at < size) {
        const n = await readAsync(fd, der.subarray(at - from), size - at, at);
        if (n === 0) break;
        at += n;
      }
      // A file that shrank meanwhile: only what was read, never uninitialised memory.
      return { outer, der: der.subarray(0, at - from), notBase64: false };
    }
    if (cte !== 'base64' && !['', 'binary', '8bit', '7bit'].includes(cte)) {
      throw new HispError('HISP_MIME_MALFORMED', `the enveloped body has unsupported Content-Transfer-Encoding ${cte}`);
    }
    const decoder = new Base64Decoder(size - from);
    for (let at = from; at < size; ) {
      const n = await readAsync(fd, chunk, Math.min(chunk.length, size - at), at);
      if (n === 0) break;
      decoder.push(chunk.subarray(0, n));
      at += n;
    }
    return { outer, der: decoder.end(), notBase64: decoder.sawForeign };
  } catch (err) {
    if (err instanceof HispError) throw err;
    throw new HispError('HISP_IO', `cannot read the received message: ${(err as Error).message}`, { transient: true, cause: err });
  } finally {
    await closeAsync(fd).catch(() => undefined);
  }
}

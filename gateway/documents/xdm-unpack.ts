import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { join, posix, resolve, sep } from 'node:path';
import { Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32, createInflateRaw } from 'node:zlib';
import yauzl, { type Entry, type ZipFile } from 'yauzl';
import { HispError, isHispError } from '../core/errors.js';
import { mediaTypeOf } from './document-media-types.js';
import { readXdmMetadata, type XdmDocumentEntry, type XdmSubmissionSet } from './xdm-metadata-reader.js';

/**
 * The bounds of {@link unpackXdm}: a zip is hostile input, and a small one can inflate without end
 * (a "zip bomb", or entries that overlap in the archive: D. Fifield, "A better zip bomb", 2019).
 * Sizes are counted on the inflated octets as they stream, never taken from the zip's headers.
 */
export interface XdmLimits {
  /** Entries in the central directory (files, folders, junk); default 1,000. */
  maxEntries: number;
  /** Inflated octets of one entry; default 128 MiB. */
  maxEntryBytes: number;
  /** Inflated octets of all entries read (metadata and documents); default 256 MiB. */
  maxTotalBytes: number;
  /** Inflated ÷ compressed octets of one entry; default 200 (deflate's ceiling is about 1,030). */
  maxRatio: number;
  /** All inflated octets ÷ the size of the zip; default 200 (overlapping entries show here). */
  maxOverallRatio: number;
  /** The ratios are checked once this many octets have inflated (small files compress well); default 1 MiB. */
  ratioGraceBytes: number;
  /** One METADATA.XML, read into memory to be parsed; default 16 MiB. */
  maxMetadataBytes: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_XDM_LIMITS: Readonly<XdmLimits> = Object.freeze({
  maxEntries: 1000,
  maxEntryBytes: 128 * MiB,
  maxTotalBytes: 256 * MiB,
  maxRatio: 200,
  maxOverallRatio: 200,
  ratioGraceBytes: 1 * MiB,
  maxMetadataBytes: 16 * MiB,
});

/**
 * Entries no sender means as content: Finder's and Windows' litter, macOS resource forks. Their
 * names are checked like every other, their bytes never read.
 */
const JUNK_SEGMENT = /^(\..*|__MACOSX|thumbs\.db|desktop\.ini)$/i;

/** Longest name segment and path a file system takes (NAME_MAX, and a margin under PATH_MAX). */
const MAX_SEGMENT_BYTES = 255;
const MAX_PATH_BYTES = 1024;

/** S_IFMT and S_IFLNK of the Unix mode a zip keeps in the high 16 bits of the external attributes. */
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
/** MS-DOS directory attribute, in the low byte of the external attributes. */
const DOS_DIRECTORY = 0x10;

/** Where a document of the package is, for {@link XdmUnpackOptions.onDocument}. */
export interface XdmDocumentTarget {
  /** Its path in the zip, as the zip spells it (`IHE_XDM/SUBSET01/CCDAAMB.XML`). */
  path: string;
  /** The submission set folder it belongs to: the folder of its METADATA.XML. */
  folder: string;
}

export interface XdmUnpackOptions {
  limits?: Partial<XdmLimits>;
  /**
   * Receives each document's bytes as they inflate (in zip order): return the Writable they go to.
   * The metadata of a document is known only once all are read: match it by `path` in the result.
   */
  onDocument?: (doc: XdmDocumentTarget) => Writable | Promise<Writable>;
  /**
   * Writes each document and each METADATA.XML under this folder at its path in the package (files
   * 0600, folders 0700), never over an existing file; on failure, what was written is removed.
   */
  outDir?: string;
}

/** A document of the package, with the metadata that describes it. */
export interface XdmDocument {
  path: string;
  folder: string;
  /** The DocumentEntry's mimeType, else the one its name suggests. */
  mimeType: string;
  /** Octets and SHA-1 (lowercase hex) of the document as it inflated. */
  size: number;
  sha1: string;
  /** The DocumentEntry's hash is this document's SHA-1. */
  hashMatches: boolean;
  /** The DocumentEntry's size is this document's; null when the entry gives none. */
  sizeMatches: boolean | null;
  /** How the DocumentEntry was found: its hash, else its URI; null when none describes the file. */
  matchedBy: 'hash' | 'uri' | null;
  entry: XdmDocumentEntry | null;
  /** Where it was written, with `outDir`. */
  file?: string;
}

export interface XdmSubset {
  /** The folder of its METADATA.XML (`IHE_XDM/SUBSET01`). */
  folder: string;
  submissionSet: XdmSubmissionSet | null;
  /** DocumentEntries no file of the package matched. */
  missing: XdmDocumentEntry[];
}

/** An unpacked package: plain JSON (the API's `xdm` of a received message, `hisp xdm unpack --json`). */
export interface XdmPackage {
  /** The SubmissionSet of the first subset (packages sent over Direct hold one). */
  submissionSet: XdmSubmissionSet | null;
  documents: XdmDocument[];
  subsets: XdmSubset[];
  /** What a reader should know and that did not stop the unpacking. */
  warnings: string[];
}

interface ZipItem {
  entry: Entry;
  /** The name as in the zip, '/'-separated, checked. */
  name: string;
  /** Its segments without '' and '.'. */
  segments: string[];
  directory: boolean;
}

/**
 * Unpacks an IHE XDM package (ITI TF-2b 3.32, the ZIP form Direct uses: XDR and XDM for Direct
 * Messaging §3) from a zip file or buffer with yauzl, entry by entry, documents streamed.
 *
 * Tolerant of what real packages do (requirements §1.8): names in any letter case, a wrapping
 * folder, subset folders not named SUBSET01, junk entries, INDEX.HTM that is not XHTML (never read:
 * ETT's BadXHTML.zip), missing optional metadata. Each folder holding a METADATA.XML is a submission
 * set; the files under it are its documents, matched to its DocumentEntries by SHA-1, then by URI.
 *
 * Refused, with nothing delivered: what is not a zip or has no readable METADATA.XML
 * (HISP_XDM_MALFORMED); a name that could escape the output folder or stand for another — `..`, an
 * absolute path, a drive letter, a backslash, a control character, a symbolic link, a duplicate name
 * in any letter case (HISP_XDM_UNSAFE); more entries, octets or compression than {@link XdmLimits}
 * allow (HISP_XDM_TOO_LARGE).
 *
 * @example
 *   const pkg = await unpackXdm('package.zip', { outDir: 'received' });
 *   for (const d of pkg.documents) console.log(d.path, d.mimeType, d.hashMatches);
 */
export async function unpackXdm(source: string | Buffer, options: XdmUnpackOptions = {}): Promise<XdmPackage> {
  const limits: XdmLimits = { ...DEFAULT_XDM_LIMITS, ...options.limits };
  if (options.onDocument && options.outDir !== undefined) throw new HispError('HISP_USAGE', 'unpackXdm: give onDocument or outDir, not both');
  const zip = await openZip(source);
  const written = new Written(options.outDir);
  try {
    if (zip.entryCount > limits.maxEntries) {
      throw new HispError('HISP_XDM_TOO_LARGE', `the package has ${zip.entryCount} entries, more than the ${limits.maxEntries} allowed`);
    }
    const items = await listEntries(zip, limits);
    // Past the listing, a read error surfaces through its entry's stream; the ZipFile's own event
    // must still have a listener, or Node would throw it (EventEmitter 'error' semantics).
    zip.on('error', () => undefined);
    const metadataItems = items.filter((i) => !i.directory && !isJunk(i) && i.segments.at(-1)!.toUpperCase() === 'METADATA.XML');
    if (metadataItems.length === 0) throw new HispError('HISP_XDM_MALFORMED', 'the package has no METADATA.XML (ITI TF-2b 3.32.4.1.2.2: one in each submission set folder)');
    const budget = new Budget(limits, zip.fileSize);
    const warnings: string[] = [];

    // Metadata first: a package whose metadata cannot be read delivers nothing.
    const subsets: (XdmSubset & { entries: XdmDocumentEntry[]; key: string })[] = [];
    for (const item of metadataItems) {
      const bytes = await readWhole(zip, item, budget, limits.maxMetadataBytes);
      const metadata = readXdmMetadata(bytes, { maxBytes: limits.maxMetadataBytes });
      const folder = item.segments.slice(0, -1).join('/');
      if (metadata.submissionSet === null) warnings.push(`${item.name}: no SubmissionSet`);
      subsets.push({ folder, key: folder.toUpperCase(), submissionSet: metadata.submissionSet, missing: [], entries: metadata.documentEntries });
      await written.file(item.segments, bytes);
    }

    // Then each document, streamed through the meter to the caller, the folder, or nowhere.
    const read: (XdmDocument & { subset: number; used?: boolean })[] = [];
    for (const item of items) {
      if (item.directory || isJunk(item) || metadataItems.includes(item)) continue;
      const subset = subsetOf(item, subsets);
      if (subset < 0) continue;
      const folder = subsets[subset]!.folder;
      const target = { path: item.name, folder };
      const sink = options.onDocument ? await options.onDocument(target) : options.outDir !== undefined ? await written.stream(item.segments) : discard();
      const digest = await pump(zip, item, budget, limits.maxEntryBytes, sink, options.onDocument ? 'caller' : 'io');
      read.push({
        ...target,
        ...digest,
        mimeType: mediaTypeOf(item.name),
        hashMatches: false,
        sizeMatches: null,
        matchedBy: null,
        entry: null,
        subset,
        ...(options.outDir !== undefined ? { file: written.pathOf(item.segments) } : {}),
      });
    }

    match(read, subsets);
    for (const s of subsets) {
      for (const e of s.missing) warnings.push(`${s.folder || '(root)'}/METADATA.XML: DocumentEntry ${e.entryUUID} (URI ${e.uri ?? 'none'}) has no document in the package`);
    }
    for (const d of read) if (d.entry === null) warnings.push(`${d.path}: no DocumentEntry describes it`);
    written.keep();
    return {
      submissionSet: subsets[0]?.submissionSet ?? null,
      documents: read.map(({ subset: _s, used: _u, ...d }) => d),
      subsets: subsets.map(({ entries: _e, key: _k, ...s }) => s),
      warnings,
    };
  } finally {
    zip.close();
    await written.undo();
  }
}

/** Documents to DocumentEntries of their subset: by SHA-1 first, then by URI (relative to the subset folder). */
function match(read: (XdmDocument & { subset: number })[], subsets: (XdmSubset & { entries: XdmDocumentEntry[] })[]): void {
  const taken = new Set<XdmDocumentEntry>();
  const bind = (d: XdmDocument, e: XdmDocumentEntry, by: 'hash' | 'uri') => {
    taken.add(e);
    d.entry = e;
    d.matchedBy = by;
    d.mimeType = e.mimeType || d.mimeType;
    d.hashMatches = e.hash === d.sha1;
    d.sizeMatches = e.size === null ? null : e.size === d.size;
  };
  for (const d of read) {
    const e = subsets[d.subset]!.entries.find((x) => !taken.has(x) && x.hash === d.sha1);
    if (e) bind(d, e, 'hash');
  }
  for (const d of read) {
    if (d.entry) continue;
    const folder = subsets[d.subset]!.folder;
    const e = subsets[d.subset]!.entries.find((x) => !taken.has(x) && x.uri !== null && uriNames(folder, x.uri, d.path));
    if (e) bind(d, e, 'uri');
  }
  for (const s of subsets) s.missing = s.entries.filter((e) => !taken.has(e));
}

/** A URI names a file when, relative to the subset folder (or to the package root), it is its path in any letter case. */
function uriNames(folder: string, uri: string, path: string): boolean {
  const target = posix.normalize(path).toUpperCase();
  const relative = posix.normalize(posix.join(folder, uri.replaceAll('\\', '/'))).toUpperCase();
  return relative === target || posix.normalize(uri.replaceAll('\\', '/')).toUpperCase() === target;
}

/** The deepest subset whose folder holds the item; -1 when none (README.TXT, INDEX.HTM, others). */
function subsetOf(item: ZipItem, subsets: readonly { key: string }[]): number {
  const parent = item.segments.slice(0, -1).join('/').toUpperCase();
  let best = -1;
  subsets.forEach((s, i) => {
    const inside = s.key === '' || parent === s.key || parent.startsWith(`${s.key}/`);
    if (inside && (best < 0 || s.key.length > subsets[best]!.key.length)) best = i;
  });
  // README.TXT and INDEX.HTM beside a METADATA.XML that is not under IHE_XDM (a package zipped
  // from its IHE_XDM folder's parent) are the package's, not documents.
  if (best >= 0 && item.segments.length - 1 === subsets[best]!.key.split('/').filter(Boolean).length) {
    const name = item.segments.at(-1)!.toUpperCase();
    if ((name === 'README.TXT' || name === 'INDEX.HTM') && !subsets[best]!.key.split('/').includes('IHE_XDM')) return -1;
  }
  return best;
}

function isJunk(item: ZipItem): boolean {
  return item.segments.some((s) => JUNK_SEGMENT.test(s));
}

async function openZip(source: string | Buffer): Promise<ZipFile> {
  // decodeStrings off: names are decoded and checked here, so that a backslash is refused, never
  // turned into a '/' (yauzl's default), and yauzl's own check does not end the listing half-way.
  const options = { lazyEntries: true, autoClose: false, decodeStrings: false, validateEntrySizes: true, strictFileNames: true };
  try {
    return typeof source === 'string' ? await yauzl.openPromise(source, options) : await yauzl.fromBufferPromise(source, options);
  } catch (cause) {
    if (typeof source === 'string' && (cause as NodeJS.ErrnoException).code !== undefined) {
      throw new HispError('HISP_IO', `cannot read ${source}: ${(cause as Error).message}`, { cause });
    }
    throw new HispError('HISP_XDM_MALFORMED', `not a zip file: ${(cause as Error).message}`, { cause });
  }
}

/** The central directory, every name checked (APPNOTE 4.4.17: relative, forward slashes). */
async function listEntries(zip: ZipFile, limits: XdmLimits): Promise<ZipItem[]> {
  const items: ZipItem[] = [];
  const files = new Map<string, string>();
  const folders = new Map<string, string>();
  try {
    for await (const entry of zip.eachEntry()) {
      if (items.length >= limits.maxEntries) throw new HispError('HISP_XDM_TOO_LARGE', `the package has more than ${limits.maxEntries} entries`);
      const item = checkedItem(entry);
      const key = item.segments.join('/').normalize('NFC').toUpperCase();
      // Names are matched in any letter case (ETT's samples mix INDEX.htm and METADATA.XML), so two
      // names that differ only in case would stand for one another: as on a case-insensitive disk.
      if (item.directory) {
        if (files.has(key)) throw unsafe(`"${item.name}" is a folder and the file "${files.get(key)!}"`);
        folders.set(key, item.name);
      } else {
        if (files.has(key)) throw unsafe(`"${item.name}" and "${files.get(key)!}" name the same file`);
        if (folders.has(key)) throw unsafe(`"${item.name}" is a file and the folder "${folders.get(key)!}"`);
        files.set(key, item.name);
      }
      items.push(item);
    }
  } catch (err) {
    if (isHispError(err)) throw err;
    throw new HispError('HISP_XDM_MALFORMED', `the zip's central directory cannot be read: ${(err as Error).message}`, { cause: err });
  }
  // A file must not be the folder of another entry (`A` and `A/B`): one of them could not be written.
  for (const item of items) {
    for (let i = 1; i < item.segments.length; i++) {
      const prefix = item.segments.slice(0, i).join('/').normalize('NFC').toUpperCase();
      if (files.has(prefix)) throw unsafe(`"${item.name}" is inside "${files.get(prefix)!}", which is a file`);
    }
  }
  return items;
}

function checkedItem(entry: Entry): ZipItem {
  const name = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, entry.fileNameRaw, entry.extraFields, true);
  // The name without Info-ZIP's Unicode Path field is checked too: a reader that ignores the field sees it.
  const plain = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, entry.fileNameRaw, [], true);
  for (const n of new Set([name, plain])) checkName(n);
  const mode = entry.externalFileAttributes >>> 16;
  if ((mode & S_IFMT) === S_IFLNK) throw unsafe(`"${printable(name)}" is a symbolic link`);
  const directory = name.endsWith('/') || (entry.externalFileAttributes & DOS_DIRECTORY) !== 0;
  const segments = name.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.length === 0) throw unsafe(`an entry has no name ("${printable(name)}")`);
  return { entry, name, segments, directory };
}

/** Refuses a name that could leave the output folder or be read as another (HISP_XDM_UNSAFE). */
function checkName(name: string): void {
  const shown = printable(name);
  if (name.includes('\\')) throw unsafe(`"${shown}" has a backslash (a path separator on Windows: APPNOTE 4.4.17.1 allows only '/')`);
  if (name.startsWith('/')) throw unsafe(`"${shown}" is an absolute path`);
  if (/^[A-Za-z]:/.test(name)) throw unsafe(`"${shown}" starts with a drive letter`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) throw unsafe(`"${shown}" has a control character`);
  if (name.split('/').includes('..')) throw unsafe(`"${shown}" climbs out of its folder with ".."`);
  if (Buffer.byteLength(name) > MAX_PATH_BYTES || name.split('/').some((s) => Buffer.byteLength(s) > MAX_SEGMENT_BYTES)) {
    throw unsafe(`"${shown.slice(0, 80)}…" is longer than a file system takes`);
  }
}

function unsafe(why: string): HispError {
  return new HispError('HISP_XDM_UNSAFE', `unsafe zip entry: ${why}`);
}

function printable(name: string): string {
  return JSON.stringify(name.slice(0, 200)).slice(1, -1).replace(/[\u007f-\u009f]/g, '?');
}

/** The octets inflated so far across the package, against the package-wide caps. */
class Budget {
  total = 0;
  constructor(
    readonly limits: XdmLimits,
    readonly archiveBytes: number,
  ) {}

  add(octets: number, name: string): void {
    this.total += octets;
    const l = this.limits;
    if (this.total > l.maxTotalBytes) throw new HispError('HISP_XDM_TOO_LARGE', `the package inflates to more than ${l.maxTotalBytes} octets (at ${name})`);
    if (this.total > l.ratioGraceBytes && this.total / Math.max(this.archiveBytes, 1) > l.maxOverallRatio) {
      throw new HispError('HISP_XDM_TOO_LARGE', `the package inflates more than ${l.maxOverallRatio} times its ${this.archiveBytes} octets (at ${name}): a zip bomb`);
    }
  }
}

/**
 * Counts, hashes (SHA-1, CRC-32) and bounds the inflated octets of one entry as they pass, so that a
 * bomb stops at the first chunk past a cap whatever its headers claim.
 */
class EntryMeter extends Transform {
  size = 0;
  private readonly sha1 = createHash('sha1');
  private crc = 0;

  constructor(
    private readonly item: ZipItem,
    private readonly budget: Budget,
    private readonly maxBytes: number,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      this.size += chunk.length;
      const { limits } = this.budget;
      if (this.size > this.maxBytes) throw new HispError('HISP_XDM_TOO_LARGE', `${this.item.name} inflates to more than ${this.maxBytes} octets`);
      if (this.size > this.item.entry.uncompressedSize) throw lyingSize(this.item, `more than the ${this.item.entry.uncompressedSize}`);
      if (this.size > limits.ratioGraceBytes && this.size / Math.max(this.item.entry.compressedSize, 1) > limits.maxRatio) {
        throw new HispError('HISP_XDM_TOO_LARGE', `${this.item.name} inflates more than ${limits.maxRatio} times its ${this.item.entry.compressedSize} compressed octets: a zip bomb`);
      }
      this.budget.add(chunk.length, this.item.name);
      this.sha1.update(chunk);
      this.crc = crc32(chunk, this.crc);
      done(null, chunk);
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    // yauzl leaves the CRC-32 to its callers (its README: "No CRC-32 Checking").
    if (this.size !== this.item.entry.uncompressedSize) done(lyingSize(this.item, `${this.size}, not the ${this.item.entry.uncompressedSize}`));
    else if (this.crc !== this.item.entry.crc32) done(new HispError('HISP_XDM_MALFORMED', `${this.item.name} is corrupt: its CRC-32 does not match`));
    else done();
  }

  digest(): { size: number; sha1: string } {
    return { size: this.size, sha1: this.sha1.digest('hex') };
  }
}

/** An entry that inflates to another size than its header declares (what yauzl's validateEntrySizes checks). */
function lyingSize(item: ZipItem, actual: string): HispError {
  return new HispError('HISP_XDM_MALFORMED', `${item.name} cannot be inflated: it inflates to ${actual} octets its header declares`);
}

/**
 * Output chunk of the inflater. yauzl inflates with zlib's default 16 KiB chunks, which costs a trip
 * through the thread pool per 16 KiB (about 15× slower than one-shot inflate on 10 MB here): the raw
 * deflate data is taken from yauzl and inflated with 256 KiB chunks, the meter checking every chunk.
 */
const INFLATE_CHUNK = 256 * 1024;

/**
 * Streams one entry through its meter into `sink`. Errors: the meter's as they are; the sink's as
 * HISP_IO (a file of outDir) or as the caller's sink gave them; the zip's as HISP_XDM_MALFORMED.
 */
async function pump(zip: ZipFile, item: ZipItem, budget: Budget, maxBytes: number, sink: Writable, sinkKind: 'io' | 'caller' | 'memory'): Promise<{ size: number; sha1: string }> {
  const { entry } = item;
  if (entry.isEncrypted()) throw new HispError('HISP_XDM_MALFORMED', `${item.name} is encrypted`);
  if (!entry.canDecodeFileData()) throw new HispError('HISP_XDM_MALFORMED', `${item.name} uses compression method ${entry.compressionMethod} (only stored and deflated entries are read)`);
  let stream: Readable;
  try {
    stream = await zip.openReadStreamPromise(entry, { decodeFileData: false });
  } catch (cause) {
    sink.destroy();
    throw new HispError('HISP_XDM_MALFORMED', `${item.name} cannot be read: ${(cause as Error).message}`, { cause });
  }
  const stages: (Readable | Transform)[] = [stream];
  if (entry.compressionMethod === 8) stages.push(createInflateRaw({ chunkSize: INFLATE_CHUNK }));
  const meter = new EntryMeter(item, budget, maxBytes);
  // pipeline() destroys every stream with the first error: the first to report one is its origin.
  let origin: 'zip' | 'meter' | 'sink' | undefined;
  for (const s of stages) s.once('error', () => (origin ??= 'zip'));
  meter.once('error', () => (origin ??= 'meter'));
  sink.once('error', () => (origin ??= 'sink'));
  try {
    await pipeline([...stages, meter, sink]);
  } catch (err) {
    if (isHispError(err)) throw err;
    if (origin === 'sink' && sinkKind === 'io') throw new HispError('HISP_IO', `cannot write ${item.name}: ${(err as Error).message}`, { cause: err });
    if (origin === 'sink' && sinkKind === 'caller') throw err;
    throw new HispError('HISP_XDM_MALFORMED', `${item.name} cannot be inflated: ${(err as Error).message}`, { cause: err });
  }
  return meter.digest();
}

/** A whole entry in memory, at most `cap` octets (METADATA.XML). */
async function readWhole(zip: ZipFile, item: ZipItem, budget: Budget, cap: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  const collector = new Writable({
    write(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > cap) return done(new HispError('HISP_XDM_TOO_LARGE', `${item.name} is larger than ${cap} octets`));
      chunks.push(chunk);
      done();
    },
  });
  await pump(zip, item, budget, budget.limits.maxEntryBytes, collector, 'memory');
  return Buffer.concat(chunks);
}

function discard(): Writable {
  return new Writable({ write: (_chunk, _enc, done) => done() });
}

/** The files and folders `outDir` received, so that a failure can take them back. */
class Written {
  private readonly root: string | undefined;
  private readonly files: string[] = [];
  private readonly folders: string[] = [];
  private kept = false;

  constructor(outDir: string | undefined) {
    this.root = outDir === undefined ? undefined : resolve(outDir);
  }

  pathOf(segments: readonly string[]): string {
    const path = join(this.root!, ...segments);
    // The names were checked (no '..', not absolute): this cannot fail, and stays as a second lock.
    if (!path.startsWith(this.root! + sep)) throw new HispError('HISP_XDM_UNSAFE', `unsafe zip entry: ${segments.join('/')} leaves the output folder`);
    return path;
  }

  async file(segments: readonly string[], bytes: Buffer): Promise<void> {
    if (this.root === undefined) return;
    const path = await this.prepare(segments);
    try {
      await writeFile(path, bytes, { flag: 'wx', mode: 0o600 });
    } catch (cause) {
      throw new HispError('HISP_IO', `cannot write ${path}: ${(cause as Error).message}`, { cause });
    }
    this.files.push(path);
  }

  async stream(segments: readonly string[]): Promise<Writable> {
    const path = await this.prepare(segments);
    // 'wx': never over an existing file, nor through a symbolic link planted where it goes; and
    // only a file this call created is taken back on failure.
    const out = createWriteStream(path, { flags: 'wx', mode: 0o600 });
    out.once('open', () => this.files.push(path));
    return out;
  }

  keep(): void {
    this.kept = true;
  }

  /** After a failure, removes the files written and the folders made, deepest first. */
  async undo(): Promise<void> {
    if (this.kept) return;
    for (const f of this.files.reverse()) await rm(f, { force: true }).catch(() => undefined);
    for (const d of this.folders.reverse()) await rmdir(d).catch(() => undefined);
  }

  private async prepare(segments: readonly string[]): Promise<string> {
    const path = this.pathOf(segments);
    let dir = this.root!;
    try {
      if ((await mkdir(dir, { recursive: true, mode: 0o700 })) !== undefined) this.folders.push(dir);
      for (const s of segments.slice(0, -1)) {
        dir = join(dir, s);
        await mkdir(dir, { mode: 0o700 }).then(
          () => this.folders.push(dir),
          (err: NodeJS.ErrnoException) => {
            if (err.code !== 'EEXIST') throw err;
          },
        );
      }
    } catch (cause) {
      throw new HispError('HISP_IO', `cannot create ${dir}: ${(cause as Error).message}`, { cause });
    }
    return path;
  }
}

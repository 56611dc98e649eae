import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { create } from 'xmlbuilder2';
import yazl from 'yazl';
import { HispError, isHispError } from '../core/errors.js';
import { mediaTypeOf } from './document-media-types.js';
import { dtmText, text, urnUuid, writeXdmMetadata, type DocumentCodes, type DocumentEntryInput, type XdmAuthor, type XdmPatient, type XdsCode } from './xdm-metadata-writer.js';
import { assertOid, XdsOidMinter } from './xds-oid-minter.js';

/** The submission set folder: one per package, as Direct sends them (ITI TF-2b 3.32.4.1.2.2). */
const SUBSET = 'IHE_XDM/SUBSET01';

/**
 * A patient id in XDS: HL7 v2 CX with only the id and the assigning authority's OID
 * (`id^^^&oid&ISO`, ITI TF-3 4.2.3.1.7 and Table 4.2.3.1.7-2).
 */
const PATIENT_ID = /^[^^&|~\\]+\^\^\^&[0-2](\.(0|[1-9][0-9]*))+&ISO$/;

/** A patient's CX (`id^^^&oid&ISO`) from an id and its assigning authority's OID, or undefined when they cannot make one (HL7 delimiters in the id, an authority that is no OID). */
export function patientCx(id: string, authorityOid: string): string | undefined {
  const cx = `${id}^^^&${authorityOid}&ISO`;
  return id.length <= 200 && PATIENT_ID.test(cx) ? cx : undefined;
}

/** One document of a package: a file (streamed) or bytes. */
export interface XdmPackDocument {
  /** A file to read; streamed, never held whole. */
  path?: string;
  /** Or the document's bytes. */
  content?: Buffer;
  /** The name it is known by (default: the file's name); the package name is made from it. */
  filename?: string;
  /** Default: from the name's extension (`text/xml` for .xml). */
  mimeType?: string;
  title?: string;
  /** DocumentEntry.comments (ITI TF-3 4.2.3.2.4): what the document is, in a sentence or two. */
  comments?: string;
  /**
   * When the author made it (default: the file's modification time, or the packing time for bytes):
   * a time, or a DTM of the precision known (`20240501` for a day, TF-3 4.2.3.1.5).
   */
  creationTime?: Date | string;
  /** A language (RFC 5646) and the six XDS codes: with all of them the entry is full metadata. */
  languageCode?: string;
  codes?: DocumentCodes;
}

export interface XdmPackOptions {
  documents: readonly XdmPackDocument[];
  /** A file (written through a temporary file and renamed: never half a zip) or a stream. */
  out: string | NodeJS.WritableStream;
  /** CX `id^^^&oid&ISO`; without it the package names no patient (patientId is R2 in XDM). */
  patientId?: string;
  /** The patient's name, date of birth and sex, written in each DocumentEntry's sourcePatientInfo. */
  patient?: XdmPatient;
  /** The OID the unique ids are minted under; default: `2.25.<UUID>` OIDs (ITU-T X.667). */
  oidRoot?: string;
  /** SubmissionSet.sourceId (default: `oidRoot`, or a `2.25` OID minted for the package). */
  sourceId?: string;
  author?: XdmAuthor;
  /** Direct addresses of the recipients (SubmissionSet.intendedRecipient). */
  intendedRecipients?: readonly string[];
  title?: string;
  contentTypeCode?: XdsCode;
  /** The packing time: submissionTime, and the time of the zip's entries (default: now). */
  now?: Date;
}

/** What was packed: the ids and digests the package carries. */
export interface XdmPackResult {
  submissionSet: { entryUUID: string; uniqueId: string; sourceId: string; submissionTime: string; patientId: string | null };
  documents: { path: string; uri: string; mimeType: string; size: number; sha1: string; uniqueId: string; entryUUID: string }[];
  /** Octets of the zip. */
  size: number;
}

/**
 * Packs documents into an IHE XDM package (ITI TF-2b 3.32, the ZIP form of XDR and XDM for Direct
 * Messaging §3) with yazl, streaming: README.TXT and INDEX.HTM at the root (3.32.4.1.2.2), the
 * documents and METADATA.XML in `IHE_XDM/SUBSET01/`. Each document is hashed (SHA-1) and counted
 * as yazl deflates it; METADATA.XML is the last entry, written once every digest is known, so no
 * document is read twice and none is held in memory.
 *
 * Document files are named as ETT's samples are (CCDAAMB.XML, TOC_A.XML): ISO 9660 level 1 names,
 * upper case, at most 8 + 3 characters of A–Z, 0–9 and `_` (the media rules XDM inherits from
 * DICOM PS3.12), made from each document's own name and kept unique.
 *
 * @example
 *   await packXdm({ documents: [{ path: 'ccda.xml' }], out: 'package.zip', patientId: '1^^^&2.16.840.1.113883.4.6&ISO' });
 */
export async function packXdm(options: XdmPackOptions): Promise<XdmPackResult> {
  const now = options.now ?? new Date();
  const plan = await planPackage(options, now);
  const zip = new yazl.ZipFile();
  const entryOptions = { mtime: now, forceDosTimestamp: false };
  let failure: unknown;
  const fail = (err: unknown) => {
    failure ??= err;
    (zip.outputStream as Readable).destroy(err instanceof Error ? err : new Error(String(err)));
  };
  zip.on('error', fail);

  zip.addEmptyDirectory('IHE_XDM/', { mtime: now });
  zip.addEmptyDirectory(`${SUBSET}/`, { mtime: now });
  zip.addBuffer(readme(plan.names, now), 'README.TXT', entryOptions);
  zip.addBuffer(indexHtm(plan), 'INDEX.HTM', entryOptions);
  const digests: { size: number; sha1: string }[] = [];
  plan.documents.forEach((doc, i) => {
    zip.addReadStreamLazy(`${SUBSET}/${plan.names[i]!}`, entryOptions, (cb) => {
      const source = doc.content !== undefined ? Readable.from([doc.content]) : createReadStream(doc.path!);
      const hasher = new DigestingPassThrough((d) => (digests[i] = d));
      // yazl listens to no error of a lazily given stream: an unreadable file must end the package.
      source.once('error', (err: Error) => fail(new HispError('HISP_IO', `cannot read ${doc.path ?? doc.filename ?? 'a document'}: ${err.message}`, { cause: err })));
      cb(null, source.pipe(hasher));
    });
  });
  // yazl asks for a lazy stream only once the entries before it are written, so every digest is known here.
  zip.addReadStreamLazy(`${SUBSET}/METADATA.XML`, entryOptions, (cb) => {
    try {
      cb(null, Readable.from([metadataXml(plan, digests)]));
    } catch (err) {
      fail(err);
    }
  });
  zip.end();

  const size = await deliver(zip.outputStream, options.out).catch((err: unknown) => {
    throw failure ?? err;
  });
  return {
    submissionSet: { ...plan.submissionSet, submissionTime: plan.submissionSet.submissionTime, patientId: options.patientId ?? null },
    documents: plan.documents.map((d, i) => ({
      path: `${SUBSET}/${plan.names[i]!}`,
      uri: plan.names[i]!,
      mimeType: d.mimeType,
      size: digests[i]!.size,
      sha1: digests[i]!.sha1,
      uniqueId: d.uniqueId,
      entryUUID: d.entryUUID,
    })),
    size,
  };
}

interface PlannedDocument extends XdmPackDocument {
  mimeType: string;
  creationTime: Date | string;
  uniqueId: string;
  entryUUID: string;
}

interface Plan {
  documents: PlannedDocument[];
  names: string[];
  submissionSet: { entryUUID: string; uniqueId: string; sourceId: string; submissionTime: string };
  options: XdmPackOptions;
  now: Date;
}

/** Checks the options and gives every document its name, type, time and ids. */
async function planPackage(options: XdmPackOptions, now: Date): Promise<Plan> {
  if (options.documents.length === 0) throw new HispError('HISP_USAGE', 'an XDM package needs at least one document');
  if (options.patientId !== undefined && !PATIENT_ID.test(options.patientId)) {
    throw new HispError('HISP_USAGE', `the patient id must be an HL7 CX id^^^&OID&ISO (ITI TF-3 4.2.3.1.7), e.g. 1234^^^&2.16.840.1.113883.4.6&ISO: ${JSON.stringify(options.patientId.slice(0, 80))}`);
  }
  if (options.sourceId !== undefined) assertOid(options.sourceId, 'the sourceId');
  for (const value of [options.title, options.author?.institution, options.author?.telecom, ...(options.intendedRecipients ?? [])]) if (value !== undefined) text(value);
  const ids = new XdsOidMinter(options.oidRoot);
  const taken = new Set(['METADATA.XML']);
  const documents: PlannedDocument[] = [];
  const names: string[] = [];
  for (const doc of options.documents) {
    if ((doc.path === undefined) === (doc.content === undefined)) throw new HispError('HISP_USAGE', 'each document is a path or content, one of the two');
    if (typeof doc.creationTime === 'string') dtmText(doc.creationTime);
    let creationTime = doc.creationTime ?? now;
    if (doc.path !== undefined) {
      const info = await stat(doc.path).catch((cause: Error) => {
        throw new HispError('HISP_IO', `cannot read ${doc.path!}: ${cause.message}`, { cause });
      });
      if (!info.isFile()) throw new HispError('HISP_IO', `${doc.path} is not a file`);
      creationTime = doc.creationTime ?? info.mtime;
    }
    const original = doc.filename ?? (doc.path !== undefined ? basename(doc.path) : 'DOCUMENT');
    const mimeType = doc.mimeType ?? mediaTypeOf(original);
    for (const value of [mimeType, doc.title, doc.comments, doc.languageCode]) if (value !== undefined) text(value);
    names.push(isoName(original, taken));
    documents.push({ ...doc, mimeType, creationTime, uniqueId: ids.next(), entryUUID: urnUuid() });
  }
  return {
    documents,
    names,
    submissionSet: { entryUUID: urnUuid(), uniqueId: ids.next(), sourceId: options.sourceId ?? options.oidRoot ?? ids.next(), submissionTime: now.toISOString() },
    options,
    now,
  };
}

/**
 * An ISO 9660 level 1 name for `original` (8 + 3 of A–Z 0–9 _), unique in `taken`: `ccda_ambulatory.xml`
 * → `CCDA_AMB.XML`, then `CCDA_AM1.XML`…
 */
export function isoName(original: string, taken: Set<string>): string {
  const clean = (s: string) => s.toUpperCase().replace(/[^A-Z0-9_]/g, '_').replace(/^_+|_+$/g, '');
  const ext = clean(extname(original).slice(1)).slice(0, 3);
  const stem = clean(basename(original, extname(original))).slice(0, 8) || 'DOC';
  const dot = ext === '' ? '' : `.${ext}`;
  let name = `${stem}${dot}`;
  for (let n = 1; taken.has(name); n++) name = `${stem.slice(0, 8 - String(n).length)}${n}${dot}`;
  taken.add(name);
  return name;
}

function metadataXml(plan: Plan, digests: readonly { size: number; sha1: string }[]): Buffer {
  const o = plan.options;
  const entries: DocumentEntryInput[] = plan.documents.map((d, i) => ({
    entryUUID: d.entryUUID,
    uniqueId: d.uniqueId,
    mimeType: d.mimeType,
    sha1: digests[i]!.sha1,
    size: digests[i]!.size,
    uri: plan.names[i]!,
    creationTime: d.creationTime,
    ...(o.patientId !== undefined ? { patientId: o.patientId } : {}),
    ...(o.patient ? { patient: o.patient } : {}),
    ...(d.title !== undefined ? { title: d.title } : {}),
    ...(d.comments !== undefined ? { comments: d.comments } : {}),
    ...(o.author ? { author: o.author } : {}),
    ...(d.languageCode !== undefined ? { languageCode: d.languageCode } : {}),
    ...(d.codes ? { codes: d.codes } : {}),
  }));
  return writeXdmMetadata(
    {
      ...plan.submissionSet,
      submissionTime: plan.now,
      ...(o.patientId !== undefined ? { patientId: o.patientId } : {}),
      ...(o.title !== undefined ? { title: o.title } : {}),
      ...(o.author ? { author: o.author } : {}),
      ...(o.intendedRecipients ? { intendedRecipients: o.intendedRecipients } : {}),
      ...(o.contentTypeCode ? { contentTypeCode: o.contentTypeCode } : {}),
    },
    entries,
  );
}

/**
 * README.TXT: who made the package and how it is organized (ITI TF-2b 3.32.4.1.2.2 asks for the
 * creating institution and application, and the media's organization), in the layout of ETT's.
 */
function readme(names: readonly string[], now: Date): Buffer {
  const lines = [
    'README.TXT',
    '',
    `This XDM package (IHE ITI Cross-Enterprise Document Media Interchange) was made by hisp,`,
    `an open-source Direct HISP, on ${now.toISOString()}. Its sender is named in the Direct`,
    'message that carried it and in IHE_XDM/SUBSET01/METADATA.XML.',
    '',
    'The content of this package:',
    '',
    'README.TXT             - this file',
    'INDEX.HTM              - a list of the documents, for a web browser',
    'IHE_XDM/               - content holder',
    '   SUBSET01/           - the submission set',
    '      METADATA.XML     - its XDS metadata (ebRIM 3.0)',
    ...names.map((n) => `      ${n.padEnd(16)} - document`),
    '',
  ];
  return Buffer.from(lines.join('\r\n'), 'utf8');
}

/**
 * INDEX.HTM: XHTML 1.0 listing the documents with relative links (ITI TF-2b 3.32.4.1.2.2), built as
 * XML so every name and title is escaped; no script, and a Content-Security-Policy that forbids any.
 */
function indexHtm(plan: Plan): Buffer {
  const html = create({ version: '1.0', encoding: 'UTF-8' }).ele('http://www.w3.org/1999/xhtml', 'html');
  const head = html.ele('head');
  head.ele('meta', { 'http-equiv': 'Content-Security-Policy', content: "default-src 'none'" });
  head.ele('title').txt(text(plan.options.title ?? 'XDM package'));
  const body = html.ele('body');
  body.ele('h1').txt(text(plan.options.title ?? 'XDM package'));
  body.ele('p').txt('The documents of this package:');
  const list = body.ele('ul');
  plan.documents.forEach((d, i) => {
    const item = list.ele('li');
    item.ele('a', { href: `${SUBSET}/${plan.names[i]!}` }).txt(plan.names[i]!);
    item.ele('span').txt(text(`${d.mimeType}${d.title !== undefined ? `: ${d.title}` : ''}`));
  });
  body.ele('p').txt('About this package:');
  const about = body.ele('ul');
  about.ele('li').ele('a', { href: `${SUBSET}/METADATA.XML` }).txt('METADATA.XML (its XDS metadata)');
  about.ele('li').ele('a', { href: 'README.TXT' }).txt('README.TXT');
  return Buffer.from(html.end({ prettyPrint: true }), 'utf8');
}

/** Counts and hashes what passes, then hands the digest over. */
class DigestingPassThrough extends Transform {
  private readonly hash = createHash('sha1');
  private size = 0;
  constructor(private readonly done: (d: { size: number; sha1: string }) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    this.done({ size: this.size, sha1: this.hash.digest('hex') });
    cb();
  }
}

/**
 * Pipes the zip to its destination; a file is written beside its final name and renamed once whole,
 * so a reader never sees half a package. Returns the octets written.
 */
async function deliver(zipStream: NodeJS.ReadableStream, out: string | NodeJS.WritableStream): Promise<number> {
  let size = 0;
  const counter = new PassThrough();
  counter.on('data', (c: Buffer) => (size += c.length));
  if (typeof out !== 'string') {
    await pipeline(zipStream, counter, out);
    return size;
  }
  const tmp = join(dirname(out), `.${basename(out)}.${process.pid}.${Date.now()}.tmp`);
  try {
    await pipeline(zipStream, counter, createWriteStream(tmp, { flags: 'wx', mode: 0o644 }));
    await rename(tmp, out);
  } catch (err) {
    await rm(tmp, { force: true });
    if (isHispError(err)) throw err;
    throw new HispError('HISP_IO', `cannot write ${out}: ${(err as Error).message}`, { cause: err });
  }
  return size;
}

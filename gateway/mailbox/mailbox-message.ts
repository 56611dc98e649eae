import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import { HispError, isHispError } from '../core/errors.js';
import { parseDirectContext, type DirectContext } from '../documents/direct-context.js';
import type { MailboxEntry } from './mailbox-store.js';

/** One part of a received message, as the API lists it. */
export interface MessagePart {
  /** `text`, `html` (the message's body), or `p1`, `p2`… (its attachments, in order). */
  id: string;
  contentType: string;
  filename: string | null;
  size: number;
  sha256: string;
}

/** What the trust check established (issue 15: `security: {signer, fingerprint, binding, anchor, algorithms}`). */
export interface MessageSecurity {
  signer: string;
  fingerprint: string;
  binding: string;
  anchor: { subject: string; sha256: string; bundle: string | null };
  algorithms: Record<string, string>;
}

/** The documents tools the reader uses on the parts (gateway/documents/). */
export interface ReceivedDocumentTools {
  /** The header facts of a C-CDA, or undefined when the part is not one. */
  summarizeCcda(bytes: Buffer): Record<string, unknown> | undefined;
  /** The submission set and documents of an XDM package, or undefined when the part is not one. */
  describeXdm(bytes: Buffer): Promise<{ submissionSet: Record<string, unknown>; documents: Record<string, unknown>[] } | undefined>;
}

export interface MailboxMessageView {
  id: string;
  from: string | null;
  to: string[];
  subject: string | null;
  receivedAt: string;
  acknowledgedAt: string | null;
  security: MessageSecurity;
  parts: MessagePart[];
  xdm?: { submissionSet: Record<string, unknown>; documents: Record<string, unknown>[] };
  ccda?: Record<string, unknown>;
  /** The message's Direct Context, when it has an X-Direct-Context header: read, or why it could not be. */
  context?: ({ valid: true } & DirectContext) | { valid: false; reason: string };
}

/** mailparser's bounds: no conversion the API does not use, and HTML read only as far as this. */
const PARSE_OPTIONS = { skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true, keepCidLinks: true, maxHtmlLengthToParse: 16 * 1024 * 1024 } as const;

/**
 * Reads a received message of an API mailbox for the PHR, with mailparser (the parts, decoded);
 * the file itself, the bytes as they were signed and received, is never changed. A C-CDA part
 * (`application/xml` or `text/xml` holding a ClinicalDocument) gives the header facts, an XDM zip
 * its submission set and documents (the first of each).
 */
export async function readMailboxMessage(entry: MailboxEntry, file: string, tools: ReceivedDocumentTools): Promise<MailboxMessageView> {
  const parsed = await parse(file);
  const { parts } = partsOf(parsed);
  const view: MailboxMessageView = {
    id: entry.id,
    from: addresses(parsed.from)[0] ?? null,
    to: addresses(parsed.to),
    subject: parsed.subject ?? null,
    receivedAt: entry.receivedAt.toISOString(),
    acknowledgedAt: entry.ackedAt?.toISOString() ?? null,
    security: securityOf(entry.security),
    parts: parts.map((p) => p.part),
  };
  const contextRef = parsed.headers.get('x-direct-context');
  if (typeof contextRef === 'string') view.context = contextOf(contextRef, parsed);
  for (const p of parts) {
    if (view.ccda === undefined && /^(application|text)\/xml$/i.test(p.part.contentType)) {
      const summary = tools.summarizeCcda(p.bytes);
      if (summary) view.ccda = summary;
    }
    if (view.xdm === undefined && (/^application\/(x-)?zip$/i.test(p.part.contentType) || /\.zip$/i.test(p.part.filename ?? '') || (p.part.contentType === 'application/octet-stream' && p.bytes.subarray(0, 4).equals(ZIP_MAGIC)))) {
      const xdm = await tools.describeXdm(p.bytes);
      if (xdm) view.xdm = xdm;
    }
  }
  return view;
}

/** The octets of one part (decoded), with its media type and file name; HISP_NOT_FOUND when there is no such part. */
export async function readMailboxPart(file: string, partId: string): Promise<{ part: MessagePart; bytes: Buffer }> {
  const found = partsOf(await parse(file)).parts.find((p) => p.part.id === partId);
  if (!found) throw new HispError('HISP_NOT_FOUND', `the message has no part ${partId.slice(0, 20)}`);
  return found;
}

const ZIP_MAGIC = Buffer.from([0x50, 0x4b, 0x03, 0x04]);

/** The part the X-Direct-Context header names by its Content-ID (Direct Context §2), read. */
function contextOf(ref: string, parsed: ParsedMail): NonNullable<MailboxMessageView['context']> {
  const cid = ref.trim().replace(/^<|>$/g, '').toLowerCase();
  const part = parsed.attachments.find((a) => a.contentId !== undefined && a.contentId.replace(/^<|>$/g, '').toLowerCase() === cid);
  if (!part) return { valid: false, reason: `no part has the Content-ID the X-Direct-Context header names (${cid.slice(0, 80)})` };
  try {
    return { valid: true, ...parseDirectContext(part.content) };
  } catch (err) {
    return { valid: false, reason: isHispError(err) ? err.message : 'the metadata part cannot be read' };
  }
}

async function parse(file: string): Promise<ParsedMail> {
  try {
    return await simpleParser(createReadStream(file), PARSE_OPTIONS);
  } catch (err) {
    throw new HispError('HISP_MIME_MALFORMED', `the stored message cannot be read: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function partsOf(parsed: ParsedMail): { parts: { part: MessagePart; bytes: Buffer }[] } {
  const out: { part: MessagePart; bytes: Buffer }[] = [];
  const add = (id: string, contentType: string, filename: string | null, bytes: Buffer) =>
    out.push({ part: { id, contentType, filename, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') }, bytes });
  if (parsed.text !== undefined) add('text', 'text/plain', null, Buffer.from(parsed.text, 'utf8'));
  if (typeof parsed.html === 'string') add('html', 'text/html', null, Buffer.from(parsed.html, 'utf8'));
  parsed.attachments.forEach((a, i) => add(`p${i + 1}`, a.contentType.toLowerCase(), a.filename ?? null, a.content));
  return { parts: out };
}

function addresses(field: AddressObject | AddressObject[] | undefined): string[] {
  if (!field) return [];
  const list = Array.isArray(field) ? field : [field];
  return list.flatMap((o) => o.value.flatMap((v) => (v.address ? [v.address] : (v.group ?? []).flatMap((g) => (g.address ? [g.address] : [])))));
}

function securityOf(metadata: Record<string, unknown>): MessageSecurity {
  const signers = Array.isArray(metadata.signers) ? (metadata.signers as Record<string, unknown>[]) : [];
  const first = signers[0] ?? {};
  const anchor = (first.anchor ?? {}) as { subject?: string; sha256?: string; bundle?: string | null };
  return {
    signer: typeof first.subject === 'string' ? first.subject : '',
    fingerprint: typeof first.sha256 === 'string' ? first.sha256 : '',
    binding: typeof first.binding === 'string' ? first.binding : '',
    anchor: { subject: anchor.subject ?? '', sha256: anchor.sha256 ?? '', bundle: anchor.bundle ?? null },
    algorithms: (metadata.algorithms ?? {}) as Record<string, string>,
  };
}

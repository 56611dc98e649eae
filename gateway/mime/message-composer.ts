import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import type Mail from 'nodemailer/lib/mailer/index.js';
import { HispError } from '../core/errors.js';
import { FINAL_DELIVERY_REQUEST } from '../mdn/notification-options.js';
import { DIRECT_CONTEXT_FILENAME, DIRECT_CONTEXT_HEADER, formatDirectContext, type DirectContext } from '../documents/direct-context.js';
import { COMPOSED_BOUNDARY_PREFIX, isSevenBit } from './seven-bit.js';
import { randomHexId } from '../core/random-id.js';

/** What a document is (issue 15, `documents[].kind`): it decides its media type and what goes with it. */
export type DocumentKind = 'ccda' | 'pdf' | 'xdm' | 'fhir' | 'other';

export interface ComposedDocument {
  filename: string;
  contentType: string;
  kind: DocumentKind;
  /** The octets, or a file that holds them (streamed, never read whole). */
  content: Buffer | { path: string };
  /**
   * For a file: whether its octets are 7bit data (a SevenBitScan of ./seven-bit.ts while it was written), so
   * that it goes as it is; a file not known to be goes in base64. Octets in memory are checked here.
   */
  sevenBit?: boolean | undefined;
}

export interface ComposeInput {
  from: string;
  to: readonly string[];
  cc: readonly string[];
  subject: string;
  text: string;
  html?: string | undefined;
  documents: readonly ComposedDocument[];
  /** With angle brackets. */
  messageId: string;
  date: Date;
  /** R-MDN-4: ask for the dispatched MDN of timely and reliable delivery (Direct IG for Delivery Notification §3). */
  finalDelivery: boolean;
  /** Where the MDNs go (Disposition-Notification-To, RFC 8098 §2.1); the sender by default. */
  notifyTo?: string;
  /** Extra header fields (name → value), e.g. `X-Hisp-Client-Ref`. Values must be single-line. */
  headers?: Readonly<Record<string, string>>;
  /** Direct Context (gateway/documents/direct-context.ts): the `X-Direct-Context` header and its `metadata.txt` part. */
  directContext?: DirectContext | undefined;
}

/** The subject token of XDM in Direct (ETT validator rule 124, R-XDM-2): required when a zip is attached. */
export const XDM_SUBJECT_TOKEN = 'XDM/1.0/DDM';

/** Media types of the kinds whose type is fixed by the rules Direct messages are judged by. */
const KIND_TYPES: Partial<Record<DocumentKind, string>> = {
  // R-FMT-7, R-BB-2: the C-CDA goes as application/xml (Blue Button+ "Transmit", Payload).
  ccda: 'application/xml',
  pdf: 'application/pdf',
  xdm: 'application/zip',
};

/**
 * Composes the RFC 5322 message an API send becomes, with nodemailer's MailComposer (MIME
 * structure, encodings, boundaries of US-ASCII without ':', R-FMT-6): the text (and an HTML
 * alternative when given), then each document as an attachment of its media type with its file
 * name. A C-CDA is `application/xml` whatever the client said (R-FMT-7); a zip puts
 * `XDM/1.0/DDM` in the Subject (R-XDM-2). The MDN request fields of R-MDN-4 are in the header
 * section already, as the submission edge adds them. No Bcc is ever written (R-FMT-2 rule 120:
 * the recipients that are not To or Cc are envelope-only).
 *
 * A document that is 7bit data already (US-ASCII, CRLF lines of at most 998 octets: every C-CDA of
 * the ETT samples) goes as it is, `Content-Transfer-Encoding: 7bit` (RFC 2045 §6.2; RFC 8551
 * §3.1.2 asks for 7-bit content under a signature); any other goes in base64 (RFC 2045 §6.8). Both
 * arrive octet for octet; the identity encoding spares the third more octets base64 adds to what is
 * stored, signed, encrypted and relayed.
 *
 * Returns a stream of the message: documents given as files are read as it is consumed.
 */
export function composeMessage(input: ComposeInput): NodeJS.ReadableStream {
  for (const [name, value] of Object.entries(input.headers ?? {})) {
    if (/[\r\n]/.test(value) || !/^[A-Za-z0-9-]+$/.test(name)) throw new HispError('HISP_API_INVALID_REQUEST', `header field ${name} is not a single line`);
  }
  const subject = subjectFor(input.subject, input.documents);
  // Direct Context §2: the header names the metadata part by its Content-ID (RFC 2392 msg-id form);
  // the part is an attachment (a reader without support sees it), text/plain, US-ASCII.
  // Short, so that the header stays on one line for most domains (a folded one is as valid).
  const contextCid = input.directContext ? `<ctx.${randomHexId(16)}@${input.messageId.slice(input.messageId.lastIndexOf('@') + 1).replace(/>$/, '')}>` : undefined;
  const options: Mail.Options & { baseBoundary: string } = {
    from: input.from,
    to: [...input.to],
    ...(input.cc.length > 0 ? { cc: [...input.cc] } : {}),
    subject,
    text: input.text,
    ...(input.html !== undefined ? { html: input.html } : {}),
    messageId: input.messageId,
    date: input.date,
    // MailComposer's own X-Mailer would name the library: nothing of our insides goes out.
    xMailer: false,
    // Delimiters no 7bit document can hold (seven-bit.ts); its own prefix would name the library too.
    boundaryPrefix: COMPOSED_BOUNDARY_PREFIX,
    // The random part of every boundary (each part's is this and its number): drawn once here
    // (core/random-id.ts), where MailComposer would draw 8 octets from the system generator for the
    // message and each of its parts, one synchronous call each.
    baseBoundary: randomHexId(30),
    headers: {
      'Disposition-Notification-To': input.notifyTo ?? input.from,
      ...(input.finalDelivery ? { 'Disposition-Notification-Options': FINAL_DELIVERY_REQUEST } : {}),
      ...input.headers,
      ...(contextCid ? { [DIRECT_CONTEXT_HEADER]: contextCid } : {}),
    },
    attachments: input.documents.map((d) => ({
      filename: d.filename,
      contentType: contentTypeOf(d),
      contentDisposition: 'attachment' as const,
      ...((Buffer.isBuffer(d.content) ? isSevenBit(d.content) : d.sevenBit === true) ? { contentTransferEncoding: '7bit' as const } : {}),
      ...(Buffer.isBuffer(d.content) ? { content: d.content } : { path: d.content.path }),
    })),
  };
  if (input.directContext && contextCid) {
    // Not nodemailer's `cid`: that makes the part a related one of the HTML, left out without HTML.
    (options.attachments as Mail.Attachment[]).push({
      filename: DIRECT_CONTEXT_FILENAME,
      contentType: 'text/plain; charset=us-ascii',
      contentDisposition: 'attachment',
      contentTransferEncoding: '7bit',
      content: formatDirectContext(input.directContext),
      headers: { 'Content-ID': contextCid },
    });
  }
  return new MailComposer(options).compile().createReadStream();
}

/** {@link composeMessage} in memory, for a message whose documents are all in memory already. */
export async function composeMessageToBuffer(input: ComposeInput): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of composeMessage(input)) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/** {@link composeMessage} into `file`; resolves with its size. */
export async function composeMessageToFile(input: ComposeInput, file: string): Promise<number> {
  const out = createWriteStream(file, { mode: 0o600 });
  try {
    await pipeline(composeMessage(input), out);
  } catch (err) {
    // A failed pipeline may settle before the file stream it destroyed has created and closed its
    // file: the caller's clean-up could run first and the file appear after it, left behind.
    if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
    throw err;
  }
  return out.bytesWritten;
}

/** The Subject a message goes with: with a zip attached, `XDM/1.0/DDM` in it (ETT rule 124, R-XDM-2). */
export function subjectFor(subject: string, documents: readonly Pick<ComposedDocument, 'kind' | 'filename' | 'contentType'>[]): string {
  return documents.some((d) => isZip(d)) && !subject.includes(XDM_SUBJECT_TOKEN) ? `${subject} ${XDM_SUBJECT_TOKEN}`.trim() : subject;
}

function contentTypeOf(d: ComposedDocument): string {
  return KIND_TYPES[d.kind] ?? d.contentType;
}

function isZip(d: Pick<ComposedDocument, 'kind' | 'filename' | 'contentType'>): boolean {
  return d.kind === 'xdm' || /\.zip$/i.test(d.filename) || /^application\/(x-)?zip/i.test(d.contentType);
}

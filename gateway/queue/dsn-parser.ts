import { MimeEntity } from '../mime/mime-entity.js';
import { DirectAddress } from '../core/direct-address.js';
import { HispError } from '../core/errors.js';
import {
  contentTypeOf,
  decodedBody,
  DSN_TYPES,
  fieldValue,
  findReport,
  headerText,
  normalizeMessageId,
  notificationFieldBlocks,
  parseEntity,
  parseTypedAddress,
  reportPart,
  type FoundReport,
  type ReportField,
} from '../mdn/report-mime.js';
import type { DsnAction } from './dsn.js';

/**
 * Reading DSNs (RFC 3464) from peers and from hisp's own queue: per-recipient action, status,
 * recipient and diagnostic, and the Message-ID of the original so that the tracker can find it
 * (from the returned headers, or the X-…-Original-Message-Id field the Java and .NET RIs write).
 * Tolerant of a close delimiter followed by dashes (.NET RI `--abcde------`), a missing one, LF line
 * ends, a BOM, a missing empty line between the per-message and per-recipient groups, and statuses
 * followed by a comment. What is not a DSN is HISP_MIME_MALFORMED; nothing else escapes.
 */

export interface ParsedDsnRecipient {
  action: DsnAction;
  /** `class.subject.detail`. */
  status: string;
  /** Final-Recipient as `local@domain` (or as written when it is not an rfc822 mailbox); undefined when absent. */
  finalRecipient: string | undefined;
  originalRecipient: string | undefined;
  /** Diagnostic-Code split at its first ';' (`{ type: 'smtp', text: '550 …' }`); type '' when there was none. */
  diagnosticCode: { type: string; text: string } | undefined;
  /** Remote-MTA name (without its `dns;` type). */
  remoteMta: string | undefined;
  lastAttemptDate: string | undefined;
  fields: ReportField[];
}

export interface ParsedDsn {
  /** Reporting-MTA name (without `dns;`). */
  reportingMta: string | undefined;
  originalEnvelopeId: string | undefined;
  arrivalDate: string | undefined;
  /** Message-ID of the original message as `<id>`, when the DSN tells it. */
  originalMessageId: string | undefined;
  recipients: ParsedDsnRecipient[];
  /** From, Message-ID and Subject of the DSN message itself. */
  from: string | undefined;
  messageId: string | undefined;
  subject: string | undefined;
  perMessageFields: ReportField[];
  warnings: string[];
}

const ACTIONS: ReadonlySet<string> = new Set(['failed', 'delayed', 'delivered', 'relayed', 'expanded']);
const RECIPIENT_FIELDS: ReadonlySet<string> = new Set([
  'original-recipient', 'final-recipient', 'action', 'status', 'remote-mta', 'diagnostic-code', 'last-attempt-date',
  'final-log-id', 'will-retry-until',
]);
const RETURNED_TYPES: ReadonlySet<string> = new Set([
  'text/rfc822-headers', 'message/rfc822', 'message/rfc822-headers', 'message/global', 'message/global-headers',
]);
const X_ORIGINAL_ID = /^x-(?:.+-)?original-message-id$/;

/** Parses a DSN (the message, or a decrypted entity holding it). Throws HISP_MIME_MALFORMED. */
export function parseDsn(bytes: Buffer): ParsedDsn {
  const entity = parseEntity(bytes);
  const report = findReport(entity);
  if (report === undefined) {
    throw new HispError('HISP_MIME_MALFORMED', `not a DSN: the message is ${contentTypeOf(entity).mediaType}, not multipart/report`);
  }
  if (report.kind === 'mdn') throw new HispError('HISP_MIME_MALFORMED', 'not a DSN: the report is a message disposition notification');
  const part = reportPart(report, DSN_TYPES);
  if (part === undefined) throw new HispError('HISP_MIME_MALFORMED', 'not a DSN: the report has no message/delivery-status part');

  const warnings: string[] = [];
  const { perMessage, groups } = groupFields(notificationFieldBlocks(part), warnings);
  const recipients: ParsedDsnRecipient[] = [];
  for (const fields of groups) {
    const recipient = readRecipient(fields, warnings);
    if (recipient !== undefined) recipients.push(recipient);
  }
  if (recipients.length === 0) throw new HispError('HISP_MIME_MALFORMED', 'the DSN has no per-recipient fields (RFC 3464 §2.3)');

  const all = [...perMessage, ...groups.flat()];
  const xId = all.find((f) => X_ORIGINAL_ID.test(f.key))?.value;
  const originalMessageId = returnedMessageId(report) ?? normalizeMessageId(xId);
  if (originalMessageId === undefined) warnings.push('the DSN does not tell the original Message-ID');
  const reportingMta = fieldValue(perMessage, 'reporting-mta');
  if (reportingMta === undefined) warnings.push('no Reporting-MTA field');
  return {
    reportingMta: reportingMta === undefined ? undefined : withoutType(reportingMta),
    originalEnvelopeId: fieldValue(perMessage, 'original-envelope-id'),
    arrivalDate: fieldValue(perMessage, 'arrival-date'),
    originalMessageId,
    recipients,
    from: addressOf(entity.header('from')),
    messageId: normalizeMessageId(entity.header('message-id')),
    subject: optionalText(entity.header('subject')),
    perMessageFields: perMessage,
    warnings,
  };
}

/**
 * Splits the field blocks into the per-message group and the per-recipient groups: blocks are
 * separated by empty lines; a first block that already holds recipient fields (no empty line after
 * the per-message fields) is cut at its first recipient field; a second Final-Recipient (or
 * Original-Recipient) in a block starts another recipient.
 */
function groupFields(blocks: ReportField[][], warnings: string[]): { perMessage: ReportField[]; groups: ReportField[][] } {
  const [first = [], ...rest] = blocks;
  const cut = first.findIndex((f) => RECIPIENT_FIELDS.has(f.key));
  const perMessage = cut === -1 ? first : first.slice(0, cut);
  const recipientBlocks = cut === -1 ? rest : [first.slice(cut), ...rest];
  if (cut > 0) warnings.push('no empty line between the per-message and per-recipient fields');
  const groups: ReportField[][] = [];
  for (const block of recipientBlocks) {
    let current: ReportField[] = [];
    for (const f of block) {
      const startsAnother =
        (f.key === 'final-recipient' && current.some((g) => g.key === 'final-recipient')) ||
        (f.key === 'original-recipient' && current.some((g) => g.key === 'original-recipient' || g.key === 'final-recipient'));
      if (startsAnother) {
        groups.push(current);
        current = [];
      }
      current.push(f);
    }
    if (current.length > 0) groups.push(current);
  }
  return { perMessage, groups };
}

function readRecipient(fields: ReportField[], warnings: string[]): ParsedDsnRecipient | undefined {
  if (!fields.some((f) => RECIPIENT_FIELDS.has(f.key))) {
    warnings.push('a group of fields without recipient fields was ignored');
    return undefined;
  }
  const actionRaw = fieldValue(fields, 'action');
  // The action word, without a trailing comment (`failed (bad address)`).
  const action = actionRaw?.trim().split(/[\s(;]/, 1)[0]?.toLowerCase();
  if (action === undefined || !ACTIONS.has(action)) {
    throw new HispError('HISP_MIME_MALFORMED', `DSN recipient with ${actionRaw === undefined ? 'no Action' : `unknown Action ${JSON.stringify(actionRaw.slice(0, 40))}`}`);
  }
  const statusRaw = fieldValue(fields, 'status') ?? '';
  const status = /^\s*([245]\.\d{1,3}\.\d{1,3})(?!\d)/.exec(statusRaw)?.[1];
  if (status === undefined) {
    throw new HispError('HISP_MIME_MALFORMED', `DSN recipient with ${statusRaw === '' ? 'no Status' : `invalid Status ${JSON.stringify(statusRaw.slice(0, 40))}`}`);
  }
  const address = (key: string): string | undefined => {
    const v = fieldValue(fields, key);
    if (v === undefined || v.trim() === '') return undefined;
    const a = parseTypedAddress(v);
    if (!a.parsed && (a.type === undefined || a.type === 'rfc822')) warnings.push(`${key} is not a mailbox`);
    return a.address;
  };
  const finalRecipient = address('final-recipient');
  if (finalRecipient === undefined) warnings.push('DSN recipient without Final-Recipient');
  const diagnostic = fieldValue(fields, 'diagnostic-code');
  let diagnosticCode: ParsedDsnRecipient['diagnosticCode'];
  if (diagnostic !== undefined && diagnostic !== '') {
    const semi = diagnostic.indexOf(';');
    diagnosticCode =
      semi === -1
        ? { type: '', text: diagnostic.trim() }
        : { type: diagnostic.slice(0, semi).trim().toLowerCase(), text: diagnostic.slice(semi + 1).trim() };
  }
  const remote = fieldValue(fields, 'remote-mta');
  return {
    action: action as DsnAction,
    status,
    finalRecipient,
    originalRecipient: address('original-recipient'),
    diagnosticCode,
    remoteMta: remote === undefined || remote === '' ? undefined : withoutType(remote),
    lastAttemptDate: fieldValue(fields, 'last-attempt-date'),
    fields,
  };
}

/** `dns; host` → `host`. */
function withoutType(value: string): string {
  const semi = value.indexOf(';');
  return (semi === -1 ? value : value.slice(semi + 1)).trim();
}

/** The Message-ID in the returned headers or message (third part), if any. */
function returnedMessageId(report: FoundReport): string | undefined {
  if (report.contentType.mediaType !== 'multipart/report') return undefined;
  try {
    const part = reportPart(report, RETURNED_TYPES);
    if (part === undefined) return undefined;
    const returned = decodedBody(part);
    try {
      const id = MimeEntity.parse(returned).header('message-id');
      if (id !== undefined) return normalizeMessageId(id);
    } catch (err) {
      if (!(err instanceof HispError)) throw err;
    }
    // Headers that do not parse as a whole: the Message-ID line alone.
    const m = /^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)/im.exec(returned.toString('latin1'));
    return m ? normalizeMessageId(m[1]) : undefined;
  } catch (err) {
    if (err instanceof HispError) return undefined;
    throw err;
  }
}

function addressOf(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  try {
    return DirectAddress.fromHeader(value).toString();
  } catch (err) {
    if (err instanceof HispError) return undefined;
    throw err;
  }
}

function optionalText(value: string | undefined): string | undefined {
  return value === undefined ? undefined : headerText(value);
}

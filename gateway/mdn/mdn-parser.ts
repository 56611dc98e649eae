import type { MimeEntity } from '../mime/mime-entity.js';
import { DirectAddress } from '../core/direct-address.js';
import { HispError } from '../core/errors.js';
import { FINAL_DELIVERY_OPTION } from './notification-options.js';
import {
  contentTypeOf,
  fieldValue,
  fieldValues,
  findReport,
  headerText,
  MDN_TYPES,
  normalizeMessageId,
  notificationFieldBlocks,
  parseEntity,
  parseTypedAddress,
  reportPart,
  stripComments,
  type ReportField,
  type ReportKind,
} from './report-mime.js';

/**
 * Reading MDNs (RFC 8098 §3, formerly RFC 3798) as the Direct reference implementations and the ETT
 * send them: with a UTF-8 BOM, without a close delimiter, with fields in the part header, without
 * spaces after colons or with extra ones, with line breaks inside fields, in any letter case,
 * Final-Recipient without `rfc822;` or with a display name, inside a multipart/signed or a
 * message/rfc822 (decrypted but not unwrapped). What is not an MDN, or an MDN without a Disposition,
 * is HISP_MIME_MALFORMED; nothing else escapes.
 */

export type ParsedDisposition = 'processed' | 'dispatched' | 'failed' | 'displayed' | 'deleted' | 'denied';

const DISPOSITION_TYPES: ReadonlySet<string> = new Set(['processed', 'dispatched', 'failed', 'displayed', 'deleted', 'denied']);
const ACTION_MODES: Readonly<Record<string, string>> = { 'automatic-action': 'automatic-action', 'manual-action': 'manual-action' };
const SENDING_MODES: Readonly<Record<string, string>> = {
  'mdn-sent-automatically': 'MDN-sent-automatically',
  'mdn-sent-manually': 'MDN-sent-manually',
};

export interface ParsedMdn {
  disposition: ParsedDisposition;
  /** `automatic-action/MDN-sent-automatically` (canonical case) or as written; undefined when absent. */
  dispositionMode: string | undefined;
  /** Disposition modifiers, lowercase (`error`). */
  modifiers: string[];
  /** Original-Message-ID as `<id>`; undefined when absent. */
  originalMessageId: string | undefined;
  /** Final-Recipient as `local@domain` (or as written when it is not an rfc822 mailbox); undefined when absent. */
  finalRecipient: string | undefined;
  /** Original-Recipient, read as Final-Recipient. */
  originalRecipient: string | undefined;
  /** Reporting-UA split at its first ';'. */
  reportingUa: { name: string; product?: string } | undefined;
  /** True when the X-DIRECT-FINAL-DESTINATION-DELIVERY extension field is present (any value, R-MDN-6). */
  finalDeliveryExtension: boolean;
  failure?: string;
  error?: string;
  warning?: string;
  /** From of the MDN message, as `local@domain`, when readable. */
  from: string | undefined;
  /** Message-ID of the MDN message. */
  messageId: string | undefined;
  subject: string | undefined;
  /** Every report field, in order. */
  fields: ReportField[];
  /** Deviations tolerated (missing Final-Recipient, no disposition mode, …). */
  warnings: string[];
}

/** Parses an MDN (the message, or a decrypted entity holding it). Throws HISP_MIME_MALFORMED. */
export function parseMdn(bytes: Buffer): ParsedMdn {
  const entity = parseEntity(bytes);
  const report = findReport(entity);
  if (report === undefined) {
    throw new HispError('HISP_MIME_MALFORMED', `not an MDN: the message is ${contentTypeOf(entity).mediaType}, not multipart/report`);
  }
  if (report.kind === 'dsn') throw new HispError('HISP_MIME_MALFORMED', 'not an MDN: the report is a delivery status notification');
  const part = reportPart(report, MDN_TYPES);
  if (part === undefined) throw new HispError('HISP_MIME_MALFORMED', 'not an MDN: the report has no message/disposition-notification part');

  const warnings: string[] = [];
  const fields = notificationFieldBlocks(part).flat();
  const dispositionField = fieldValue(fields, 'disposition');
  if (dispositionField === undefined || dispositionField.trim() === '') {
    throw new HispError('HISP_MIME_MALFORMED', 'the MDN has no Disposition field (RFC 8098 §3.2.6)');
  }
  const { disposition, mode, modifiers } = parseDisposition(dispositionField, warnings);

  const recipient = (key: string): string | undefined => {
    const v = fieldValue(fields, key);
    if (v === undefined || v.trim() === '') return undefined;
    const a = parseTypedAddress(v);
    if (a.type === undefined) warnings.push(`${key} without address type`);
    if (!a.parsed && (a.type === undefined || a.type === 'rfc822')) warnings.push(`${key} is not a mailbox`);
    return a.address;
  };
  const finalRecipient = recipient('final-recipient');
  if (finalRecipient === undefined) warnings.push('no Final-Recipient field');
  const originalMessageId = normalizeMessageId(fieldValue(fields, 'original-message-id'));
  if (originalMessageId === undefined) warnings.push('no Original-Message-ID field');

  const ua = fieldValue(fields, 'reporting-ua');
  let reportingUa: ParsedMdn['reportingUa'];
  if (ua !== undefined && ua.trim() !== '') {
    const semi = ua.indexOf(';');
    const name = (semi === -1 ? ua : ua.slice(0, semi)).trim();
    const product = semi === -1 ? '' : ua.slice(semi + 1).trim();
    reportingUa = product === '' ? { name } : { name, product };
  }

  const text = (key: string): string | undefined => {
    const values = fieldValues(fields, key).filter((v) => v !== '');
    return values.length === 0 ? undefined : values.join('; ');
  };
  const result: ParsedMdn = {
    disposition,
    dispositionMode: mode,
    modifiers,
    originalMessageId,
    finalRecipient,
    originalRecipient: recipient('original-recipient'),
    reportingUa,
    finalDeliveryExtension: fields.some((f) => f.key === FINAL_DELIVERY_OPTION.toLowerCase()),
    from: addressOf(entity.header('from')),
    messageId: normalizeMessageId(entity.header('message-id')),
    subject: optionalText(entity.header('subject')),
    fields,
    warnings,
  };
  const failure = text('failure');
  const error = text('error');
  const warning = text('warning');
  if (failure !== undefined) result.failure = failure;
  if (error !== undefined) result.error = error;
  if (warning !== undefined) result.warning = warning;
  return result;
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

/**
 * `disposition-mode ";" disposition-type ["/" modifier *("," modifier)]` (RFC 8098 §3.2.6), with
 * white space anywhere, any case, comments, a missing mode or a space instead of the ';'.
 */
function parseDisposition(value: string, warnings: string[]): { disposition: ParsedDisposition; mode: string | undefined; modifiers: string[] } {
  if (value.length > 1000) throw new HispError('HISP_MIME_MALFORMED', 'the Disposition field is longer than 1000 characters');
  let v = stripComments(value).trim();
  if (!v.includes(';')) v = v.replace(/^(\S+\/\S+)\s+(\S.*)$/s, '$1;$2');
  const pieces = v
    .replace(/\s+/g, '')
    .split(';')
    .filter((p) => p !== '');
  const typePart = pieces[pieces.length - 1] ?? '';
  const modePart = pieces.length > 1 ? pieces[0] : undefined;
  if (pieces.length > 2) warnings.push('Disposition has more than one ";"');
  const [typeRaw = '', ...modifierParts] = typePart.split('/');
  const type = typeRaw.toLowerCase();
  if (!DISPOSITION_TYPES.has(type)) {
    throw new HispError('HISP_MIME_MALFORMED', `unknown disposition type in Disposition: ${JSON.stringify(value.slice(0, 100))}`);
  }
  const modifiers = modifierParts
    .join('/')
    .split(',')
    .map((m) => m.toLowerCase())
    .filter((m) => m !== '');
  let mode: string | undefined;
  if (modePart === undefined) {
    warnings.push('Disposition without disposition mode');
  } else {
    const [action = '', sending = ''] = modePart.split('/');
    const a = ACTION_MODES[action.toLowerCase()];
    const s = SENDING_MODES[sending.toLowerCase()];
    if (a === undefined || s === undefined) warnings.push(`unknown disposition mode ${JSON.stringify(modePart.slice(0, 80))}`);
    mode = `${a ?? action}/${s ?? sending}`;
  }
  return { disposition: type as ParsedDisposition, mode, modifiers };
}

/**
 * The kind of automatic report a message is: `mdn`, `dsn`, `report` (another multipart/report), or
 * undefined for ordinary mail. Looks through multipart/signed and message/rfc822 (a decrypted Direct
 * message, wrapped or not); encrypted content must be unwrapped first. Never throws: a message whose
 * MIME structure cannot be read counts as a report when its top Content-Type says multipart/report.
 */
export function notificationKind(message: Buffer | MimeEntity): ReportKind | undefined {
  let entity: MimeEntity;
  try {
    entity = Buffer.isBuffer(message) ? parseEntity(message) : message;
  } catch (err) {
    if (err instanceof HispError) return undefined;
    throw err;
  }
  try {
    return findReport(entity)?.kind;
  } catch (err) {
    if (!(err instanceof HispError)) throw err;
    return /^\s*multipart\/report\b/i.test(entity.header('content-type') ?? '') ? 'report' : undefined;
  }
}

/**
 * True for MDNs, DSNs and other multipart/report messages: the gateway must never answer them with
 * an MDN (RFC 8098 §2.1, R-MDN-2).
 */
export function isNotification(message: Buffer | MimeEntity): boolean {
  return notificationKind(message) !== undefined;
}

function optionalText(value: string | undefined): string | undefined {
  return value === undefined ? undefined : headerText(value);
}

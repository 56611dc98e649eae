import { isAscii } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { HispError } from '../core/errors.js';
import { FINAL_DELIVERY_OPTION, unsupportedRequiredFailure, type NotificationOptions } from './notification-options.js';
import {
  assembleMultipart,
  CRLF,
  freshBoundary,
  headerLine,
  mailbox,
  mailboxes,
  msgIdForHeader,
  oneLine,
  originalHeader,
  rfc822HeadersPart,
  textPart,
} from './report-mime.js';
import { rfc5322Date } from '../core/rfc5322-date.js';

/**
 * Message Disposition Notifications as a Direct HISP sends them (RFC 8098 §3, formerly RFC 3798 §3;
 * R-MDN-1..6): an RFC 5322 message, CRLF, `multipart/report; report-type=disposition-notification`
 * with a human-readable text/plain part, the message/disposition-notification part and, when the
 * original header section is given, a text/rfc822-headers part. The gateway signs and encrypts it
 * like any outgoing message (wrapMessage).
 *
 * An MDN never carries Disposition-Notification-To or Disposition-Notification-Options (RFC 8098
 * §2.1, R-MDN-2, ETT rule 452): nothing here writes them.
 */

/** Dispositions hisp sends (RFC 8098 §3.2.6.2 and the RFC 3798 "failed" type Direct uses). */
export type MdnDisposition = 'processed' | 'dispatched' | 'failed' | 'displayed' | 'deleted';

const DISPOSITIONS: ReadonlySet<string> = new Set(['processed', 'dispatched', 'failed', 'displayed', 'deleted']);

/** Dispositions that may carry the X-DIRECT-FINAL-DESTINATION-DELIVERY extension field (DN-IG; .NET RI: processed never does). */
const FINAL_DELIVERY_DISPOSITIONS: ReadonlySet<MdnDisposition> = new Set(['dispatched', 'failed']);

export interface MdnOriginal {
  /** Message-ID of the message being answered (with or without angle brackets). */
  messageId: string;
  /** The original sender: the MDN goes there when there is no Disposition-Notification-To. */
  from: string;
  /** The original Disposition-Notification-To value (one or more mailboxes), when it had one. */
  dispositionNotificationTo?: string;
  /** The final recipient: the MDN's From. */
  to: string;
  /** Original Subject, for the MDN's Subject ("Processed: …"); read from `headers` when absent. */
  subject?: string;
  /** The original recipient (Original-Recipient header or ORCPT), when known (RFC 8098 §3.2.3). */
  originalRecipient?: string;
  /** The original header section (or whole message): returned as a text/rfc822-headers third part. */
  headers?: Buffer;
}

export interface BuildMdnOptions {
  original: MdnOriginal;
  disposition: MdnDisposition;
  /** automatic-action/MDN-sent-automatically (default) or manual-action/MDN-sent-manually. */
  mode?: 'automatic' | 'manual';
  /** Disposition modifiers (RFC 8098 §3.2.6.3), e.g. `error`. */
  modifiers?: readonly string[];
  /** Reporting-UA (RFC 8098 §3.2.1): `name` or `{ name, product }`, e.g. the HISP's domain and "hisp". */
  reportingUa: string | { name: string; product?: string };
  /** Final-Recipient address; default `original.to`. */
  finalRecipient?: string;
  /** Failure field (RFC 8098 §3.2.7); a failed MDN without one gets a generic text. */
  failure?: string;
  /** Error field (RFC 8098 §3.2.7). */
  error?: string;
  /** Warning field (RFC 8098 §3.2.7). */
  warning?: string;
  /**
   * True when the original asked validly for final-destination delivery
   * (NotificationOptions.finalDeliveryRequested): dispatched and failed MDNs then carry the
   * `X-DIRECT-FINAL-DESTINATION-DELIVERY:` extension field (R-MDN-6). Processed MDNs never do.
   */
  finalDeliveryExtension: boolean;
  /** The MDN's Message-ID, or a generator; default a random id at the final recipient's domain (R-MDN-9). */
  messageId?: string | (() => string);
  /** Date of the MDN; default now. */
  date?: Date;
  /** Human-readable text; default a sentence for the disposition. */
  humanText?: string;
  /** Subject; default "Processed: <original subject>" (as the reference implementations write). */
  subject?: string;
  /** Multipart boundary (tests); default a fresh random one. */
  boundary?: string;
}

export interface BuiltMdn {
  /** The MDN, CRLF line ends. */
  message: Buffer;
  messageId: string;
}

const TOKEN = /^[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+$/;

/** Builds an MDN. Throws HISP_USAGE for options that cannot make one (bad addresses, unknown disposition). */
export function buildMdn(options: BuildMdnOptions): BuiltMdn {
  const { original, disposition } = options;
  if (!DISPOSITIONS.has(disposition)) throw new HispError('HISP_USAGE', `unknown MDN disposition ${JSON.stringify(disposition)}`);
  const modifiers = options.modifiers ?? [];
  for (const m of modifiers) {
    if (!TOKEN.test(m)) throw new HispError('HISP_USAGE', `disposition modifier is not a token: ${JSON.stringify(m)}`);
  }
  const from = mailbox(original.to, 'the final recipient (original To)');
  const to = mailboxes(original.dispositionNotificationTo ?? original.from, 'the MDN recipient');
  const finalRecipient = mailbox(options.finalRecipient ?? original.to, 'Final-Recipient');
  const originalRecipient = original.originalRecipient === undefined ? undefined : mailbox(original.originalRecipient, 'Original-Recipient');
  const originalId = msgIdForHeader(original.messageId, 'the original Message-ID');
  const ua = typeof options.reportingUa === 'string' ? { name: options.reportingUa } : options.reportingUa;
  const uaName = oneLine(ua.name, 200);
  if (uaName === '') throw new HispError('HISP_USAGE', 'Reporting-UA name is empty');
  const uaProduct = ua.product === undefined ? '' : oneLine(ua.product, 200);

  const domain = from.slice(from.lastIndexOf('@') + 1);
  const idSource = options.messageId ?? (() => `<${randomBytes(16).toString('hex')}@${domain}>`);
  const messageId = msgIdForHeader(typeof idSource === 'function' ? idSource() : idSource, 'the MDN Message-ID');
  const date = options.date ?? new Date();
  const boundary = options.boundary ?? freshBoundary('hisp_mdn');
  if (!/^[0-9A-Za-z'()+_,\-./=?]{1,70}$/.test(boundary)) throw new HispError('HISP_USAGE', 'invalid multipart boundary');

  const originalSubject = original.subject ?? originalHeader(original.headers, 'subject');
  const label = disposition[0]!.toUpperCase() + disposition.slice(1);
  const subject = options.subject ?? (originalSubject ? `${label}: ${originalSubject}` : label);

  const failure = options.failure ?? (disposition === 'failed' ? `the message could not be delivered to ${finalRecipient}` : undefined);
  const mode = options.mode === 'manual' ? 'manual-action/MDN-sent-manually' : 'automatic-action/MDN-sent-automatically';
  const dispositionValue = `${mode}; ${disposition}${modifiers.length > 0 ? `/${modifiers.join(',')}` : ''}`;

  // RFC 8098 §3.1 field order: Reporting-UA, Original-Recipient, Final-Recipient, Original-Message-ID,
  // Disposition, Failure, Error, Warning, extension fields.
  let fields = headerLine('Reporting-UA', uaProduct === '' ? uaName : `${uaName}; ${uaProduct}`);
  if (originalRecipient !== undefined) fields += headerLine('Original-Recipient', `rfc822; ${originalRecipient}`);
  fields += headerLine('Final-Recipient', `rfc822; ${finalRecipient}`);
  fields += headerLine('Original-Message-ID', originalId);
  fields += headerLine('Disposition', dispositionValue);
  if (failure !== undefined) fields += headerLine('Failure', failure);
  if (options.error !== undefined) fields += headerLine('Error', options.error);
  if (options.warning !== undefined) fields += headerLine('Warning', options.warning);
  if (options.finalDeliveryExtension && FINAL_DELIVERY_DISPOSITIONS.has(disposition)) {
    fields += `${FINAL_DELIVERY_OPTION}:${CRLF}`;
  }

  const human = options.humanText ?? defaultText(disposition, originalId, finalRecipient, uaName, failure);
  const parts: (string | Buffer)[] = [
    textPart(human),
    // Free text (Failure, Error) may be UTF-8: the part is then 8bit (RFC 2045 §2.8).
    `Content-Type: message/disposition-notification${CRLF}Content-Transfer-Encoding: ${isAscii(Buffer.from(fields)) ? '7bit' : '8bit'}${CRLF}${CRLF}${fields}`,
  ];
  if (original.headers !== undefined) parts.push(rfc822HeadersPart(original.headers));

  const head =
    headerLine('From', from) +
    headerLine('To', to.join(', ')) +
    headerLine('Subject', subject, true) +
    headerLine('Date', rfc5322Date(date)) +
    headerLine('Message-ID', messageId) +
    headerLine('In-Reply-To', originalId) +
    headerLine('References', originalId) +
    `MIME-Version: 1.0${CRLF}` +
    `Content-Type: multipart/report; report-type=disposition-notification;${CRLF} boundary="${boundary}"${CRLF}`;
  return { message: assembleMultipart(head, boundary, parts), messageId };
}

function defaultText(disposition: MdnDisposition, id: string, recipient: string, ua: string, failure: string | undefined): string {
  switch (disposition) {
    case 'processed':
      return `Your message ${id} was received for ${recipient}, decrypted and its signature verified by ${ua}.`;
    case 'dispatched':
      return `Your message ${id} was delivered to ${recipient}.`;
    case 'failed':
      return `Your message ${id} could not be delivered to ${recipient}.\r\nReason: ${oneLine(failure ?? 'unknown')}`;
    case 'displayed':
      return `Your message ${id} to ${recipient} was displayed.`;
    case 'deleted':
      return `Your message ${id} to ${recipient} was deleted without being displayed.`;
  }
}

/** Which MDNs to send for a received message, from its Disposition-Notification-Options. */
export interface MdnPlan {
  /** Send a processed MDN once the message is decrypted and trusted (R-MDN-1). */
  processed: boolean;
  /** Send a dispatched MDN (or a failed one) once it is delivered (or cannot be) to the final destination (R-MDN-5). */
  dispatched: boolean;
  /** Pass to buildMdn: the request was valid (R-MDN-6; false for a malformed one, ETT MT 40). */
  finalDeliveryExtension: boolean;
  /**
   * Set when a required option is not understood: RFC 8098 §2.2 then allows only a failed MDN,
   * with this Failure text; `processed` and `dispatched` are false.
   */
  failedOnly?: string;
}

/**
 * The MDNs a receiving HISP owes: a processed MDN always (Direct sends it whether or not
 * Disposition-Notification-To is present), a dispatched one when final-destination delivery was
 * validly requested; only a failed one when a required option is not understood.
 */
export function planMdns(options: NotificationOptions): MdnPlan {
  const failedOnly = unsupportedRequiredFailure(options);
  if (failedOnly !== undefined) return { processed: false, dispatched: false, finalDeliveryExtension: false, failedOnly };
  return {
    processed: true,
    dispatched: options.finalDeliveryRequested,
    finalDeliveryExtension: options.finalDeliveryRequested,
  };
}

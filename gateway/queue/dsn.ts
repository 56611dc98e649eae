import { isAscii } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { HispError, isHispError, type HispErrorCode } from '../core/errors.js';
import {
  assembleMultipart,
  CRLF,
  freshBoundary,
  headerLine,
  mailbox,
  msgIdForHeader,
  oneLine,
  originalHeader,
  rfc822HeadersPart,
  textPart,
} from '../mdn/report-mime.js';
import { replyForError } from '../smtp/reply-mapping.js';
import { rfc5322Date } from '../core/rfc5322-date.js';

/**
 * Delivery Status Notifications (RFC 3464, in the multipart/report of RFC 6522; status codes of
 * RFC 3463; ENVID and ORCPT of RFC 3461): what the sending HISP returns to the originator when a
 * recipient fails (R-MDN-7, R-DSN-1: unknown address, untrusted receiving HISP, no certificate, no
 * processed or dispatched MDN in time). Each recipient carries a sentence the edge user can read,
 * in the human-readable part and in the Diagnostic-Code.
 */

export type DsnAction = 'failed' | 'delayed' | 'delivered' | 'relayed' | 'expanded';

const ACTION_CLASS: Readonly<Record<DsnAction, string>> = {
  failed: '5',
  delayed: '4',
  delivered: '2',
  relayed: '2',
  expanded: '2',
};

export interface DsnRecipient {
  /** The recipient address (Final-Recipient: rfc822; …). */
  finalRecipient: string;
  /** The original recipient (ORCPT, RFC 3461 §4.2), when the sender gave one. */
  originalRecipient?: string;
  action: DsnAction;
  /** RFC 3463 status `class.subject.detail`; its class must match the action (5 failed, 4 delayed, 2 otherwise). */
  status: string;
  /** Diagnostic-Code (RFC 3464 §2.3.6): `{ type: 'smtp', text: '550 5.1.1 …' }`. */
  diagnosticCode?: { type: string; text: string };
  /** Remote-MTA host name (the peer that answered), when there was one. */
  remoteMta?: string;
  lastAttemptDate?: Date;
  willRetryUntil?: Date;
  /** One sentence for the edge user (the human-readable part); default from the status. */
  reason?: string;
}

export interface BuildDsnOptions {
  /** Host name of the reporting MTA (Reporting-MTA: dns; host). */
  reportingMta: string;
  /** ENVID of the original transaction (RFC 3461 §4.4), written as received. */
  originalEnvelopeId?: string;
  /** When the original message arrived. */
  arrivalDate?: Date;
  recipients: readonly DsnRecipient[];
  /** Header section (or whole message) of the original: returned as text/rfc822-headers. */
  originalHeaders?: Buffer;
  /** Message-ID of the original (In-Reply-To, X-Original-Message-Id); default from originalHeaders. */
  originalMessageId?: string;
  /** Subject of the original; default from originalHeaders. */
  originalSubject?: string;
  /** The originator (the DSN's To). */
  to: string;
  /** The DSN's From, e.g. mailer-daemon@<domain>. */
  from: string;
  /** Human-readable text; default an explanation built from the recipients' reasons. */
  humanText?: string;
  subject?: string;
  date?: Date;
  messageId?: string | (() => string);
  /** Multipart boundary (tests); default a fresh random one. */
  boundary?: string;
}

export interface BuiltDsn {
  /** The DSN, CRLF line ends. */
  message: Buffer;
  messageId: string;
}

const STATUS = /^[245]\.\d{1,3}\.\d{1,3}$/;
const HOST = /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\.?$|^\[[0-9A-Fa-f:.]+\]$/;

/** Builds a DSN. Throws HISP_USAGE for options that cannot make one (no recipient, status not matching the action, …). */
export function buildDsn(options: BuildDsnOptions): BuiltDsn {
  if (options.recipients.length === 0) throw new HispError('HISP_USAGE', 'a DSN needs at least one recipient');
  const reportingMta = oneLine(options.reportingMta, 255);
  if (!HOST.test(reportingMta)) throw new HispError('HISP_USAGE', `Reporting-MTA is not a host name: ${JSON.stringify(reportingMta)}`);
  const from = mailbox(options.from, 'the DSN sender');
  const to = mailbox(options.to, 'the originator');
  const originalMessageIdRaw = options.originalMessageId ?? originalHeader(options.originalHeaders, 'message-id');
  const originalMessageId = originalMessageIdRaw === undefined ? undefined : msgIdForHeader(originalMessageIdRaw, 'the original Message-ID');
  const originalSubject = options.originalSubject ?? originalHeader(options.originalHeaders, 'subject');

  const recipients = options.recipients.map((r) => checkRecipient(r));
  const domain = from.slice(from.lastIndexOf('@') + 1);
  const idSource = options.messageId ?? (() => `<${randomBytes(16).toString('hex')}@${domain}>`);
  const messageId = msgIdForHeader(typeof idSource === 'function' ? idSource() : idSource, 'the DSN Message-ID');
  const date = options.date ?? new Date();
  const boundary = options.boundary ?? freshBoundary('hisp_dsn');
  if (!/^[0-9A-Za-z'()+_,\-./=?]{1,70}$/.test(boundary)) throw new HispError('HISP_USAGE', 'invalid multipart boundary');

  // RFC 3464 §2.2 per-message fields, in the ABNF's order; the X- field is the Java and .NET RIs'
  // correlation aid (X-CERN-Original-Message-Id, X-Original-Message-Id).
  let fields = '';
  if (options.originalEnvelopeId !== undefined) fields += headerLine('Original-Envelope-Id', oneLine(options.originalEnvelopeId, 100));
  fields += headerLine('Reporting-MTA', `dns; ${reportingMta}`);
  if (options.arrivalDate !== undefined) fields += headerLine('Arrival-Date', rfc5322Date(options.arrivalDate));
  if (originalMessageId !== undefined) fields += headerLine('X-Original-Message-Id', originalMessageId);
  for (const r of recipients) {
    // RFC 3464 §2.3 per-recipient fields, each group after an empty line.
    fields += CRLF;
    if (r.originalRecipient !== undefined) fields += headerLine('Original-Recipient', `rfc822; ${r.originalRecipient}`);
    fields += headerLine('Final-Recipient', `rfc822; ${r.finalRecipient}`);
    fields += headerLine('Action', r.action);
    fields += headerLine('Status', r.status);
    if (r.remoteMta !== undefined) fields += headerLine('Remote-MTA', `dns; ${r.remoteMta}`);
    if (r.diagnosticCode !== undefined) fields += headerLine('Diagnostic-Code', `${r.diagnosticCode.type}; ${r.diagnosticCode.text}`);
    if (r.lastAttemptDate !== undefined) fields += headerLine('Last-Attempt-Date', rfc5322Date(r.lastAttemptDate));
    if (r.willRetryUntil !== undefined) fields += headerLine('Will-Retry-Until', rfc5322Date(r.willRetryUntil));
  }

  const human = options.humanText ?? defaultText(reportingMta, originalMessageId, originalSubject, recipients);
  const parts: (string | Buffer)[] = [
    textPart(human),
    `Content-Type: message/delivery-status${CRLF}Content-Transfer-Encoding: ${isAscii(Buffer.from(fields)) ? '7bit' : '8bit'}${CRLF}${CRLF}${fields}`,
  ];
  if (options.originalHeaders !== undefined) parts.push(rfc822HeadersPart(options.originalHeaders));

  let head =
    headerLine('From', from) +
    headerLine('To', to) +
    headerLine('Subject', options.subject ?? defaultSubject(recipients, originalSubject), true) +
    headerLine('Date', rfc5322Date(date)) +
    headerLine('Message-ID', messageId);
  if (originalMessageId !== undefined) head += headerLine('In-Reply-To', originalMessageId) + headerLine('References', originalMessageId);
  head +=
    // RFC 3834 §5: an automatic response; no auto-responder (nor an MDN, R-MDN-2) answers it.
    `Auto-Submitted: auto-replied${CRLF}` +
    `MIME-Version: 1.0${CRLF}` +
    `Content-Type: multipart/report; report-type=delivery-status;${CRLF} boundary="${boundary}"${CRLF}`;
  return { message: assembleMultipart(head, boundary, parts), messageId };
}

interface CheckedRecipient extends DsnRecipient {
  reason: string;
}

function checkRecipient(r: DsnRecipient): CheckedRecipient {
  if (!(r.action in ACTION_CLASS)) throw new HispError('HISP_USAGE', `unknown DSN action ${JSON.stringify(r.action)}`);
  if (!STATUS.test(r.status)) throw new HispError('HISP_USAGE', `DSN status is not class.subject.detail: ${JSON.stringify(r.status)}`);
  if (r.status[0] !== ACTION_CLASS[r.action]) {
    throw new HispError('HISP_USAGE', `DSN status ${r.status} does not fit action ${r.action} (RFC 3464 §2.3.4)`);
  }
  const out: CheckedRecipient = {
    finalRecipient: mailbox(r.finalRecipient, 'Final-Recipient'),
    action: r.action,
    status: r.status,
    reason: oneLine(r.reason ?? statusText(r.status), 500),
  };
  if (r.originalRecipient !== undefined) out.originalRecipient = mailbox(r.originalRecipient, 'Original-Recipient');
  if (r.diagnosticCode !== undefined) {
    const type = oneLine(r.diagnosticCode.type, 40);
    if (!/^[A-Za-z0-9-]+$/.test(type)) throw new HispError('HISP_USAGE', `diagnostic type is not a token: ${JSON.stringify(type)}`);
    out.diagnosticCode = { type, text: oneLine(r.diagnosticCode.text) };
  }
  if (r.remoteMta !== undefined) {
    const host = oneLine(r.remoteMta, 255);
    if (!HOST.test(host)) throw new HispError('HISP_USAGE', `Remote-MTA is not a host name: ${JSON.stringify(host)}`);
    out.remoteMta = host;
  }
  if (r.lastAttemptDate !== undefined) out.lastAttemptDate = r.lastAttemptDate;
  if (r.willRetryUntil !== undefined) out.willRetryUntil = r.willRetryUntil;
  return out;
}

function defaultSubject(recipients: readonly CheckedRecipient[], originalSubject: string | undefined): string {
  const worst = recipients.some((r) => r.action === 'failed') ? 'failed' : recipients.some((r) => r.action === 'delayed') ? 'delayed' : 'delivered';
  const label = { failed: 'Undeliverable', delayed: 'Delayed', delivered: 'Delivered' }[worst];
  const generic = { failed: 'Delivery Status Notification (Failure)', delayed: 'Delivery Status Notification (Delay)', delivered: 'Delivery Status Notification (Success)' }[worst];
  return originalSubject ? `${label}: ${originalSubject}` : generic;
}

function defaultText(
  host: string,
  messageId: string | undefined,
  subject: string | undefined,
  recipients: readonly CheckedRecipient[],
): string {
  const what = `Your message${messageId ? ` ${messageId}` : ''}${subject ? ` ("${oneLine(subject, 200)}")` : ''}`;
  const lines = [`This is the Direct messaging system at ${host}.`, ''];
  const group = (action: DsnAction[], intro: string, outro?: string) => {
    const rs = recipients.filter((r) => action.includes(r.action));
    if (rs.length === 0) return;
    lines.push(intro, '');
    for (const r of rs) lines.push(`  ${r.finalRecipient}: ${r.reason}`);
    lines.push('');
    if (outro) lines.push(outro, '');
  };
  group(['failed'], `${what} could not be delivered to:`, 'No further attempts will be made to deliver it to these recipients.');
  group(['delayed'], `${what} has not been delivered yet to:`, 'Delivery will be attempted again; you will be told if it fails.');
  group(['delivered', 'relayed', 'expanded'], `${what} was delivered to:`);
  return lines.join('\r\n');
}

/** RFC 3463 subject and detail texts for statuses hisp writes (a fallback reason). */
function statusText(status: string): string {
  const detail = status.slice(2);
  const texts: Record<string, string> = {
    '0.0': 'delivery failed',
    '1.1': 'the mailbox does not exist',
    '1.2': 'the destination domain does not exist or accepts no mail',
    '4.7': 'delivery time expired',
    '7.1': 'delivery was not authorized (the recipient is not trusted)',
    '7.5': 'a cryptographic failure (no usable certificate)',
  };
  return texts[detail] ?? `delivery status ${status}`;
}

// ------------------------------------------------------------------------------------------------
// The failures of R-MDN-7 as DSN recipients

/** Why a recipient failed, in the terms of R-MDN-7 and ETT MT 1–12, 23–29. */
export type RecipientFailure =
  /** No certificate published for the recipient (address- or domain-bound) in DNS or LDAP. */
  | { kind: 'no-certificate' }
  /** Certificates found, but none valid and trusted: the receiving HISP is not trusted. */
  | { kind: 'untrusted'; detail?: string }
  /** No processed (or, when requested, dispatched) MDN within the time-out (R-MDN-8). */
  | { kind: 'mdn-timeout'; awaited: 'processed' | 'dispatched'; minutes: number }
  /** The recipient's HISP answered with a failed MDN. */
  | { kind: 'failed-mdn'; failure?: string }
  /** The remote server refused the message or recipient (e.g. 550 5.1.1: no such address). */
  | { kind: 'rejected'; reply: { code: number; enhanced?: string; text: string }; remoteMta?: string }
  /** Retries ran out (transient failures until the queue's lifetime ended). */
  | { kind: 'expired'; hours: number; lastError?: string }
  /** Any other failure, e.g. a HispError from discovery, trust or the agent. */
  | { kind: 'error'; error: unknown };

export interface FailedRecipientOptions {
  originalRecipient?: string;
  lastAttemptDate?: Date;
}

/** Friendly texts for error codes an edge user may meet (the SMTP reply table gives the status). */
const ERROR_REASON: Partial<Record<HispErrorCode, (address: string) => string>> = {
  HISP_DISCOVERY_NO_CERT: (a) => `no certificate found for ${a}, so the message could not be encrypted for this recipient`,
  HISP_DISCOVERY_NO_VALID_CERT: (a) => `certificates are published for ${a}, but none is valid and trusted: the recipient's HISP is not trusted`,
  HISP_DISCOVERY_TEMPORARY: (a) => `the certificate of ${a} could not be looked up (DNS or LDAP kept failing)`,
  HISP_TRUST_NO_ANCHOR: () => "the recipient's HISP is not trusted (its certificate does not chain to a trust anchor)",
  HISP_TRUST_EXPIRED: () => "the recipient's certificate or one of its issuers has expired",
  HISP_TRUST_REVOKED: () => "the recipient's certificate has been revoked",
  HISP_TRUST_BINDING_MISMATCH: (a) => `the certificate found is not bound to ${a}`,
};

/**
 * A failed DSN recipient for one of the R-MDN-7 failures, with an RFC 3463 status, a Diagnostic-Code
 * and a reason the edge user can read ("no certificate found for bob@example.org", "the recipient's
 * HISP is not trusted", "no processed MDN within 60 minutes").
 */
export function failedRecipient(address: string, failure: RecipientFailure, options: FailedRecipientOptions = {}): DsnRecipient {
  const a = mailbox(address, 'the recipient');
  const r = describe(a, failure);
  const out: DsnRecipient = {
    finalRecipient: a,
    action: 'failed',
    status: r.status,
    diagnosticCode: { type: 'smtp', text: r.diagnostic ?? `${r.code} ${r.status} ${r.reason}` },
    reason: r.reason,
  };
  if (r.remoteMta !== undefined) out.remoteMta = r.remoteMta;
  if (options.originalRecipient !== undefined) out.originalRecipient = options.originalRecipient;
  if (options.lastAttemptDate !== undefined) out.lastAttemptDate = options.lastAttemptDate;
  return out;
}

interface Described {
  status: string;
  code: number;
  reason: string;
  diagnostic?: string;
  remoteMta?: string;
}

function describe(address: string, failure: RecipientFailure): Described {
  switch (failure.kind) {
    case 'no-certificate':
      return { status: '5.7.5', code: 554, reason: ERROR_REASON.HISP_DISCOVERY_NO_CERT!(address) };
    case 'untrusted':
      return {
        status: '5.7.1',
        code: 554,
        reason: `the recipient's HISP is not trusted${failure.detail ? ` (${oneLine(failure.detail, 200)})` : ''}`,
      };
    case 'mdn-timeout':
      return {
        status: '5.4.7',
        code: 554,
        reason:
          failure.awaited === 'processed'
            ? `no processed MDN within ${failure.minutes} minutes: the recipient's HISP did not confirm receipt`
            : `no dispatched MDN within ${failure.minutes} minutes: delivery to ${address} was not confirmed`,
      };
    case 'failed-mdn':
      return {
        status: '5.0.0',
        code: 554,
        reason: `the recipient's HISP reported that delivery failed${failure.failure ? `: ${oneLine(failure.failure, 300)}` : ''}`,
      };
    case 'rejected': {
      const { code, text } = failure.reply;
      const enhanced = failure.reply.enhanced !== undefined && STATUS.test(failure.reply.enhanced) ? failure.reply.enhanced : undefined;
      // A refusal ends here even when the peer said 4xx (the caller decided to give up).
      const status = enhanced !== undefined ? `5${enhanced.slice(1)}` : code === 550 || code === 551 || code === 553 ? '5.1.1' : '5.0.0';
      const out: Described = {
        status,
        code,
        reason: `the recipient's server refused the message: ${oneLine(`${code}${enhanced ? ` ${enhanced}` : ''} ${text}`, 300)}`,
        diagnostic: oneLine(`${code}${enhanced ? ` ${enhanced}` : ''} ${text}`),
      };
      if (failure.remoteMta !== undefined) out.remoteMta = failure.remoteMta;
      return out;
    }
    case 'expired':
      return {
        status: '5.4.7',
        code: 554,
        reason: `delivery was attempted for ${failure.hours} hours without success${failure.lastError ? ` (last error: ${oneLine(failure.lastError, 200)})` : ''}`,
      };
    case 'error': {
      const reply = replyForError(failure.error);
      const status = `5${reply.enhanced.slice(1)}`;
      const err = failure.error;
      const friendly = isHispError(err) ? ERROR_REASON[err.code]?.(address) : undefined;
      const reason = friendly ?? (isHispError(err) ? oneLine(err.message, 300) : 'a local error occurred while processing the message');
      return { status, code: reply.code >= 500 ? reply.code : 554, reason };
    }
  }
}

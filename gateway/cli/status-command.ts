import type { Command } from 'commander';
import { HispError } from '../core/errors.js';
import type { DeliveryStatus, MessageStatus } from '../queue/outbound-queue.js';
import { normalizeAddress, type TrackingEntry, type TrackingState } from '../store/tracking-store.js';
import { addDataOptions, withOperatorStores, writeJson, type DataFlags, type OperatorStores } from './data-options.js';

/**
 * One message as `hisp status --json` reports it (the top level and each element of its
 * `messages`, see {@link StatusReport}), and each element of `hisp queue list --json`'s `messages`:
 * a contract scripts rely on; fields may be added, never renamed or removed. Times are ISO-8601 UTC
 * strings, null when absent.
 *
 * {
 *   "queueId": "0190f3c2a1b2001f3a9c4e",
 *   "messageId": "abc@sender.example" | null,        // without <>
 *   "direction": "outbound" | "inbound",
 *   "mailFrom": "doc@sender.example",                // "" for the null reverse-path (a DSN)
 *   "recipients": ["patient@recipient.example"],     // the envelope, in RCPT order
 *   "submittedBy": "ehr" | null,                     // the authenticated SMTP user
 *   "receivedAt": "2025-06-01T12:00:00.000Z",
 *   "size": 12345,                                   // body bytes
 *   "deliveries": [{
 *     "recipient": "patient@recipient.example",
 *     "state": "queued" | "deferred" | "leased" | "delivered" | "failed",
 *     "attempts": 2,                                 // tries that ended with a reply
 *     "lastAttemptAt": "…" | null,
 *     "nextAttemptAt": "…" | null,                   // queued/deferred only (a past time: due now)
 *     "leasedBy": "worker-1" | null,                 // leased: the worker delivering it now…
 *     "leasedUntil": "…" | null,                     // …and until when its lease runs
 *     "finishedAt": "…" | null,                      // delivered or failed
 *     "lastReply": { "code": 451, "enhanced": "4.4.1" | null, "text": "…" } | null,
 *     "dsnQueuedAt": "…" | null,                     // failed: when the DSN to the sender was queued
 *     "dsnError": "…" | null,                        // failed: why the DSN could not be queued…
 *     "dsnRetryAt": "…" | null,                      // …and when it is tried again (null: never: tell the sender yourself)
 *     "mdn": {                                       // MDN tracking of a relayed message, else null
 *       "state": "awaiting-processed" | "awaiting-dispatched" | "processed" | "dispatched" | "failed" | "timed-out",
 *       "dispatchedRequested": true,                 // timely and reliable delivery was asked for
 *       "sentAt": "…",
 *       "processedAt": "…" | null, "processedLate": false,
 *       "dispatchedAt": "…" | null, "dispatchedLate": false,
 *       "failedAt": "…" | null, "failedLate": false,
 *       "failureNote": "unauthenticated DSN from mx.example" | null,
 *       "timedOut": "processed" | "dispatched" | null, "timedOutAt": "…" | null,
 *       "nextDeadline": "…" | null,                  // the deadline still pending
 *       "noticeError": "…" | null                    // why the time-out's notice could not be queued
 *     } | null
 *   }]
 * }
 *
 * States: queued (waiting for its first try, or due), deferred (tried, waiting for the next try),
 * leased (a worker is delivering it now), delivered and failed (final).
 */
export interface MessageReport {
  queueId: string;
  messageId: string | null;
  direction: 'outbound' | 'inbound';
  mailFrom: string;
  recipients: string[];
  submittedBy: string | null;
  receivedAt: string;
  size: number;
  deliveries: DeliveryReport[];
}

export type DeliveryReportState = 'queued' | 'deferred' | 'leased' | 'delivered' | 'failed';

export interface DeliveryReport {
  recipient: string;
  state: DeliveryReportState;
  attempts: number;
  lastAttemptAt: string | null;
  nextAttemptAt: string | null;
  leasedBy: string | null;
  leasedUntil: string | null;
  finishedAt: string | null;
  lastReply: { code: number; enhanced: string | null; text: string } | null;
  dsnQueuedAt: string | null;
  dsnError: string | null;
  dsnRetryAt: string | null;
  mdn: MdnReport | null;
}

export interface MdnReport {
  state: TrackingState;
  dispatchedRequested: boolean;
  sentAt: string;
  processedAt: string | null;
  processedLate: boolean;
  dispatchedAt: string | null;
  dispatchedLate: boolean;
  failedAt: string | null;
  failedLate: boolean;
  failureNote: string | null;
  timedOut: 'processed' | 'dispatched' | null;
  timedOutAt: string | null;
  nextDeadline: string | null;
  noticeError: string | null;
}

export function registerStatus(program: Command): void {
  addDataOptions(
    program
      .command('status')
      .argument('<message-id>', 'a Message-ID (with or without <>) or a queue id')
      .summary("show every recipient's delivery state, times, last remote reply and MDN tracking")
      .description(
        'Looks the message up by queue id, else by Message-ID: every message carrying it, the sent copies first, ' +
          'then the received ones (a message to a local address is both). Shows each recipient: queued, deferred, ' +
          'leased (being delivered), delivered or failed; attempts; the last, next and final times; the last reply of the remote server; when the DSN was sent; and the ' +
          'MDN tracking (processed / dispatched / failed / timed out). Exit 1 when no message matches.',
      ),
  ).action(async (ref: string, flags: DataFlags) => {
    await withOperatorStores(flags, async (stores) => {
      const { shown, more } = await messagesFor(stores, ref.trim());
      if (shown.length === 0) throw notFound(ref);
      const reports = shown.map((status) => messageReport(status, stores.tracking.forQueueId(status.queueId)));
      if (flags.json) {
        const report: StatusReport = { ...reports[0]!, messages: reports };
        writeJson(report);
        return;
      }
      const blocks = reports.map((r) => {
        const quarantined = stores.quarantine.get(r.queueId);
        const notes =
          quarantined === undefined
            ? []
            : [`quarantined ${quarantined.quarantinedAt.toISOString()}: ${quarantined.reasonCode}: ${quarantined.detail} (see hisp quarantine show ${r.queueId})`];
        return readableStatus(r, Date.now(), notes);
      });
      const head =
        reports.length === 1
          ? ''
          : `${reports.length + more.length} messages carry this Message-ID (sent first, newest first in each direction)` +
            `${more.length === 0 ? '' : `; the ${more.length} not shown: ${more.join(', ')}`}\n\n`;
      process.stdout.write(head + blocks.join('\n'));
    });
  });
}

/** How many messages with one Message-ID are shown in full (`messages` of the JSON report too). */
const MAX_SHOWN = 20;

/**
 * The `--json` report of `hisp status`: the first message's {@link MessageReport} fields, as before
 * (so scripts keep working), and `messages`, every message the reference names (up to 20), the
 * first one included: for a Message-ID, the sent copies (outbound) first, then the received ones
 * (inbound), each direction newest first. A message sent to a local address is stored twice under
 * its Message-ID: the sent copy relayed to the domain, the received copy delivered there.
 */
export interface StatusReport extends MessageReport {
  messages: MessageReport[];
}

/**
 * The messages a reference names: the message with that queue id; else every message carrying that
 * Message-ID, sent (outbound) before received (inbound), newest first within each direction. The
 * first {@link MAX_SHOWN} in full, the queue ids of the others.
 */
async function messagesFor(stores: OperatorStores, ref: string): Promise<{ shown: MessageStatus[]; more: string[] }> {
  const byQueueId = stores.queue.messages.has(ref) ? await stores.queue.get(ref) : undefined;
  if (byQueueId !== undefined) return { shown: [byQueueId], more: [] };
  const stored = stores.queue.messages.findByMessageId(ref); // newest first
  const ordered = [...stored.filter((m) => m.direction === 'outbound'), ...stored.filter((m) => m.direction !== 'outbound')].map((m) => m.queueId);
  const shown: MessageStatus[] = [];
  for (const queueId of ordered.slice(0, MAX_SHOWN)) {
    const status = await stores.queue.get(queueId);
    if (status !== undefined) shown.push(status);
  }
  return { shown, more: ordered.slice(MAX_SHOWN) };
}

/** HISP_NOT_FOUND for a reference that names no queued message. */
export function notFound(ref: string): HispError {
  return new HispError('HISP_NOT_FOUND', `no message with queue id or Message-ID ${JSON.stringify(ref)}`, { details: { id: ref } });
}

/** A queue status with its MDN tracking entries, as the JSON contract above. */
export function messageReport(status: MessageStatus, tracking: readonly TrackingEntry[]): MessageReport {
  const byRecipient = new Map(tracking.map((t) => [t.recipient, t]));
  return {
    queueId: status.queueId,
    messageId: status.messageId,
    direction: status.direction,
    mailFrom: status.mailFrom,
    recipients: [...status.recipients],
    submittedBy: status.submittedBy,
    receivedAt: status.receivedAt.toISOString(),
    size: status.size,
    deliveries: status.deliveries.map((d) => deliveryReport(d, byRecipient.get(normalizeAddress(d.recipient)))),
  };
}

/** The state an operator reads: the queue's three states with queued split by what it waits for. */
export function deliveryState(d: DeliveryStatus): DeliveryReportState {
  if (d.state !== 'queued') return d.state;
  if (d.leasedBy !== null) return 'leased';
  return d.attempts > 0 ? 'deferred' : 'queued';
}

function deliveryReport(d: DeliveryStatus, mdn: TrackingEntry | undefined): DeliveryReport {
  return {
    recipient: d.recipient,
    state: deliveryState(d),
    attempts: d.attempts,
    lastAttemptAt: iso(d.lastAttemptAt),
    nextAttemptAt: iso(d.nextAttemptAt),
    leasedBy: d.leasedBy,
    leasedUntil: iso(d.leasedUntil),
    finishedAt: iso(d.finishedAt),
    lastReply: d.lastReply === null ? null : { code: d.lastReply.code, enhanced: d.lastReply.enhanced ?? null, text: d.lastReply.text },
    dsnQueuedAt: iso(d.dsnQueuedAt),
    dsnError: d.dsnError,
    dsnRetryAt: iso(d.dsnRetryAt),
    mdn: mdn === undefined ? null : mdnReport(mdn),
  };
}

function mdnReport(t: TrackingEntry): MdnReport {
  return {
    state: t.state,
    dispatchedRequested: t.dispatchedRequested,
    sentAt: t.sentAt.toISOString(),
    processedAt: iso(t.processedAt),
    processedLate: t.processedLate,
    dispatchedAt: iso(t.dispatchedAt),
    dispatchedLate: t.dispatchedLate,
    failedAt: iso(t.failedAt),
    failedLate: t.failedLate,
    failureNote: t.failureNote,
    timedOut: t.timedOut,
    timedOutAt: iso(t.timedOutAt),
    nextDeadline: iso(t.nextDeadline),
    noticeError: t.noticeError,
  };
}

function readableStatus(r: MessageReport, now: number, notes: readonly string[]): string {
  const lines = [`message ${r.queueId}${r.messageId === null ? '' : `  <${printable(r.messageId)}>`}`];
  lines.push(`  direction     ${r.direction}`);
  lines.push(`  from          ${sender(r.mailFrom)}${r.submittedBy === null ? '' : ` (submitted by ${printable(r.submittedBy)})`}`);
  lines.push(`  received      ${when(r.receivedAt, now)}`);
  lines.push(`  size          ${r.size} bytes`);
  lines.push(`  recipients    ${r.recipients.length}`);
  for (const note of notes) lines.push(`  note          ${printable(note)}`);
  for (const d of r.deliveries) {
    lines.push('', `  ${printable(d.recipient)}: ${d.state}`);
    lines.push(`    attempts      ${d.attempts}`);
    if (d.lastAttemptAt !== null) lines.push(`    last attempt  ${when(d.lastAttemptAt, now)}`);
    if (d.nextAttemptAt !== null) lines.push(`    next attempt  ${when(d.nextAttemptAt, now)}`);
    if (d.leasedBy !== null) lines.push(`    in flight     ${printable(d.leasedBy)}, lease until ${when(d.leasedUntil, now)}`);
    if (d.finishedAt !== null) lines.push(`    finished      ${when(d.finishedAt, now)}`);
    lines.push(`    last reply    ${replyText(d.lastReply)}`);
    if (d.state === 'failed') lines.push(`    DSN sent      ${dsnText(d, now)}`);
    if (d.mdn !== null) lines.push(...mdnLines(d.mdn, now));
  }
  if (r.deliveries.length === 0) lines.push('', '  (no deliveries)');
  return `${lines.join('\n')}\n`;
}

/** Where the failure notice of a failed delivery stands; one that can never be sent says so (issue 14, item 1). */
function dsnText(d: DeliveryReport, now: number): string {
  if (d.dsnQueuedAt !== null) return when(d.dsnQueuedAt, now);
  if (d.dsnError === null) return 'not yet (the gateway queues it)';
  if (d.dsnRetryAt !== null) return `not yet: ${printable(d.dsnError)}; tried again ${when(d.dsnRetryAt, now)}`;
  return `NEVER: ${printable(d.dsnError)} (tell the sender yourself)`;
}

function mdnLines(m: MdnReport, now: number): string[] {
  const lines = [`    MDN           ${m.state}${m.dispatchedRequested ? ' (dispatched requested)' : ''}`];
  const late = (flag: boolean) => (flag ? ' (late)' : '');
  if (m.processedAt !== null) lines.push(`      processed   ${when(m.processedAt, now)}${late(m.processedLate)}`);
  if (m.dispatchedAt !== null) lines.push(`      dispatched  ${when(m.dispatchedAt, now)}${late(m.dispatchedLate)}`);
  if (m.failedAt !== null) {
    lines.push(`      failed      ${when(m.failedAt, now)}${late(m.failedLate)}${m.failureNote === null ? '' : `: ${printable(m.failureNote)}`}`);
  }
  if (m.timedOut !== null) lines.push(`      timed out   waiting for ${m.timedOut}, ${when(m.timedOutAt, now)}`);
  if (m.nextDeadline !== null) lines.push(`      deadline    ${when(m.nextDeadline, now)}`);
  if (m.noticeError !== null) lines.push(`      notice      could not be queued: ${printable(m.noticeError)}`);
  return lines;
}

/** `code enhanced text`, or `-`. */
export function replyText(reply: DeliveryReport['lastReply']): string {
  if (reply === null) return '-';
  return printable([String(reply.code), reply.enhanced, reply.text].filter((p) => p !== null && p !== '').join(' '));
}

/** The reverse-path as written in SMTP: `<>` for the null one. */
export function sender(mailFrom: string): string {
  return mailFrom === '' ? '<>' : printable(mailFrom);
}

/** ISO-8601 or null. */
export function iso(d: Date | null): string | null {
  return d === null ? null : d.toISOString();
}

/** `2025-06-01T12:00:00Z (2h 5m ago)`; `-` for null. */
export function when(isoTime: string | null, now: number): string {
  if (isoTime === null) return '-';
  const t = Date.parse(isoTime);
  const at = isoTime.replace(/\.\d{3}Z$/, 'Z');
  const delta = t - now;
  if (Math.abs(delta) < 1000) return `${at} (now)`;
  return delta < 0 ? `${at} (${duration(-delta)} ago)` : `${at} (in ${duration(delta)})`;
}

/** `45s`, `12m`, `2h 5m`, `3d 4h`. */
export function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 === 0 ? `${h}h` : `${h}h ${m % 60}m`;
  const days = Math.floor(h / 24);
  return h % 24 === 0 ? `${days}d` : `${days}d ${h % 24}h`;
}

/**
 * Text from the outside world (a remote server's reply, an address, a header) made safe for a
 * terminal: control characters (escape sequences, line breaks) shown as `\xNN`.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x08\x0a-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

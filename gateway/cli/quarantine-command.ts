import type { Command } from 'commander';
import { Option } from 'commander';
import { MimeEntity } from '../mime/mime-entity.js';
import { HispError, isHispError } from '../core/errors.js';
import type { QuarantineDropCause, QuarantineDropTally, QuarantineEntry, QuarantineRemoved, QuarantineStore } from '../store/quarantine-store.js';
import { writeOutput } from './cli-io.js';
import { addDataOptions, parseLimit, withOperatorStores, writeJson, type DataFlags } from './data-options.js';
import { duration, printable, sender, when } from './status-command.js';

interface ListFlags extends DataFlags {
  limit: string;
}

interface ShowFlags extends DataFlags {
  raw?: boolean;
}

interface PurgeFlags extends DataFlags {
  olderThan?: string;
  all?: boolean;
  reason?: string;
  dryRun?: boolean;
}

/** How far back `list` reports the entries the gateway dropped by itself. */
const DROPS_SHOWN_DAYS = 30;
const DAY_MS = 86_400_000;

/**
 * The `--json` reports of `hisp quarantine`: contracts scripts rely on (fields may be added, never
 * renamed). Times are ISO-8601 UTC.
 *
 * entry:  { "id": "0190f3c2a1b2001f3a9c4e",          // the stored message's queue id
 *           "quarantinedAt": "2025-06-01T12:00:00.000Z",
 *           "reasonCode": "HISP_SIG_INVALID",         // a HISP_… code as a rule (docs/errors.md)
 *           "detail": "…",
 *           "messageId": "abc@sender.example" | null, // without <>
 *           "direction": "inbound" | "outbound",
 *           "mailFrom": "doc@sender.example",         // "" for the null reverse-path
 *           "recipients": ["patient@recipient.example"],
 *           "receivedAt": "…",
 *           "size": 12345 }                            // bytes of the raw message
 * list:   { "entries": [entry, …],                   newest first, at most --limit
 *           "total": { "entries": 1, "bytes": 12345 },  every entry, whatever --limit
 *           "dropped": { "since": "…",                  what the gateway dropped by itself, from the
 *                        "retention": { "entries": 0, "bytes": 0 },   UTC day 30 days ago: past
 *                        "cap": { "entries": 0, "bytes": 0 } } }      quarantine.retentionDays, over
 *                                                                     quarantine.maxBytes
 * show:   { …entry, "headers": [{ "name": "From", "value": "…" }, …] | null,
 *           "headersError": "…" | null }              headers unfolded, undecoded; null with the reason
 *                                                      when the header section does not parse
 * delete: { "id": "…", "deleted": true }
 * purge:  { "dryRun": false, "olderThanDays": 30 | null, "reasonCode": "…" | null,
 *           "before": "…",                              entries quarantined before this instant
 *           "count": 2, "bytes": 260,                   deleted (dry run: would be)
 *           "entries": [{ "id", "quarantinedAt", "reasonCode", "detail", "mailFrom",
 *                         "messageId", "size" }, …] }   oldest first
 * errors: { "error": { "code": "HISP_NOT_FOUND", "reason": "…" } } (exit 1)
 */
export interface QuarantineEntryReport {
  id: string;
  quarantinedAt: string;
  reasonCode: string;
  detail: string;
  messageId: string | null;
  direction: 'outbound' | 'inbound';
  mailFrom: string;
  recipients: string[];
  receivedAt: string;
  size: number;
}

export interface QuarantineShowReport extends QuarantineEntryReport {
  headers: { name: string; value: string }[] | null;
  headersError: string | null;
}

export interface QuarantineDeleteReport {
  id: string;
  deleted: true;
}

export interface QuarantineListReport {
  entries: QuarantineEntryReport[];
  total: QuarantineDropTally;
  dropped: { since: string } & Record<QuarantineDropCause, QuarantineDropTally>;
}

export interface QuarantinePurgedReport {
  id: string;
  quarantinedAt: string;
  reasonCode: string;
  detail: string;
  mailFrom: string;
  messageId: string | null;
  size: number;
}

export interface QuarantinePurgeReport {
  dryRun: boolean;
  olderThanDays: number | null;
  reasonCode: string | null;
  before: string;
  count: number;
  bytes: number;
  entries: QuarantinePurgedReport[];
}

export function registerQuarantine(program: Command): void {
  const quarantine = program
    .command('quarantine')
    .summary('list, inspect, delete and purge the messages kept instead of delivered')
    .description(
      'Inbound messages the gateway kept for the operator rather than deliver (a signature that does ' +
        'not verify, a sender not trusted…), each with the reason: an error code (docs/errors.md) and ' +
        'its detail. The raw message is kept as received. The gateway drops entries by itself past ' +
        '[quarantine] retentionDays and over maxBytes (oldest first), logging each.',
    );

  addDataOptions(
    quarantine
      .command('list')
      .summary('list quarantined messages, newest first')
      .description(
        'One block per entry: id, when, reason code and detail, sender, recipients, size; then how ' +
          'many there are in all, and how many the gateway dropped by itself in the last 30 days.',
      )
      .option('--limit <n>', 'at most this many entries', '100'),
  ).action(async (flags: ListFlags) => {
    const limit = parseLimit(flags.limit);
    await withOperatorStores(flags, (stores) => {
      const report = listReport(stores.quarantine, limit, Date.now());
      if (flags.json) writeJson(report);
      else process.stdout.write(readableList(report, Date.now()));
      return Promise.resolve();
    });
  });

  addDataOptions(
    quarantine
      .command('show')
      .argument('<id>', 'the entry (its id in hisp quarantine list)')
      .summary('show an entry and the header fields of its raw message')
      .description(
        'Prints the entry and the header section of the message as received (unfolded, not decoded). ' +
          '--raw writes the stored message itself, byte for byte, to stdout instead (forensics: ' +
          '`hisp quarantine show ID --raw > message.eml`). Exit 1 for an unknown id.',
      )
      .addOption(new Option('--raw', 'write the raw stored message to stdout').conflicts('json')),
  ).action(async (id: string, flags: ShowFlags) => {
    await withOperatorStores(flags, async (stores) => {
      const shown = await stores.quarantine.show(id);
      if (shown === undefined) throw notFound(id);
      if (flags.raw) {
        await writeOutput(undefined, shown.raw);
        return;
      }
      const report = showReport(shown.entry, shown.raw);
      if (flags.json) writeJson(report);
      else process.stdout.write(readableShow(report, Date.now()));
    });
  });

  addDataOptions(
    quarantine
      .command('delete')
      .argument('<id>', 'the entry to delete')
      .summary('delete an entry and its raw message')
      .description('Deletes the entry and the message kept with it, for good. Exit 1 for an unknown id.'),
  ).action(async (id: string, flags: DataFlags) => {
    await withOperatorStores(flags, async (stores) => {
      if (!(await stores.quarantine.delete(id))) throw notFound(id);
      if (flags.json) writeJson({ id, deleted: true } satisfies QuarantineDeleteReport);
      else process.stdout.write(`hisp: quarantined message ${id} deleted\n`);
    });
  });

  addDataOptions(
    quarantine
      .command('purge')
      .summary('delete many entries at once: older than some days, or all')
      .description(
        'Deletes the entries quarantined more than DAYS days ago (--older-than), or every entry ' +
          '(--all), oldest first, each with its message, as delete does; --reason keeps to one ' +
          'reason code. --dry-run lists what would be deleted and deletes nothing. Works on a full ' +
          'disk (the data folder keeps a reserve for it). Exit 0 also when nothing matched.',
      )
      .addOption(new Option('--older-than <days>', 'entries quarantined more than this many days ago (0: all up to now)').conflicts('all'))
      .option('--all', 'every entry quarantined up to now')
      .option('--reason <code>', 'only entries with this reason code (HISP_SIG_INVALID…)')
      .option('--dry-run', 'list what would be deleted; delete nothing'),
  ).action(async (flags: PurgeFlags) => {
    const now = Date.now();
    const olderThanDays = parseDays(flags.olderThan, flags.all === true);
    const before = new Date(olderThanDays === null ? now + 1 : now - olderThanDays * DAY_MS);
    await withOperatorStores(flags, async (stores) => {
      const purged = await stores.quarantine.purge({ before, ...(flags.reason ? { reasonCode: flags.reason } : {}), dryRun: flags.dryRun === true });
      const report: QuarantinePurgeReport = {
        dryRun: flags.dryRun === true,
        olderThanDays,
        reasonCode: flags.reason ?? null,
        before: before.toISOString(),
        count: purged.length,
        bytes: purged.reduce((n, e) => n + e.size, 0),
        entries: purged.map(purgedReport),
      };
      if (flags.json) writeJson(report);
      else process.stdout.write(readablePurge(report, now));
    });
  });

  for (const c of quarantine.commands) c.exitOverride().showHelpAfterError('(add --help for usage)');
}

function notFound(id: string): HispError {
  return new HispError('HISP_NOT_FOUND', `no quarantine entry ${JSON.stringify(id)} (see hisp quarantine list)`, { details: { id } });
}

/** `--older-than DAYS` (a number of days, fractions allowed) or `--all` (null): exactly one. */
function parseDays(value: string | undefined, all: boolean): number | null {
  if (all) return null;
  if (value === undefined) throw new HispError('HISP_USAGE', 'give --older-than DAYS or --all (add --dry-run to see what would go)');
  const days = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !Number.isFinite(days) || days > 36_500) {
    throw new HispError('HISP_USAGE', `--older-than must be a number of days from 0 to 36500, not ${JSON.stringify(value)}`);
  }
  return days;
}

function listReport(quarantine: QuarantineStore, limit: number, now: number): QuarantineListReport {
  const since = new Date(now - DROPS_SHOWN_DAYS * DAY_MS);
  const usage = quarantine.usage();
  const drops = quarantine.drops(since);
  return {
    entries: quarantine.list({ limit }).map(entryReport),
    total: { entries: usage.entries, bytes: usage.bytes },
    // Counted per UTC day: from the start of that day.
    dropped: { since: new Date(Math.floor(since.getTime() / DAY_MS) * DAY_MS).toISOString(), ...drops },
  };
}

function purgedReport(e: QuarantineRemoved): QuarantinePurgedReport {
  return {
    id: e.id,
    quarantinedAt: e.quarantinedAt.toISOString(),
    reasonCode: e.reasonCode,
    detail: e.detail,
    mailFrom: e.mailFrom,
    messageId: e.messageId,
    size: e.size,
  };
}

function entryReport(e: QuarantineEntry): QuarantineEntryReport {
  const m = e.message;
  return {
    id: e.id,
    quarantinedAt: e.quarantinedAt.toISOString(),
    reasonCode: e.reasonCode,
    detail: e.detail,
    messageId: m.messageId,
    direction: m.direction,
    mailFrom: m.mailFrom,
    recipients: [...m.recipients],
    receivedAt: m.receivedAt.toISOString(),
    size: m.size,
  };
}

function showReport(e: QuarantineEntry, raw: Buffer): QuarantineShowReport {
  try {
    // Header octets read as UTF-8 (8-bit headers are nearly always that); encoded-words left as written.
    const headers = MimeEntity.parse(raw).headers.map((h) => ({ name: h.name, value: Buffer.from(h.value, 'latin1').toString('utf8') }));
    return { ...entryReport(e), headers, headersError: null };
  } catch (err) {
    if (!isHispError(err)) throw err;
    return { ...entryReport(e), headers: null, headersError: `${err.code}: ${err.message}` };
  }
}

function entryLines(e: QuarantineEntryReport, now: number): string[] {
  return [
    `quarantined ${e.id}`,
    `  when          ${when(e.quarantinedAt, now)}`,
    `  reason        ${printable(e.reasonCode)}: ${printable(e.detail)}`,
    `  from          ${sender(e.mailFrom)}`,
    `  recipients    ${e.recipients.map(printable).join(', ')}`,
    ...(e.messageId === null ? [] : [`  message-id    <${printable(e.messageId)}>`]),
    `  received      ${when(e.receivedAt, now)} (${e.direction})`,
    `  size          ${e.size} bytes`,
  ];
}

function readableList(report: QuarantineListReport, now: number): string {
  const { entries, total, dropped } = report;
  const droppedLine =
    dropped.retention.entries + dropped.cap.entries === 0
      ? ''
      : `dropped by the gateway in the last ${DROPS_SHOWN_DAYS} days: ${dropped.retention.entries} past retention (${bytes(dropped.retention.bytes)}), ` +
        `${dropped.cap.entries} over the size cap (${bytes(dropped.cap.bytes)}); each is logged ("quarantine entry dropped")\n`;
  if (entries.length === 0) return `hisp: the quarantine is empty\n${droppedLine}`;
  const blocks = entries.map((e) => entryLines(e, now).join('\n'));
  const oldest = entries[entries.length - 1];
  const span = oldest === undefined ? '' : `, the oldest ${duration(Math.max(0, now - Date.parse(oldest.quarantinedAt)))} ago`;
  const shown = total.entries > entries.length ? `${entries.length} of ${total.entries}` : `${entries.length}`;
  return `${blocks.join('\n\n')}\n\n${shown} quarantined message(s)${span}; ${bytes(total.bytes)} in all\n${droppedLine}`;
}

function readablePurge(r: QuarantinePurgeReport, now: number): string {
  const lines = r.dryRun
    ? r.entries.map((e) => `would delete ${e.id}  ${when(e.quarantinedAt, now)}  ${printable(e.reasonCode)}  ${sender(e.mailFrom)}  ${e.size} bytes`)
    : [];
  const what = `${r.count} quarantined message(s) (${bytes(r.bytes)})`;
  lines.push(r.dryRun ? `hisp: ${what} would be deleted (dry run: nothing deleted)` : `hisp: ${what} deleted`);
  return `${lines.join('\n')}\n`;
}

/** 123 bytes, 1.2 KB, 45.0 MB: decimal units, one decimal. */
function bytes(n: number): string {
  if (n < 1000) return `${n} bytes`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1000;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(1)} ${units[u] ?? 'TB'}`;
}

function readableShow(r: QuarantineShowReport, now: number): string {
  const lines = entryLines(r, now);
  lines.push('', 'headers (as received; `--raw` for the whole message):');
  if (r.headers === null) lines.push(`  (the header section does not parse: ${printable(r.headersError ?? '')})`);
  else for (const h of r.headers) lines.push(`  ${printable(h.name)}: ${printable(h.value)}`);
  return `${lines.join('\n')}\n`;
}

import type { Command } from 'commander';
import { Option } from 'commander';
import { MimeEntity } from '../agent/mime-entity.js';
import { HispError, isHispError } from '../core/errors.js';
import type { QuarantineEntry } from '../store/quarantine-store.js';
import { writeOutput } from './cli-io.js';
import { addDataOptions, parseLimit, withOperatorStores, writeJson, type DataFlags } from './data-options.js';
import { duration, printable, sender, when } from './status-command.js';

interface ListFlags extends DataFlags {
  limit: string;
}

interface ShowFlags extends DataFlags {
  raw?: boolean;
}

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
 * list:   { "entries": [entry, …] }                   newest first
 * show:   { …entry, "headers": [{ "name": "From", "value": "…" }, …] | null,
 *           "headersError": "…" | null }              headers unfolded, undecoded; null with the reason
 *                                                      when the header section does not parse
 * delete: { "id": "…", "deleted": true }
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

export function registerQuarantine(program: Command): void {
  const quarantine = program
    .command('quarantine')
    .summary('list, inspect and delete the messages kept instead of delivered')
    .description(
      'Inbound messages the gateway kept for the operator rather than deliver (a signature that does ' +
        'not verify, a sender not trusted…), each with the reason: an error code (docs/errors.md) and ' +
        'its detail. The raw message is kept as received.',
    );

  addDataOptions(
    quarantine
      .command('list')
      .summary('list quarantined messages, newest first')
      .description('One block per entry: id, when, reason code and detail, sender, recipients, size.')
      .option('--limit <n>', 'at most this many entries', '100'),
  ).action(async (flags: ListFlags) => {
    const limit = parseLimit(flags.limit);
    await withOperatorStores(flags, (stores) => {
      const entries = stores.quarantine.list({ limit }).map(entryReport);
      if (flags.json) writeJson({ entries });
      else process.stdout.write(readableList(entries, Date.now()));
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

  for (const c of quarantine.commands) c.exitOverride().showHelpAfterError('(add --help for usage)');
}

function notFound(id: string): HispError {
  return new HispError('HISP_NOT_FOUND', `no quarantine entry ${JSON.stringify(id)} (see hisp quarantine list)`, { details: { id } });
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

function readableList(entries: readonly QuarantineEntryReport[], now: number): string {
  if (entries.length === 0) return 'hisp: the quarantine is empty\n';
  const blocks = entries.map((e) => entryLines(e, now).join('\n'));
  const oldest = entries[entries.length - 1];
  const span = oldest === undefined ? '' : `, the oldest ${duration(Math.max(0, now - Date.parse(oldest.quarantinedAt)))} ago`;
  return `${blocks.join('\n\n')}\n\n${entries.length} quarantined message(s)${span}\n`;
}

function readableShow(r: QuarantineShowReport, now: number): string {
  const lines = entryLines(r, now);
  lines.push('', 'headers (as received; `--raw` for the whole message):');
  if (r.headers === null) lines.push(`  (the header section does not parse: ${printable(r.headersError ?? '')})`);
  else for (const h of r.headers) lines.push(`  ${printable(h.name)}: ${printable(h.value)}`);
  return `${lines.join('\n')}\n`;
}

import { createWriteStream } from 'node:fs';
import { hostname } from 'node:os';
import type { Command } from 'commander';
import { AuditLog, type AuditVerification } from '../audit/audit-log.js';
import { toFhirAuditEvent } from '../audit/fhir-audit-event.js';
import { loadConfig } from '../config/load-config.js';
import { HispError } from '../core/errors.js';
import { addDataOptions, withOperatorStores, writeJson, type DataFlags } from './data-options.js';
import { ReportedFailure, EXIT } from './exit-codes.js';

interface ExportFlags extends DataFlags {
  since?: string;
  until?: string;
  out?: string;
}

/** Entries read per query while exporting: the export streams, whatever the log's size. */
const EXPORT_PAGE = 1000;

/** An ISO 8601 time of an option, as ms. */
function timeOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(t)) throw new HispError('HISP_USAGE', `${name} must be an ISO 8601 date or time (2026-12-01, 2026-12-01T08:00:00Z), not ${JSON.stringify(value)}`);
  return t;
}

/** The name the exported events give as their observer: the configuration's hostname, else the machine's. */
function observerOf(flags: DataFlags): string {
  const file = flags.config ?? (flags.dataDir === undefined ? process.env.HISP_CONFIG || undefined : undefined);
  return file !== undefined ? loadConfig(file).hostname : hostname();
}

/**
 * `hisp audit verify` and `hisp audit export` (issue 16, "Audit"): the chain of the data folder's
 * audit log checked from its first entry, and its entries written as FHIR R4 AuditEvent resources,
 * one JSON object per line (NDJSON, as FHIR bulk data writes them).
 *
 * verify --json: { "ok": true, "entries": 1234, "head": { "seq": 1234, "hash": "…", "at": "…" } | null }
 *                { "ok": false, …, "problem": { "seq": 17, "reason": "…" } }   (exit 1, HISP_AUDIT_BROKEN)
 */
export function registerAudit(program: Command): void {
  const audit = program
    .command('audit')
    .summary('check the audit log and export it as FHIR AuditEvent')
    .description(
      'The audit log of the data folder: every authorization given or revoked, every transmission, every message ' +
        'sent or received and every API key created or revoked, with who did it, what, to what, the outcome and ' +
        'when; each entry carries the hash of the one before (docs/audit.md).',
    );

  addDataOptions(
    audit
      .command('verify')
      .summary('check the hash chain from the first entry: exit 1 if an entry was changed, removed or cut off')
      .description(
        'Recomputes every entry\'s hash in order and checks that each names the one before, and that no entry SQLite ' +
          'handed out is missing at the end. Prints the head (last seq and hash): kept elsewhere, it shows later that ' +
          'nothing was cut off since.',
      ),
  ).action(async (flags: DataFlags) => {
    await withOperatorStores(flags, (stores) => {
      const result: AuditVerification = new AuditLog(stores.db.sqlite).verify();
      const head = result.head ? { ...result.head, at: new Date(result.head.at).toISOString() } : null;
      if (flags.json) writeJson({ ...result, head });
      if (!result.ok) {
        const problem = result.problem!;
        if (flags.json) throw new ReportedFailure(EXIT.failed);
        throw new HispError('HISP_AUDIT_BROKEN', `entry ${problem.seq}: ${problem.reason} (${result.entries} entries before it are intact)`);
      }
      if (!flags.json) {
        process.stdout.write(
          head ? `hisp: the audit chain is intact: ${result.entries} entries, the last ${head.seq} at ${head.at}, hash ${head.hash}\n` : 'hisp: the audit log is empty\n',
        );
      }
      return Promise.resolve();
    });
  });

  addDataOptions(
    audit
      .command('export')
      .summary('write the entries as FHIR R4 AuditEvent resources, one per line (NDJSON)')
      .description('On stdout, or into --out FILE. --since and --until (ISO 8601) bound the time of the entries; the oldest come first.')
      .option('--since <time>', 'entries at or after this time (ISO 8601)')
      .option('--until <time>', 'entries before this time (ISO 8601)')
      .option('--out <file>', 'write into this file (created, or replaced)'),
  ).action(async (flags: ExportFlags) => {
    const since = timeOption('--since', flags.since);
    const until = timeOption('--until', flags.until);
    const observer = observerOf(flags);
    await withOperatorStores(flags, async (stores) => {
      const log = new AuditLog(stores.db.sqlite);
      const out: NodeJS.WritableStream = flags.out !== undefined ? createWriteStream(flags.out, { mode: 0o600 }) : process.stdout;
      let written = 0;
      try {
        for (let after = 0; ; ) {
          const page = log.list({ after, since, until, limit: EXPORT_PAGE });
          for (const entry of page.entries) {
            // Back-pressure: a slow pipe is not filled faster than it drains.
            if (!out.write(`${JSON.stringify(toFhirAuditEvent(entry, observer))}\n`)) await new Promise<void>((r) => out.once('drain', () => r()));
            written++;
          }
          if (page.nextCursor === null) break;
          after = page.nextCursor;
        }
      } finally {
        if (out !== process.stdout) await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
      }
      if (flags.out !== undefined) process.stderr.write(`hisp: ${written} audit events written to ${flags.out}\n`);
    });
  });
}

import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { GENESIS_HASH } from '../gateway/audit/audit-chain.js';
import { AuditLog, type AuditRecord } from '../gateway/audit/audit-log.js';
import { openDatabase } from '../gateway/store/database.js';
import type { Figure } from './figure.js';

/** Entries in the log the bench builds and verifies. */
const ENTRIES = 200_000;
/** Entries appended per transaction while building it (the gateway appends in its group commits). */
const PER_COMMIT = 500;

/**
 * The audit chain (issue 16, "Speed": the audit chain's verification speed, entries/s): a log of
 * 200,000 entries shaped like the gateway's (a message event's detail, a patient reference on some)
 * is built in a data folder, then `AuditLog.verify()` walks it as `hisp audit verify` does (read in
 * seq order, every hash recomputed). Reference, in the same run: SHA-256 alone over the same
 * canonical texts from memory, the work no verification can skip; the ratio is what reading the
 * rows from SQLite and checking them adds. Beside it, informative: appends per second, in commits
 * of 500 (each entry's hash computed by the SQL user function, as the triggers do).
 */
export function benchAudit(machine: string): Figure[] {
  const dir = mkdtempSync(join(tmpdir(), 'hisp-audit-bench-'));
  const db = openDatabase({ dataDir: dir });
  try {
    const log = new AuditLog(db.sqlite, () => 1_796_000_000_000);
    const record = (i: number): AuditRecord => ({
      actor: { kind: 'api-key', id: '0123456789abcdef' },
      action: i % 4 === 0 ? 'transmission.queued' : 'message.relayed',
      object: { kind: i % 4 === 0 ? 'transmission' : 'message', id: `q${i.toString(36).padStart(12, '0')}` },
      outcome: 'success',
      patientRef: i % 4 === 0 ? `MRN-${i % 5000}` : undefined,
      detail: { recipient: `patient${i % 1000}@phr.example`, data: { state: 'relayed', messageId: `m${i}@hospital.example`, evidence: { reply: '250 2.0.0 Ok: queued as 4Xy' } } },
    });
    const t0 = performance.now();
    for (let i = 0; i < ENTRIES; i += PER_COMMIT) {
      db.sqlite.transaction(() => {
        for (let j = i; j < Math.min(ENTRIES, i + PER_COMMIT); j++) log.append(record(j));
      })();
    }
    const appendMs = performance.now() - t0;

    const t1 = performance.now();
    const result = log.verify();
    const verifyMs = performance.now() - t1;
    if (!result.ok || result.entries !== ENTRIES) throw new Error(`the bench log did not verify: ${JSON.stringify(result.problem)}`);

    // The floor: the same canonical texts hashed from memory, chained.
    const texts = db.sqlite
      .prepare<[], { seq: number; id: string; at: number; actor_kind: string; actor_id: string; action: string; object_kind: string; object_id: string; outcome: string; patient_ref: string | null; detail: string }>(
        'SELECT seq, id, at, actor_kind, actor_id, action, object_kind, object_id, outcome, patient_ref, detail FROM audit_log ORDER BY seq',
      )
      .all()
      .map((r) => [r.seq, r.id, r.at, r.actor_kind, r.actor_id, r.action, r.object_kind, r.object_id, r.outcome, r.patient_ref, r.detail] as const);
    const t2 = performance.now();
    let prev = GENESIS_HASH;
    for (const t of texts) prev = createHash('sha256').update(JSON.stringify([prev, ...t]), 'utf8').digest('hex');
    const hashMs = performance.now() - t2;

    const perSec = (ms: number) => Math.round((ENTRIES / ms) * 1000);
    return [
      { name: 'audit.verify_200k.entries_per_s', value: perSec(verifyMs), unit: 'entries/s', reference: perSec(hashMs), ratio: round(hashMs / verifyMs), target: null, pass: null, machine },
      { name: 'audit.append_200k.entries_per_s', value: perSec(appendMs), unit: 'entries/s', reference: null, ratio: null, target: null, pass: null, machine },
    ];
  } finally {
    db.sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function round(v: number): number {
  return Math.round(v * 1000) / 1000;
}

// `node dist/bench/audit-bench.js` prints the figures.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const machine = `${cpus()[0]?.model.trim() ?? 'cpu'} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`;
  for (const f of benchAudit(machine)) console.log(`${f.name.padEnd(36)} ${String(f.value).padStart(9)} ${f.unit}${f.reference === null ? '' : `  SHA-256 alone ${f.reference} ${f.unit}  ratio ${f.ratio}`}`);
}

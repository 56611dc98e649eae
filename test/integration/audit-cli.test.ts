// `hisp audit verify|export` through the real binary (bin/hisp.js, built) on a data folder: keys
// created and revoked by the CLI are audited as the operator; verify passes, then fails with
// HISP_AUDIT_BROKEN once an entry is edited in the database file; export writes FHIR R4
// AuditEvent resources, one per line, bounded by --since/--until.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '@medplum/fhirtypes';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../gateway/store/database.js';
import { runHisp } from '../helpers/hisp-cli.js';
import { ensureBuilt } from '../helpers/openssl.js';

const work = mkdtempSync(join(tmpdir(), 'hisp-audit-cli-'));
const dataDir = join(work, 'hisp-data');
afterAll(() => rmSync(work, { recursive: true, force: true }));

const hisp = (args: string[]) => runHisp(args, { cwd: work, env: { HISP_DATA_DIR: dataDir } });

beforeAll(async () => {
  ensureBuilt();
  await openDatabase({ dataDir }).close();
}, 180_000);

describe('hisp audit', () => {
  it('verify: an empty log, then the entries of keys created and revoked at the command line, by the operator', async () => {
    expect((await hisp(['audit', 'verify'])).stdout).toBe('hisp: the audit log is empty\n');
    const created = JSON.parse((await hisp(['api-key', 'create', '--name', 'ehr', '--action', 'send', '--send-as', '@hospital.test', '--json'])).stdout) as { id: string };
    expect((await hisp(['api-key', 'revoke', created.id])).status).toBe(0);
    const r = await hisp(['audit', 'verify', '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, entries: 2, head: { seq: 2 } });
    const lines = (await hisp(['audit', 'export'])).stdout.trim().split('\n');
    const events = lines.map((l) => JSON.parse(l) as AuditEvent);
    expect(events.map((e) => [e.resourceType, e.subtype?.[0]?.code, e.action, e.outcome, e.agent[0]?.who?.identifier?.value, e.entity?.[0]?.what?.identifier?.value])).toEqual([
      ['AuditEvent', 'api-key.created', 'C', '0', userInfo().username, created.id],
      ['AuditEvent', 'api-key.revoked', 'D', '0', userInfo().username, created.id],
    ]);
    expect(events[0]!.type).toEqual({ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110137', display: 'User Security Attributes Changed' });
  });

  it('export --since/--until bound the entries; --out writes a file', async () => {
    const out = join(work, 'audit.ndjson');
    const r = await hisp(['audit', 'export', '--since', '2000-01-01', '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^hisp: \d+ audit events written to /);
    expect(readFileSync(out, 'utf8').trim().split('\n').length).toBeGreaterThanOrEqual(2);
    expect((await hisp(['audit', 'export', '--until', '2000-01-01'])).stdout).toBe('');
    const bad = await hisp(['audit', 'export', '--since', 'yesterday']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/HISP_USAGE/);
  });

  it('verify fails with HISP_AUDIT_BROKEN (exit 1) once an entry is edited in the database file', async () => {
    const raw = new BetterSqlite3(join(dataDir, 'hisp.sqlite'));
    try {
      // As someone with the file would: past the append-only triggers.
      raw.exec("DROP TRIGGER audit_log_append_only_update; UPDATE audit_log SET actor_id = 'somebody-else' WHERE seq = 1");
    } finally {
      raw.close();
    }
    const r = await hisp(['audit', 'verify']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/HISP_AUDIT_BROKEN: entry 1: its content does not match its hash/);
    const json = await hisp(['audit', 'verify', '--json']);
    expect(json.status).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, entries: 0, problem: { seq: 1 } });
  });
});

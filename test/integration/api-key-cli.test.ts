// `hisp api-key create|list|revoke` through the real binary (bin/hisp.js, built) on a data folder:
// the key shown once and stored hashed, scopes checked, revocation seen by the store at once.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiKeyReport } from '../../gateway/cli/api-key-command.js';
import { ApiKeyStore } from '../../gateway/store/api-key-store.js';
import { openDatabase } from '../../gateway/store/database.js';
import { runHisp } from '../helpers/hisp-cli.js';
import { ensureBuilt } from '../helpers/openssl.js';
import { credentialPaths } from '../helpers/pki.js';

const work = mkdtempSync(join(tmpdir(), 'hisp-api-key-cli-'));
const dataDir = join(work, 'hisp-data');
afterAll(() => rmSync(work, { recursive: true, force: true }));

const hisp = (args: string[], env: Record<string, string> = {}) => runHisp(args, { cwd: work, env });

/** What the store says of a token now (a new connection, as the running gateway's would). */
async function check(token: string): Promise<string> {
  const db = openDatabase({ dataDir });
  try {
    const r = new ApiKeyStore(db).authenticate(token, Date.now());
    return r.ok ? 'ok' : r.reason;
  } finally {
    await db.close();
  }
}

beforeAll(async () => {
  ensureBuilt();
  // A data folder as the gateway leaves it (the CLI never creates one).
  await openDatabase({ dataDir }).close();
}, 180_000);

describe('hisp api-key', () => {
  it('create prints the key once on stdout (the rest on stderr); the store keeps a hash that authenticates it', async () => {
    const r = await hisp(['api-key', 'create', '--name', 'ehr', '--action', 'send,status', '--send-as', '@Hospital.Test', '--send-as', 'ehr@hospital.test']);
    expect(r.status, r.stderr).toBe(0);
    const token = r.stdout.trim();
    expect(token).toMatch(/^hisp_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(r.stderr).toMatch(/^hisp: API key ehr created \(id [0-9a-f]{16}\); it is shown only this once:\n$/);
    expect(await check(token)).toBe('ok');
    expect(readFileSync(join(dataDir, 'hisp.sqlite')).includes(Buffer.from(token.slice(22)))).toBe(false);
  });

  it('create --json gives the key with its scopes; list never shows a secret; revoke takes effect at once', async () => {
    const created = await hisp(['api-key', 'create', '--name', 'phr', '--action', 'receive', '--mailbox', 'patient@hospital.test', '--rate-per-minute', '30', '--json']);
    expect(created.status, created.stderr).toBe(0);
    const key = JSON.parse(created.stdout) as ApiKeyReport & { key: string };
    expect(key).toMatchObject({ name: 'phr', actions: ['receive'], sendAs: [], mailboxes: ['patient@hospital.test'], ratePerMinute: 30, revokedAt: null, lastUsedAt: null });
    expect(key.key.slice(5, 21)).toBe(key.id);

    const list = await hisp(['api-key', 'list', '--json']);
    const keys = (JSON.parse(list.stdout) as { keys: ApiKeyReport[] }).keys;
    expect(keys.map((k) => k.name)).toEqual(['ehr', 'phr']);
    expect(keys.find((k) => k.name === 'ehr')).toMatchObject({ actions: ['send', 'status'], sendAs: ['@hospital.test', 'ehr@hospital.test'], ratePerMinute: null });
    expect(list.stdout).not.toContain(key.key.slice(22));
    const readable = await hisp(['api-key', 'list']);
    expect(readable.stdout).toContain(`${key.id}  phr`);
    expect(readable.stdout).toContain('  mailboxes  patient@hospital.test');
    expect(readable.stdout).toContain('  rate       30 requests a minute');
    expect(readable.stdout).not.toContain(key.key.slice(22));

    const revoked = await hisp(['api-key', 'revoke', key.id]);
    expect(revoked.status, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(new RegExp(`^hisp: API key ${key.id} \\(phr\\) revoked at `));
    expect(await check(key.key)).toBe('revoked');
    expect((JSON.parse((await hisp(['api-key', 'list', '--json'])).stdout) as { keys: ApiKeyReport[] }).keys.map((k) => k.name)).toEqual(['ehr']);
    const all = JSON.parse((await hisp(['api-key', 'list', '--all', '--json'])).stdout) as { keys: ApiKeyReport[] };
    expect(all.keys.find((k) => k.id === key.id)?.revokedAt).not.toBeNull();
  });

  it('refuses bad input with exit codes and HISP_ codes', async () => {
    const noAction = await hisp(['api-key', 'create', '--name', 'x']);
    expect(noAction).toMatchObject({ status: 2 });
    expect(noAction.stderr).toContain('HISP_USAGE: give at least one action');
    const noScope = await hisp(['api-key', 'create', '--name', 'x', '--action', 'send']);
    expect(noScope.stderr).toContain('needs the addresses or @domains it may send as');
    expect((await hisp(['api-key', 'create', '--name', 'x', '--action', 'fly'])).stderr).toContain('unknown action "fly"');
    expect((await hisp(['api-key', 'create', '--name', 'x', '--action', 'status', '--rate-per-minute', '1e3'])).status).toBe(2);
    const unknown = await hisp(['api-key', 'revoke', 'ffffffffffffffff', '--json']);
    expect(unknown.status).toBe(1);
    expect(JSON.parse(unknown.stdout)).toMatchObject({ error: { code: 'HISP_NOT_FOUND' } });
    const nowhere = await hisp(['api-key', 'list', '--data-dir', join(work, 'missing')]);
    expect(nowhere.status).toBe(1);
    expect(nowhere.stderr).toContain('HISP_IO: no hisp data folder');
  });

  it('with --config, every scope must be in a domain of the configuration', async () => {
    const config = join(work, 'hisp.toml');
    const cred = credentialPaths('sender-domain');
    writeFileSync(
      config,
      `dataDir = ${JSON.stringify(dataDir)}\n[submission]\nrequireTls = false\n[[domains]]\nname = "hospital.test"\n[[domains.credentials]]\nkey = ${JSON.stringify(cred.key)}\ncert = ${JSON.stringify(cred.chain)}\n`,
    );
    const foreign = await hisp(['api-key', 'create', '--config', config, '--name', 'x', '--action', 'send', '--send-as', '@elsewhere.test']);
    expect(foreign.status).toBe(2);
    expect(foreign.stderr).toContain('--send-as @elsewhere.test: elsewhere.test is not a domain of the configuration (hospital.test)');
    const ok = await hisp(['api-key', 'create', '--name', 'y', '--action', 'send', '--send-as', 'a@hospital.test'], { HISP_CONFIG: config });
    expect(ok.status, ok.stderr).toBe(0);
  });
});

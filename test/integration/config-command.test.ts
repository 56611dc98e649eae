// `hisp config check | print | hash-password` through the real binary (bin/hisp.js, built).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { afterAll, describe, expect, it } from 'vitest';
import { verifyPassword } from '../../gateway/config/password-hash.js';
import { credentialPaths } from '../helpers/pki.js';

const repo = resolve(import.meta.dirname, '..', '..');
const work = mkdtempSync(join(tmpdir(), 'hisp-config-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Runs hisp with a clean environment (no HISP_* variables from the caller) unless `env` adds some. */
function hisp(args: string[], options: { env?: Record<string, string>; input?: string } = {}) {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '', ...options.env };
  return spawnSync(process.execPath, [join(repo, 'bin', 'hisp.js'), ...args], { encoding: 'utf8', cwd: work, env, input: options.input ?? '' });
}

const q = (s: string) => JSON.stringify(s);
const HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
const valid = join(work, 'valid.toml');
writeFileSync(
  valid,
  `[submission]
requireTls = false
[[submission.users]]
username = "ehr"
passwordHash = "${HASH}"
mayUseAddresses = ["@sender.test"]
[[domains]]
name = "sender.test"
[[domains.credentials]]
key = ${q(credentialPaths('sender-domain').key)}
cert = ${q(credentialPaths('sender-domain').chain!)}
[domains.anchors]
incoming = [${q(credentialPaths('root-ca').cert)}]
outgoing = [${q(credentialPaths('root-ca').cert)}]
[[domains.addresses]]
address = "doc@sender.test"
[[domains.addresses]]
address = "hook@sender.test"
delivery = { type = "webhook", url = "https://hooks.example/in", hmacSecret = "a-very-secret-hmac-key" }
`,
);
const invalid = join(work, 'invalid.toml');
writeFileSync(
  invalid,
  `dataDri = "x"
[inbound]
port = 99999
[[domains]]
name = "sender.test"
[[domains.credentials]]
key = "missing.key.pem"
cert = ${q(credentialPaths('sender-domain').chain!)}
password = "do-not-print-me"
`,
);

describe('hisp config check', () => {
  it('exits 0 with a short summary for a valid file', () => {
    const r = hisp(['config', 'check', '--config', valid]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`configuration ${valid} is valid`);
    expect(r.stdout).toMatch(/domain\s+sender\.test: 1 credential\(s\), 2 address\(es\)/);
    expect(r.stdout).toMatch(/users\s+1/);
    expect(r.stdout).toContain('submission 127.0.0.1:5587 (no TLS), inbound 0.0.0.0:5525 (no TLS), api off');
    expect(r.stderr).toBe('');
  });

  it('--json reports the summary and the warnings', () => {
    const r = hisp(['config', 'check', '--config', valid, '--json']);
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as { valid: boolean; file: string; summary: { addresses: number; users: number; domains: { name: string }[] }; warnings: unknown[] };
    expect(report).toMatchObject({ valid: true, file: valid, summary: { addresses: 2, users: 1, domains: [{ name: 'sender.test' }] }, warnings: [] });
  });

  it('exits 1 and lists every error with its key path, never a secret', () => {
    const r = hisp(['config', 'check', '--config', invalid]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`hisp: HISP_CONFIG_INVALID: the configuration ${invalid} is invalid (4 errors):`);
    expect(r.stderr).toContain('  dataDri: unknown key (did you mean "dataDir"?)');
    expect(r.stderr).toContain('  inbound.port: must be from 0 to 65535 (got 99999)');
    expect(r.stderr).toContain(`  domains[0].credentials[0].key: file not found: ${join(work, 'missing.key.pem')}`);
    expect(r.stderr).toContain('  submission.tlsCert: missing: requireTls = true needs tlsCert and tlsKey');
    expect(r.stderr).not.toContain('do-not-print-me');
  });

  it('[api]: plain HTTP on loopback is valid and shown as such; on another host it needs a certificate (exit 1, naming api.host)', () => {
    const loopback = join(work, 'api.toml');
    writeFileSync(loopback, readFileSync(valid, 'utf8').replace('[submission]', '[api]\nenabled = true\n[submission]'));
    const ok = hisp(['config', 'check', '--config', loopback]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('api 127.0.0.1:5580 (plain HTTP, loopback)');
    const exposed = join(work, 'api-exposed.toml');
    writeFileSync(exposed, readFileSync(valid, 'utf8').replace('[submission]', '[api]\nenabled = true\nhost = "0.0.0.0"\n[submission]'));
    const r = hisp(['config', 'check', '--config', exposed]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('(1 error)');
    expect(r.stderr).toContain('  api.host: 0.0.0.0 is not a loopback address: plain HTTP (no tlsCert and tlsKey) is served on loopback only');
    expect(r.stdout).toBe('');
  });

  it('--json on an invalid file: {valid: false, code, errors} on stdout, exit 1', () => {
    const r = hisp(['config', 'check', '--config', invalid, '--json']);
    expect(r.status).toBe(1);
    const report = JSON.parse(r.stdout) as { valid: boolean; code: string; errors: { path: string }[] };
    expect(report.valid).toBe(false);
    expect(report.code).toBe('HISP_CONFIG_INVALID');
    expect(report.errors.map((e) => e.path)).toEqual(expect.arrayContaining(['dataDri', 'inbound.port', 'domains[0].credentials[0].key', 'submission.tlsCert']));
  });

  it('a missing file is HISP_IO (exit 1); no file at all is a usage error (exit 2); HISP_CONFIG names the file', () => {
    const missing = hisp(['config', 'check', '--config', join(work, 'nope.toml')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('HISP_IO: cannot read configuration file');
    const missingJson = hisp(['config', 'check', '--config', join(work, 'nope.toml'), '--json']);
    expect(missingJson.status).toBe(1);
    expect(JSON.parse(missingJson.stdout)).toMatchObject({ valid: false, code: 'HISP_IO' });
    const none = hisp(['config', 'check']);
    expect(none.status).toBe(2);
    expect(none.stderr).toContain('HISP_USAGE: no configuration file');
    expect(hisp(['config', 'check'], { env: { HISP_CONFIG: valid } }).status).toBe(0);
    expect(hisp(['config', 'check', '--bogus']).status).toBe(2);
  });

  it('a TOML syntax error is reported with its line, exit 1', () => {
    const broken = join(work, 'broken.toml');
    writeFileSync(broken, '[dns]\ntimeoutMs = = 3\n');
    const r = hisp(['config', 'check', '--config', broken]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/HISP_CONFIG_INVALID: .*\n {2}TOML syntax error at line 2, column \d+/);
  });
});

describe('hisp config print', () => {
  it('prints the effective configuration as TOML, defaults applied and secrets redacted', () => {
    const r = hisp(['config', 'print', '--config', valid]);
    expect(r.status, r.stderr).toBe(0);
    const printed = parseToml(r.stdout) as { queue: { workers: number }; submission: { users: { passwordHash: string }[] }; domains: { addresses: { delivery: { hmacSecret?: string } }[] }[] };
    expect(printed.queue.workers).toBe(20);
    expect(printed.submission.users[0]?.passwordHash).toBe('[redacted]');
    expect(printed.domains[0]?.addresses[1]?.delivery.hmacSecret).toBe('[redacted]');
    expect(r.stdout).not.toContain('a-very-secret-hmac-key');
    expect(r.stdout).not.toContain(HASH);
  });

  it('--format json gives the same values', () => {
    const toml = parseToml(hisp(['config', 'print', '--config', valid]).stdout);
    const json = hisp(['config', 'print', '--config', valid, '--format', 'json']);
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual(toml);
    expect(hisp(['config', 'print', '--config', valid, '--format', 'yaml']).status).toBe(2);
  });

  it('refuses an invalid file as check does (exit 1)', () => {
    const r = hisp(['config', 'print', '--config', invalid]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('HISP_CONFIG_INVALID');
  });
});

describe('hisp config hash-password', () => {
  it('hashes the first line of stdin into a passwordHash that verifies', async () => {
    const r = hisp(['config', 'hash-password'], { input: 'a long enough password\nignored second line\n' });
    expect(r.status, r.stderr).toBe(0);
    const hash = r.stdout.trim();
    expect(hash).toMatch(/^scrypt\$32768\$8\$1\$/);
    expect(await verifyPassword('a long enough password', hash)).toBe(true);
  });

  it('refuses a short password (exit 2)', () => {
    const r = hisp(['config', 'hash-password'], { input: 'short\n' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('at least 12 characters');
  });

  it('answers --help for each sub-command', () => {
    for (const sub of ['check', 'print', 'hash-password']) {
      const r = hisp(['config', sub, '--help']);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`Usage: hisp config ${sub}`);
    }
  });
});

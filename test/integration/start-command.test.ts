import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const repo = resolve(import.meta.dirname, '..', '..');
const hisp = join(repo, 'bin', 'hisp.js');
const work = mkdtempSync(join(tmpdir(), 'hisp-start-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function start(): string {
  return execFileSync(process.execPath, [hisp, 'start', '--data-dir', 'data'], { cwd: work }).toString();
}

describe('hisp start on a fresh machine', () => {
  const first = start();
  const domainDir = join(work, 'data', 'domains', 'direct.localhost');

  it('creates the data folder with the development domain, keys readable by the owner only', () => {
    expect(first).toContain('created: development domain direct.localhost');
    expect(statSync(join(domainDir, 'domain.key.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(join(work, 'data', 'private', 'development-ca.key.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(domainDir).mode & 0o777).toBe(0o700);
  });

  it('reuses the same credentials when started again', () => {
    const cert = readFileSync(join(domainDir, 'domain.cert.pem'), 'utf8');
    expect(start()).toContain('ready: development domain direct.localhost');
    expect(readFileSync(join(domainDir, 'domain.cert.pem'), 'utf8')).toBe(cert);
  });

  it('prints a first-message pipeline that really wraps and unwraps with those credentials', () => {
    const pipeline = first.slice(first.indexOf('printf')).replaceAll('npx hisp', `${JSON.stringify(process.execPath)} ${JSON.stringify(hisp)}`);
    const r = spawnSync('bash', ['-o', 'pipefail', '-c', pipeline], { cwd: work });
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(r.stdout.toString()).toContain('Subject: Hello Direct');
    const report = JSON.parse(r.stderr.toString()) as { signers: { binding: string }[]; cipher: string; wrapped: boolean };
    expect(report).toMatchObject({ cipher: 'aes256-cbc', wrapped: true, signers: [{ binding: 'domain' }] });
  });

  it('answers --help for every verb', () => {
    for (const verb of ['start', 'wrap', 'unwrap']) {
      const out = execFileSync(process.execPath, [hisp, verb, '--help']).toString();
      expect(out).toContain(`Usage: hisp ${verb}`);
    }
  });
});

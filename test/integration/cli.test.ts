import { buildProgram } from '../../gateway/cli/main.js';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const repo = resolve(import.meta.dirname, '..', '..');
const hisp = join(repo, 'bin', 'hisp.js');
const work = mkdtempSync(join(tmpdir(), 'hisp-start-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The development domain the embedded default creates (`hisp start` itself runs the gateway: test/integration/start-command.test.ts). */
async function developmentDomain(): Promise<string> {
  const { ensureDevelopmentDomain } = await import('../../gateway/admin/development-domain.js');
  const d = await ensureDevelopmentDomain(join(work, 'data'));
  return d.created ? 'created' : 'reused';
}

describe('the development domain of the embedded default', () => {
  const domainDir = join(work, 'data', 'domains', 'direct.localhost');

  it('is created with keys readable by the owner only', async () => {
    expect(await developmentDomain()).toBe('created');
    expect(statSync(join(domainDir, 'domain.key.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(join(work, 'data', 'private', 'development-ca.key.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(domainDir).mode & 0o777).toBe(0o700);
  });

  it('is reused, same credentials, when started again', async () => {
    const cert = readFileSync(join(domainDir, 'domain.cert.pem'), 'utf8');
    expect(await developmentDomain()).toBe('reused');
    expect(readFileSync(join(domainDir, 'domain.cert.pem'), 'utf8')).toBe(cert);
  });

  it('wraps and unwraps with the CLI on those credentials', () => {
    const f = (name: string) => JSON.stringify(join(domainDir, name));
    const pipeline =
      `printf 'From: provider@direct.localhost\\r\\nTo: patient@direct.localhost\\r\\nSubject: Hello Direct\\r\\n\\r\\nHello\\r\\n' ` +
      `| ${JSON.stringify(process.execPath)} ${JSON.stringify(hisp)} wrap --sign-key ${f('domain.key.pem')} --sign-cert ${f('domain.cert.pem')} --encrypt-cert ${f('domain.cert.pem')} ` +
      `| ${JSON.stringify(process.execPath)} ${JSON.stringify(hisp)} unwrap --decrypt-key ${f('domain.key.pem')} --decrypt-cert ${f('domain.cert.pem')} --anchor ${JSON.stringify(join(work, 'data', 'anchors', 'development-ca.cert.pem'))} --json`;
    const r = spawnSync('bash', ['-o', 'pipefail', '-c', pipeline], { cwd: work });
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(r.stdout.toString()).toContain('Subject: Hello Direct');
    const report = JSON.parse(r.stderr.toString()) as { signers: { binding: string }[]; cipher: string; wrapped: boolean };
    expect(report).toMatchObject({ cipher: 'aes256-cbc', wrapped: true, signers: [{ binding: 'domain' }] });
  });

  it('answers --help for every verb', async () => {
    const verbs = (await buildProgram()).commands.map((c) => c.name());
    expect(verbs).toEqual(expect.arrayContaining(['start', 'wrap', 'unwrap', 'discover', 'config', 'status', 'queue', 'quarantine', 'send', 'render', 'xdm', 'api-key']));
    for (const verb of verbs) {
      const out = execFileSync(process.execPath, [hisp, verb, '--help']).toString();
      expect(out).toContain(`Usage: hisp ${verb}`);
    }
  });
});

describe('hisp wrap --anchor', () => {
  const pki = (name: string, kind: 'cert.pem' | 'key.pem' | 'chain.pem') => join(repo, 'test/fixtures/pki', `${name}.${kind}`);
  const message = 'From: sender@sender.test\r\nTo: patient@recipient.test\r\nSubject: x\r\n\r\nhello\r\n';
  const wrap = (recipient: string, anchor: string) =>
    spawnSync(process.execPath, [hisp, 'wrap', '--sign-key', pki('sender-rsa', 'key.pem'), '--sign-cert', pki('sender-rsa', 'chain.pem'), '--encrypt-cert', pki(recipient, 'cert.pem'), '--anchor', pki(anchor, 'cert.pem')], { input: message });

  it('wraps for a recipient certificate that chains to the anchor', () => {
    const r = wrap('recipient-rsa', 'root-ca');
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(r.stdout.toString()).toContain('application/pkcs7-mime');
  });

  it('refuses, writing nothing, a recipient certificate that does not chain to the anchor', () => {
    const r = wrap('recipient-rsa', 'untrusted-root-ca');
    expect(r.status).toBe(1);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr.toString()).toContain('HISP_TRUST_NO_ANCHOR');
  });
});

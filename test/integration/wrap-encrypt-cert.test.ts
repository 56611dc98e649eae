/**
 * Issue 14, item 14: `hisp wrap --encrypt-cert FILE` with the domain certificate file as `hisp
 * start` writes it (the certificate, then its CA) encrypts to the certificate only: the rest of the
 * file is its chain, as for --sign-cert. A CA certificate, or one without keyEncipherment, is never
 * a recipient; first in a file, it stops the command with a HISP_ code naming the file.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevelopmentDomain, type DevelopmentDomainFiles } from '../../gateway/admin/development-domain.js';
import { ensureBuilt, makeTempDir, opensslOk, REPO_ROOT } from '../helpers/openssl.js';

const HISP = join(REPO_ROOT, 'bin', 'hisp.js');
const tmp = makeTempDir('hisp-wrap-recipients-');
const MESSAGE = 'From: provider@direct.localhost\r\nTo: patient@direct.localhost\r\nSubject: to the domain\r\n\r\nHello\r\n';
let dev: DevelopmentDomainFiles;
let caKey: string;

function hisp(args: string[], input: string | Buffer): { status: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(process.execPath, [HISP, ...args], { input, cwd: tmp.dir });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

function wrap(encryptCert: string, extra: string[] = []) {
  return hisp(['wrap', '--sign-key', dev.key, '--sign-cert', dev.certificate, '--encrypt-cert', encryptCert, ...extra], MESSAGE);
}

/** The serial numbers of the RecipientInfos of a wrapped message (openssl's own reading of the CMS). */
function recipientSerials(wrapped: Buffer): string[] {
  const printed = opensslOk(['cms', '-cmsout', '-print', '-inform', 'SMIME'], wrapped).toString();
  return [...printed.matchAll(/d\.ktri:[\s\S]*?serialNumber: (\S+)/g)].map((m) => BigInt(m[1]!).toString(16));
}

function serialOf(certFile: string): string {
  const out = opensslOk(['x509', '-in', certFile, '-noout', '-serial']).toString();
  return BigInt(`0x${out.trim().split('=')[1]}`).toString(16);
}

beforeAll(async () => {
  ensureBuilt();
  // The files the embedded default writes (`hisp start` without --config).
  dev = await ensureDevelopmentDomain(join(tmp.dir, 'hisp-data'));
  caKey = join(tmp.dir, 'hisp-data', 'private', 'development-ca.key.pem');
}, 180_000);

afterAll(() => tmp.cleanup());

describe('hisp wrap --encrypt-cert with the domain certificate file (certificate + its CA)', () => {
  it('encrypts to the domain certificate only, not to the CA that follows it', () => {
    const r = wrap(dev.certificate);
    expect(r.status, r.stderr).toBe(0);
    expect(recipientSerials(r.stdout)).toEqual([serialOf(dev.certificate)]);

    const unwrapWith = (key: string, cert: string) =>
      hisp(['unwrap', '--decrypt-key', key, '--decrypt-cert', cert, '--anchor', dev.anchor, '--json'], r.stdout);
    const byDomain = unwrapWith(dev.key, dev.certificate);
    expect(byDomain.status, byDomain.stderr).toBe(0);
    expect(byDomain.stdout.toString()).toContain('Subject: to the domain');
    // The CA's key holder cannot read it.
    const byCa = unwrapWith(caKey, dev.anchor);
    expect(byCa.status).toBe(1);
    expect(byCa.stderr).toContain('HISP_CMS_NOT_FOR_RECIPIENT');
  });

  it('uses the rest of the file as the chain when validating against --anchor', () => {
    const r = wrap(dev.certificate, ['--anchor', dev.anchor]);
    expect(r.status, r.stderr).toBe(0);
    expect(recipientSerials(r.stdout)).toEqual([serialOf(dev.certificate)]);
  });

  it('refuses a file that starts with a CA certificate, naming the file, writing nothing', () => {
    const r = wrap(dev.anchor);
    expect(r.status).toBe(1);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr).toContain('HISP_TRUST_BASIC_CONSTRAINTS');
    expect(r.stderr).toContain(`--encrypt-cert ${dev.anchor}`);
    expect(r.stderr).toContain('is a CA certificate, not a recipient');
  });

  it('refuses a certificate whose keyUsage lacks keyEncipherment (a signing-only certificate), naming the file', () => {
    const signingOnly = join(REPO_ROOT, 'test/fixtures/pki/sender-rsa.cert.pem');
    const r = wrap(signingOnly);
    expect(r.status).toBe(1);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr).toContain('HISP_TRUST_KEY_USAGE');
    expect(r.stderr).toContain(`--encrypt-cert ${signingOnly}`);
    expect(r.stderr).toContain('lacks keyEncipherment');
  });

  it('encrypts to one recipient per file when given several', () => {
    const other = join(REPO_ROOT, 'test/fixtures/pki/recipient-rsa.chain.pem');
    const r = hisp(['wrap', '--sign-key', dev.key, '--sign-cert', dev.certificate, '--encrypt-cert', dev.certificate, '--encrypt-cert', other], MESSAGE);
    expect(r.status, r.stderr).toBe(0);
    expect(recipientSerials(r.stdout).sort()).toEqual([serialOf(dev.certificate), serialOf(other)].sort());
  });
});

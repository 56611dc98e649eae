// DCDT D1–D18 end to end (requirements §2.1, R-DIS-*, R-TRU-*, R-MULT-1): discovery AND validation
// against the real loopback servers of the DCDT harness (knot, three slapd, the PKI web server for
// CRL and AIA), through the library and through `hisp discover`, each with the manifest's expected
// outcome: `encrypt-to:<credential>` selects exactly that certificate, `no-message` selects none.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Certificate } from '../../gateway/core/certificate.js';
import { DirectAddress } from '../../gateway/core/direct-address.js';
import type { DiscoverReport } from '../../gateway/cli/discover-command.js';
import { CertificateDiscovery } from '../../gateway/discovery/certificate-discovery.js';
import { DnsClient } from '../../gateway/discovery/dns-client.js';
import { discoverRecipient } from '../../gateway/flows/discover-recipient.js';
import { createHttpFetcher } from '../../gateway/trust/http-fetch.js';
import { TrustValidator } from '../../gateway/trust/trust-validator.js';
import { DCDT_HARNESS_HOOK_TIMEOUT_MS, startDcdtHarness, type DcdtHarness, type DcdtTestcase } from '../helpers/dcdt-harness.js';

const repo = resolve(import.meta.dirname, '..', '..');
const manifest = JSON.parse(readFileSync(join(repo, 'test/fixtures/dcdt/manifest.json'), 'utf8')) as { testcases: DcdtTestcase[]; trust_anchor: string };
const anchorFile = join(repo, 'test/fixtures/dcdt', manifest.trust_anchor);
const anchor = Certificate.fromDer(readFileSync(anchorFile));
const sha256Of = (name: string) => Certificate.fromDer(readFileSync(join(repo, 'test/fixtures/dcdt/certs', `${name}.cer`))).sha256;

let harness: DcdtHarness;
let dns: DnsClient;

beforeAll(async () => {
  harness = await startDcdtHarness();
  dns = new DnsClient({ servers: [harness.dns], timeoutMs: 1000, retries: 1 });
}, DCDT_HARNESS_HOOK_TIMEOUT_MS);
afterAll(() => harness?.stop());

function expected(tc: DcdtTestcase): string | undefined {
  return tc.expected.startsWith('encrypt-to:') ? tc.expected.slice('encrypt-to:'.length) : undefined;
}

async function discoverWithLibrary(address: string, random?: () => number) {
  // pki.dcdt.test is 127.0.0.1: allowed, as an operator allows a private PKI (issue 14 item 4).
  const fetcher = createHttpFetcher({ lookup: dns.lookupFunction(), allowAddresses: ['127.0.0.1/32'] });
  const discovery = new CertificateDiscovery({ dns, ldap: { connectTimeoutMs: 2000, timeoutMs: 2000 }, ...(random ? { random } : {}) });
  return discoverRecipient(DirectAddress.parse(address), { discovery, validator: new TrustValidator({ fetcher }), anchors: [anchor] });
}

/** Runs the CLI asynchronously: the harness's web server (CRL, AIA) lives in this process. */
async function discoverWithCli(address: string): Promise<{ status: number | null; report: DiscoverReport }> {
  const args = [join(repo, 'bin/hisp.js'), 'discover', address, '--dns', `${harness.dns.host}:${harness.dns.port}`, '--anchor', anchorFile, '--json', '--timeout', '2000', '--allow-fetch', '127.0.0.1/32'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const status = await new Promise<number | null>((done) => child.on('close', done));
  return { status, report: JSON.parse(out) as DiscoverReport };
}

describe('DCDT discovery cases D1–D18 with validation', () => {
  it.each(manifest.testcases.map((tc) => [tc.name, tc] as const))('%s (library)', async (_name, tc) => {
    const result = await discoverWithLibrary(tc.direct_address);
    const target = expected(tc);
    if (target) {
      expect(result.status).toBe('selected');
      expect(result.selected.map((s) => s.certificate.sha256)).toEqual([sha256Of(target)]);
    } else {
      expect(result.status).toBe('none');
      expect(result.selected).toEqual([]);
    }
  });

  it.each(manifest.testcases.map((tc) => [tc.name, tc] as const))('%s (hisp discover --json)', async (_name, tc) => {
    const { status, report } = await discoverWithCli(tc.direct_address);
    const target = expected(tc);
    expect(report.address).toBe(tc.direct_address);
    if (target) {
      expect(status).toBe(0);
      expect(report.selected.map((s) => s.sha256)).toEqual([sha256Of(target)]);
      expect(report.selected[0]!.notAfter).toMatch(/^\d{4}-\d\d-\d\dT/);
    } else {
      expect(status).toBe(3);
      expect(report.selected).toEqual([]);
    }
  });

  it('D16 picks the weighted LDAP server over many runs, whatever the random source says', async () => {
    const tc = manifest.testcases.find((t) => t.id === 'D16')!;
    for (let i = 0; i < 50; i++) {
      const result = await discoverWithLibrary(tc.direct_address, () => (i + 0.5) / 50);
      expect(result.selected.map((s) => s.certificate.sha256)).toEqual([sha256Of('D16_valC')]);
    }
  });

  it('D17 rejects the revoked certificates with HISP_TRUST_REVOKED after fetching the root CRL', async () => {
    harness.clearLogs();
    const result = await discoverWithLibrary('d17@domain9.dcdt.test');
    const revoked = result.rejected.filter((r) => r.code === 'HISP_TRUST_REVOKED').map((r) => r.sha256);
    expect(revoked.sort()).toEqual([sha256Of('D17_invB'), sha256Of('D17_invC')].sort());
    expect(harness.http.requests).toContain('/dcdt.test_ca_root.crl');
  });

  it('D18 fetches the missing intermediate from its AIA caIssuers URL', async () => {
    harness.clearLogs();
    const result = await discoverWithLibrary('d18@domain10.dcdt.test');
    expect(result.selected.map((s) => s.certificate.sha256)).toEqual([sha256Of('D18_valA')]);
    expect(harness.http.requests).toContain('/dcdt.test_ca_intermediate1.cer');
  });
});

// DCDT D1–D18 (requirements §2.1), discovery level: against the real loopback servers of the DCDT
// harness (knot for dcdt.test, three slapd, the PKI web server), each case's lookups must stop at
// the level where its target credential is published (R-DIS-4/5) and return it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DirectAddress } from '../../gateway/core/direct-address.js';
import { DnsClient } from '../../gateway/discovery/dns-client.js';
import { CertificateDiscovery, type DiscoveryLevel } from '../../gateway/discovery/certificate-discovery.js';
import { DCDT_HARNESS_HOOK_TIMEOUT_MS, startDcdtHarness, type DcdtHarness, type DcdtTestcase } from '../helpers/dcdt-harness.js';
import { Certificate } from '../../gateway/core/certificate.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

let harness: DcdtHarness;
let discovery: CertificateDiscovery;
const nameOf = new Map<string, string>(); // sha256 → credential name

beforeAll(async () => {
  harness = await startDcdtHarness();
  const dns = new DnsClient({ servers: [harness.dns], timeoutMs: 1000, retries: 1 });
  discovery = new CertificateDiscovery({ dns, ldap: { connectTimeoutMs: 2000, timeoutMs: 2000 }, random: () => 0.5 });
  for (const tc of harness.manifest.testcases) {
    for (const c of tc.credentials) {
      nameOf.set(Certificate.fromDer(readFileSync(join(harness.fixtures, 'certs', `${c.name}.cer`))).sha256, c.name);
    }
  }
}, DCDT_HARNESS_HOOK_TIMEOUT_MS);
afterAll(() => harness?.stop());

/** Where the case's target (valid or invalid) is published, as a discovery level. */
function expectedLevel(tc: DcdtTestcase): DiscoveryLevel | undefined {
  const target = tc.credentials.find((c) => c.role === 'TARGET' || c.role === 'TARGET_INVALID');
  if (!target) return undefined;
  const where = target.location === 'DNS' ? 'dns' : 'ldap';
  return `${where}-${target.binding === 'ADDRESS' ? 'address' : 'domain'}`;
}

describe('DCDT discovery levels against loopback knot and slapd', () => {
  const cases = JSON.parse(readFileSync(new URL('../fixtures/dcdt/manifest.json', import.meta.url), 'utf8')) as { testcases: DcdtTestcase[] };
  it.each(cases.testcases.map((tc) => [tc.id, tc] as const))('%s stops at the level of its target and returns it', async (_id, tc) => {
    const outcome = await discovery.discover(DirectAddress.parse(tc.direct_address));
    const level = expectedLevel(tc);
    if (!level) {
      // D11 (nothing), D12 (only an SRV target without address), D13 (LDAP without an entry)
      expect(outcome.status).toBe('none');
      expect(outcome.certificates).toEqual([]);
      return;
    }
    expect(outcome.status).toBe('found');
    expect(outcome.level).toBe(level);
    const names = outcome.certificates.map((c) => (c.certificate ? nameOf.get(c.certificate.sha256) : undefined));
    const targets = tc.credentials.filter((c) => c.role === 'TARGET' || c.role === 'TARGET_INVALID').map((c) => c.name);
    for (const t of targets) expect(names).toContain(t);
  });
});

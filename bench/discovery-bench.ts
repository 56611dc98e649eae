import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Certificate } from '../gateway/core/certificate.js';
import { DirectAddress } from '../gateway/core/direct-address.js';
import { CertificateDiscovery } from '../gateway/discovery/certificate-discovery.js';
import { DnsClient } from '../gateway/discovery/dns-client.js';
import { createHttpFetcher } from '../gateway/trust/http-fetch.js';
import { TrustValidator } from '../gateway/trust/trust-validator.js';
import { startDcdtHarness } from '../test/helpers/dcdt-harness.js';

export interface DiscoveryFigure {
  name: string;
  value: number;
  unit: string;
}

/** Runs `fn` `runs` times in sequence; operations per second of wall time. */
async function rate(runs: number, fn: () => Promise<unknown>): Promise<number> {
  await fn();
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await fn();
  return (runs / (performance.now() - t0)) * 1000;
}

/**
 * Discovery against the DCDT loopback servers (knot, slapd, the PKI web server): cold look-ups (a new
 * resolver each time, so every DNS answer is fetched), cached ones (one resolver: DNS answers from
 * its TTL cache; LDAP is searched every time), and path validation of a three-certificate chain
 * (leaf, intermediate, root anchor) with its CRLs cached. Returns undefined when the servers are not
 * installed (scripts/install-test-peers.sh installs them).
 */
export async function benchDiscovery(): Promise<DiscoveryFigure[] | { skipped: string }> {
  let harness;
  try {
    harness = await startDcdtHarness();
  } catch (err) {
    return { skipped: `DCDT servers unavailable (${(err as Error).message.split('\n')[0]})` };
  }
  try {
    const server = harness.dns;
    const ldap = { connectTimeoutMs: 2000, timeoutMs: 2000 };
    const dnsCase = DirectAddress.parse('d1@domain1.dcdt.test');
    const ldapCase = DirectAddress.parse('d3@domain2.dcdt.test');
    const fresh = () => new CertificateDiscovery({ dns: new DnsClient({ servers: [server], timeoutMs: 2000 }), ldap });
    const shared = new CertificateDiscovery({ dns: new DnsClient({ servers: [server], timeoutMs: 2000 }), ldap });

    const figures: DiscoveryFigure[] = [
      { name: 'discovery.dns_cert.cold_per_s', value: await rate(200, () => fresh().discover(dnsCase)), unit: 'lookups/s' },
      { name: 'discovery.dns_cert.cached_per_s', value: await rate(5000, () => shared.discover(dnsCase)), unit: 'lookups/s' },
      { name: 'discovery.ldap.cold_per_s', value: await rate(100, () => fresh().discover(ldapCase)), unit: 'lookups/s' },
      { name: 'discovery.ldap.cached_dns_per_s', value: await rate(300, () => shared.discover(ldapCase)), unit: 'lookups/s' },
    ];

    const cert = (name: string) => Certificate.fromDer(readFileSync(join(harness.fixtures, 'certs', `${name}.cer`)));
    const anchors = [cert('dcdt.test_ca_root')];
    const intermediates = [cert('dcdt.test_ca_intermediate1')];
    const leaf = cert('D18_valA');
    const dns = new DnsClient({ servers: [server], timeoutMs: 2000 });
    const validator = new TrustValidator({ fetcher: createHttpFetcher({ lookup: dns.lookupFunction(), allowAddresses: ['127.0.0.1/32'] }) });
    const validate = async () => {
      const r = await validator.validate(leaf, { anchors, intermediates, purpose: 'encryption' });
      if (r.path.length !== 3 || r.revocation !== 'checked') throw new Error('unexpected validation result');
    };
    figures.push({ name: 'trust.validate_3_chain_crl_cached_per_s', value: await rate(2000, validate), unit: 'validations/s' });
    return figures;
  } finally {
    await harness.stop();
  }
}

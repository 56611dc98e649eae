import type { LookupFunction } from 'node:net';
import type { Logger } from 'pino';
import { DomainRegistry } from '../admin/domain-registry.js';
import type { HispConfig } from '../config/schema.js';
import { CertificateDiscovery } from '../discovery/certificate-discovery.js';
import { DnsClient } from '../discovery/dns-client.js';
import { createHttpFetcher, FETCH_DEFAULTS, type Fetcher } from '../trust/http-fetch.js';
import { TrustValidator } from '../trust/trust-validator.js';

/** What the running gateway finds and trusts recipients' certificates with, built from its configuration. */
export interface TrustServices {
  /** The configured resolvers (`dns.servers`, else /etc/resolv.conf), with their time-out and retries. */
  readonly dns: DnsClient;
  /** Every host name hisp connects to is resolved through {@link dns}. */
  readonly lookup: LookupFunction;
  /** The AIA, CRL and IPKIX fetcher. */
  readonly fetcher: Fetcher;
  /** The limits of each kind of fetch. */
  readonly fetchLimits: typeof FETCH_DEFAULTS;
  readonly discovery: CertificateDiscovery;
  readonly validator: TrustValidator;
  /** The local domains: credentials, anchors and trust bundles per domain and direction, policies. */
  readonly registry: DomainRegistry;
}

/**
 * Builds the trust services of a configuration: used by the gateway (HispGateway.start) and by
 * `hisp discover --config`, so that the command sees exactly what the gateway sees (the same DNS
 * servers, fetch settings, anchors, bundles and policy), not a copy of how it is set up.
 */
export function createTrustServices(config: HispConfig, options: { logger?: Logger } = {}): TrustServices {
  const dns = new DnsClient({
    ...(config.dns.servers.length > 0 ? { servers: config.dns.servers.map((s) => DnsClient.parseServer(s)) } : {}),
    timeoutMs: config.dns.timeoutMs,
    retries: config.dns.retries,
  });
  const lookup = dns.lookupFunction();
  const fetcher = createHttpFetcher({ lookup });
  return {
    dns,
    lookup,
    fetcher,
    fetchLimits: FETCH_DEFAULTS,
    discovery: new CertificateDiscovery({
      dns,
      fetch: (url) => fetcher(url, { purpose: 'aia', ...FETCH_DEFAULTS.aia }),
      ldap: { connectTimeoutMs: config.dns.timeoutMs, timeoutMs: config.dns.timeoutMs },
    }),
    validator: new TrustValidator({ fetcher }),
    registry: DomainRegistry.load(config, { ...(options.logger ? { logger: options.logger } : {}), lookup }),
  };
}

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
  /** The AIA, CRL and IPKIX fetcher: `[fetch] allowAddresses` decides which non-global addresses it may reach. */
  readonly fetcher: Fetcher;
  /** The limits of each kind of fetch (per request). */
  readonly fetchLimits: typeof FETCH_DEFAULTS;
  /** `[fetch]`: the addresses allowed, and the budget of one message or one recipient's discovery. */
  readonly fetchPolicy: HispConfig['fetch'];
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
  const { logger } = options;
  const dns = new DnsClient({
    ...(config.dns.servers.length > 0 ? { servers: config.dns.servers.map((s) => DnsClient.parseServer(s)) } : {}),
    timeoutMs: config.dns.timeoutMs,
    retries: config.dns.retries,
  });
  const lookup = dns.lookupFunction();
  // CRL, AIA and IPKIX URLs are anyone's to write: no fetch to a non-global address unless the
  // configuration allows it, and a fetch budget per message and per recipient (issue 14 item 4).
  const fetcher = createHttpFetcher({ lookup, allowAddresses: config.fetch.allowAddresses, ...(logger ? { logger: logger.child({ component: 'fetch' }) } : {}) });
  return {
    dns,
    lookup,
    fetcher,
    fetchLimits: FETCH_DEFAULTS,
    fetchPolicy: config.fetch,
    discovery: new CertificateDiscovery({
      dns,
      fetch: (url, budget) => fetcher(url, { purpose: 'aia', ...FETCH_DEFAULTS.aia, ...(budget ? { budget } : {}) }),
      ldap: { connectTimeoutMs: config.dns.timeoutMs, timeoutMs: config.dns.timeoutMs },
    }),
    validator: new TrustValidator({
      fetcher,
      fetchBudget: {
        maxFetches: config.fetch.maxFetchesPerMessage,
        maxBytes: config.fetch.maxBytesPerMessage,
        maxMs: config.fetch.timeoutPerMessageMs,
      },
    }),
    registry: DomainRegistry.load(config, { ...(logger ? { logger } : {}), lookup }),
  };
}

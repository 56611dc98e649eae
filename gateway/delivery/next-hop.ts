import { HispError } from '../core/errors.js';
import type { DnsResult, MxRecord } from '../discovery/dns-client.js';

/** What next-hop selection needs of DNS (implemented by DnsClient). */
export interface NextHopDns {
  query(name: string, type: 'MX'): Promise<DnsResult<'MX'>>;
  lookupHost(host: string): Promise<string[]>;
}

/** One server to try, with the addresses its name resolved to. */
export interface NextHop {
  /** The exchange (or the domain itself for an implicit MX): the TLS name to verify. */
  host: string;
  preference: number;
  addresses: string[];
}

/**
 * The servers that receive mail for a domain, in the order to try them (RFC 5321 §5.1): MX records by
 * preference, equal preferences in random order (`random` injectable), each exchange resolved to its
 * addresses through hisp's resolver; without MX records, the domain itself (the implicit MX). A
 * domain that does not exist (NXDOMAIN) or publishes a null MX (RFC 7505) cannot receive mail:
 * HISP_RELAY_NO_ROUTE, permanent, so that the queue fails the delivery with a DSN. DNS time-outs
 * stay transient (retry later).
 */
export async function resolveNextHops(domain: string, dns: NextHopDns, random: () => number = Math.random): Promise<NextHop[]> {
  const mx = await dns.query(domain, 'MX');
  if (mx.status === 'nxdomain') throw noRoute(domain, 'the domain does not exist');
  if (mx.records.some((r) => r.exchange === '.' || r.exchange === '')) {
    // RFC 7505 §3: a null MX says the domain accepts no mail.
    throw noRoute(domain, 'the domain publishes a null MX (RFC 7505): it accepts no mail');
  }
  const ordered: MxRecord[] =
    mx.records.length > 0
      ? [...mx.records]
          .map((r) => ({ r, k: random() }))
          .sort((a, b) => a.r.preference - b.r.preference || a.k - b.k)
          .map((x) => x.r)
      : [{ preference: 0, exchange: domain }]; // RFC 5321 §5.1: the implicit MX
  const hops: NextHop[] = [];
  for (const r of ordered) {
    const host = r.exchange.replace(/\.$/, '');
    let addresses: string[];
    try {
      addresses = await dns.lookupHost(host);
    } catch (err) {
      if (err instanceof HispError && err.transient) throw err;
      continue; // an exchange that does not resolve is skipped (RFC 5321 §5.1)
    }
    if (addresses.length > 0) hops.push({ host, preference: r.preference, addresses });
  }
  if (hops.length === 0) throw noRoute(domain, mx.records.length > 0 ? 'no MX exchange resolves to an address' : 'no MX and no address');
  return hops;
}

function noRoute(domain: string, why: string): HispError {
  return new HispError('HISP_RELAY_NO_ROUTE', `no mail route to ${domain}: ${why}`, { details: { domain } });
}

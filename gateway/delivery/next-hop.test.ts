import { describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import type { DnsResult, MxRecord } from '../discovery/dns-client.js';
import { resolveNextHops, type NextHopDns } from './next-hop.js';

/** DNS from tables: MX answers per domain (undefined: NXDOMAIN) and addresses per host. */
function dns(mx: Record<string, MxRecord[] | undefined>, hosts: Record<string, string[]>): NextHopDns {
  return {
    query: (name) => {
      const records = mx[name];
      const result: DnsResult<'MX'> = {
        name,
        canonicalName: name,
        status: records === undefined ? 'nxdomain' : records.length ? 'ok' : 'nodata',
        records: records ?? [],
        ttl: 60,
        authenticated: false,
        transport: 'udp',
        cnames: [],
      };
      return Promise.resolve(result);
    },
    lookupHost: (host) => {
      const a = hosts[host];
      if (a === 'transient' as unknown) return Promise.reject(new HispError('HISP_DISCOVERY_TEMPORARY', 'timeout', { transient: true }));
      return a ? Promise.resolve(a) : Promise.reject(Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' }));
    },
  };
}

const code = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (e) {
    return (e as HispError).code;
  }
  return undefined;
};

describe('resolveNextHops (RFC 5321 §5.1, RFC 7505)', () => {
  it('orders MX exchanges by preference and skips the ones that do not resolve', async () => {
    const hops = await resolveNextHops(
      'r.test',
      dns({ 'r.test': [{ preference: 20, exchange: 'b.r.test' }, { preference: 10, exchange: 'a.r.test' }, { preference: 5, exchange: 'gone.r.test' }] }, {
        'a.r.test': ['127.0.0.2'],
        'b.r.test': ['127.0.0.3'],
      }),
    );
    expect(hops).toEqual([
      { host: 'a.r.test', preference: 10, addresses: ['127.0.0.2'] },
      { host: 'b.r.test', preference: 20, addresses: ['127.0.0.3'] },
    ]);
  });

  it('shuffles equal preferences with the random source', async () => {
    const table = dns({ 'r.test': [{ preference: 10, exchange: 'a.r.test' }, { preference: 10, exchange: 'b.r.test' }] }, { 'a.r.test': ['1.1.1.1'], 'b.r.test': ['2.2.2.2'] });
    const seq = (xs: number[]) => () => xs.shift() ?? 0;
    expect((await resolveNextHops('r.test', table, seq([0.9, 0.1]))).map((h) => h.host)).toEqual(['b.r.test', 'a.r.test']);
    expect((await resolveNextHops('r.test', table, seq([0.1, 0.9]))).map((h) => h.host)).toEqual(['a.r.test', 'b.r.test']);
  });

  it('uses the domain itself when it has no MX (the implicit MX)', async () => {
    expect(await resolveNextHops('r.test', dns({ 'r.test': [] }, { 'r.test': ['127.0.0.9'] }))).toEqual([{ host: 'r.test', preference: 0, addresses: ['127.0.0.9'] }]);
  });

  it('refuses, permanently, a domain that does not exist, a null MX, and a domain with no address at all', async () => {
    expect(await code(resolveNextHops('none.test', dns({}, {})))).toBe('HISP_RELAY_NO_ROUTE');
    expect(await code(resolveNextHops('r.test', dns({ 'r.test': [{ preference: 0, exchange: '.' }] }, {})))).toBe('HISP_RELAY_NO_ROUTE');
    expect(await code(resolveNextHops('r.test', dns({ 'r.test': [] }, {})))).toBe('HISP_RELAY_NO_ROUTE');
  });

  it('stays transient when an exchange cannot be resolved for now', async () => {
    const table = dns({ 'r.test': [{ preference: 10, exchange: 'a.r.test' }] }, { 'a.r.test': 'transient' as unknown as string[] });
    expect(await code(resolveNextHops('r.test', table))).toBe('HISP_DISCOVERY_TEMPORARY');
  });
});

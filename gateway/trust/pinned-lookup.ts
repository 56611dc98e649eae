import type { LookupAddress, LookupOptions } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import type { FetchAddressPolicy } from './fetch-address-policy.js';

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** Every address of `host` through `lookup` (node's LookupFunction contract, asked for all). */
export function resolveAll(lookup: LookupFunction, host: string, done: (err: Error | null, addresses: LookupAddress[]) => void): void {
  const literal = isIP(host);
  if (literal !== 0) {
    done(null, [{ address: host, family: literal }]);
    return;
  }
  try {
    const answered: LookupCallback = (err, address, family) => {
      if (err) done(err, []);
      else if (Array.isArray(address)) done(null, address);
      else done(null, [{ address, family: family ?? isIP(address) }]);
    };
    lookup(host, { all: true }, answered);
  } catch (err) {
    done(err instanceof Error ? err : new Error(String(err)), []);
  }
}

/** A lookup that answers only with addresses already checked: what the connection may reach. */
export function pinnedLookup(addresses: readonly LookupAddress[]): LookupFunction {
  return (_host: string, opts: LookupOptions, callback: LookupCallback) => {
    const family = opts.family === 'IPv4' ? 4 : opts.family === 'IPv6' ? 6 : Number(opts.family ?? 0);
    const list = addresses.filter((a) => family === 0 || a.family === family);
    const first = list[0];
    process.nextTick(() => {
      if (!first) callback(Object.assign(new Error(`no IPv${family} address`), { code: 'ENOTFOUND' }), '', 0);
      else if (opts.all) callback(null, list);
      else callback(null, first.address, first.family);
    });
  };
}

/** An address a name resolved to that the policy refuses. */
export interface RefusedAddress {
  address: string;
  range: string | undefined;
}

/**
 * Every address of `host` (a name or an IP literal), each checked against `policy`: the addresses
 * a connection may be pinned to ({@link pinnedLookup}), or the first refused one. A name answering
 * with one public and one private address is refused: the connection must not be able to reach the
 * private one (a DNS rebinding between the check and the connect is what pinning prevents).
 */
export function resolveAllowed(lookup: LookupFunction, host: string, policy: FetchAddressPolicy): Promise<{ addresses: LookupAddress[] } | { refused: RefusedAddress }> {
  return new Promise((resolve, reject) => {
    resolveAll(lookup, host, (err, addresses) => {
      if (err) return reject(err);
      if (addresses.length === 0) return reject(Object.assign(new Error(`${host} has no address`), { code: 'ENOTFOUND' }));
      for (const a of addresses) {
        const verdict = policy.check(a.address);
        if (!verdict.allowed) return resolve({ refused: { address: a.address, range: verdict.range } });
      }
      resolve({ addresses });
    });
  });
}

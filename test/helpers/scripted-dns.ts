// A DNS for certificate discovery without servers: answers from tables, for unit tests of
// discovery and of what is built on it (discoverRecipient, the API's recipient validation).
import { HispError } from '../../gateway/core/errors.js';
import type { CertRecord } from '../../gateway/discovery/cert-record.js';
import { CERT_TYPES } from '../../gateway/discovery/cert-record.js';
import type { DiscoveryDns } from '../../gateway/discovery/certificate-discovery.js';
import type { SrvRecord } from '../../gateway/discovery/srv-order.js';
import type { Certificate } from '../../gateway/core/certificate.js';

export interface ScriptedDnsOptions {
  /** Names whose every query fails for now (SERVFAIL, a time-out): a transient HispError. */
  failing?: readonly string[];
  /** Names whose queries never answer (a test of time bounds). */
  silent?: readonly string[];
  /** The AD bit of every answer. */
  authenticated?: boolean;
}

/** DNS answers from a table; anything else is NXDOMAIN. Every host name resolves to 127.0.0.1. */
export function scriptedDns(cert: Record<string, CertRecord[]>, srv: Record<string, SrvRecord[]> = {}, options: ScriptedDnsOptions = {}): DiscoveryDns {
  return {
    query: ((name: string, type: 'CERT' | 'SRV') => {
      if (options.silent?.includes(name)) return new Promise(() => undefined);
      if (options.failing?.includes(name)) return Promise.reject(new HispError('HISP_DISCOVERY_TEMPORARY', `SERVFAIL for ${name}`, { transient: true }));
      // DNS names compare without regard to case (RFC 4343); the tables' names are lowercase.
      const key = name.toLowerCase();
      const records = (type === 'CERT' ? cert[key] : srv[key]) ?? [];
      return Promise.resolve({ status: records.length ? 'ok' : 'nxdomain', records, authenticated: options.authenticated ?? false, transport: 'udp' });
    }) as DiscoveryDns['query'],
    // Every host is 127.0.0.1 (net.connect asks for all addresses when it may try several families).
    lookupFunction: () => (_host, lookupOptions, callback) => {
      if (typeof lookupOptions === 'object' && lookupOptions.all) {
        (callback as (e: Error | null, a: { address: string; family: number }[]) => void)(null, [{ address: '127.0.0.1', family: 4 }]);
      } else {
        ((typeof lookupOptions === 'function' ? lookupOptions : callback) as (e: Error | null, a: string, f: number) => void)(null, '127.0.0.1', 4);
      }
    },
  };
}

/** A CERT record of type PKIX (RFC 4398 §2.1) holding the certificate. */
export const pkixRecord = (c: Certificate): CertRecord => ({ certType: CERT_TYPES.PKIX, keyTag: 0, algorithm: 0, data: c.der });
/** A CERT record of type IPKIX (RFC 4398 §2.1): the URL of the certificate. */
export const ipkixRecord = (url: string): CertRecord => ({ certType: CERT_TYPES.IPKIX, keyTag: 0, algorithm: 0, data: Buffer.from(url) });

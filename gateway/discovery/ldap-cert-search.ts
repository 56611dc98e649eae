import { connect, type LookupFunction, type NetConnectOpts } from 'node:net';
import { Client, EqualityFilter } from 'ldapts';
import type { DirectAddress } from '../core/direct-address.js';
import { OID } from '../agent/algorithms.js';
import { children, decodeBer, expectSequence, isContext, readOid } from '../agent/asn1.js';
import type { SrvRecord } from './srv-order.js';

/** Attributes that may carry a Direct certificate (CD-IG; R-DIS-8). */
const CERT_ATTRIBUTES = ['userCertificate', 'userCertificate;binary', 'userSMIMECertificate', 'userSMIMECertificate;binary'];

export interface LdapSearchOptions {
  /** Resolves target host names (the discovery's DNS client, so that `--dns` covers LDAP hosts too). */
  lookup?: LookupFunction;
  /** TCP connect time-out; default 10 s (the Java RI's). */
  connectTimeoutMs?: number;
  /** Time-out of each LDAP operation; default 5 s (the Java RI's read time-out). */
  timeoutMs?: number;
}

export type LdapAttemptStatus = 'answered' | 'unresolvable' | 'refused' | 'timeout' | 'failed';

export interface LdapAttempt {
  target: string;
  port: number;
  status: LdapAttemptStatus;
  detail?: string;
  /** Base DNs read from the rootDSE namingContexts. */
  baseDns?: string[];
}

export interface LdapSearchResult {
  /** found: certificates at one level; none: a server answered without any; unavailable: no server answered. */
  status: 'found' | 'none' | 'unavailable';
  /** When no server answered: permanent when every target failed to resolve (requirements §5.9). */
  transient: boolean;
  binding?: 'address' | 'domain';
  /** DER certificates of the level that yielded, in server order. */
  certificates: Buffer[];
  server?: { target: string; port: number };
  attempts: LdapAttempt[];
}

/**
 * LDAP certificate discovery of the S&I Certificate Discovery IG (R-DIS-8): the targets in the order
 * given (see orderSrvTargets), skipping those that do not resolve or refuse the connection (R-DIS-7),
 * the first that answers decides: anonymous bind, base DNs from the rootDSE namingContexts, subtree
 * search `mail=<address>` then `mail=<domain>` (RFC 4515 escaping by ldapts' EqualityFilter), values
 * of userCertificate(;binary) and userSMIMECertificate.
 */
export async function searchLdapCertificates(
  targets: readonly SrvRecord[],
  address: DirectAddress,
  options: LdapSearchOptions = {},
): Promise<LdapSearchResult> {
  const attempts: LdapAttempt[] = [];
  for (const t of targets) {
    const host = t.target.replace(/\.$/, '');
    const attempt: LdapAttempt = { target: host, port: t.port, status: 'failed' };
    attempts.push(attempt);
    const client = new Client({
      url: `ldap://${host.includes(':') ? `[${host}]` : host}:${t.port}`,
      connectTimeout: options.connectTimeoutMs ?? 10_000,
      timeout: options.timeoutMs ?? 5_000,
      strictDN: false,
      ...(options.lookup ? { createConnection: connectWith(options.lookup) } : {}),
    });
    try {
      await client.bind('', '');
      const root = await client.search('', { scope: 'base', filter: '(objectClass=*)', attributes: ['namingContexts'] });
      const baseDns = root.searchEntries.flatMap((e) => asStrings(e.namingContexts));
      attempt.baseDns = baseDns;
      attempt.status = 'answered';
      for (const [binding, mail] of [
        ['address', address.toString()],
        ['domain', address.domain],
      ] as const) {
        const certificates: Buffer[] = [];
        for (const base of baseDns) {
          const r = await client.search(base, {
            scope: 'sub',
            filter: new EqualityFilter({ attribute: 'mail', value: mail }),
            attributes: CERT_ATTRIBUTES,
            explicitBufferAttributes: CERT_ATTRIBUTES,
          });
          for (const entry of r.searchEntries) {
            for (const attr of CERT_ATTRIBUTES) {
              for (const v of asBuffers(entry[attr])) certificates.push(...certificatesOfValue(v));
            }
          }
        }
        if (certificates.length > 0) {
          return { status: 'found', transient: false, binding, certificates, server: { target: host, port: t.port }, attempts };
        }
      }
      return { status: 'none', transient: false, certificates: [], server: { target: host, port: t.port }, attempts };
    } catch (err) {
      classify(attempt, err);
    } finally {
      await client.unbind().catch(() => undefined);
    }
  }
  const transient = attempts.length > 0 && attempts.some((a) => a.status !== 'unresolvable');
  return { status: 'unavailable', transient, certificates: [], attempts };
}

/** net.connect as ldapts calls it (port, host) or (options), with host names resolved by `lookup`. */
function connectWith(lookup: LookupFunction): typeof connect {
  return ((...args: unknown[]) => {
    const options: NetConnectOpts =
      typeof args[0] === 'object' && args[0] !== null ? (args[0] as NetConnectOpts) : { port: Number(args[0]), host: String(args[1]) };
    return connect({ ...options, lookup });
  });
}

function classify(attempt: LdapAttempt, err: unknown): void {
  const e = err as { code?: string; message?: string; name?: string };
  attempt.detail = e.message ?? String(err);
  if (e.code === 'ENOTFOUND' || e.code === 'EAI_NONAME' || e.code === 'EAI_AGAIN') attempt.status = 'unresolvable';
  else if (e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET' || e.code === 'EHOSTUNREACH') attempt.status = 'refused';
  else if (/time ?out/i.test(`${e.name ?? ''} ${e.message ?? ''}`) || e.code === 'ETIMEDOUT') attempt.status = 'timeout';
  else attempt.status = 'failed';
}

function asStrings(v: unknown): string[] {
  const list: unknown[] = Array.isArray(v) ? v : v === undefined ? [] : [v];
  return list.map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : typeof x === 'string' ? x : ''));
}

function asBuffers(v: unknown): Buffer[] {
  if (v === undefined) return [];
  const list = Array.isArray(v) ? v : [v];
  return list.filter((x): x is Buffer => Buffer.isBuffer(x) && x.length > 0);
}

/**
 * A certificate attribute value: one DER certificate, or (userSMIMECertificate, RFC 2798 §9.1.2) a
 * PKCS#7 SignedData whose certificates are taken. Values that are neither are returned as they are,
 * so that the caller rejects them with a reason rather than losing them silently.
 */
function certificatesOfValue(v: Buffer): Buffer[] {
  try {
    const [type, content] = expectSequence(decodeBer(v, 'LDAP value'), 'value');
    if (readOid(type, 'contentType') !== OID.signedData || !isContext(content, 0)) return [v];
    const signedData = expectSequence(children(content, 'content')[0], 'SignedData');
    const certs = signedData.find((n) => isContext(n, 0));
    return certs ? children(certs, 'certificates').map((c) => Buffer.from(c.raw)) : [];
  } catch {
    return [v];
  }
}

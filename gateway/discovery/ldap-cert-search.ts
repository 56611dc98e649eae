import { connect, type LookupFunction, type NetConnectOpts } from 'node:net';
import { Client, EqualityFilter } from 'ldapts';
import type { DirectAddress } from '../core/direct-address.js';
import { OID } from '../agent/algorithms.js';
import { children, decodeBer, expectSequence, isContext, readOid } from '../agent/asn1.js';
import { guardLdapSocket } from './ldap-response-guard.js';
import type { SrvRecord } from './srv-order.js';

/** Attributes that may carry a Direct certificate (CD-IG; R-DIS-8). */
const CERT_ATTRIBUTES = ['userCertificate', 'userCertificate;binary', 'userSMIMECertificate', 'userSMIMECertificate;binary'];
/** The same, as compared: attribute descriptions are case-insensitive (RFC 4512 §2.5). */
const CERT_ATTRIBUTES_LC = new Set(CERT_ATTRIBUTES.map((a) => a.toLowerCase()));
/**
 * Naming contexts searched per server: a directory has a few (Active Directory five); a server that
 * lists thousands would otherwise get two searches, and their time-outs, for each.
 */
export const MAX_BASE_DNS = 8;
/** Certificates taken from one server's answers: an address publishes a handful. */
export const MAX_LDAP_CERTIFICATES = 64;

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
      createConnection: guardedConnect(`${host}:${t.port}`, options.lookup),
    });
    try {
      await client.bind('', '');
      const root = await client.search('', { scope: 'base', filter: '(objectClass=*)', attributes: ['namingContexts'] });
      const baseDns = root.searchEntries.flatMap((e) => asStrings(attributeValues(e, 'namingcontexts'))).slice(0, MAX_BASE_DNS);
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
            for (const [name, value] of Object.entries(entry)) {
              if (!CERT_ATTRIBUTES_LC.has(name.toLowerCase())) continue;
              for (const v of asBuffers(value)) certificates.push(...certificatesOfValue(v));
            }
          }
          certificates.splice(MAX_LDAP_CERTIFICATES);
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

/**
 * net.connect as ldapts calls it, (port, host) or (options): host names resolved by `lookup` when
 * given, and what the server sends checked before ldapts reads it (guardLdapSocket).
 */
function guardedConnect(server: string, lookup: LookupFunction | undefined): typeof connect {
  return ((...args: unknown[]) => {
    const options: NetConnectOpts =
      typeof args[0] === 'object' && args[0] !== null ? (args[0] as NetConnectOpts) : { port: Number(args[0]), host: String(args[1]) };
    return guardLdapSocket(connect({ ...options, ...(lookup ? { lookup } : {}) }), server);
  });
}

/** The values of an attribute of an entry, whatever the case of its name in the answer (RFC 4512 §2.5). */
function attributeValues(entry: Record<string, unknown>, lowerCaseName: string): unknown {
  for (const [name, value] of Object.entries(entry)) if (name.toLowerCase() === lowerCaseName) return value;
  return undefined;
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

/**
 * Values as octets. ldapts hands values as Buffers for the names it was asked for in that exact case,
 * and as strings (decoded from UTF-8, which the octets then were) when a server spells the name in
 * another case: those are encoded back.
 */
function asBuffers(v: unknown): Buffer[] {
  if (v === undefined) return [];
  const list: unknown[] = Array.isArray(v) ? v : [v];
  return list
    .map((x) => (Buffer.isBuffer(x) ? x : typeof x === 'string' ? Buffer.from(x, 'utf8') : Buffer.alloc(0)))
    .filter((x) => x.length > 0);
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

import type { LookupFunction } from 'node:net';
import { Certificate } from '../core/certificate.js';
import type { DirectAddress } from '../core/direct-address.js';
import { HispError, isHispError } from '../core/errors.js';
import type { FetchBudget } from '../trust/fetch-budget.js';
import { certRecordUrl, CERT_TYPES, type CertRecord } from './cert-record.js';
import { searchLdapCertificates, type LdapSearchOptions } from './ldap-cert-search.js';
import { orderSrvTargets, type SrvRecord } from './srv-order.js';

/** What discovery needs of DNS (implemented by DnsClient). */
export interface DiscoveryDns {
  query(name: string, type: 'CERT'): Promise<{ status: 'ok' | 'nxdomain' | 'nodata'; records: CertRecord[]; authenticated: boolean; transport: 'udp' | 'tcp' }>;
  query(name: string, type: 'SRV'): Promise<{ status: 'ok' | 'nxdomain' | 'nodata'; records: SrvRecord[]; authenticated: boolean; transport: 'udp' | 'tcp' }>;
  lookupFunction(): LookupFunction;
}

/** One lookup of a discovery run, for `hisp discover` and the logs. */
export interface DiscoveryStep {
  step: 'dns-cert' | 'ipkix' | 'srv' | 'ldap';
  /** Owner name, URL or LDAP server. */
  name: string;
  result: 'found' | 'nxdomain' | 'nodata' | 'none' | 'unresolvable' | 'refused' | 'timeout' | 'failed' | 'error';
  /** Certificates (or SRV targets) returned. */
  count?: number;
  detail?: string;
}

export type DiscoveryLevel = 'dns-address' | 'dns-domain' | 'ldap-address' | 'ldap-domain';

/** A certificate as discovery found it, before validation. */
export interface FoundCertificate {
  /** Undefined when the published bytes are not a certificate (then `error` says why). */
  certificate: Certificate | undefined;
  der: Buffer;
  binding: 'address' | 'domain';
  source: 'dns' | 'ldap';
  error?: HispError;
}

export interface DiscoveryOutcome {
  /** found: `certificates` hold the first level that returned records (R-DIS-4); none: nothing
   * published anywhere (permanent); transient: a lookup failed for now and nothing was found. */
  status: 'found' | 'none' | 'transient';
  level?: DiscoveryLevel;
  certificates: FoundCertificate[];
  /** DNS answers of the level were DNSSEC-validated (AD bit from a validating resolver). */
  authenticated: boolean;
  steps: DiscoveryStep[];
  /** Why, when transient. */
  reason?: string;
}

export interface CertificateDiscoveryOptions {
  dns: DiscoveryDns;
  /**
   * Fetches an IPKIX URL (RFC 4398 type 4); default: none (IPKIX records are then rejected). The
   * budget of the recipient being discovered, when given, is to be charged (see FetchBudget).
   */
  fetch?: (url: URL, budget?: FetchBudget) => Promise<Buffer>;
  ldap?: Omit<LdapSearchOptions, 'lookup'>;
  /** Random source of the SRV weighted selection (RFC 2782), injectable for repeatable tests. */
  random?: () => number;
}

/**
 * Certificate discovery of the Applicability Statement (R-DIS-1..8): DNS CERT at the address-bound
 * owner name (`local.domain`, R-DIS-3), then at the domain, then LDAP through `_ldap._tcp.<domain>`
 * SRV (address, then domain). It stops at the first level that returns certificates (R-DIS-4) and
 * returns them all for validation, so that no domain-bound certificate is used when address-bound
 * ones exist but are invalid (R-DIS-5). Permanent and transient outcomes follow requirements §5.9: a
 * DNS time-out or SERVFAIL ends the run as transient (what it hid is unknown); unreachable LDAP
 * targets are skipped for the next one, and make the outcome transient only if no target answered.
 */
export class CertificateDiscovery {
  constructor(private readonly options: CertificateDiscoveryOptions) {}

  /** `budget`: what the IPKIX fetches of this discovery may cost (one per recipient, shared with its trust checks). */
  async discover(address: DirectAddress, options: { budget?: FetchBudget } = {}): Promise<DiscoveryOutcome> {
    const steps: DiscoveryStep[] = [];
    const { dns } = this.options;
    try {
      for (const [level, name] of [
        ['dns-address', address.dnsOwnerName],
        ['dns-domain', address.domain],
      ] as const) {
        const answer = await dns.query(name, 'CERT');
        const records = answer.records;
        steps.push({ step: 'dns-cert', name, result: answer.status === 'ok' ? 'found' : answer.status, count: records.length, detail: answer.transport });
        if (records.length === 0) continue;
        const binding = level === 'dns-address' ? 'address' : 'domain';
        const certificates = await this.fromCertRecords(records, binding, steps, options.budget);
        return { status: 'found', level, certificates, authenticated: answer.authenticated, steps };
      }
      const srvName = `_ldap._tcp.${address.domain}`;
      const srv = await dns.query(srvName, 'SRV');
      steps.push({ step: 'srv', name: srvName, result: srv.status === 'ok' ? 'found' : srv.status, count: srv.records.length });
      if (srv.records.length === 0) return { status: 'none', certificates: [], authenticated: srv.authenticated, steps };
      const ldap = await searchLdapCertificates(orderSrvTargets(srv.records, this.options.random), address, {
        ...this.options.ldap,
        lookup: dns.lookupFunction(),
      });
      for (const a of ldap.attempts) {
        const found = a.status === 'answered' && ldap.server?.target === a.target && ldap.server.port === a.port;
        steps.push({
          step: 'ldap',
          name: `${a.target}:${a.port}`,
          result: found ? (ldap.status === 'found' ? 'found' : 'none') : a.status === 'answered' ? 'none' : a.status,
          ...(found ? { count: ldap.certificates.length } : {}),
          ...(a.detail ? { detail: a.detail } : a.baseDns ? { detail: `base ${a.baseDns.join('; ')}` } : {}),
        });
      }
      if (ldap.status === 'found') {
        const binding = ldap.binding ?? 'address';
        return {
          status: 'found',
          level: binding === 'address' ? 'ldap-address' : 'ldap-domain',
          certificates: ldap.certificates.map((der) => parse(der, binding, 'ldap')),
          authenticated: false,
          steps,
        };
      }
      if (ldap.status === 'unavailable' && ldap.transient) {
        return { status: 'transient', certificates: [], authenticated: false, steps, reason: 'no LDAP server answered' };
      }
      return { status: 'none', certificates: [], authenticated: false, steps };
    } catch (err) {
      if (err instanceof HispError && err.transient) {
        steps.push({ step: 'dns-cert', name: 'dns', result: 'error', detail: err.message });
        return { status: 'transient', certificates: [], authenticated: false, steps, reason: err.message };
      }
      throw err;
    }
  }

  private async fromCertRecords(records: CertRecord[], binding: 'address' | 'domain', steps: DiscoveryStep[], budget: FetchBudget | undefined): Promise<FoundCertificate[]> {
    const out: FoundCertificate[] = [];
    for (const r of records) {
      if (r.certType === CERT_TYPES.PKIX) {
        out.push(parse(r.data, binding, 'dns'));
        continue;
      }
      let url: URL | undefined;
      try {
        url = r.certType === CERT_TYPES.IPKIX ? certRecordUrl(r) : undefined;
      } catch {
        url = undefined; // a malformed IPKIX URL is a rejected record, not a failed discovery
      }
      if (!url || !this.options.fetch) {
        out.push({
          certificate: undefined,
          der: r.data,
          binding,
          source: 'dns',
          error: new HispError('HISP_DISCOVERY_NO_CERT', `CERT record of type ${r.certType} is not a usable X.509 certificate`),
        });
        continue;
      }
      try {
        const der = await this.options.fetch(url, budget);
        steps.push({ step: 'ipkix', name: url.toString(), result: 'found', count: 1 });
        out.push(parse(der, binding, 'dns'));
      } catch (err) {
        const refused = isHispError(err) && err.details?.refused === true;
        steps.push({ step: 'ipkix', name: url.toString(), result: refused ? 'refused' : 'error', detail: (err as Error).message });
        // An address the policy refuses is refused again on every try: a permanent rejection of this
        // record (issue 14 item 4), not a reason to retry the message for a day.
        const error = refused ? err : new HispError('HISP_DISCOVERY_TEMPORARY', `IPKIX ${url.toString()}: ${(err as Error).message}`, { transient: true });
        out.push({ certificate: undefined, der: r.data, binding, source: 'dns', error });
      }
    }
    return out;
  }
}

function parse(der: Buffer, binding: 'address' | 'domain', source: 'dns' | 'ldap'): FoundCertificate {
  try {
    return { certificate: Certificate.fromDer(der), der, binding, source };
  } catch (err) {
    return { certificate: undefined, der, binding, source, error: err instanceof HispError ? err : new HispError('HISP_KEY_UNREADABLE', 'not a certificate') };
  }
}

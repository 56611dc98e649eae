import type { Command } from 'commander';
import { Option } from 'commander';
import { DirectAddress } from '../core/direct-address.js';
import { HispError } from '../core/errors.js';
import { CertificateDiscovery, type DiscoveryStep } from '../discovery/certificate-discovery.js';
import { DnsClient } from '../discovery/dns-client.js';
import { discoverRecipient, type RecipientDiscovery } from '../flows/discover-recipient.js';
import { resolvePolicy } from '../policy/cert-policy.js';
import { createHttpFetcher, FETCH_DEFAULTS } from '../trust/http-fetch.js';
import { readBundleFile } from '../trust/trust-bundle.js';
import { TrustValidator } from '../trust/trust-validator.js';
import { readFile } from './cli-io.js';
import { ALLOW_FETCH_HELP, collect, parseAllowFetch, parseAt, readCertificateFiles } from './credential-options.js';
import { EXIT, ReportedFailure } from './exit-codes.js';

interface DiscoverFlags {
  dns?: string;
  anchor?: string[];
  bundle?: string[];
  bundleSigner?: string;
  at?: string;
  allowSha1?: boolean;
  revocation: 'soft-fail' | 'hard-fail' | 'off';
  timeout: string;
  blueButtonPlus?: boolean;
  requireDnssec?: boolean;
  allowFetch?: string[];
  json?: boolean;
}

/** The `--json` report: a contract scripts rely on (fields may be added, never renamed). */
export interface DiscoverReport {
  address: string;
  status: RecipientDiscovery['status'];
  level?: string;
  selected: { sha256: string; binding: 'address' | 'domain'; source: 'dns' | 'ldap'; subject: string; notAfter: string; basis: 'anchor' | 'blue-button-plus' }[];
  rejected: { sha256: string; reason: string; subject?: string; detail: string }[];
  steps: DiscoveryStep[];
  code?: string;
}

export function registerDiscover(program: Command): void {
  program
    .command('discover')
    .argument('<address>', 'the Direct address to find certificates for')
    .summary('find and validate the certificates of a Direct address, as the gateway does before encrypting')
    .description(
      'Runs certificate discovery (DNS CERT at the address, then at the domain, then LDAP via ' +
        '_ldap._tcp SRV) and validates what it finds against the anchors (and bundles): binding, path, ' +
        'validity, key usage, revocation (CRL) and missing intermediates (AIA). Exit 0 when at least ' +
        'one certificate is selected, 3 when none (permanent), 4 when the answer is "try again later".',
    )
    .option('--dns <host:port>', 'send every DNS query of the run to this server (default: /etc/resolv.conf)')
    .option('--anchor <file>', 'outgoing trust anchor(s), PEM (several per file) or DER; repeatable', collect)
    .option('--bundle <file>', 'trust bundle file (certs-only PKCS#7, DER or PEM, or CMS-signed); repeatable', collect)
    .option('--bundle-signer <file>', 'certificate that must have signed the --bundle files')
    .option('--at <iso8601>', 'validation time (default now)')
    .option('--allow-sha1', 'legacy switch: accept SHA-1 certificate signatures (never MD5)')
    .addOption(new Option('--revocation <mode>', 'when a CRL cannot be fetched').choices(['soft-fail', 'hard-fail', 'off']).default('soft-fail'))
    .option('--timeout <ms>', 'time-out of each DNS try and LDAP operation', '3000')
    .option('--blue-button-plus', 'a patient-directed send: accept a well-formed, unexpired, unrevoked certificate without an anchor (requirements §5.5)')
    .option('--require-dnssec', 'with --blue-button-plus: only from a DNSSEC-validated answer (AD bit of a validating resolver)')
    .option('--allow-fetch <cidr>', ALLOW_FETCH_HELP, collect)
    .option('--json', 'JSON report on stdout')
    .action(async (addressText: string, flags: DiscoverFlags) => {
      let address: DirectAddress;
      try {
        address = DirectAddress.parse(addressText);
      } catch {
        throw new HispError('HISP_USAGE', `${JSON.stringify(addressText)} is not a Direct address (local@domain)`);
      }
      const timeoutMs = Number(flags.timeout);
      if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new HispError('HISP_USAGE', '--timeout must be a positive number of milliseconds');
      const at = parseAt(flags.at);
      const dns = new DnsClient({ ...(flags.dns ? { servers: [DnsClient.parseServer(flags.dns)] } : {}), timeoutMs });
      const lookup = dns.lookupFunction();
      const fetcher = createHttpFetcher({ lookup, allowAddresses: parseAllowFetch(flags.allowFetch) });
      const signer = flags.bundleSigner ? readCertificateFiles([flags.bundleSigner], 'bundle signer')[0] : undefined;
      const anchors = [
        ...readCertificateFiles(flags.anchor ?? [], 'anchor'),
        ...(flags.bundle ?? []).flatMap((f) =>
          readBundleFile(readFile(f, 'bundle'), { source: f, ...(signer ? { signer } : {}), ...(at ? { at } : {}), allowSha1: flags.allowSha1 ?? false }),
        ),
      ];
      if (anchors.length === 0 && !flags.blueButtonPlus) throw new HispError('HISP_USAGE', 'give at least one --anchor or --bundle');
      const discovery = new CertificateDiscovery({
        dns,
        fetch: (url, budget) => fetcher(url, { purpose: 'aia', ...FETCH_DEFAULTS.aia, ...(budget ? { budget } : {}) }),
        ldap: { connectTimeoutMs: timeoutMs, timeoutMs },
      });
      const validator = new TrustValidator({ fetcher });
      const policy = resolvePolicy({
        allowSha1: flags.allowSha1 ?? false,
        revocation: flags.revocation,
        blueButtonPlus: { enabled: flags.blueButtonPlus ?? false, requireDnssec: flags.requireDnssec ?? false },
      });
      const result = await discoverRecipient(address, {
        discovery,
        validator,
        anchors,
        policy,
        ...(at ? { at } : {}),
        patientDirected: flags.blueButtonPlus ?? false,
      });
      const report: DiscoverReport = {
        address: address.toString(),
        status: result.status,
        ...(result.level ? { level: result.level } : {}),
        selected: result.selected.map((s) => ({
          sha256: s.certificate.sha256,
          binding: s.binding,
          source: s.source,
          subject: s.certificate.subject,
          notAfter: s.certificate.notAfter.toISOString(),
          basis: s.basis,
        })),
        rejected: result.rejected.map((r) => ({
          sha256: r.sha256,
          reason: r.code,
          ...(r.certificate ? { subject: r.certificate.subject } : {}),
          detail: r.reason,
        })),
        steps: result.steps,
        ...(result.code ? { code: result.code } : {}),
      };
      process.stdout.write(flags.json ? `${JSON.stringify(report)}\n` : readable(report, result.reason));
      const code = result.status === 'selected' ? EXIT.ok : result.status === 'none' ? EXIT.permanent : EXIT.transient;
      if (code !== EXIT.ok) throw new ReportedFailure(code);
    });
}

/** The account of each step an operator reads to answer "why can't I send to this address?". */
function readable(r: DiscoverReport, reason: string | undefined): string {
  const lines = [`discover ${r.address}`];
  for (const s of r.steps) {
    const count = s.count === undefined ? '' : ` (${s.count})`;
    lines.push(`  ${s.step.padEnd(8)} ${s.name}: ${s.result}${count}${s.detail ? ` — ${s.detail}` : ''}`);
  }
  for (const s of r.selected) lines.push(`  selected ${s.subject} [${s.binding}, ${s.source}] sha256 ${s.sha256} until ${s.notAfter}`);
  for (const x of r.rejected) lines.push(`  rejected ${x.subject ?? '(not a certificate)'} sha256 ${x.sha256 || '-'}: ${x.reason} ${x.detail}`);
  lines.push(
    r.status === 'selected'
      ? `result: ${r.selected.length} certificate(s) to encrypt to`
      : `result: ${r.status === 'none' ? 'no usable certificate (permanent)' : 'try again later (transient)'}: ${r.code ?? ''} ${reason ?? ''}`,
  );
  return `${lines.join('\n')}\n`;
}

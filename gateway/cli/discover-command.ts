import type { Command } from 'commander';
import { Option } from 'commander';
import { loadConfig } from '../config/load-config.js';
import { findDomain, type HispConfig } from '../config/schema.js';
import { DirectAddress } from '../core/direct-address.js';
import { HispError } from '../core/errors.js';
import { CertificateDiscovery, type DiscoveryStep } from '../discovery/certificate-discovery.js';
import { DnsClient } from '../discovery/dns-client.js';
import { discoverRecipient, type RecipientDiscovery } from '../flows/discover-recipient.js';
import { checkRecipient, type RecipientCheck } from '../flows/recipient-check.js';
import { createTrustServices, type TrustServices } from '../flows/trust-services.js';
import { resolvePolicy, type CertificatePolicy } from '../policy/cert-policy.js';
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
  config?: string;
  from?: string;
}

/** The `--json` report: a contract scripts rely on (fields may be added, never renamed). */
export interface DiscoverReport {
  address: string;
  status: RecipientDiscovery['status'];
  level?: string;
  selected: {
    sha256: string;
    binding: 'address' | 'domain';
    /** `local`: with --config, a recipient in a local domain: the gateway encrypts to that domain's own certificates. */
    source: 'dns' | 'ldap' | 'local';
    subject: string;
    notAfter: string;
    basis: 'anchor' | 'blue-button-plus' | 'local';
  }[];
  rejected: { sha256: string; reason: string; subject?: string; detail: string }[];
  steps: DiscoveryStep[];
  code?: string;
  /** With --config: what the gateway uses for this send, as it loads it. */
  view?: GatewayView;
}

/**
 * What the gateway of a configuration uses to send as `from` (`hisp discover --config`): the
 * sending domain's outgoing anchors (its files and its trust bundles, as fetched now), its
 * certificate policy, the DNS servers and the fetch limits.
 */
export interface GatewayView {
  config: string;
  /** The sender the view is taken for: an address (address-scoped anchors count too) or a domain. */
  from: string;
  /** The local domain whose policy applies. */
  domain: string;
  /** The recipient is in a local domain: no discovery; the gateway encrypts to that domain's certificates. */
  localRecipient: boolean;
  anchors: { subject: string; sha256: string; notAfter: string }[];
  bundles: { url: string; scopes: string[]; status: 'updated' | 'unchanged' | 'failed' | 'not fetched'; anchors: number; error?: string }[];
  policy: CertificatePolicy;
  dns: { servers: string[]; timeoutMs: number; retries: number };
  /** Per-request limits of each kind of fetch. */
  fetch: TrustServices['fetchLimits'];
  /** `[fetch]`: non-global addresses fetches may reach, and the budget per message or recipient. */
  fetchPolicy: TrustServices['fetchPolicy'];
}

/** Flags that set what the configuration sets: refused with --config, which is there to show the configuration's view. */
const CONFIGURED: readonly (keyof DiscoverFlags)[] = ['dns', 'anchor', 'bundle', 'bundleSigner', 'allowSha1', 'revocation', 'timeout', 'requireDnssec', 'allowFetch'];

export function registerDiscover(program: Command): void {
  program
    .command('discover')
    .argument('<address>', 'the Direct address to find certificates for')
    .summary('find and validate the certificates of a Direct address, as the gateway does before encrypting')
    .description(
      'Runs certificate discovery (DNS CERT at the address, then at the domain, then LDAP via ' +
        '_ldap._tcp SRV) and validates what it finds against the anchors (and bundles): binding, path, ' +
        'validity, key usage, revocation (CRL) and missing intermediates (AIA). With --config, exactly as the ' +
        "gateway of that configuration does it for a message from --from: its DNS servers and fetch limits, the " +
        "sending domain's outgoing anchors, trust bundles (fetched as at the gateway's start) and policy, shown " +
        'first. Exit 0 when at least one certificate is selected, 3 when none (permanent), 4 when the answer is ' +
        '"try again later".',
    )
    .option('--dns <host:port>', 'send every DNS query of the run to this server (default: /etc/resolv.conf)')
    .option('--anchor <file>', 'outgoing trust anchor(s), PEM (several per file) or DER; repeatable', collect)
    .option('--bundle <file>', 'trust bundle file (certs-only PKCS#7, DER or PEM, or CMS-signed); repeatable', collect)
    .option('--bundle-signer <file>', 'certificate that must have signed the --bundle files')
    .option('--at <iso8601>', 'validation time (default now)')
    .option('--allow-sha1', 'legacy switch: accept SHA-1 certificate signatures (never MD5)')
    .addOption(new Option('--revocation <mode>', 'when a CRL cannot be fetched').choices(['soft-fail', 'hard-fail', 'off']).default('soft-fail'))
    .option('--timeout <ms>', 'time-out of each DNS try and LDAP operation', '3000')
    .option(
      '--blue-button-plus',
      'a patient-directed send: accept a well-formed, unexpired, unrevoked certificate without an anchor (requirements §5.5); with --config, only where its policy allows it',
    )
    .option('--require-dnssec', 'with --blue-button-plus: only from a DNSSEC-validated answer (AD bit of a validating resolver)')
    .option('--allow-fetch <cidr>', ALLOW_FETCH_HELP, collect)
    .option('--config <file>', "see exactly what the gateway of this configuration sees: its DNS servers, fetch limits, and the sending domain's outgoing anchors, trust bundles and policy")
    .option('--from <address-or-domain>', 'with --config: the sender (a local address or domain) whose view to take; default the only domain')
    .option('--json', 'JSON report on stdout')
    .action(async (addressText: string, flags: DiscoverFlags, command: Command) => {
      let address: DirectAddress;
      try {
        address = DirectAddress.parse(addressText);
      } catch {
        throw new HispError('HISP_USAGE', `${JSON.stringify(addressText)} is not a Direct address (local@domain)`);
      }
      if (flags.config !== undefined) {
        for (const name of CONFIGURED) {
          if (command.getOptionValueSource(name) === 'cli') {
            const flag = `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
            throw new HispError('HISP_USAGE', `${flag} cannot be combined with --config: the configuration sets it (leave out --config to try other settings)`);
          }
        }
        const config = loadConfig(flags.config);
        const from = senderOf(config, flags.from);
        const { report, reason } = await discoverAsGateway(address, config, flags.config, from, { at: parseAt(flags.at), patientDirected: flags.blueButtonPlus ?? false });
        finish(report, reason, flags.json ?? false);
        return;
      }
      if (flags.from !== undefined) throw new HispError('HISP_USAGE', '--from needs --config (it picks the sending domain of a configuration)');
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
      finish(reportOf(address, result), result.reason, flags.json ?? false);
    });
}

/** The --json report of a discovery (or of the check of a local recipient, with --config). */
function reportOf(address: DirectAddress, result: RecipientDiscovery | RecipientCheck): DiscoverReport {
  return {
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
}

/** Prints the report; exit 3 (none) or 4 (transient) unless a certificate was selected. */
function finish(report: DiscoverReport, reason: string | undefined, json: boolean): void {
  process.stdout.write(json ? `${JSON.stringify(report)}\n` : readable(report, reason));
  const code = report.status === 'selected' ? EXIT.ok : report.status === 'none' ? EXIT.permanent : EXIT.transient;
  if (code !== EXIT.ok) throw new ReportedFailure(code);
}

/**
 * The sender whose view `--config` takes: `--from` (a local address, whose address-scoped anchors
 * count too, or a local domain), else the configuration's only domain. The gateway takes the
 * anchors of the message's sender and the policy of its domain (relay-worker.ts).
 */
function senderOf(config: HispConfig, from: string | undefined): { scope: string; domain: string } {
  const names = config.domains.map((d) => d.name);
  if (from === undefined) {
    if (names.length === 1) return { scope: names[0]!, domain: names[0]! };
    throw new HispError('HISP_USAGE', `the configuration has ${names.length} domains (${names.join(', ')}): give --from ADDRESS_OR_DOMAIN, the sender whose view to take`);
  }
  let scope: string;
  let domain: string;
  if (from.includes('@')) {
    let a: DirectAddress;
    try {
      a = DirectAddress.parse(from);
    } catch {
      throw new HispError('HISP_USAGE', `--from ${JSON.stringify(from)} is not a Direct address or a domain`);
    }
    scope = a.toString();
    domain = a.domain;
  } else {
    scope = from;
    domain = from;
  }
  const local = findDomain(config, domain);
  if (local === undefined) throw new HispError('HISP_USAGE', `--from ${from}: ${domain} is not a domain of the configuration (${names.join(', ')})`);
  return { scope: scope.includes('@') ? scope : local.name, domain: local.name };
}

/**
 * Discovery as the gateway of `config` does it for a message from `from` (relay-worker.ts): the
 * same trust services (createTrustServices: DNS servers, fetcher, validator, domains with their
 * anchors, bundles fetched as at the gateway's start, and policies); a recipient in a local domain
 * is not discovered: the gateway encrypts to that domain's own certificates.
 */
async function discoverAsGateway(
  address: DirectAddress,
  config: HispConfig,
  configFile: string,
  from: { scope: string; domain: string },
  options: { at: Date | undefined; patientDirected: boolean },
): Promise<{ report: DiscoverReport; reason: string | undefined }> {
  const services = createTrustServices(config);
  const { registry } = services;
  await registry.startBundles();
  try {
    const localRecipient = registry.isLocalDomain(address.domain);
    const policy = registry.policy(from.domain);
    const anchors = registry.anchorsFor(from.scope, 'outgoing', { patientDirected: options.patientDirected });
    const view: GatewayView = {
      config: configFile,
      from: from.scope,
      domain: from.domain,
      localRecipient,
      anchors: anchors.map((c) => ({ subject: c.subject, sha256: c.sha256, notAfter: c.notAfter.toISOString() })),
      bundles: registry.bundleSources
        .filter((b) => b.scopes.some((s) => s.directions.includes('outgoing') && [from.scope, from.domain, '*'].includes(s.scope)))
        .map((b) => {
          const last = b.lastOutcome;
          return {
            url: b.url.href,
            scopes: b.scopes.map((s) => s.scope),
            status: last?.status ?? 'not fetched',
            anchors: b.anchors.length,
            ...(last?.error ? { error: `${last.error.code}: ${last.error.message}` } : {}),
          };
        }),
      policy,
      dns: { servers: services.dns.servers.map((s) => (s.host.includes(':') ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`)), timeoutMs: services.dns.timeoutMs, retries: services.dns.retries },
      fetch: services.fetchLimits,
      fetchPolicy: services.fetchPolicy,
    };
    const result = await checkRecipient(address, from, services, { ...(options.at ? { at: options.at } : {}), patientDirected: options.patientDirected });
    return { report: { ...reportOf(address, result), view }, reason: result.reason };
  } finally {
    registry.stopBundles();
  }
}

/** The account of each step an operator reads to answer "why can't I send to this address?". */
function readable(r: DiscoverReport, reason: string | undefined): string {
  const lines = r.view ? viewLines(r.view) : [];
  lines.push(`discover ${r.address}`);
  if (r.view?.localRecipient) lines.push(`  local    ${r.address.slice(r.address.lastIndexOf('@') + 1)} is a domain of this gateway: no discovery, its own certificates`);
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

/** The gateway's view (--config), for a person: what the discovery below ran with. */
function viewLines(v: GatewayView): string[] {
  const p = v.policy;
  const limit = (l: { timeoutMs: number; maxBytes: number }) => `${l.timeoutMs} ms, ${Math.round(l.maxBytes / 1024)} KiB`;
  const lines = [`view of ${v.from} (domain ${v.domain}) in ${v.config}`];
  lines.push(`  anchors  ${v.anchors.length} outgoing${v.anchors.length === 0 ? ' (none: no recipient can be trusted, except under Blue Button+)' : ''}`);
  for (const a of v.anchors) lines.push(`           ${a.subject} sha256 ${a.sha256} until ${a.notAfter}`);
  for (const b of v.bundles) {
    lines.push(`  bundle   ${b.url}: ${b.status === 'failed' || b.status === 'not fetched' ? `not loaded${b.error ? ` (${b.error})` : ''}` : `${b.anchors} anchor(s)`}`);
  }
  lines.push(
    `  policy   RSA >= ${p.minRsaBits} bits, SHA-1 ${p.allowSha1 ? 'allowed' : 'refused'}, revocation ${p.revocation}, ` +
      `keyUsage required for encryption: ${p.requiredKeyUsage.encryption.length === 0 ? 'keyEncipherment if the extension is present' : p.requiredKeyUsage.encryption.join(', ')}, Blue Button+ ${p.blueButtonPlus.enabled ? `on${p.blueButtonPlus.requireDnssec ? ' (DNSSEC required)' : ''}` : 'off'}`,
  );
  lines.push(`  dns      ${v.dns.servers.join(', ')} (time-out ${v.dns.timeoutMs} ms, retries ${v.dns.retries})`);
  lines.push(`  fetch    AIA ${limit(v.fetch.aia)}; CRL ${limit(v.fetch.crl)}; bundle ${limit(v.fetch.bundle)}`);
  const fp = v.fetchPolicy;
  lines.push(
    `           non-global addresses allowed: ${fp.allowAddresses.length === 0 ? 'none' : fp.allowAddresses.join(', ')}; ` +
      `per message or recipient: ${fp.maxFetchesPerMessage} requests, ${Math.round(fp.maxBytesPerMessage / 1024)} KiB, ${fp.timeoutPerMessageMs} ms`,
  );
  return lines;
}

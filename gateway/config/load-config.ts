import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { loadCredentials, readCertificates, type PrivateCredential } from '../agent/key-material.js';
import { KEY_USAGE_BITS, type Certificate, type KeyUsage } from '../core/certificate.js';
import { DirectAddress } from '../core/direct-address.js';
import { HispError, isHispError } from '../core/errors.js';
import { DnsClient } from '../discovery/dns-client.js';
import { resolvePolicy } from '../policy/cert-policy.js';
import { readAnchorFile } from '../trust/anchor-store.js';
import { MAX_RATE_PER_MINUTE } from '../store/api-key-store.js';
import { parseAddressRange } from '../trust/fetch-address-policy.js';
import { Issues, Section, childPath, indexPath, type ConfigIssue } from './config-reader.js';
import { parsePasswordHash } from './password-hash.js';
import {
  ADDRESS_PLACEHOLDER,
  ANY_REMOTE_DOMAIN,
  BUNDLE_DIRECTIONS,
  CREDENTIAL_USES,
  DEFAULTS,
  DELIVERY_TYPES,
  deepFreeze,
  FORWARD_POSITIVE,
  KEY_TRANSPORTS,
  LOG_LEVELS,
  REVOCATION_MODES,
  SEND_CIPHERS,
  substituteAddress,
  type AddressConfig,
  type ApiConfig,
  type AuthLimitsConfig,
  type BundleConfig,
  type CredentialConfig,
  type DeliveryConfig,
  type DomainConfig,
  type DomainPolicyConfig,
  type HispConfig,
  type MdnConfig,
  type PerClientLimitsConfig,
  type RemoteDomainConfig,
  type SmtpListenerConfig,
  type SubmissionUser,
} from './schema.js';

export type { ConfigIssue } from './config-reader.js';
export { deepFreeze } from './schema.js';

/**
 * Loading the configuration (`hisp start --config FILE`, `hisp config check`): TOML (smol-toml) →
 * defaults → relative paths resolved against the file's folder → every value validated (types,
 * ranges, ports, enum values, duplicates, unknown keys, files that must exist and be readable, each
 * private key against its certificate, each anchor and bundle signer parsed) → deep-frozen. All
 * errors are collected and thrown together as one HISP_CONFIG_INVALID whose message lists them one
 * per line as `key.path: what is wrong` (details.errors holds them as {path, message}). Messages
 * name files and key paths, never a value of a secret key and never key material.
 *
 * Environment: HISP_CONFIG (the file when none is given), HISP_DATA_DIR (overrides `dataDir`,
 * relative to the working directory), HISP_LOG_LEVEL (overrides `log.level`).
 */

export interface ConfigReport {
  config: HispConfig;
  /** Problems that do not stop a start (a certificate not bound to its domain, an expired one, no anchors…). */
  warnings: ConfigIssue[];
  /** The file read, absolute (undefined for {@link buildConfig} on an object). */
  file: string | undefined;
}

export interface BuildConfigOptions {
  /** Folder relative paths are resolved against; default the working directory. */
  baseDir?: string;
  env?: NodeJS.ProcessEnv;
  /** Named in the error message. */
  file?: string;
  /** The time certificates are checked at (expiry warnings); default now. */
  now?: Date;
}

/** Reads, validates and freezes the configuration. Throws HISP_IO, HISP_USAGE or HISP_CONFIG_INVALID. */
export function loadConfig(path?: string, env: NodeJS.ProcessEnv = process.env): HispConfig {
  return inspectConfig(path, env).config;
}

/** {@link loadConfig} with the warnings, for `hisp config check` and the start-up log. */
export function inspectConfig(path?: string, env: NodeJS.ProcessEnv = process.env, options: { now?: Date } = {}): ConfigReport {
  const given = path ?? env.HISP_CONFIG;
  if (given === undefined || given === '') {
    throw new HispError('HISP_USAGE', 'no configuration file: give --config FILE or set HISP_CONFIG');
  }
  const file = resolve(given);
  let text: string;
  try {
    if (statSync(file).isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    throw new HispError('HISP_IO', `cannot read configuration file ${file}${code ? ` (${code})` : ''}`, { cause });
  }
  return parseConfig(text, { baseDir: dirname(file), env, file, ...(options.now ? { now: options.now } : {}) });
}

/** Parses TOML text and builds the configuration (relative paths against `options.baseDir`). */
export function parseConfig(text: string, options: BuildConfigOptions = {}): ConfigReport {
  let raw: unknown;
  try {
    raw = parseToml(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    // Only the first line of smol-toml's message: the rest quotes the source, which may hold a secret.
    const reason = (err.message.split('\n')[0] ?? '').replace(/^Invalid TOML document: /, '');
    throw invalid([{ path: '', message: `TOML syntax error at line ${err.line}, column ${err.column}: ${reason}` }], options.file);
  }
  return buildConfig(raw, options);
}

/** Builds the configuration from an already parsed object (the TOML document's shape). */
export function buildConfig(raw: unknown, options: BuildConfigOptions = {}): ConfigReport {
  const issues = new Issues();
  const ctx: Context = {
    issues,
    env: options.env ?? process.env,
    now: options.now ?? new Date(),
    baseDir: resolve(options.baseDir ?? '.'),
    dataDir: '',
  };
  const root = Section.of(issues, '', raw, ctx.baseDir);

  const hostname = readHost(root, 'hostname', DEFAULTS.hostname);
  const dataDirText = root.optString('dataDir');
  const envDataDir = ctx.env.HISP_DATA_DIR;
  ctx.dataDir = envDataDir ? resolve(envDataDir) : resolve(ctx.baseDir, dataDirText ?? DEFAULTS.dataDir);
  checkDataDir(issues, envDataDir ? 'env HISP_DATA_DIR' : 'dataDir', ctx.dataDir);

  const logSection = root.section('log');
  let level = logSection.oneOf('level', LOG_LEVELS, DEFAULTS.log.level);
  logSection.done();
  const envLevel = ctx.env.HISP_LOG_LEVEL;
  if (envLevel) {
    if ((LOG_LEVELS as readonly string[]).includes(envLevel)) level = envLevel as typeof level;
    else issues.error('env HISP_LOG_LEVEL', `expected one of ${LOG_LEVELS.map((l) => `"${l}"`).join(', ')}, got ${JSON.stringify(envLevel.slice(0, 40))}`);
  }

  const dnsSection = root.section('dns');
  const dns = {
    servers: dnsSection.stringList('servers', DEFAULTS.dns.servers, (value) => {
      try {
        DnsClient.parseServer(value);
        return undefined;
      } catch (err) {
        return isHispError(err) ? err.message : 'not a DNS server address (HOST:PORT)';
      }
    }),
    timeoutMs: dnsSection.int('timeoutMs', DEFAULTS.dns.timeoutMs, 1, 600_000),
    retries: dnsSection.int('retries', DEFAULTS.dns.retries, 0, 100),
  };
  dnsSection.done();

  const fetchSection = root.section('fetch');
  const fetch = {
    allowAddresses: fetchSection.stringList('allowAddresses', DEFAULTS.fetch.allowAddresses, (value) => {
      const range = parseAddressRange(value);
      return typeof range === 'string' ? range : undefined;
    }),
    maxFetchesPerMessage: fetchSection.int('maxFetchesPerMessage', DEFAULTS.fetch.maxFetchesPerMessage, 1, 1000),
    maxBytesPerMessage: fetchSection.int('maxBytesPerMessage', DEFAULTS.fetch.maxBytesPerMessage, 1024, 1024 * 1024 * 1024),
    timeoutPerMessageMs: fetchSection.int('timeoutPerMessageMs', DEFAULTS.fetch.timeoutPerMessageMs, 100, 600_000),
  };
  fetchSection.done();

  const submissionSection = root.section('submission');
  const submissionListener = readListener(submissionSection, DEFAULTS.submission, ctx);
  const userSections = submissionSection.sections('users');
  const authLimits = readAuthLimits(submissionSection.section('authLimits'));
  submissionSection.done();
  const inboundSection = root.section('inbound');
  const inbound = readListener(inboundSection, DEFAULTS.inbound, ctx);
  inboundSection.done();
  const apiSection = root.section('api');
  const api = readApi(apiSection, ctx);
  apiSection.done();

  const domainSections = root.sections('domains');
  const rawDomains = root.value('domains');
  if (rawDomains === undefined || (Array.isArray(rawDomains) && rawDomains.length === 0)) issues.error('domains', 'at least one local domain is required ([[domains]] with a name and credentials)');
  const domains = domainSections.map((s) => readDomain(s, ctx));
  checkDuplicates(
    issues,
    domains.map((d, i) => ({ key: d.name, path: childPath(indexPath('domains', i), 'name') })),
    'domain',
  );
  checkDuplicates(
    issues,
    domains.flatMap((d, i) => d.addresses.map((a, j) => ({ key: a.address.toLowerCase(), path: childPath(indexPath(childPath(indexPath('domains', i), 'addresses'), j), 'address') }))),
    'address',
  );

  // An API mailbox is read only through the HTTP API: without it nobody could ever take its messages.
  if (!api.enabled) {
    domains.forEach((d, i) => {
      const where = childPath(indexPath('domains', i), 'delivery');
      if (d.delivery.type === 'api') issues.error(childPath(where, 'type'), 'delivery type "api" needs the HTTP API: set [api] enabled = true');
      d.addresses.forEach((a, j) => {
        if (a.delivery.type === 'api') issues.error(childPath(childPath(indexPath(childPath(indexPath('domains', i), 'addresses'), j), 'delivery'), 'type'), 'delivery type "api" needs the HTTP API: set [api] enabled = true');
      });
    });
  }

  const users = userSections.map((s) => readUser(s, domains));
  checkDuplicates(
    issues,
    users.map((u, i) => ({ key: u.username.toLowerCase(), path: childPath(indexPath('submission.users', i), 'username') })),
    'username',
  );
  if (submissionListener.enabled && userSections.length === 0) {
    issues.warn('submission.users', 'no submission account: the submission listener will refuse every message (see `hisp config hash-password`)');
  }

  const remoteDomains = readRemoteDomains(root.section('remoteDomains'));

  const queueSection = root.section('queue');
  const retrySchedule = queueSection.numberList('retrySchedule', DEFAULTS.queue.retrySchedule, { min: 0.01, max: 10_080 });
  const schedule = queueSection.value('retrySchedule');
  if (Array.isArray(schedule)) {
    if (schedule.length === 0) issues.error(queueSection.at('retrySchedule'), 'must list at least one interval (minutes)');
    let prev: number | undefined;
    schedule.forEach((m: unknown, i) => {
      if (typeof m !== 'number') return;
      if (prev !== undefined && m < prev) issues.error(indexPath(queueSection.at('retrySchedule'), i), `intervals must not decrease (${m} after ${prev})`);
      prev = m;
    });
  }
  const queue = {
    retrySchedule,
    giveUpHours: queueSection.number('giveUpHours', DEFAULTS.queue.giveUpHours, 0.001, 720), // 0.001 h = 3.6 s: test set-ups
    workers: queueSection.int('workers', DEFAULTS.queue.workers, 1, 256),
    wrapThreads: queueSection.int('wrapThreads', DEFAULTS.queue.wrapThreads, 0, 64),
    largeMessageMemoryBytes: queueSection.int('largeMessageMemoryBytes', DEFAULTS.queue.largeMessageMemoryBytes, 1024 * 1024, 2 ** 40),
  };
  queueSection.done();
  const dedupeSection = root.section('dedupe');
  const dedupe = { windowHours: dedupeSection.number('windowHours', DEFAULTS.dedupe.windowHours, 0.01, 8760) };
  dedupeSection.done();
  const quarantineSection = root.section('quarantine');
  const quarantine = {
    retentionDays: quarantineSection.number('retentionDays', DEFAULTS.quarantine.retentionDays, 0.01, 36_500),
    maxBytes: quarantineSection.int('maxBytes', DEFAULTS.quarantine.maxBytes, 1024 * 1024, Number.MAX_SAFE_INTEGER),
    reserveBytes: quarantineSection.int('reserveBytes', DEFAULTS.quarantine.reserveBytes, 0, 1024 ** 3),
  };
  // A message larger than the cap is never kept (quarantine-store.ts): the cap must hold the
  // largest one the inbound port accepts.
  if (inbound.enabled && quarantine.maxBytes < inbound.maxMessageBytes) {
    issues.error(quarantineSection.at('maxBytes'), `must be at least inbound.maxMessageBytes (${inbound.maxMessageBytes}), or the largest messages could never be kept`);
  }
  quarantineSection.done();
  root.done();

  const submission = { ...submissionListener, users, authLimits };
  checkListenerConflicts(issues, [
    { name: 'submission', enabled: submission.enabled, host: submission.host, port: submission.port },
    { name: 'inbound', enabled: inbound.enabled, host: inbound.host, port: inbound.port },
    { name: 'api', enabled: api.enabled, host: api.host, port: api.port },
  ]);

  if (issues.errors.length > 0) throw invalid(issues.errors, options.file);
  const config: HispConfig = {
    dataDir: ctx.dataDir,
    hostname,
    log: { level },
    dns,
    fetch,
    submission,
    inbound,
    api,
    domains,
    remoteDomains,
    queue,
    dedupe,
    quarantine,
  };
  return { config: deepFreeze(config), warnings: issues.warnings, file: options.file };
}

/** The one error of an invalid configuration: every problem on its own line. */
function invalid(errors: readonly ConfigIssue[], file: string | undefined): HispError {
  const head = `the configuration${file ? ` ${file}` : ''} is invalid (${errors.length} error${errors.length === 1 ? '' : 's'}):`;
  const lines = errors.map((e) => `  ${formatIssue(e)}`);
  return new HispError('HISP_CONFIG_INVALID', [head, ...lines].join('\n'), {
    details: { ...(file ? { file } : {}), errors: errors.map((e) => ({ path: e.path, message: e.message })) },
  });
}

export function formatIssue(issue: ConfigIssue): string {
  return issue.path === '' ? issue.message : `${issue.path}: ${issue.message}`;
}


// ------------------------------------------------------------------------------------------------

interface Context {
  issues: Issues;
  env: NodeJS.ProcessEnv;
  now: Date;
  baseDir: string;
  dataDir: string;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

function isHost(value: string): boolean {
  return isIP(value) !== 0 || HOSTNAME.test(value);
}

function readHost(s: Section, key: string, def: string): string {
  const v = s.optString(key);
  if (v === undefined) return def;
  if (!isHost(v)) {
    s.issues.error(s.at(key), `not a host name or IP address: ${JSON.stringify(v.slice(0, 80))}`);
    return def;
  }
  return v;
}

function normalizeDomainName(value: string): string | undefined {
  const d = value.trim().toLowerCase().replace(/\.$/, '');
  return /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/.test(d) && d.length <= 253 ? d : undefined;
}

function checkDataDir(issues: Issues, path: string, dir: string): void {
  try {
    if (!statSync(dir).isDirectory()) issues.error(path, `not a directory: ${dir}`);
  } catch {
    // Created at start.
  }
}

function checkDuplicates(issues: Issues, entries: readonly { key: string; path: string }[], what: string): void {
  const first = new Map<string, string>();
  for (const { key, path } of entries) {
    if (key === '') continue;
    const earlier = first.get(key);
    if (earlier !== undefined) issues.error(path, `duplicate ${what} ${JSON.stringify(key)} (already at ${earlier})`);
    else first.set(key, path);
  }
}

function readListener(s: Section, d: typeof DEFAULTS.submission | typeof DEFAULTS.inbound, ctx: Context): SmtpListenerConfig {
  const enabled = s.bool('enabled', d.enabled);
  const host = readHost(s, 'host', d.host);
  const port = s.port('port', d.port);
  const tlsCert = s.optFile('tlsCert');
  const tlsKey = s.optFile('tlsKey');
  const requireTls = s.bool('requireTls', d.requireTls);
  if (s.has('tlsCert') !== s.has('tlsKey')) {
    const missing = s.has('tlsCert') ? 'tlsKey' : 'tlsCert';
    s.issues.error(s.at(missing), `missing: tlsCert and tlsKey go together`);
  } else if (enabled && requireTls && !s.has('tlsCert')) {
    s.issues.error(s.at('tlsCert'), 'missing: requireTls = true needs tlsCert and tlsKey (or set requireTls = false)');
  }
  const listener: SmtpListenerConfig = {
    enabled,
    host,
    port,
    ...(tlsCert !== undefined ? { tlsCert } : {}),
    ...(tlsKey !== undefined ? { tlsKey } : {}),
    requireTls,
    maxMessageBytes: s.int('maxMessageBytes', d.maxMessageBytes, 1024, 1024 ** 3),
    commandTimeoutMs: s.int('commandTimeoutMs', d.commandTimeoutMs, 1000, 3_600_000),
    dataTimeoutMs: s.int('dataTimeoutMs', d.dataTimeoutMs, 1000, 3_600_000),
    maxClients: s.int('maxClients', d.maxClients, 1, 100_000),
    perClient: readPerClient(s.section('perClient'), d.perClient),
  };
  if (listener.perClient.maxConnections >= listener.maxClients) {
    s.issues.error(childPath(s.at('perClient'), 'maxConnections'), `must be below maxClients (${listener.maxClients}): one client could otherwise take every connection`);
  }
  if (tlsCert !== undefined && tlsKey !== undefined) {
    const loaded = tryLoadCredentials(ctx.issues, s.path, { key: tlsKey, cert: tlsCert, keyKey: 'tlsKey', certKey: 'tlsCert' });
    for (const c of loaded) warnValidity(ctx, s.at('tlsCert'), c.certificate);
  }
  return listener;
}

/**
 * `[api]`: HTTPS with the configured certificate, or plain HTTP on a loopback host only (issue 15):
 * an API key in clear on a network is a key anyone on the path can use.
 */
function readApi(s: Section, ctx: Context): ApiConfig {
  const d = DEFAULTS.api;
  const enabled = s.bool('enabled', d.enabled);
  const host = readHost(s, 'host', d.host);
  const port = s.port('port', d.port);
  const tlsCert = s.optFile('tlsCert');
  const tlsKey = s.optFile('tlsKey');
  if (s.has('tlsCert') !== s.has('tlsKey')) {
    s.issues.error(s.at(s.has('tlsCert') ? 'tlsKey' : 'tlsCert'), 'missing: tlsCert and tlsKey go together');
  } else if (enabled && !s.has('tlsCert') && !isLoopback(host)) {
    s.issues.error(s.at('host'), `${host} is not a loopback address: plain HTTP (no tlsCert and tlsKey) is served on loopback only (127.0.0.1, ::1, localhost); give tlsCert and tlsKey for HTTPS`);
  }
  if (tlsCert !== undefined && tlsKey !== undefined) {
    for (const c of tryLoadCredentials(ctx.issues, s.path, { key: tlsKey, cert: tlsCert, keyKey: 'tlsKey', certKey: 'tlsCert' })) warnValidity(ctx, s.at('tlsCert'), c.certificate);
  }
  const bodyLimitBytes = s.int('bodyLimitBytes', d.bodyLimitBytes, 1024, 1024 ** 3);
  const limits = s.section('rateLimit');
  const rateLimit = {
    perKeyPerMinute: limits.int('perKeyPerMinute', d.rateLimit.perKeyPerMinute, 1, MAX_RATE_PER_MINUTE),
    perClientPerMinute: limits.int('perClientPerMinute', d.rateLimit.perClientPerMinute, 1, MAX_RATE_PER_MINUTE),
  };
  limits.done();
  return { enabled, host, port, ...(tlsCert !== undefined ? { tlsCert } : {}), ...(tlsKey !== undefined ? { tlsKey } : {}), bodyLimitBytes, rateLimit };
}

function readPerClient(s: Section, d: PerClientLimitsConfig): PerClientLimitsConfig {
  const limits: PerClientLimitsConfig = {
    maxConnections: s.int('maxConnections', d.maxConnections, 1, 100_000),
    messagesPerMinute: s.int('messagesPerMinute', d.messagesPerMinute, 0, 1_000_000),
    bytesPerMinute: s.int('bytesPerMinute', d.bytesPerMinute, 0, 2 ** 50),
  };
  s.done();
  return limits;
}

function readAuthLimits(s: Section): AuthLimitsConfig {
  const d = DEFAULTS.submission.authLimits;
  const limits: AuthLimitsConfig = {
    maxFailuresPerConnection: s.int('maxFailuresPerConnection', d.maxFailuresPerConnection, 1, 100),
    maxFailuresPerClient: s.int('maxFailuresPerClient', d.maxFailuresPerClient, 0, 100_000),
    maxFailuresPerUser: s.int('maxFailuresPerUser', d.maxFailuresPerUser, 0, 100_000),
    windowMinutes: s.number('windowMinutes', d.windowMinutes, 0.1, 10_080),
    lockoutMinutes: s.number('lockoutMinutes', d.lockoutMinutes, 0.1, 10_080),
    concurrentChecks: s.int('concurrentChecks', d.concurrentChecks, 1, 64),
    rememberSuccessMinutes: s.number('rememberSuccessMinutes', d.rememberSuccessMinutes, 0, 1440),
  };
  s.done();
  return limits;
}

function readUser(s: Section, domains: readonly DomainConfig[]): SubmissionUser {
  const username = s.requiredString('username') ?? '';
  if (username !== '' && (/[\s\0]/.test(username) || username.length > 256)) {
    s.issues.error(s.at('username'), 'must be 1 to 256 characters without spaces');
  }
  const passwordHash = s.requiredString('passwordHash') ?? '';
  if (passwordHash !== '') {
    try {
      parsePasswordHash(passwordHash);
    } catch (err) {
      s.issues.error(s.at('passwordHash'), isHispError(err) ? err.message : 'not a password hash');
    }
  }
  if (!s.has('mayUseAddresses')) s.issues.error(s.at('mayUseAddresses'), 'missing (required): the addresses ("a@domain") or domains ("@domain") this account may send from');
  const mayUseAddresses = s.stringList('mayUseAddresses', [], (value) => {
    const v = value.trim();
    if (v.startsWith('@')) {
      const domain = normalizeDomainName(v.slice(1));
      if (domain === undefined) return `not a domain: ${JSON.stringify(v.slice(0, 80))}`;
      if (!domains.some((d) => d.name === domain)) return `${domain} is not a local domain (domains[].name)`;
      return undefined;
    }
    let address: DirectAddress;
    try {
      address = DirectAddress.parse(v);
    } catch {
      return `not an address ("local@domain") or a domain ("@domain"): ${JSON.stringify(v.slice(0, 80))}`;
    }
    const domain = domains.find((d) => d.name === address.domain);
    if (!domain) return `${address.domain} is not a local domain (domains[].name)`;
    if (!domain.catchAll && !domain.addresses.some((a) => a.address.toLowerCase() === address.toString().toLowerCase())) {
      return `${address.toString()} is not an address of ${domain.name} (domains[].addresses; replies and MDNs to it could not be received)`;
    }
    return undefined;
  }).map((v) => {
    const t = v.trim();
    return t.startsWith('@') ? `@${normalizeDomainName(t.slice(1)) ?? t.slice(1)}` : DirectAddress.parse(t).toString();
  });
  const mayUse = s.value('mayUseAddresses');
  if (Array.isArray(mayUse) && mayUse.length === 0) {
    s.issues.error(s.at('mayUseAddresses'), 'must list at least one address or "@domain"');
  }
  s.done();
  return { username, passwordHash, mayUseAddresses };
}

function readDomain(s: Section, ctx: Context): DomainConfig {
  const nameText = s.requiredString('name');
  let name = '';
  if (nameText !== undefined) {
    const n = normalizeDomainName(nameText);
    if (n === undefined) s.issues.error(s.at('name'), `not a domain name: ${JSON.stringify(nameText.slice(0, 80))}`);
    else name = n;
  }

  const credentialSections = s.sections('credentials');
  const credentials = credentialSections.map((c) => readCredential(c, name, ctx));
  if (!s.has('credentials')) {
    s.issues.error(s.at('credentials'), 'missing (required): at least one [[domains.credentials]] to sign and decrypt with');
  } else if (credentialSections.length === 0 && Array.isArray(s.value('credentials'))) {
    s.issues.error(s.at('credentials'), 'must list at least one credential to sign and decrypt with');
  } else {
    const active = credentials.filter((c) => !c.retired);
    if (!active.some((c) => c.use !== 'decrypt')) s.issues.error(s.at('credentials'), 'no active signing credential (use = "sign" or "both", retired = false)');
    if (!active.some((c) => c.use !== 'sign')) s.issues.error(s.at('credentials'), 'no active decryption credential (use = "decrypt" or "both", retired = false)');
  }

  const anchorsSection = s.section('anchors');
  const readAnchors = (key: 'incoming' | 'outgoing'): string[] =>
    anchorsSection.fileList(key).map(({ path, file, readable }) => {
      if (readable) checkAnchorFile(ctx, path, file);
      return file;
    });
  const anchors = { incoming: readAnchors('incoming'), outgoing: readAnchors('outgoing') };
  anchorsSection.done();

  const bundles = s.sections('bundles').map((b) => readBundle(b));
  const policy = readPolicy(s.section('policy'));
  for (const direction of ['incoming', 'outgoing'] as const) {
    // A patient bundle does not count: it serves patient-directed sends only.
    const bundled = bundles.some((b) => !b.patient && (b.direction === direction || b.direction === 'both'));
    if (anchors[direction].length === 0 && !bundled && !(direction === 'outgoing' && policy.blueButtonPlus.enabled)) {
      s.issues.warn(
        anchorsSection.at(direction),
        direction === 'incoming'
          ? 'no incoming anchor or bundle: every message from another HISP will be refused'
          : 'no outgoing anchor or bundle: no recipient certificate can be trusted, so nothing can be sent',
      );
    }
  }
  const mdn = readMdn(s.section('mdn'));
  const relaySection = s.section('relay');
  const relay = { tlsRequired: relaySection.bool('tlsRequired', DEFAULTS.relay.tlsRequired) };
  relaySection.done();

  const defaultMaildir = join(ctx.dataDir, 'maildir', ADDRESS_PLACEHOLDER);
  const delivery = s.has('delivery') ? readDelivery(s.section('delivery'), defaultMaildir) : { type: 'maildir' as const, path: defaultMaildir };
  const catchAll = s.bool('catchAll', DEFAULTS.catchAll);

  const addresses: AddressConfig[] = [];
  for (const a of s.sections('addresses')) {
    const text = a.requiredString('address');
    let address: string | undefined;
    if (text !== undefined) {
      try {
        const parsed = DirectAddress.parse(text);
        address = parsed.toString();
        if (name !== '' && parsed.domain !== name) a.issues.error(a.at('address'), `${address} is not an address of the domain ${name}`);
      } catch {
        a.issues.error(a.at('address'), `not an address (local@domain): ${JSON.stringify(text.slice(0, 80))}`);
      }
    }
    const own = a.has('delivery') ? readDelivery(a.section('delivery'), defaultMaildir) : undefined;
    a.done();
    if (address !== undefined) addresses.push({ address, delivery: substituteAddress(own ?? delivery, address) });
  }
  s.done();
  return { name, credentials, anchors, bundles, policy, mdn, relay, delivery, catchAll, addresses };
}

function readCredential(s: Section, domain: string, ctx: Context): CredentialConfig {
  const key = s.requiredFile('key');
  const cert = s.optFile('cert');
  const password = s.optString('password', { nonEmpty: false });
  const use = s.oneOf('use', CREDENTIAL_USES, DEFAULTS.credential.use);
  const retired = s.bool('retired', DEFAULTS.credential.retired);
  const certGivenButBad = s.has('cert') && cert === undefined;
  s.done();
  const credential: CredentialConfig = {
    key: key ?? '',
    ...(cert !== undefined ? { cert } : {}),
    ...(password !== undefined ? { password } : {}),
    use,
    retired,
  };
  if (key === undefined || certGivenButBad) return credential;
  for (const c of tryLoadCredentials(ctx.issues, s.path, { key, cert, password, keyKey: 'key', certKey: 'cert' })) {
    const certPath = s.at('cert');
    const leaf = c.certificate;
    if (use !== 'sign' && c.key.asymmetricKeyType !== 'rsa') {
      s.issues.error(s.at('key'), `${(c.key.asymmetricKeyType ?? 'non-RSA').toUpperCase()} keys cannot decrypt: Direct key transport needs RSA (set use = "sign")`);
    }
    const needs: [KeyUsage, string][] = [];
    if (use !== 'decrypt') needs.push(['digitalSignature', 'sign']);
    if (use !== 'sign' && c.key.asymmetricKeyType === 'rsa') needs.push(['keyEncipherment', 'decrypt']);
    for (const [usage, verb] of needs) {
      if (leaf.keyUsage && !leaf.keyUsage.has(usage)) {
        s.issues.error(certPath, `${leaf.subject} lacks the ${usage} key usage, so it cannot ${verb} (use = "${use}")`);
      }
    }
    if (domain !== '' && !boundToDomain(leaf, domain)) {
      s.issues.warn(certPath, `${leaf.subject} is bound neither to ${domain} (dNSName) nor to an address at it (rfc822Name): peers will refuse it`);
    }
    if (!retired) warnValidity(ctx, certPath, leaf);
  }
  return credential;
}

function boundToDomain(cert: Certificate, domain: string): boolean {
  if (cert.dnsNames.some((d) => d.toLowerCase().replace(/\.$/, '') === domain)) return true;
  return cert.rfc822Names.some((n) => n.slice(n.lastIndexOf('@') + 1).toLowerCase() === domain);
}

function warnValidity(ctx: Context, path: string, cert: Certificate): void {
  if (ctx.now < cert.notBefore) ctx.issues.warn(path, `${cert.subject} is not valid before ${cert.notBefore.toISOString()}`);
  else if (ctx.now > cert.notAfter) ctx.issues.warn(path, `${cert.subject} expired on ${cert.notAfter.toISOString()}`);
}

/**
 * loadCredentials with its errors turned into configuration errors at the right key (the cert key
 * when the certificate file is at fault, else the key's); the password is never part of a message.
 */
function tryLoadCredentials(
  issues: Issues,
  path: string,
  files: { key: string; cert: string | undefined; password?: string | undefined; keyKey: string; certKey: string },
): PrivateCredential[] {
  try {
    return loadCredentials(files.key, files.cert, files.password);
  } catch (err) {
    if (!isHispError(err)) {
      issues.error(childPath(path, files.keyKey), `cannot read the key and certificate (${err instanceof Error ? err.name : 'error'})`);
      return [];
    }
    if (err.code === 'HISP_USAGE' && files.cert === undefined) {
      issues.error(childPath(path, files.certKey), `missing: required unless ${files.keyKey} is a PKCS#12 file`);
    } else if (err.code === 'HISP_KEY_MISMATCH') {
      issues.error(path, `${err.message} (${err.code})`);
    } else {
      const source = err.details?.source;
      const at = source !== undefined && source === files.cert ? files.certKey : files.keyKey;
      issues.error(childPath(path, at), `${err.message} (${err.code})`);
    }
    return [];
  }
}

function checkAnchorFile(ctx: Context, path: string, file: string): void {
  try {
    const certs = readAnchorFile(readFileSync(file), file);
    if (certs.length === 0) ctx.issues.error(path, `no certificate in ${file}`);
    for (const c of certs) warnValidity(ctx, path, c);
  } catch (err) {
    ctx.issues.error(path, isHispError(err) ? `${err.message} (${err.code})` : `cannot read anchors from ${file}`);
  }
}

function readBundle(s: Section): BundleConfig {
  const url = s.requiredString('url');
  if (url !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      s.issues.error(s.at('url'), `not a URL: ${JSON.stringify(url.slice(0, 120))}`);
    }
    if (parsed && parsed.protocol !== 'https:') s.issues.error(s.at('url'), `only https: URLs are allowed for trust bundles (R-TB-2), got ${parsed.protocol}`);
    if (parsed && (parsed.username || parsed.password)) s.issues.error(s.at('url'), 'must not carry a user name or password');
  }
  const signer = s.optFile('signer');
  if (signer !== undefined) {
    try {
      if (readCertificates(readFileSync(signer), signer).length === 0) s.issues.error(s.at('signer'), `no certificate in ${signer}`);
    } catch (err) {
      s.issues.error(s.at('signer'), isHispError(err) ? `${err.message} (${err.code})` : `cannot read a certificate from ${signer}`);
    }
  }
  const patient = s.bool('patient', false);
  // A patient bundle (R-BB-5) serves patient-directed sends: outgoing, whatever the default says.
  if (patient && s.has('direction') && s.oneOf('direction', BUNDLE_DIRECTIONS, 'outgoing') !== 'outgoing') {
    s.issues.error(s.at('direction'), 'a patient bundle serves patient-directed sends only: its direction is "outgoing"');
  }
  const bundle: BundleConfig = {
    url: url ?? '',
    ...(signer !== undefined ? { signer } : {}),
    refreshHours: s.number('refreshHours', DEFAULTS.bundle.refreshHours, 0.01, 720),
    direction: patient ? 'outgoing' : s.oneOf('direction', BUNDLE_DIRECTIONS, DEFAULTS.bundle.direction),
    patient,
  };
  s.done();
  return bundle;
}

function readPolicy(s: Section): DomainPolicyConfig {
  const d = DEFAULTS.policy;
  const usageSection = s.section('requiredKeyUsage');
  const usageCheck = (v: string): string | undefined =>
    (KEY_USAGE_BITS as readonly string[]).includes(v) ? undefined : `unknown key usage ${JSON.stringify(v.slice(0, 40))} (one of ${KEY_USAGE_BITS.join(', ')})`;
  const requiredKeyUsage = {
    signing: usageSection.stringList('signing', d.requiredKeyUsage.signing, usageCheck) as KeyUsage[],
    encryption: usageSection.stringList('encryption', d.requiredKeyUsage.encryption, usageCheck) as KeyUsage[],
  };
  usageSection.done();
  const bbSection = s.section('blueButtonPlus');
  const blueButtonPlus = {
    enabled: bbSection.bool('enabled', d.blueButtonPlus.enabled),
    requireDnssec: bbSection.bool('requireDnssec', d.blueButtonPlus.requireDnssec),
  };
  if (blueButtonPlus.requireDnssec && !blueButtonPlus.enabled) bbSection.issues.warn(bbSection.at('requireDnssec'), 'has no effect while blueButtonPlus.enabled = false');
  bbSection.done();
  const policy: DomainPolicyConfig = {
    minRsaBits: s.int('minRsaBits', d.minRsaBits, 1024, 16384),
    allowSha1: s.bool('allowSha1', d.allowSha1),
    revocation: s.oneOf('revocation', REVOCATION_MODES, d.revocation),
    requiredKeyUsage,
    allowedSignatureAlgorithms: s.stringList('allowedSignatureAlgorithms', d.allowedSignatureAlgorithms, (v) => {
      try {
        resolvePolicy({ allowedSignatureAlgorithms: [v] });
        return undefined;
      } catch (err) {
        return isHispError(err) ? err.message.replace(/^certificate policy: /, '') : 'not a signature algorithm';
      }
    }),
    blueButtonPlus,
  };
  const listed = s.value('allowedSignatureAlgorithms');
  if (Array.isArray(listed) && listed.length === 0) {
    s.issues.error(s.at('allowedSignatureAlgorithms'), 'must list at least one algorithm (an empty list trusts no certificate)');
  }
  s.done();
  try {
    resolvePolicy(policy);
  } catch (err) {
    s.issues.error(s.path, isHispError(err) ? err.message : 'invalid certificate policy');
  }
  return policy;
}

function readMdn(s: Section): MdnConfig {
  const d = DEFAULTS.mdn;
  const mdn: MdnConfig = {
    requestFinalDelivery: s.bool('requestFinalDelivery', d.requestFinalDelivery),
    // Fractions of a minute are allowed (0.01 = 0.6 s): test set-ups scale the ETT time-outs down.
    processedTimeoutMinutes: s.number('processedTimeoutMinutes', d.processedTimeoutMinutes, 0.01, 10_080),
    dispatchedTimeoutMinutes: s.number('dispatchedTimeoutMinutes', d.dispatchedTimeoutMinutes, 0.01, 10_080),
    forwardPositive: s.oneOf('forwardPositive', FORWARD_POSITIVE, d.forwardPositive),
  };
  if (mdn.forwardPositive === 'dispatched' && !mdn.requestFinalDelivery) {
    s.issues.warn(s.at('forwardPositive'), 'is "dispatched" while requestFinalDelivery = false: receiving HISPs need not send one, so the sender may hear nothing');
  }
  s.done();
  return mdn;
}

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

function readDelivery(s: Section, defaultMaildir: string): DeliveryConfig {
  if (!s.has('type')) {
    s.value('type');
    s.issues.error(s.at('type'), `missing (required): one of ${DELIVERY_TYPES.map((t) => `"${t}"`).join(', ')}`);
    s.done();
    return { type: 'maildir', path: defaultMaildir };
  }
  const type = s.oneOf('type', DELIVERY_TYPES, 'maildir');
  // An unknown type is reported once; its other keys are not reported as unknown on top of it.
  if (!(DELIVERY_TYPES as readonly unknown[]).includes(s.value('type'))) return { type: 'maildir', path: defaultMaildir };
  let delivery: DeliveryConfig;
  switch (type) {
    case 'maildir': {
      delivery = { type, path: s.optPath('path') ?? defaultMaildir };
      break;
    }
    case 'webhook': {
      const url = s.requiredString('url') ?? '';
      if (url !== '') {
        try {
          const u = new URL(url);
          if (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopback(u.hostname))) {
            s.issues.error(s.at('url'), `must be https: (http: only to a loopback host), got ${u.protocol}//${u.host}`);
          }
        } catch {
          s.issues.error(s.at('url'), 'not a URL');
        }
      }
      const hmacSecret = s.optString('hmacSecret');
      const hmacSecretFile = s.optFile('hmacSecretFile');
      if (s.has('hmacSecret') && s.has('hmacSecretFile')) {
        s.issues.error(s.at('hmacSecret'), 'give hmacSecret or hmacSecretFile, not both');
      } else if (!s.has('hmacSecret') && !s.has('hmacSecretFile')) {
        s.issues.error(s.at('hmacSecretFile'), 'missing: a webhook needs hmacSecretFile (or hmacSecret) to sign its requests');
      }
      if (hmacSecret !== undefined && Buffer.byteLength(hmacSecret) < 16) s.issues.error(s.at('hmacSecret'), 'too short: at least 16 bytes');
      if (hmacSecretFile !== undefined) {
        try {
          if (readFileSync(hmacSecretFile, 'utf8').trim().length < 16) s.issues.error(s.at('hmacSecretFile'), `the secret in ${hmacSecretFile} is too short: at least 16 bytes`);
        } catch {
          s.issues.error(s.at('hmacSecretFile'), `cannot read ${hmacSecretFile}`);
        }
      }
      delivery = {
        type,
        url,
        ...(hmacSecret !== undefined ? { hmacSecret } : {}),
        ...(hmacSecretFile !== undefined ? { hmacSecretFile } : {}),
        retries: s.int('retries', DEFAULTS.webhook.retries, 0, 100),
        timeoutMs: s.int('timeoutMs', DEFAULTS.webhook.timeoutMs, 100, 600_000),
      };
      break;
    }
    case 'lmtp': {
      const socket = s.optPath('socket');
      delivery = {
        type,
        host: readHost(s, 'host', DEFAULTS.lmtp.host),
        port: s.port('port', DEFAULTS.lmtp.port, false),
        ...(socket !== undefined ? { socket } : {}),
      };
      break;
    }
    case 'smtp': {
      if (!s.has('host')) s.issues.error(s.at('host'), 'missing (required)');
      delivery = { type, host: readHost(s, 'host', ''), port: s.port('port', DEFAULTS.smtp.port, false) };
      break;
    }
    case 'api': {
      delivery = { type };
      break;
    }
  }
  s.done();
  return delivery;
}

function readRemoteDomains(s: Section): Record<string, RemoteDomainConfig> {
  const readEntry = (key: string, base: RemoteDomainConfig): RemoteDomainConfig => {
    const e = s.section(key);
    const entry = {
      cipher: e.oneOf('cipher', SEND_CIPHERS, base.cipher),
      keyTransport: e.oneOf('keyTransport', KEY_TRANSPORTS, base.keyTransport),
      tlsRequired: e.bool('tlsRequired', base.tlsRequired),
      port: e.port('port', base.port, false),
      ...(e.has('route') ? { route: readHost(e, 'route', '') } : base.route !== undefined ? { route: base.route } : {}),
    };
    e.done();
    return entry;
  };
  const any = readEntry(ANY_REMOTE_DOMAIN, DEFAULTS.remoteDomain);
  const out: Record<string, RemoteDomainConfig> = { [ANY_REMOTE_DOMAIN]: any };
  const seen = new Map<string, string>();
  for (const key of s.keys()) {
    if (key === ANY_REMOTE_DOMAIN) continue;
    const domain = normalizeDomainName(key);
    if (domain === undefined) {
      s.value(key);
      s.issues.error(s.at(key), 'not a domain name (use "*" for every other domain)');
      continue;
    }
    const earlier = seen.get(domain);
    if (earlier !== undefined) s.issues.error(s.at(key), `duplicate remote domain ${domain} (already at ${earlier})`);
    seen.set(domain, s.at(key));
    out[domain] = readEntry(key, any);
  }
  s.done();
  return out;
}

function checkListenerConflicts(issues: Issues, listeners: readonly { name: string; enabled: boolean; host: string; port: number }[]): void {
  const wildcard = (h: string) => h === '0.0.0.0' || h === '::' || h === '[::]';
  const active = listeners.filter((l) => l.enabled && l.port !== 0);
  active.forEach((l, i) => {
    for (const other of active.slice(0, i)) {
      if (other.port === l.port && (other.host === l.host || wildcard(other.host) || wildcard(l.host))) {
        issues.error(`${l.name}.port`, `${l.host}:${l.port} is already used by the ${other.name} listener (${other.host}:${other.port})`);
      }
    }
  });
}

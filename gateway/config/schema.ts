import { availableParallelism, hostname } from 'node:os';
import { DEFAULT_CIPHER, DEFAULT_KEY_TRANSPORT, KEY_TRANSPORTS, SEND_CIPHERS, type KeyTransportName, type SendCipher } from '../agent/algorithms.js';
import type { KeyUsage } from '../core/certificate.js';
import { DEFAULT_CERTIFICATE_POLICY, SIGNATURE_ALGORITHMS } from '../policy/cert-policy.js';
import { FETCH_BUDGET_DEFAULTS } from '../trust/fetch-budget.js';
import type { RevocationMode } from '../trust/revocation.js';

/**
 * The configuration of a hisp deployment (`hisp start --config FILE`), as {@link loadConfig} returns
 * it: every default applied, every relative path made absolute (against the configuration file's
 * folder), every value checked, and the whole object deep-frozen. `config/hisp.example.toml`
 * documents each key with its default; `hisp config print` shows the effective values.
 *
 * The TOML file has the same shape as {@link HispConfig}, key for key (camelCase), with two
 * differences: `[domains.addresses.delivery]` may be left out (the domain's `delivery` applies, with
 * `{address}` substituted), and `remoteDomains` entries other than `"*"` may give only some keys
 * (the others come from `"*"`).
 */

// ------------------------------------------------------------------------------------------------
// Enumerations

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const CREDENTIAL_USES = ['sign', 'decrypt', 'both'] as const;
export type CredentialUse = (typeof CREDENTIAL_USES)[number];

export const BUNDLE_DIRECTIONS = ['incoming', 'outgoing', 'both'] as const;
export type BundleDirection = (typeof BUNDLE_DIRECTIONS)[number];

export const REVOCATION_MODES = ['soft-fail', 'hard-fail', 'off'] as const satisfies readonly RevocationMode[];

export const FORWARD_POSITIVE = ['processed', 'dispatched', 'none'] as const;
/**
 * Which positive MDNs of the receiving HISP go back to the submitting edge system: 'processed'
 * forwards every positive one (processed, then dispatched when it comes), 'dispatched' only the
 * final-delivery one, 'none' none. Failures (negative MDNs, time-outs, DSNs) always go back.
 */
export type ForwardPositive = (typeof FORWARD_POSITIVE)[number];

export const DELIVERY_TYPES = ['maildir', 'webhook', 'lmtp', 'smtp', 'api'] as const;
export type DeliveryType = (typeof DELIVERY_TYPES)[number];

export { KEY_TRANSPORTS, SEND_CIPHERS };
export type { KeyTransportName, SendCipher };

/** The placeholder a maildir `path` may contain; replaced by the recipient address. */
export const ADDRESS_PLACEHOLDER = '{address}';

/** The key of the `remoteDomains` entry that applies to every remote domain without its own. */
export const ANY_REMOTE_DOMAIN = '*';

// ------------------------------------------------------------------------------------------------
// Types

export interface LogConfig {
  /** pino level; env HISP_LOG_LEVEL overrides. */
  readonly level: LogLevel;
}

export interface DnsConfig {
  /** `HOST:PORT` (IP literals; `[v6]:PORT`); empty: the system resolvers (/etc/resolv.conf). */
  readonly servers: readonly string[];
  /** Time-out of each try, per server. */
  readonly timeoutMs: number;
  /** Tries after the first, per query. */
  readonly retries: number;
}

/**
 * The HTTP fetches of the trust layer: CRLs, AIA caIssuers, IPKIX CERT records and trust bundles
 * (issue 14 item 4). Their URLs come from certificates and DNS records anyone can write.
 */
export interface FetchConfig {
  /**
   * CIDR ranges or addresses fetches may reach although they are not globally reachable (loopback,
   * RFC 1918 private, link-local, unique local, CGNAT, …, refused by default): a private PKI's CRL
   * and certificate servers, a bundle on the intranet, test set-ups on loopback.
   */
  readonly allowAddresses: readonly string[];
  /** HTTP requests (redirects included) one inbound message, or one recipient's discovery, may cause. */
  readonly maxFetchesPerMessage: number;
  /** Bytes of answers those requests may read, all together. */
  readonly maxBytesPerMessage: number;
  /** Milliseconds from the first of those requests after which no other starts or goes on. */
  readonly timeoutPerMessageMs: number;
}

/** An SMTP listener. Files are absolute paths. */
export interface SmtpListenerConfig {
  readonly enabled: boolean;
  readonly host: string;
  /** 0: any free port (tests). */
  readonly port: number;
  /** STARTTLS certificate (PEM, chain after the leaf) and its key. Both or neither. */
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  /** Refuse MAIL (and AUTH) before STARTTLS. */
  readonly requireTls: boolean;
  /** SIZE (RFC 1870): larger messages are refused. */
  readonly maxMessageBytes: number;
  /** Idle time-out while waiting for a command (RFC 5321 §4.5.3.2.7: at least 5 minutes). */
  readonly commandTimeoutMs: number;
  /** Idle time-out while receiving DATA. */
  readonly dataTimeoutMs: number;
  /** Simultaneous connections; more are answered 421 4.3.2. */
  readonly maxClients: number;
  /** Limits per client (an IPv4 address, or an IPv6 /64: gateway/smtp/client-key.ts). */
  readonly perClient: PerClientLimitsConfig;
}

/** What one client may hold and send (issue 14, items 5 and 9). */
export interface PerClientLimitsConfig {
  /** Simultaneous connections of one client, below maxClients; more are answered 421 4.7.0. */
  readonly maxConnections: number;
  /** Messages a minute (DATA that reached its end, taken or not); 0: no limit. Beyond: 451 4.7.0 at MAIL. */
  readonly messagesPerMinute: number;
  /** Octets of DATA a minute; 0: no limit. Beyond: 451 4.7.0 at MAIL. */
  readonly bytesPerMinute: number;
}

/** Failed SMTP AUTH: the caps and lock-outs of the submission port (issue 14, item 3). */
export interface AuthLimitsConfig {
  /** Failures on one connection before it is answered 421 4.7.0 and closed. */
  readonly maxFailuresPerConnection: number;
  /** Failures of one client within windowMinutes that lock it out for lockoutMinutes; 0: never. */
  readonly maxFailuresPerClient: number;
  /** Failures for one user name (from any client) within windowMinutes that lock it out; 0: never. */
  readonly maxFailuresPerUser: number;
  readonly windowMinutes: number;
  readonly lockoutMinutes: number;
  /** Password checks (scrypt) at once; the others wait (at most 32), beyond: 454 4.7.0. */
  readonly concurrentChecks: number;
  /** How long a successful check is remembered (no scrypt for the next AUTH with the same password); 0: never. */
  readonly rememberSuccessMinutes: number;
}

/** An edge system (EHR) account of the submission listener (SMTP AUTH PLAIN/LOGIN). */
export interface SubmissionUser {
  readonly username: string;
  /** `scrypt$N$r$p$saltB64$hashB64`, see gateway/config/password-hash.ts (`hisp config hash-password`). */
  readonly passwordHash: string;
  /** Sender addresses this account may use: full addresses, or `@domain` for any address of a local domain. */
  readonly mayUseAddresses: readonly string[];
}

export interface SubmissionConfig extends SmtpListenerConfig {
  readonly users: readonly SubmissionUser[];
  readonly authLimits: AuthLimitsConfig;
}

export type InboundConfig = SmtpListenerConfig;

/** The HTTP API (issue 15): its listener, body limit and rate limits. Files are absolute paths. */
export interface ApiConfig {
  readonly enabled: boolean;
  readonly host: string;
  /** 0: any free port (tests). */
  readonly port: number;
  /**
   * The HTTPS certificate (PEM, chain after the leaf) and its key. Both or neither: without them the
   * API speaks plain HTTP, which only a loopback host may serve (an API key must never cross a
   * network in clear).
   */
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  /** The largest request body of a route that sets no limit of its own; beyond it, 413. */
  readonly bodyLimitBytes: number;
  readonly rateLimit: ApiRateLimitConfig;
}

/** Requests a minute (@fastify/rate-limit, a fixed one-minute window); beyond, 429 with Retry-After. */
export interface ApiRateLimitConfig {
  /** Per API key, unless the key has a rate of its own (`hisp api-key create --rate-per-minute`). */
  readonly perKeyPerMinute: number;
  /**
   * Per client (an IPv4 address, or an IPv6 /64) for requests without a valid key: wrong keys,
   * unknown routes, /openapi.json. A guesser of keys meets this limit, not a key's.
   */
  readonly perClientPerMinute: number;
}

export interface CredentialConfig {
  /** Private key: PEM/DER (PKCS#8, PKCS#1, SEC1) or PKCS#12 (.p12/.pfx). */
  readonly key: string;
  /** Certificate, then its chain (PEM). Optional only when `key` is PKCS#12. */
  readonly cert?: string;
  /** Password of an encrypted key or PKCS#12 file (redacted by `hisp config print`). */
  readonly password?: string;
  readonly use: CredentialUse;
  /**
   * A retired credential is no longer used to sign or published, but still tried for decryption
   * (messages encrypted to it may arrive for a while after a rotation).
   */
  readonly retired: boolean;
}

export interface AnchorsConfig {
  /** Anchors that validate senders' signing certificates. */
  readonly incoming: readonly string[];
  /** Anchors that validate recipients' encryption certificates. */
  readonly outgoing: readonly string[];
}

export interface BundleConfig {
  /** https: only (R-TB-2). */
  readonly url: string;
  /** The publisher's signing certificate: when given, the bundle must be signed by it (R-TB-1). */
  readonly signer?: string;
  readonly refreshHours: number;
  readonly direction: BundleDirection;
  /**
   * The Blue Button+ Patient trust bundle (R-BB-5; issue 16): its anchors serve only patient-directed
   * sends (a patient's authorization: POST /v1/patients/…/records), never other mail; outgoing only.
   */
  readonly patient: boolean;
}

/** {@link CertificatePolicyInput} with every field present (signature algorithms by name or OID). */
export interface DomainPolicyConfig {
  readonly minRsaBits: number;
  readonly allowSha1: boolean;
  readonly revocation: RevocationMode;
  readonly requiredKeyUsage: { readonly signing: readonly KeyUsage[]; readonly encryption: readonly KeyUsage[] };
  readonly allowedSignatureAlgorithms: readonly string[];
  readonly blueButtonPlus: { readonly enabled: boolean; readonly requireDnssec: boolean };
}

export interface MdnConfig {
  /** Ask receiving HISPs for a dispatched MDN too (Implementation Guide for Delivery Notification). */
  readonly requestFinalDelivery: boolean;
  /** No processed MDN within this time: the sender is told the message failed. */
  readonly processedTimeoutMinutes: number;
  /** With requestFinalDelivery: no dispatched MDN within this time (after processed): failed. */
  readonly dispatchedTimeoutMinutes: number;
  readonly forwardPositive: ForwardPositive;
}

export interface RelayConfig {
  /** Send to other HISPs only over STARTTLS (a remoteDomains entry may demand it for one domain). */
  readonly tlsRequired: boolean;
}

export interface MaildirDelivery {
  readonly type: 'maildir';
  /** Absolute; in a domain's `delivery` it may contain `{address}`; in an address's, it is resolved. */
  readonly path: string;
}

export interface WebhookDelivery {
  readonly type: 'webhook';
  /** https:, or http: to a loopback host only. */
  readonly url: string;
  /** The HMAC-SHA256 key of the request signature: inline (redacted by print) or in a file. */
  readonly hmacSecret?: string;
  readonly hmacSecretFile?: string;
  /** Tries after the first before the message fails. */
  readonly retries: number;
  readonly timeoutMs: number;
}

export interface LmtpDelivery {
  readonly type: 'lmtp';
  readonly host: string;
  readonly port: number;
  /** A Unix socket; when given, host and port are not used. */
  readonly socket?: string;
}

export interface SmtpDelivery {
  readonly type: 'smtp';
  readonly host: string;
  readonly port: number;
}

/** The message waits in hisp's API mailbox until the PHR takes it (issue 15, "Receive"); taking it is the final delivery. */
export interface ApiDelivery {
  readonly type: 'api';
}

export type DeliveryConfig = MaildirDelivery | WebhookDelivery | LmtpDelivery | SmtpDelivery | ApiDelivery;

export interface AddressConfig {
  /** `local@domain`, domain lowercased. */
  readonly address: string;
  /** Its own delivery, or the domain's (with `{address}` substituted). */
  readonly delivery: DeliveryConfig;
}

export interface DomainConfig {
  /** Lowercased, without a trailing dot. */
  readonly name: string;
  readonly credentials: readonly CredentialConfig[];
  readonly anchors: AnchorsConfig;
  readonly bundles: readonly BundleConfig[];
  readonly policy: DomainPolicyConfig;
  readonly mdn: MdnConfig;
  readonly relay: RelayConfig;
  /** The default delivery of the domain's addresses. */
  readonly delivery: DeliveryConfig;
  /** Accept mail for addresses not listed (delivered with `delivery`); false: 550 5.1.1. */
  readonly catchAll: boolean;
  readonly addresses: readonly AddressConfig[];
}

export interface RemoteDomainConfig {
  readonly cipher: SendCipher;
  readonly keyTransport: KeyTransportName;
  /** Send to this domain only over STARTTLS. */
  readonly tlsRequired: boolean;
  /** The SMTP port of the domain's servers (RFC 5321 §4.5.4: 25). */
  readonly port: number;
  /**
   * A fixed next hop (host name or IP) instead of the domain's MX records, like Postfix's
   * transport_maps: a partner reached through a known gateway, or test set-ups.
   */
  readonly route?: string;
}

export interface QueueConfig {
  /** Minutes between tries; after the last, its interval repeats until giveUpHours. */
  readonly retrySchedule: readonly number[];
  /**
   * After this long the message fails (DSN to the sender). RFC 5321 §4.5.4.1 suggests 4-5 days for
   * mail; Direct's timeliness (the sender must hear of a failure promptly, and the MDN time-outs
   * are an hour) asks for less: 24 hours.
   */
  readonly giveUpHours: number;
  /** Relay workers and receive workers, each: deliveries in progress at once per direction. */
  readonly workers: number;
  /**
   * Threads that sign and encrypt outgoing messages (gateway/agent/wrap-pool.ts); 0 wraps on the
   * event loop. Default 1 on a machine with more than one CPU, else 0.
   */
  readonly wrapThreads: number;
  /**
   * Octets of messages larger than 1 MiB that the workers (both directions together) hold in
   * memory at once; another such message waits for room (gateway/flows/memory-gate.ts). The first
   * always gets in. Default 64 MiB.
   */
  readonly largeMessageMemoryBytes: number;
}

export interface DedupeConfig {
  /** A Message-ID seen within this window is not delivered twice. */
  readonly windowHours: number;
}

/**
 * The bounds of the quarantine (issue 14, item 5): anyone may send to the inbound port, and what
 * cannot be decrypted, verified or trusted is kept there, so it must not grow without end.
 */
export interface QuarantineConfig {
  /** Entries older than this are deleted by the hourly housekeeping, each logged. */
  readonly retentionDays: number;
  /** The most the entries may count together (each its size plus 4 KiB); the oldest go first. */
  readonly maxBytes: number;
  /** Room kept in the data folder (`disk-reserve`) so that deleting works on a full disk; 0: none. */
  readonly reserveBytes: number;
}

export interface HispConfig {
  /** Absolute. Env HISP_DATA_DIR overrides. */
  readonly dataDir: string;
  /**
   * This gateway's host name: EHLO of the relay, the `by` of Received fields, Reporting-MTA of DSNs
   * and the domain of generated Message-IDs. Default the machine's host name.
   */
  readonly hostname: string;
  readonly log: LogConfig;
  readonly dns: DnsConfig;
  readonly fetch: FetchConfig;
  readonly submission: SubmissionConfig;
  readonly inbound: InboundConfig;
  readonly api: ApiConfig;
  readonly domains: readonly DomainConfig[];
  /** Always has the `"*"` entry; the others are complete (missing keys taken from `"*"`). */
  readonly remoteDomains: Readonly<Record<string, RemoteDomainConfig>>;
  readonly queue: QueueConfig;
  readonly dedupe: DedupeConfig;
  readonly quarantine: QuarantineConfig;
}

// ------------------------------------------------------------------------------------------------
// Defaults

const MiB = 1024 * 1024;

const SIGNATURE_ALGORITHM_NAME_BY_OID = new Map<string, string>(Object.entries(SIGNATURE_ALGORITHMS).map(([name, oid]) => [oid, name]));

/** os.hostname() when it is a usable host name, else "localhost". */
function defaultHostname(): string {
  const h = hostname();
  return /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(h) ? h : 'localhost';
}

/** Freezes an object and everything it holds (the configuration cannot change after start). */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Every default of the configuration (relative paths are relative to the configuration file's folder). */
export const DEFAULTS = {
  dataDir: './hisp-data',
  hostname: defaultHostname(),
  log: { level: 'info' as LogLevel },
  dns: { servers: [] as string[], timeoutMs: 3000, retries: 2 },
  fetch: {
    allowAddresses: [] as string[],
    maxFetchesPerMessage: FETCH_BUDGET_DEFAULTS.maxFetches,
    maxBytesPerMessage: FETCH_BUDGET_DEFAULTS.maxBytes,
    timeoutPerMessageMs: FETCH_BUDGET_DEFAULTS.maxMs,
  },
  submission: {
    enabled: true,
    host: '127.0.0.1',
    port: 5587,
    requireTls: true,
    maxMessageBytes: 25 * MiB,
    commandTimeoutMs: 300_000,
    dataTimeoutMs: 600_000,
    maxClients: 100,
    // EHRs' integration engines open several connections from one host; limits on what they send
    // are the accounts' business, not the port's.
    perClient: { maxConnections: 50, messagesPerMinute: 0, bytesPerMinute: 0 },
    authLimits: {
      maxFailuresPerConnection: 3,
      maxFailuresPerClient: 10,
      maxFailuresPerUser: 30,
      windowMinutes: 15,
      lockoutMinutes: 15,
      concurrentChecks: 1,
      rememberSuccessMinutes: 10,
    },
  },
  inbound: {
    enabled: true,
    host: '0.0.0.0',
    port: 5525,
    requireTls: false,
    // S/MIME (base64 of a signed, encrypted copy) grows a message by about 40 %: room for a peer's 25 MiB.
    maxMessageBytes: 50 * MiB,
    commandTimeoutMs: 300_000,
    dataTimeoutMs: 600_000,
    maxClients: 100,
    // Anyone may connect here: one client may not take more than a fifth of the connections, nor
    // fill the quarantine faster than 600 messages (10 a second) or 1 GiB a minute (a large HISP
    // relays more from several addresses; raise it for a known peer's busy gateway).
    perClient: { maxConnections: 20, messagesPerMinute: 600, bytesPerMinute: 1024 * MiB },
  },
  // 1 MiB: fastify's default, ample for JSON that carries no documents; 600 requests a minute (10
  // a second, sustained) per key; 60 a minute per client without a valid key.
  api: { enabled: false, host: '127.0.0.1', port: 5580, bodyLimitBytes: MiB, rateLimit: { perKeyPerMinute: 600, perClientPerMinute: 60 } },
  credential: { use: 'both' as CredentialUse, retired: false },
  bundle: { refreshHours: 24, direction: 'both' as BundleDirection },
  policy: {
    minRsaBits: DEFAULT_CERTIFICATE_POLICY.minRsaBits,
    allowSha1: DEFAULT_CERTIFICATE_POLICY.allowSha1,
    revocation: DEFAULT_CERTIFICATE_POLICY.revocation,
    requiredKeyUsage: { signing: [...DEFAULT_CERTIFICATE_POLICY.requiredKeyUsage.signing], encryption: [...DEFAULT_CERTIFICATE_POLICY.requiredKeyUsage.encryption] },
    allowedSignatureAlgorithms: DEFAULT_CERTIFICATE_POLICY.allowedSignatureAlgorithms.map((oid) => SIGNATURE_ALGORITHM_NAME_BY_OID.get(oid) ?? oid),
    blueButtonPlus: { ...DEFAULT_CERTIFICATE_POLICY.blueButtonPlus },
  },
  mdn: { requestFinalDelivery: true, processedTimeoutMinutes: 60, dispatchedTimeoutMinutes: 60, forwardPositive: 'processed' as ForwardPositive },
  relay: { tlsRequired: false },
  /** The domain's default delivery: one maildir per address under the data folder. */
  maildirPath: `<dataDir>/maildir/${ADDRESS_PLACEHOLDER}`,
  catchAll: false,
  webhook: { retries: 5, timeoutMs: 10_000 },
  lmtp: { host: '127.0.0.1', port: 24 },
  smtp: { port: 25 },
  remoteDomain: { cipher: DEFAULT_CIPHER, keyTransport: DEFAULT_KEY_TRANSPORT, tlsRequired: false, port: 25 } as RemoteDomainConfig,
  queue: { retrySchedule: [1, 5, 15, 30, 60, 120, 240], giveUpHours: 24, workers: 20, wrapThreads: availableParallelism() > 1 ? 1 : 0, largeMessageMemoryBytes: 64 * MiB },
  dedupe: { windowHours: 72 },
  /**
   * 30 days: a month's review cycle by the operator, and the longest default of the common mail
   * filters' quarantines (Microsoft 365: 15, at most 30), which is also time to ask a partner HISP
   * about its anchors before the evidence goes. 2 GiB: at least 40 messages of the inbound port's
   * largest (50 MiB), about 20,000 of a typical Direct message (a C-CDA of ~100 KB), and a small
   * part of a data disk, so that a flood of untrusted mail cannot take the room the queue needs.
   * 32 MiB of reserve: the WAL growth of several commits of 500 deletions, and the `-shm` file.
   */
  quarantine: { retentionDays: 30, maxBytes: 2 * 1024 * MiB, reserveBytes: 32 * MiB },
} as const;
deepFreeze(DEFAULTS);

// ------------------------------------------------------------------------------------------------
// Look-ups

/** The settings to send to a remote domain: its own entry, else `"*"`. */
export function remoteDomainSettings(config: HispConfig, domain: string): RemoteDomainConfig {
  const d = domain.toLowerCase().replace(/\.$/, '');
  const own = Object.prototype.hasOwnProperty.call(config.remoteDomains, d) ? config.remoteDomains[d] : undefined;
  return own ?? config.remoteDomains[ANY_REMOTE_DOMAIN] ?? DEFAULTS.remoteDomain;
}

/** The local domain of that name, if configured. */
export function findDomain(config: HispConfig, name: string): DomainConfig | undefined {
  const d = name.toLowerCase().replace(/\.$/, '');
  return config.domains.find((x) => x.name === d);
}

/**
 * Where mail for a local address goes: its own entry, else (catchAll domains) the domain's delivery
 * with `{address}` substituted; undefined when the address is not accepted.
 */
export function deliveryFor(config: HispConfig, address: string): DeliveryConfig | undefined {
  const at = address.lastIndexOf('@');
  if (at <= 0) return undefined;
  const normalized = `${address.slice(0, at)}@${address.slice(at + 1).toLowerCase().replace(/\.$/, '')}`;
  const domain = findDomain(config, normalized.slice(at + 1));
  if (!domain) return undefined;
  const own = domain.addresses.find((a) => a.address.toLowerCase() === normalized.toLowerCase());
  if (own) return own.delivery;
  return domain.catchAll ? substituteAddress(domain.delivery, normalized) : undefined;
}

/**
 * A delivery with `{address}` in a maildir path replaced by the address as a safe folder name
 * ({@link addressFolderName}): an address from the network can never climb out of the maildir root.
 */
export function substituteAddress(delivery: DeliveryConfig, address: string): DeliveryConfig {
  if (delivery.type !== 'maildir') return delivery;
  return { ...delivery, path: delivery.path.split(ADDRESS_PLACEHOLDER).join(addressFolderName(address)) };
}

/**
 * An address as one path segment, lowercased (Direct compares addresses case-insensitively): letters, digits and `@._+=-` kept, every other byte (and a
 * leading dot) as `%XX`. `patient@direct.example.org` stays as it is; `../x@d` becomes `%2E.%2Fx@d`.
 */
export function addressFolderName(address: string): string {
  const encoded = [...Buffer.from(address.toLowerCase(), 'utf8')]
    .map((b) => (/[A-Za-z0-9@._+=-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`))
    .join('');
  return encoded.startsWith('.') ? `%2E${encoded.slice(1)}` : encoded;
}

import { createHash } from 'node:crypto';
import type { LookupFunction } from 'node:net';
import type { Certificate } from '../core/certificate.js';
import { HispError, isHispError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { verifySignature, type SignatureVerification } from '../agent/verify-signature.js';
import { asFetchError, createHttpFetcher, FETCH_DEFAULTS, type Fetcher } from './http-fetch.js';
import { looksLikePem, parseCertificates, pemBlocks, readSignedData, withExtraCertificates, type SignedDataParts } from './pkcs7.js';

/**
 * Trust bundles (Implementation Guide for Direct Project Trust Bundle Distribution; R-TB-1..3): a
 * certs-only PKCS#7 (.p7b, DER or PEM, with or without TB-IG metadata as eContent), or a CMS
 * SignedData whose eContent is such a p7b, in DER or in PEM text (as the Java RI signs them), signed
 * by the bundle's publisher. When a signer certificate is configured the signature must verify with
 * it (HISP_BUNDLE_SIGNATURE otherwise), as the Java RI's bundle refresh processor requires.
 */

export type TrustDirection = 'incoming' | 'outgoing';

export interface TrustBundle {
  /** The anchors: every certificate of the bundle, deduplicated (roots, intermediates or leaves). */
  anchors: Certificate[];
  /** Lowercase hex SHA-256 of the bundle bytes as received: the change-detection checksum. */
  sha256: string;
  /** True when the bundle came as a signed CMS SignedData. */
  signed: boolean;
  /** The configured signer whose key verified the signature (undefined when not verified). */
  signer: Certificate | undefined;
  /** eContent of the certs-only PKCS#7 (the TB-IG metadata document), when present. */
  metadata: Buffer | undefined;
  warnings: string[];
}

export interface TrustBundleParseOptions {
  /** Configured signing certificate(s) of the bundle publisher (R-TB-1). */
  signers?: readonly Certificate[];
  /**
   * Refuse unsigned bundles (and signed ones that cannot be verified). Default: true when signers
   * are configured, false otherwise (a signed bundle is then read without verification, with a warning).
   */
  requireSignature?: boolean;
  /** Time at which the signer must be valid; default now. */
  at?: Date;
  /** The SHA-1 legacy switch for the bundle signature (requirements §5.7); MD5 never. */
  allowSha1?: boolean;
  /** Name of the bundle in messages (a URL, a file name). */
  source?: string;
}

const PKCS7_LABELS = new Set(['PKCS7', 'PKCS #7 SIGNED DATA', 'CMS']);

function invalid(source: string, reason: string, cause?: unknown): HispError {
  return new HispError('HISP_BUNDLE_INVALID', `trust bundle ${source}: ${reason}`, { cause, details: { source } });
}

/** DER of a bundle given as DER or PEM (PKCS7 / CMS armour); undefined when PEM without such a block. */
function unarmour(bytes: Uint8Array): Buffer | undefined {
  if (!looksLikePem(bytes)) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return pemBlocks(bytes).find((b) => PKCS7_LABELS.has(b.label))?.der;
}

/**
 * Parses and, when configured, verifies a trust bundle. Throws HISP_BUNDLE_INVALID (not a bundle)
 * or HISP_BUNDLE_SIGNATURE (signature refused), and no other error.
 */
export function parseTrustBundle(bytes: Uint8Array, options: TrustBundleParseOptions = {}): TrustBundle {
  const source = options.source ?? '(bytes)';
  try {
    return parse(bytes, options, source);
  } catch (err) {
    if (isHispError(err) && (err.code === 'HISP_BUNDLE_INVALID' || err.code === 'HISP_BUNDLE_SIGNATURE')) throw err;
    throw invalid(source, `not a certs-only PKCS#7 or CMS-signed bundle (${err instanceof Error ? err.message : String(err)})`, err);
  }
}

/**
 * The anchors of a bundle file (the CLI's `--bundle FILE [--bundle-signer FILE]`): parseTrustBundle
 * with a single optional signer. Throws HISP_BUNDLE_INVALID or HISP_BUNDLE_SIGNATURE.
 */
export function readBundleFile(
  bytes: Uint8Array,
  options: Omit<TrustBundleParseOptions, 'signers'> & { signer?: Certificate; signers?: readonly Certificate[] } = {},
): Certificate[] {
  const { signer, signers, ...rest } = options;
  const all = [...(signers ?? []), ...(signer ? [signer] : [])];
  return parseTrustBundle(bytes, { ...rest, ...(all.length > 0 ? { signers: all } : {}) }).anchors;
}

function parse(bytes: Uint8Array, options: TrustBundleParseOptions, source: string): TrustBundle {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const der = unarmour(bytes);
  if (!der || der.length === 0) throw invalid(source, 'no PKCS7 block in the PEM text');
  const outer = readSignedData(der);
  const signers = options.signers ?? [];
  const requireSignature = options.requireSignature ?? signers.length > 0;
  const warnings: string[] = [];

  if (outer.signerInfoCount === 0) {
    if (requireSignature) {
      throw new HispError('HISP_BUNDLE_SIGNATURE', `trust bundle ${source} is not signed, but a signer is configured`, {
        details: { source },
      });
    }
    return certsOnly(outer, sha256, source, warnings, { signed: false, signer: undefined });
  }

  // A signed bundle: the eContent is the certs-only bundle, DER or PEM text.
  if (!outer.eContent) throw invalid(source, 'the signed bundle has no eContent');
  const innerDer = unarmour(outer.eContent);
  if (!innerDer || innerDer.length === 0) throw invalid(source, 'the eContent of the signed bundle is not a PKCS#7 bundle');
  const inner = readSignedData(innerDer);
  if (inner.signerInfoCount !== 0) throw invalid(source, 'the signed bundle wraps another signed bundle');

  let signer: Certificate | undefined;
  if (signers.length > 0) {
    signer = verifyBundleSignature(der, outer, signers, options, source);
  } else {
    if (requireSignature) {
      throw new HispError('HISP_BUNDLE_SIGNATURE', `trust bundle ${source} is signed but no signer certificate is configured`);
    }
    warnings.push(`trust bundle ${source} is signed, but no signer certificate is configured: the signature was not verified`);
  }
  return certsOnly(inner, sha256, source, warnings, { signed: true, signer });
}

function certsOnly(
  parts: SignedDataParts,
  sha256: string,
  source: string,
  warnings: string[],
  signature: { signed: boolean; signer: Certificate | undefined },
): TrustBundle {
  const anchors = parseCertificates(parts.certificates, warnings, `trust bundle ${source}`);
  if (anchors.length === 0) throw invalid(source, 'the bundle holds no certificate');
  return {
    anchors,
    sha256,
    ...signature,
    metadata: parts.eContent ? Buffer.from(parts.eContent) : undefined,
    warnings,
  };
}

function sameKey(a: Certificate, b: Certificate): boolean {
  if (a.der.equals(b.der)) return true;
  try {
    return a.publicKey.export({ type: 'spki', format: 'der' }).equals(b.publicKey.export({ type: 'spki', format: 'der' }));
  } catch {
    return false;
  }
}

/**
 * R-TB-1: some SignerInfo must verify with the key of a configured signer (as the Java RI checks it:
 * by the configured certificate's key, the included certificate only locates it), and that
 * configured signer must be valid at `at`. Returns the configured signer.
 */
function verifyBundleSignature(
  der: Buffer,
  outer: SignedDataParts,
  signers: readonly Certificate[],
  options: TrustBundleParseOptions,
  source: string,
): Certificate {
  const policy = { allowSha1: options.allowSha1 ?? false };
  const at = options.at ?? new Date();
  const refuse = (reason: string, cause?: unknown) =>
    new HispError('HISP_BUNDLE_SIGNATURE', `trust bundle ${source}: ${reason}`, { cause, details: { source } });

  let verification: SignatureVerification;
  try {
    verification = verifySignature(der, undefined, policy);
    // A bundle that does not carry its signer certificate is checked with the configured ones.
    if (verification.signers.every((s) => s.error?.code === 'HISP_SIG_NO_SIGNER_CERT')) {
      verification = verifySignature(withExtraCertificates(outer, signers), undefined, policy);
    }
  } catch (err) {
    throw invalid(source, `unreadable signature (${err instanceof Error ? err.message : String(err)})`, err);
  }
  const reasons: string[] = [];
  for (const s of verification.signers) {
    const configured = s.certificate ? signers.find((c) => sameKey(c, s.certificate!)) : undefined;
    if (!configured) {
      reasons.push(`signed by ${s.certificate?.subject ?? 'an unknown signer'}, which is not the configured signer`);
      continue;
    }
    if (!s.verified) {
      reasons.push(s.error?.message ?? 'the signature does not verify');
      continue;
    }
    if (!configured.isValidAt(at)) {
      reasons.push(
        `the signer ${configured.subject} is not valid at ${at.toISOString()} (${configured.notBefore.toISOString()} – ${configured.notAfter.toISOString()})`,
      );
      continue;
    }
    return configured;
  }
  throw refuse(reasons.join('; ') || 'no signature verifies with the configured signer');
}

// -------------------------------------------------------------------------------------------------
// Fetching and refreshing

export interface BundleScope {
  /** A local domain, a local address, or '*' for every local domain. */
  scope: string;
  directions: readonly TrustDirection[];
}

export interface TrustBundleSourceOptions {
  url: string | URL;
  /** A name for logs and reports; default the URL. */
  name?: string;
  /** The publisher's signing certificate(s); when given the bundle must be signed by one (R-TB-1). */
  signers?: readonly Certificate[];
  requireSignature?: boolean;
  allowSha1?: boolean;
  /** Refresh period; default one day (BB+, R-BB-5). 0 disables the timer (refresh on demand only). */
  refreshIntervalMs?: number;
  /** Default: {@link createHttpFetcher} limited to https: (http: too when allowHttp). */
  fetcher?: Fetcher;
  /** TLS roots for the default fetcher (tests; or pinning the publisher's CA). TLS is always verified. */
  ca?: string | Buffer | readonly (string | Buffer)[];
  lookup?: LookupFunction;
  /**
   * Non-global addresses the default fetcher may reach (a bundle on the intranet, tests' loopback
   * servers); default none ({@link createHttpFetcher}, issue 14 item 4).
   */
  allowAddresses?: readonly string[];
  /** Accept http:// URLs: for tests only (R-TB-2 demands HTTPS). */
  allowHttp?: boolean;
  timeoutMs?: number;
  maxBytes?: number;
  clock?: () => Date;
  /** The local domains/addresses and directions this bundle's anchors serve (R-TB-3). */
  scopes?: readonly BundleScope[];
  /** Called after every refresh attempt. */
  onRefresh?: (outcome: RefreshOutcome) => void;
  logger?: Logger;
}

export interface RefreshOutcome {
  /** 'updated': a new anchor set is in place; 'unchanged': same checksum; 'failed': the last good set is kept. */
  status: 'updated' | 'unchanged' | 'failed';
  at: Date;
  /** Checksum of the bundle in force after the attempt. */
  sha256: string | undefined;
  /** Number of anchors in force after the attempt. */
  anchors: number;
  error?: HispError;
  warnings: string[];
}

/**
 * A trust bundle published at a URL (R-TB-2): fetched over HTTPS with verified TLS, refreshed on an
 * interval and on demand, changed only when its SHA-256 changes, swapped atomically (readers see the
 * old set or the new one, never a mix), and kept as it was when a refresh fails (the failure is
 * reported in {@link lastOutcome} and through `onRefresh`).
 */
export class TrustBundleSource {
  readonly url: URL;
  readonly name: string;
  readonly scopes: readonly BundleScope[];
  private readonly options: TrustBundleSourceOptions;
  private readonly fetcher: Fetcher;
  private readonly clock: () => Date;
  private state: { bundle: TrustBundle; anchors: readonly Certificate[] } | undefined;
  private running: Promise<RefreshOutcome> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private outcome: RefreshOutcome | undefined;

  constructor(options: TrustBundleSourceOptions) {
    this.options = options;
    try {
      this.url = new URL(options.url);
    } catch {
      throw new HispError('HISP_USAGE', `trust bundle URL ${JSON.stringify(String(options.url))} is not a URL`);
    }
    const protocols: ('http:' | 'https:')[] = options.allowHttp ? ['https:', 'http:'] : ['https:'];
    if (!(protocols as string[]).includes(this.url.protocol)) {
      throw new HispError('HISP_USAGE', `trust bundle URL ${this.url.href}: only https: is allowed (R-TB-2)`);
    }
    this.name = options.name ?? this.url.href;
    this.scopes = options.scopes ?? [];
    this.clock = options.clock ?? (() => new Date());
    this.fetcher =
      options.fetcher ??
      createHttpFetcher({
        protocols,
        ...(options.ca !== undefined ? { ca: options.ca } : {}),
        ...(options.lookup ? { lookup: options.lookup } : {}),
        ...(options.allowAddresses ? { allowAddresses: options.allowAddresses } : {}),
        ...(options.logger ? { logger: options.logger } : {}),
      });
  }

  /** The anchors in force (empty before the first successful refresh); a frozen array, swapped whole. */
  get anchors(): readonly Certificate[] {
    return this.state?.anchors ?? [];
  }

  get bundle(): TrustBundle | undefined {
    return this.state?.bundle;
  }

  get checksum(): string | undefined {
    return this.state?.bundle.sha256;
  }

  /** The outcome of the last refresh attempt (its error says why a failed refresh failed). */
  get lastOutcome(): RefreshOutcome | undefined {
    return this.outcome;
  }

  /** Fetches now (joining a refresh already running). Never rejects: failures are in the outcome. */
  refresh(): Promise<RefreshOutcome> {
    this.running ??= this.doRefresh().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** First refresh, then one every refreshIntervalMs (the timer does not keep the process alive). */
  async start(): Promise<RefreshOutcome> {
    const first = await this.refresh();
    const every = this.options.refreshIntervalMs ?? 24 * 60 * 60_000;
    if (every > 0 && !this.timer) {
      this.timer = setInterval(() => void this.refresh(), every);
      this.timer.unref();
    }
    return first;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async doRefresh(): Promise<RefreshOutcome> {
    const at = this.clock();
    let outcome: RefreshOutcome;
    try {
      let body: Buffer;
      try {
        body = await this.fetcher(this.url, {
          purpose: 'bundle',
          timeoutMs: this.options.timeoutMs ?? FETCH_DEFAULTS.bundle.timeoutMs,
          maxBytes: this.options.maxBytes ?? FETCH_DEFAULTS.bundle.maxBytes,
        });
      } catch (err) {
        const e = asFetchError(err, this.url, 'bundle');
        throw e.code === 'HISP_BUNDLE_FETCH_FAILED' ? e : new HispError('HISP_BUNDLE_FETCH_FAILED', e.message, { transient: true, cause: e });
      }
      const sha256 = createHash('sha256').update(body).digest('hex');
      if (this.state && this.state.bundle.sha256 === sha256) {
        outcome = { status: 'unchanged', at, sha256, anchors: this.state.anchors.length, warnings: [] };
      } else {
        const bundle = parseTrustBundle(body, {
          ...(this.options.signers ? { signers: this.options.signers } : {}),
          ...(this.options.requireSignature !== undefined ? { requireSignature: this.options.requireSignature } : {}),
          allowSha1: this.options.allowSha1 ?? false,
          at,
          source: this.name,
        });
        // The swap: one assignment of a frozen snapshot.
        this.state = { bundle, anchors: Object.freeze([...bundle.anchors]) };
        outcome = { status: 'updated', at, sha256, anchors: bundle.anchors.length, warnings: bundle.warnings };
      }
    } catch (err) {
      const error = isHispError(err) ? err : new HispError('HISP_BUNDLE_INVALID', `trust bundle ${this.name}: ${String(err)}`, { cause: err });
      outcome = {
        status: 'failed',
        at,
        sha256: this.state?.bundle.sha256,
        anchors: this.state?.anchors.length ?? 0,
        error,
        warnings: [this.state ? `trust bundle ${this.name}: refresh failed, keeping the last good set (${error.code}: ${error.message})` : `trust bundle ${this.name}: no anchors yet (${error.code}: ${error.message})`],
      };
    }
    this.outcome = outcome;
    const log = this.options.logger;
    if (log) {
      const fields = { bundle: this.name, status: outcome.status, anchors: outcome.anchors, sha256: outcome.sha256 };
      if (outcome.error) log.warn({ ...fields, code: outcome.error.code, reason: outcome.error.message }, 'trust bundle refresh failed');
      else log.info(fields, `trust bundle ${outcome.status}`);
    }
    try {
      this.options.onRefresh?.(outcome);
    } catch {
      // a listener's failure is not the bundle's
    }
    return outcome;
  }
}

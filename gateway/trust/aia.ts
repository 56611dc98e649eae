import type { LookupFunction } from 'node:net';
import { Certificate } from '../core/certificate.js';
import { HispError, isHispError } from '../core/errors.js';
import { caIssuersUris, fetchableUris } from './cert-extensions.js';
import { isFetchBudgetError, type FetchBudget } from './fetch-budget.js';
import { asFetchError, createHttpFetcher, FETCH_DEFAULTS, type Fetcher } from './http-fetch.js';
import { looksLikePem, parseCertificates, pemBlocks, readSignedData } from './pkcs7.js';

/**
 * Authority Information Access chasing (R-TRU-4, RFC 5280 §4.2.2.1): when no path can be built
 * because an issuer is missing, its certificate is fetched from the caIssuers URIs of the
 * certificate that names it. Answers may be a DER certificate, PEM, or a certs-only PKCS#7 (.p7c).
 * Fetched certificates are untrusted intermediates only: the anchors decide trust.
 */

/** Reads a caIssuers answer: DER certificate, PEM certificates or PKCS#7, or certs-only PKCS#7 (DER). */
export function parseCaIssuersAnswer(bytes: Uint8Array, source = '(bytes)'): Certificate[] {
  const warnings: string[] = [];
  const fail = (reason: string, cause?: unknown) =>
    new HispError('HISP_TRUST_AIA_FAILED', `caIssuers answer of ${source}: ${reason}`, { cause, details: { url: source } });
  try {
    const ders: Buffer[] = [];
    if (looksLikePem(bytes)) {
      for (const block of pemBlocks(bytes)) {
        if (block.label === 'CERTIFICATE' || block.label === 'X509 CERTIFICATE') ders.push(block.der);
        else if (block.label === 'PKCS7' || block.label === 'CMS') ders.push(...readSignedData(block.der).certificates);
      }
    } else {
      const der = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      let isCert = false;
      try {
        ders.push(Certificate.fromDer(der).der);
        isCert = true;
      } catch {
        // not a certificate: a .p7c then
      }
      if (!isCert) ders.push(...readSignedData(der).certificates);
    }
    const certs = parseCertificates(ders, warnings, source);
    if (certs.length === 0) throw fail('no certificate in the answer');
    return certs;
  } catch (err) {
    if (isHispError(err) && err.code === 'HISP_TRUST_AIA_FAILED') throw err;
    throw fail(`not a certificate or certs-only PKCS#7 (${err instanceof Error ? err.message : String(err)})`, err);
  }
}

export interface AiaResolverOptions {
  fetcher?: Fetcher;
  /** DNS resolution for the default fetcher (hisp's configured resolver). */
  lookup?: LookupFunction;
  /** Non-global addresses the default fetcher may reach ({@link createHttpFetcher}); default none. */
  allowAddresses?: readonly string[];
  clock?: () => Date;
  timeoutMs?: number;
  maxBytes?: number;
  /** How long fetched issuers are kept; default one day. */
  ttlMs?: number;
  /** How long a failed fetch is remembered; default 60 s. */
  failureTtlMs?: number;
  maxEntries?: number;
}

export interface IssuerFetch {
  /** Fetched certificates whose subject is the certificate's issuer. */
  certificates: Certificate[];
  /** What could not be used and why. */
  notes: string[];
  /** Fetch or parse failures (HISP_TRUST_AIA_FAILED). */
  errors: HispError[];
}

interface Entry {
  certs?: Certificate[];
  error?: HispError;
  until: number;
}

/** Fetches and caches the caIssuers of certificates (keyed by URL; concurrent fetches shared). */
export class AiaResolver {
  private readonly fetcher: Fetcher;
  private readonly clock: () => Date;
  private readonly options: AiaResolverOptions;
  private readonly cache = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<Entry>>();

  constructor(options: AiaResolverOptions = {}) {
    this.options = options;
    this.fetcher =
      options.fetcher ??
      createHttpFetcher({ ...(options.lookup ? { lookup: options.lookup } : {}), ...(options.allowAddresses ? { allowAddresses: options.allowAddresses } : {}) });
    this.clock = options.clock ?? (() => new Date());
  }

  clear(): void {
    this.cache.clear();
  }

  /**
   * The issuer candidates named by `cert`'s caIssuers URIs (HTTP ones; others noted). Fetches are
   * charged to `budget`, the fetch budget of the message being checked (cached answers cost nothing).
   */
  async issuersOf(cert: Certificate, budget?: FetchBudget): Promise<IssuerFetch> {
    const { urls, notes } = fetchableUris(caIssuersUris(cert), 'caIssuers');
    const result: IssuerFetch = { certificates: [], notes, errors: [] };
    if (urls.length === 0 && notes.length === 0) notes.push(`${cert.subject} has no AIA caIssuers location`);
    for (const url of urls) {
      const entry = await this.fetch(url, budget);
      if (entry.error) {
        result.errors.push(entry.error);
        notes.push(entry.error.message);
        continue;
      }
      for (const c of entry.certs ?? []) {
        if (!c.subjectDer.equals(cert.issuerDer)) {
          notes.push(`caIssuers ${url.href} served ${c.subject}, not the issuer ${cert.issuer}`);
          continue;
        }
        if (!result.certificates.some((x) => x.der.equals(c.der))) result.certificates.push(c);
      }
      if (result.certificates.length > 0) break;
    }
    return result;
  }

  private async fetch(url: URL, budget: FetchBudget | undefined): Promise<Entry> {
    const key = url.href;
    const now = this.clock().getTime();
    const hit = this.cache.get(key);
    if (hit && hit.until > now) return hit;
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.load(url, budget).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    const entry = await p;
    // A spent budget is the message's, not the URL's: the next message may fetch it.
    if (entry.error && isFetchBudgetError(entry.error)) return entry;
    this.cache.delete(key);
    this.cache.set(key, entry);
    while (this.cache.size > (this.options.maxEntries ?? 256)) this.cache.delete(this.cache.keys().next().value!);
    return entry;
  }

  private async load(url: URL, budget: FetchBudget | undefined): Promise<Entry> {
    const now = () => this.clock().getTime();
    try {
      const body = await this.fetcher(url, {
        purpose: 'aia',
        timeoutMs: this.options.timeoutMs ?? FETCH_DEFAULTS.aia.timeoutMs,
        maxBytes: this.options.maxBytes ?? FETCH_DEFAULTS.aia.maxBytes,
        ...(budget ? { budget } : {}),
      });
      return { certs: parseCaIssuersAnswer(body, url.href), until: now() + (this.options.ttlMs ?? 24 * 60 * 60_000) };
    } catch (err) {
      const e = asFetchError(err, url, 'aia');
      const error = e.code === 'HISP_TRUST_AIA_FAILED' ? e : new HispError('HISP_TRUST_AIA_FAILED', e.message, { transient: true, cause: e });
      return { error, until: now() + (this.options.failureTtlMs ?? 60_000) };
    }
  }
}

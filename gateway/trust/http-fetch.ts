import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { HispError, isHispError, type HispErrorCode } from '../core/errors.js';

/**
 * The one HTTP(S) GET of the trust layer: CRLs (R-TRU-3), AIA caIssuers (R-TRU-4) and trust bundles
 * (R-TB-2) all come through a {@link Fetcher}, so that tests and operators can put their own in
 * (a proxy, a cache, a file map) and so that DNS goes through the configured resolver (`lookup`).
 */

/** What a fetch is for: picks the error code of a failure and the default limits. */
export type FetchPurpose = 'crl' | 'aia' | 'bundle';

export interface FetchRequest {
  purpose: FetchPurpose;
  /** Whole-request deadline (connect, TLS, headers and body). */
  timeoutMs: number;
  /** Largest body accepted; a larger one aborts the transfer. */
  maxBytes: number;
}

/**
 * Fetches `url` and resolves to the body of a 200 answer. Rejects with a HispError whose code is
 * {@link fetchErrorCode}(purpose) (callers also wrap anything else an injected fetcher throws).
 */
export type Fetcher = (url: URL, request: FetchRequest) => Promise<Buffer>;

export interface HttpFetcherOptions {
  /** Default deadline per request when the caller gives none; 10 s. */
  timeoutMs?: number;
  /**
   * DNS resolution for the connections (the `lookup` option of node:net), so that names resolve
   * through hisp's configured resolver; default the system resolver.
   */
  lookup?: LookupFunction;
  /**
   * TLS trust roots for https: URLs (PEM). When given they replace Node's bundled roots (tests
   * pass their own CA; an operator may pin the bundle publisher's CA). TLS is always verified.
   */
  ca?: string | Buffer | readonly (string | Buffer)[];
  /** Schemes allowed, on the first request and on every redirect; default http: and https:. */
  protocols?: readonly ('http:' | 'https:')[];
  /** Redirects followed (301, 302, 303, 307, 308); default 3. */
  maxRedirects?: number;
  userAgent?: string;
}

export const FETCH_DEFAULTS: Record<FetchPurpose, Omit<FetchRequest, 'purpose'>> = {
  crl: { timeoutMs: 10_000, maxBytes: 20 * 1024 * 1024 },
  aia: { timeoutMs: 10_000, maxBytes: 1024 * 1024 },
  bundle: { timeoutMs: 30_000, maxBytes: 20 * 1024 * 1024 },
};

const ERROR_CODE: Record<FetchPurpose, HispErrorCode> = {
  crl: 'HISP_TRUST_REVOCATION_UNAVAILABLE',
  aia: 'HISP_TRUST_AIA_FAILED',
  bundle: 'HISP_BUNDLE_FETCH_FAILED',
};

export function fetchErrorCode(purpose: FetchPurpose): HispErrorCode {
  return ERROR_CODE[purpose];
}

/** Wraps whatever an (injected) fetcher threw into the HispError of its purpose. */
export function asFetchError(err: unknown, url: URL, purpose: FetchPurpose): HispError {
  if (isHispError(err)) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new HispError(ERROR_CODE[purpose], `${purpose} fetch of ${url.href} failed: ${reason}`, {
    transient: true,
    cause: err,
    details: { url: url.href },
  });
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * The default fetcher: node:http / node:https GET, one connection per request (no pooling, so
 * nothing lingers), a whole-request deadline, a body size limit checked against Content-Length and
 * while streaming, verified TLS with optional own roots, a few redirects within the allowed schemes.
 */
export function createHttpFetcher(options: HttpFetcherOptions = {}): Fetcher {
  const protocols = new Set<string>(options.protocols ?? ['http:', 'https:']);
  const maxRedirects = options.maxRedirects ?? 3;
  const ca = options.ca === undefined ? undefined : Array.isArray(options.ca) ? [...(options.ca as (string | Buffer)[])] : [options.ca as string | Buffer];
  return async (url, request) => {
    let current = url;
    for (let hop = 0; ; hop++) {
      if (!protocols.has(current.protocol)) {
        throw new HispError(ERROR_CODE[request.purpose], `${current.protocol} URLs are not allowed here (${current.href})`, {
          details: { url: current.href },
        });
      }
      const answer = await getOnce(current, request, options, ca);
      if (answer.kind === 'body') return answer.body;
      if (hop >= maxRedirects) {
        throw new HispError(ERROR_CODE[request.purpose], `too many redirects fetching ${url.href}`, {
          transient: true,
          details: { url: url.href },
        });
      }
      try {
        current = new URL(answer.location, current);
      } catch {
        throw new HispError(ERROR_CODE[request.purpose], `bad redirect location from ${current.href}`, { transient: true });
      }
    }
  };
}

type Answer = { kind: 'body'; body: Buffer } | { kind: 'redirect'; location: string };

function getOnce(
  url: URL,
  request: FetchRequest,
  options: HttpFetcherOptions,
  ca: (string | Buffer)[] | undefined,
): Promise<Answer> {
  const code = ERROR_CODE[request.purpose];
  const fail = (reason: string, transient: boolean, cause?: unknown) =>
    new HispError(code, `${request.purpose} fetch of ${url.href} failed: ${reason}`, {
      transient,
      cause,
      details: { url: url.href },
    });
  return new Promise<Answer>((resolve, reject) => {
    let settled = false;
    const done = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const common: http.RequestOptions = {
      method: 'GET',
      agent: false,
      headers: { 'user-agent': options.userAgent ?? 'hisp', accept: '*/*', connection: 'close' },
    };
    if (options.lookup) common.lookup = options.lookup;
    const req =
      url.protocol === 'https:'
        ? https.request(url, { ...common, rejectUnauthorized: true, ...(ca ? { ca } : {}) })
        : http.request(url, common);
    const timer = setTimeout(() => {
      done(() => reject(fail(`no complete answer within ${request.timeoutMs} ms`, true)));
      req.destroy();
    }, request.timeoutMs);
    req.on('error', (err) => done(() => reject(fail(err.message, true, err))));
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      if (REDIRECTS.has(status) && typeof res.headers.location === 'string') {
        res.resume();
        done(() => resolve({ kind: 'redirect', location: res.headers.location as string }));
        req.destroy();
        return;
      }
      if (status !== 200) {
        res.resume();
        done(() => reject(fail(`HTTP ${status}`, status >= 500 || status === 408 || status === 429 || status === 404)));
        req.destroy();
        return;
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > request.maxBytes) {
        done(() => reject(fail(`answer of ${declared} bytes exceeds the limit of ${request.maxBytes}`, false)));
        req.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > request.maxBytes) {
          done(() => reject(fail(`answer exceeds the limit of ${request.maxBytes} bytes`, false)));
          req.destroy();
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => done(() => resolve({ kind: 'body', body: Buffer.concat(chunks) })));
      res.on('error', (err) => done(() => reject(fail(err.message, true, err))));
      res.on('aborted', () => done(() => reject(fail('connection closed before the end of the answer', true))));
    });
    req.end();
  });
}

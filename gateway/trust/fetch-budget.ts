import { HispError, isHispError, type HispErrorCode } from '../core/errors.js';

/**
 * What the HTTP fetches caused by one piece of hostile input may cost in total. Processing one
 * inbound message (decryption, then the trust check of every signer: AIA rounds for missing issuers,
 * a CRL per certificate of each path) and discovering one recipient (IPKIX URLs of its CERT records,
 * then the same trust check of every certificate found) each get one FetchBudget; every HTTP request
 * the default fetcher makes for them (each redirect is a request) is charged to it, with the bytes it
 * reads and the time it takes. Past a limit the next request is not made: a transient HispError of
 * the fetch's purpose (HISP_TRUST_AIA_FAILED, HISP_TRUST_REVOCATION_UNAVAILABLE), as when a server
 * does not answer, so the message is deferred or the CRL counts as unavailable under the domain's
 * revocation policy. The per-request caps (size, time, redirects) bound one request; this bounds how
 * many a message can ask for (a signer certificate may list many caIssuers URIs, each fetched
 * issuer may name more, up to four rounds; each may redirect three times).
 */

export interface FetchBudgetLimits {
  /** HTTP requests (redirects included). */
  maxFetches: number;
  /** Bytes of answer bodies, all requests together. */
  maxBytes: number;
  /** Milliseconds from the first request until no further request may start or go on. */
  maxMs: number;
}

/**
 * Defaults: a Direct message has one or two signers with 3-certificate paths: about 2 AIA fetches and
 * 2-3 CRLs each, so 16 requests leave room for a message with several signers; 32 MiB holds the
 * largest CRL accepted (20 MiB) with others; 30 s is three slow answers (10 s each).
 */
export const FETCH_BUDGET_DEFAULTS: Readonly<FetchBudgetLimits> = Object.freeze({ maxFetches: 16, maxBytes: 32 * 1024 * 1024, maxMs: 30_000 });

/** Which limit a refused fetch ran into. */
export type FetchBudgetLimit = 'fetches' | 'bytes' | 'time';

export class FetchBudget {
  readonly limits: Readonly<FetchBudgetLimits>;
  private fetchCount = 0;
  private byteCount = 0;
  private startedAt: number | undefined;

  constructor(limits: Partial<FetchBudgetLimits> = {}, private readonly now: () => number = Date.now) {
    this.limits = Object.freeze({ ...FETCH_BUDGET_DEFAULTS, ...limits });
  }

  /** Requests charged so far. */
  get fetches(): number {
    return this.fetchCount;
  }

  /** Body bytes charged so far. */
  get bytes(): number {
    return this.byteCount;
  }

  /**
   * Charges one request to `url`, before it is made. Throws the budget error (code `code`,
   * transient) when no request is left, or no time.
   */
  startFetch(url: URL, code: HispErrorCode): void {
    this.startedAt ??= this.now();
    if (this.fetchCount >= this.limits.maxFetches) throw this.spent(url, code, 'fetches');
    if (this.msLeft() <= 0) throw this.spent(url, code, 'time');
    this.fetchCount++;
  }

  /** Bytes answers may still bring; a request whose answer would pass it is stopped ({@link spent}). */
  bytesLeft(): number {
    return this.limits.maxBytes - this.byteCount;
  }

  /** Charges `n` bytes of an answer (received within {@link bytesLeft}). */
  addBytes(n: number): void {
    this.byteCount += n;
  }

  /** Milliseconds left for requests (the whole limit before the first one). */
  msLeft(): number {
    return this.startedAt === undefined ? this.limits.maxMs : this.startedAt + this.limits.maxMs - this.now();
  }

  /** The error of a request stopped because the budget is spent (also for a time-out the budget caused). */
  spent(url: URL, code: HispErrorCode, limit: FetchBudgetLimit): HispError {
    const what =
      limit === 'fetches'
        ? `${this.limits.maxFetches} requests`
        : limit === 'bytes'
          ? `${this.limits.maxBytes} bytes`
          : `${this.limits.maxMs} ms`;
    return new HispError(code, `fetch of ${url.href} not made: the fetch budget of this message (${what}) is spent`, {
      transient: true,
      details: { url: url.href, budget: limit },
    });
  }
}

/**
 * Whether `err` (or an error it wraps) is a budget refusal: such a failure belongs to the message that
 * ran out, not to the URL, so caches of fetch failures must not remember it for other messages.
 */
export function isFetchBudgetError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 8; depth++) {
    if (isHispError(e) && typeof e.details?.budget === 'string') return true;
    e = e instanceof Error ? e.cause : undefined;
  }
  return false;
}

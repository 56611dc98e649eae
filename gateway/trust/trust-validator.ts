import type { LookupFunction } from 'node:net';
import type { Certificate } from '../core/certificate.js';
import { HispError, isHispError } from '../core/errors.js';
import { AiaResolver } from './aia.js';
import {
  checkSignatureAlgorithm,
  REQUIRED_LEAF_USAGE,
  validateChain,
  type ChainValidationOptions,
  type ValidatedChain,
} from './chain-validator.js';
import { FetchBudget, isFetchBudgetError, type FetchBudgetLimits } from './fetch-budget.js';
import type { Fetcher } from './http-fetch.js';
import { RevocationChecker, type RevocationMode } from './revocation.js';

/**
 * The trust decision of R-TRU-2: a path to an anchor (validateChain: signatures, validity,
 * basicConstraints, key usage, key size, SHA-1/MD5 policy), completed by AIA when an issuer is
 * missing (R-TRU-4), then revocation of every certificate of the path but the anchor (R-TRU-3).
 */

export interface TrustValidationOptions extends ChainValidationOptions {
  /** What to do when a CRL cannot be had; default 'soft-fail' (as the RIs). */
  revocation?: RevocationMode;
  /** Fetch missing issuers from AIA caIssuers; default true. */
  aia?: boolean;
  /**
   * The fetch budget of the message (or recipient) this validation is for: AIA and CRL downloads
   * are charged to it (issue 14 item 4). Default: a fresh one ({@link TrustValidator.newFetchBudget}).
   */
  budget?: FetchBudget;
}

export interface TrustValidationResult extends ValidatedChain {
  /** Things the caller should report (revocation not checked under soft-fail, …). */
  warnings: string[];
  /** 'checked': every certificate but the anchor had a current CRL; 'unavailable': not all (soft-fail). */
  revocation: 'checked' | 'unavailable' | 'off';
  /** Certificates of the path that came from AIA. */
  aiaFetched: Certificate[];
}

/** Options of {@link TrustValidator.validateUnanchored}: the Blue Button+ patient-directed case. */
export type UnanchoredValidationOptions = Omit<TrustValidationOptions, 'anchors'>;

export interface UnanchoredValidationResult {
  /** The leaf, then its issuer when one was found (to verify the leaf and its CRL). */
  path: Certificate[];
  warnings: string[];
  revocation: 'checked' | 'unavailable' | 'off';
}

export interface TrustValidatorOptions {
  /** One fetcher for CRLs and AIA (default node:http/https with `lookup`). */
  fetcher?: Fetcher;
  /** DNS resolution for the default fetcher: hisp's configured resolver. */
  lookup?: LookupFunction;
  /** Non-global addresses the default fetcher may reach ({@link createHttpFetcher}); default none. */
  allowAddresses?: readonly string[];
  /** Limits of the fetch budget of each message or recipient ({@link newFetchBudget}); default FETCH_BUDGET_DEFAULTS. */
  fetchBudget?: Partial<FetchBudgetLimits>;
  /** Clock for CRL currency and caches, and the default validation time. */
  clock?: () => Date;
  revocationChecker?: RevocationChecker;
  aiaResolver?: AiaResolver;
  /** Rounds of AIA fetching (issuers of issuers); default 4. */
  maxAiaDepth?: number;
}

export class TrustValidator {
  readonly revocationChecker: RevocationChecker;
  readonly aiaResolver: AiaResolver;
  private readonly clock: () => Date;
  private readonly maxAiaDepth: number;
  private readonly budgetLimits: Partial<FetchBudgetLimits>;

  constructor(options: TrustValidatorOptions = {}) {
    const shared = {
      ...(options.fetcher ? { fetcher: options.fetcher } : {}),
      ...(options.lookup ? { lookup: options.lookup } : {}),
      ...(options.allowAddresses ? { allowAddresses: options.allowAddresses } : {}),
      ...(options.clock ? { clock: options.clock } : {}),
    };
    this.revocationChecker = options.revocationChecker ?? new RevocationChecker(shared);
    this.aiaResolver = options.aiaResolver ?? new AiaResolver(shared);
    this.clock = options.clock ?? (() => new Date());
    this.maxAiaDepth = options.maxAiaDepth ?? 4;
    this.budgetLimits = { ...options.fetchBudget };
  }

  /**
   * A fetch budget with this validator's limits: one per inbound message (processIncoming) and one
   * per recipient (discoverRecipient), shared by every validation made for it.
   */
  newFetchBudget(): FetchBudget {
    return new FetchBudget(this.budgetLimits);
  }

  /**
   * Validates `leaf` for `purpose` against `anchors`. Resolves to the path and the revocation
   * outcome; rejects with HispError HISP_TRUST_* (NO_ANCHOR, EXPIRED, BASIC_CONSTRAINTS, KEY_USAGE,
   * WEAK_KEY, WEAK_SIGNATURE, BAD_SIGNATURE, REVOKED, REVOCATION_UNAVAILABLE under hard-fail,
   * AIA_FAILED when a missing issuer could not be fetched).
   */
  async validate(leaf: Certificate, options: TrustValidationOptions): Promise<TrustValidationResult> {
    const at = options.at ?? this.clock();
    const { budget = this.newFetchBudget(), ...rest } = options;
    const chainOptions: ChainValidationOptions = { ...rest, at };
    const { chain, fetched } = await this.buildPath(leaf, chainOptions, options.aia ?? true, budget);
    const mode = options.revocation ?? 'soft-fail';
    const rev = await this.revocationChecker.checkPath(chain.path, { mode, allowSha1: options.allowSha1 ?? false, budget });
    return {
      path: chain.path,
      anchor: chain.anchor,
      warnings: rev.warnings,
      revocation: rev.revocation,
      aiaFetched: chain.path.filter((c) => fetched.some((f) => f.der.equals(c.der))),
    };
  }

  /**
   * A certificate judged without an anchor (requirements §5.5, the Blue Button+ patient-directed
   * switch): an end entity, valid at `at`, with an acceptable key and signature algorithm, the key
   * usage of `purpose`, and not revoked. Its issuer (from `intermediates` or AIA) is needed to trust
   * the CRL; without one, revocation is 'unavailable' (a warning under soft-fail, refused under hard-fail).
   */
  async validateUnanchored(leaf: Certificate, options: UnanchoredValidationOptions): Promise<UnanchoredValidationResult> {
    const at = options.at ?? this.clock();
    const allowSha1 = options.allowSha1 ?? false;
    const minRsa = options.minRsaBits ?? 2048;
    if (leaf.basicConstraints?.ca) {
      throw new HispError('HISP_TRUST_BASIC_CONSTRAINTS', `${leaf.subject} is a CA certificate, not an end entity`);
    }
    checkSignatureAlgorithm(leaf, allowSha1);
    if (leaf.isSelfIssued && !this.verifiesWith(leaf, leaf)) {
      throw new HispError('HISP_TRUST_BAD_SIGNATURE', `the self-signature of ${leaf.subject} does not verify`);
    }
    if (!leaf.isValidAt(at)) {
      throw new HispError(
        'HISP_TRUST_EXPIRED',
        `${leaf.subject} is not valid at ${at.toISOString()} (${leaf.notBefore.toISOString()} – ${leaf.notAfter.toISOString()})`,
      );
    }
    if (leaf.publicKey.asymmetricKeyType === 'rsa' && leaf.publicKeyBits < minRsa) {
      throw new HispError('HISP_TRUST_WEAK_KEY', `${leaf.subject} has an RSA-${leaf.publicKeyBits} key; at least ${minRsa} bits are required`);
    }
    const usage = REQUIRED_LEAF_USAGE[options.purpose];
    if (leaf.keyUsage && !leaf.keyUsage.has(usage)) {
      throw new HispError('HISP_TRUST_KEY_USAGE', `${leaf.subject} lacks the ${usage} key usage needed for ${options.purpose}`);
    }
    const mode = options.revocation ?? 'soft-fail';
    if (mode === 'off') return { path: [leaf], warnings: [], revocation: 'off' };

    const warnings: string[] = [];
    const budget = options.budget ?? this.newFetchBudget();
    let issuer = leaf.isSelfIssued ? undefined : this.findIssuer(leaf, options.intermediates ?? []);
    if (!issuer && !leaf.isSelfIssued && (options.aia ?? true)) {
      const fetched = await this.aiaResolver.issuersOf(leaf, budget);
      issuer = this.findIssuer(leaf, fetched.certificates);
    }
    if (!issuer) {
      const error = new HispError(
        'HISP_TRUST_REVOCATION_UNAVAILABLE',
        `the issuer of ${leaf.subject} is not available, so its CRL cannot be verified`,
        { transient: true },
      );
      if (mode === 'hard-fail') throw error;
      return { path: [leaf], warnings: [`revocation not checked (soft-fail): ${error.message}`], revocation: 'unavailable' };
    }
    const rev = await this.revocationChecker.checkPath([leaf, issuer], { mode, allowSha1, budget });
    warnings.push(...rev.warnings);
    return { path: [leaf, issuer], warnings, revocation: rev.revocation };
  }

  private findIssuer(leaf: Certificate, candidates: readonly Certificate[]): Certificate | undefined {
    return candidates.find((c) => c.subjectDer.equals(leaf.issuerDer) && this.verifiesWith(leaf, c));
  }

  private verifiesWith(cert: Certificate, issuer: Certificate): boolean {
    try {
      return cert.isSignedBy(issuer);
    } catch {
      return false;
    }
  }

  private async buildPath(
    leaf: Certificate,
    options: ChainValidationOptions,
    useAia: boolean,
    budget: FetchBudget,
  ): Promise<{ chain: ValidatedChain; fetched: Certificate[] }> {
    const pool = [...(options.intermediates ?? [])];
    const fetched: Certificate[] = [];
    const tried = new Set<string>();
    const errors: HispError[] = [];
    const notes: string[] = [];
    for (let round = 0; ; round++) {
      try {
        return { chain: validateChain(leaf, { ...options, intermediates: pool }), fetched };
      } catch (err) {
        if (!isHispError(err) || err.code !== 'HISP_TRUST_NO_ANCHOR' || !useAia || round >= this.maxAiaDepth) {
          throw err;
        }
        const frontier = missingIssuers(leaf, options.anchors, pool).filter((c) => !tried.has(c.sha256));
        let added = 0;
        for (const cert of frontier) {
          tried.add(cert.sha256);
          const r = await this.aiaResolver.issuersOf(cert, budget);
          errors.push(...r.errors);
          notes.push(...r.notes);
          for (const issuer of r.certificates) {
            if (pool.some((p) => p.der.equals(issuer.der)) || options.anchors.some((a) => a.der.equals(issuer.der))) continue;
            pool.push(issuer);
            fetched.push(issuer);
            added++;
          }
        }
        if (added === 0) {
          if (errors.length > 0) {
            const first = errors[0]!;
            // When the budget stopped the fetching, say so: the first failure alone would hide why the rest were not tried.
            const spent = errors.find((e) => e !== first && isFetchBudgetError(e));
            throw new HispError('HISP_TRUST_AIA_FAILED', `no path from ${leaf.subject} to a trust anchor, and AIA failed: ${first.message}${spent ? `; ${spent.message}` : ''}`, {
              transient: first.transient,
              cause: first,
              details: { subject: leaf.subject, notes },
            });
          }
          throw new HispError(err.code, err.message, { cause: err, details: { ...err.details, ...(notes.length ? { aia: notes } : {}) } });
        }
      }
    }
  }
}

/**
 * Certificates reachable from `leaf` through issuer links in anchors ∪ pool whose own issuer is
 * nowhere to be found (and that are not self-issued): those whose AIA may complete a path.
 */
export function missingIssuers(leaf: Certificate, anchors: readonly Certificate[], pool: readonly Certificate[]): Certificate[] {
  const all = [...anchors, ...pool];
  const isAnchor = (c: Certificate) => anchors.some((a) => a.der.equals(c.der));
  const out: Certificate[] = [];
  const seen = new Set<string>();
  const queue = [leaf];
  while (queue.length > 0 && seen.size < 64) {
    const cert = queue.shift()!;
    if (seen.has(cert.sha256)) continue;
    seen.add(cert.sha256);
    if (isAnchor(cert) || cert.isSelfIssued) continue;
    const issuers = all.filter((c) => c.subjectDer.equals(cert.issuerDer) && !c.der.equals(cert.der));
    if (issuers.length === 0) out.push(cert);
    else queue.push(...issuers);
  }
  return out;
}

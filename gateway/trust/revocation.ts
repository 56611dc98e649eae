import type { LookupFunction } from 'node:net';
import * as pkijs from 'pkijs';
import type { Certificate } from '../core/certificate.js';
import { formatRfc4514 } from '../core/distinguished-name.js';
import { HispError, isHispError } from '../core/errors.js';
import { decodeBer } from '../agent/asn1.js';
import { crlDistributionPoints, fetchableUris } from './cert-extensions.js';
import { isFetchBudgetError, type FetchBudget } from './fetch-budget.js';
import { asFetchError, createHttpFetcher, FETCH_DEFAULTS, type Fetcher } from './http-fetch.js';
import { looksLikePem, pemBlocks } from './pkcs7.js';
import { verifySignedObject } from './signed-object.js';

/**
 * Revocation by CRL (R-TRU-3, RFC 5280 §6.3): the CRL of each certificate is fetched from its HTTP
 * distribution points, parsed with PKI.js, verified with the issuer's key, checked for currency and
 * kept until its nextUpdate. What to do when no usable CRL can be had is the domain's choice:
 * 'soft-fail' (the RIs' behaviour: accept, with a warning), 'hard-fail' (refuse, transient) or 'off'.
 *
 * Not supported (reported, never silently wrong): indirect CRLs (cRLIssuer, certificateIssuer
 * entries), delta CRLs, partitioned CRLs by reason (onlySomeReasons), LDAP distribution points
 * (skipped with a note), OCSP (optional for Direct, R-TRU-3).
 */

export type RevocationMode = 'soft-fail' | 'hard-fail' | 'off';

/** CRLReason (RFC 5280 §5.3.1); 7 is unused. */
export const REVOCATION_REASONS = [
  'unspecified',
  'keyCompromise',
  'cACompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'certificateHold',
  undefined,
  'removeFromCRL',
  'privilegeWithdrawn',
  'aACompromise',
] as const;
export type RevocationReason = Exclude<(typeof REVOCATION_REASONS)[number], undefined>;

export interface RevokedEntry {
  reason: RevocationReason;
  revokedAt: Date;
  /** invalidityDate entry extension, when present. */
  invalidSince: Date | undefined;
}

/** A decoded CRL: what a revocation check needs, with the bytes its signature covers. */
export interface ParsedCrl {
  der: Buffer;
  issuerDer: Buffer;
  issuer: string;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  /** Revoked serials, keyed by {@link normalizeSerial}. */
  revoked: ReadonlyMap<string, RevokedEntry>;
  tbs: Uint8Array;
  signatureAlgorithmOid: string;
  signatureAlgorithmParams: Uint8Array | undefined;
  signature: Uint8Array;
  /** The issuingDistributionPoint scope, when the CRL has one. */
  scope: 'all' | 'user' | 'ca';
  crlNumber: string | undefined;
}

const OID = {
  cRLNumber: '2.5.29.20',
  reasonCode: '2.5.29.21',
  holdInstructionCode: '2.5.29.23',
  invalidityDate: '2.5.29.24',
  deltaCRLIndicator: '2.5.29.27',
  issuingDistributionPoint: '2.5.29.28',
  certificateIssuer: '2.5.29.29',
  authorityKeyIdentifier: '2.5.29.35',
  issuerAltName: '2.5.29.18',
  freshestCRL: '2.5.29.46',
  expiredCertsOnCRL: '2.5.29.60',
};
const KNOWN_CRL_EXTENSIONS = new Set([
  OID.cRLNumber,
  OID.issuingDistributionPoint,
  OID.authorityKeyIdentifier,
  OID.issuerAltName,
  OID.freshestCRL,
  OID.expiredCertsOnCRL,
]);
const KNOWN_ENTRY_EXTENSIONS = new Set([OID.reasonCode, OID.invalidityDate, OID.holdInstructionCode]);

function unusable(reason: string, transient = true): HispError {
  return new HispError('HISP_TRUST_REVOCATION_UNAVAILABLE', reason, { transient });
}

/** Serial number content octets as lowercase hex, without redundant leading zero octets. */
export function normalizeSerial(hex: string): string {
  return hex.toLowerCase().replace(/^(00)+(?=[0-9a-f]{2})/, '');
}

/**
 * Decodes a CRL (DER, or PEM `X509 CRL`). Throws HISP_TRUST_REVOCATION_UNAVAILABLE (transient) for
 * anything that is not a usable v1/v2 CRL, never another error.
 */
export function parseCrl(input: Uint8Array): ParsedCrl {
  let der = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (looksLikePem(der)) {
    const block = pemBlocks(der).find((b) => b.label === 'X509 CRL');
    if (!block) throw unusable('PEM text without an X509 CRL block');
    der = block.der;
  }
  try {
    // Our bounded BER reader first: it refuses trailing data and truncation before PKI.js sees the bytes.
    decodeBer(der, 'CRL');
    const crl = pkijs.CertificateRevocationList.fromBER(der);
    return fromPkijs(Buffer.from(der), crl);
  } catch (err) {
    if (isHispError(err) && err.code === 'HISP_TRUST_REVOCATION_UNAVAILABLE') throw err;
    throw unusable(`not a decodable CRL (${err instanceof Error ? err.message : String(err)})`);
  }
}

function bytesOf(v: { valueBlock: { valueHexView: Uint8Array } }): Buffer {
  const view = v.valueBlock.valueHexView;
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

function extensionValue(ext: pkijs.Extension): Buffer {
  return bytesOf(ext.extnValue);
}

function fromPkijs(der: Buffer, crl: pkijs.CertificateRevocationList): ParsedCrl {
  if (crl.version !== 0 && crl.version !== 1) throw unusable(`CRL version ${crl.version + 1} is not 1 or 2`);
  if (crl.signature.algorithmId !== crl.signatureAlgorithm.algorithmId) {
    // RFC 5280 §5.1.1.2: the two AlgorithmIdentifiers must be the same.
    throw unusable('the CRL signatureAlgorithm differs from the signature field of tbsCertList');
  }
  let scope: ParsedCrl['scope'] = 'all';
  let crlNumber: string | undefined;
  for (const ext of crl.crlExtensions?.extensions ?? []) {
    if (ext.extnID === OID.deltaCRLIndicator) throw unusable('a delta CRL is not a complete CRL (delta CRLs are not supported)');
    if (ext.extnID === OID.issuingDistributionPoint) {
      const idp = ext.parsedValue as unknown;
      if (!(idp instanceof pkijs.IssuingDistributionPoint)) throw unusable('unreadable issuingDistributionPoint');
      if (idp.indirectCRL) throw unusable('indirect CRLs are not supported');
      if (idp.onlySomeReasons !== undefined) throw unusable('CRLs partitioned by reason (onlySomeReasons) are not supported');
      if (idp.onlyContainsAttributeCerts) throw unusable('the CRL only covers attribute certificates');
      if (idp.onlyContainsUserCerts) scope = 'user';
      if (idp.onlyContainsCACerts) scope = 'ca';
    } else if (ext.extnID === OID.cRLNumber) {
      crlNumber = bytesOf(ext.extnValue).toString('hex');
    } else if (ext.critical && !KNOWN_CRL_EXTENSIONS.has(ext.extnID)) {
      throw unusable(`the CRL has an unknown critical extension ${ext.extnID}`);
    }
  }
  const revoked = new Map<string, RevokedEntry>();
  for (const entry of crl.revokedCertificates ?? []) {
    let reason: RevocationReason = 'unspecified';
    let invalidSince: Date | undefined;
    for (const ext of entry.crlEntryExtensions?.extensions ?? []) {
      if (ext.extnID === OID.reasonCode) {
        const node = decodeBer(extensionValue(ext), 'reasonCode');
        const code = node.content.length === 1 ? node.content[0]! : -1;
        const name = node.tagNumber === 10 ? REVOCATION_REASONS[code] : undefined;
        if (name === undefined) throw unusable(`a CRL entry has an invalid reasonCode`);
        reason = name;
      } else if (ext.extnID === OID.invalidityDate) {
        const node = decodeBer(extensionValue(ext), 'invalidityDate');
        const m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)/.exec(node.content.toString('latin1'));
        if (m) invalidSince = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
      } else if (ext.extnID === OID.certificateIssuer) {
        throw unusable('CRL entries for another issuer (certificateIssuer, indirect CRL) are not supported');
      } else if (ext.critical && !KNOWN_ENTRY_EXTENSIONS.has(ext.extnID)) {
        throw unusable(`a CRL entry has an unknown critical extension ${ext.extnID}`);
      }
    }
    // removeFromCRL only appears in delta CRLs (RFC 5280 §5.3.1): it does not revoke.
    if (reason === 'removeFromCRL') continue;
    const serial = normalizeSerial(bytesOf(entry.userCertificate).toString('hex'));
    revoked.set(serial, { reason, revokedAt: entry.revocationDate.value, invalidSince });
  }
  const params = crl.signatureAlgorithm.algorithmParams as { toBER?: (sizeOnly?: boolean) => ArrayBuffer } | undefined;
  const paramsDer = params && typeof params.toBER === 'function' ? new Uint8Array(params.toBER(false)) : undefined;
  return {
    der,
    issuerDer: Buffer.from(crl.issuer.toSchema().toBER(false)),
    issuer: formatRfc4514(crl.issuer),
    thisUpdate: crl.thisUpdate.value,
    nextUpdate: crl.nextUpdate?.value,
    revoked,
    tbs: crl.tbsView,
    signatureAlgorithmOid: crl.signatureAlgorithm.algorithmId,
    signatureAlgorithmParams: paramsDer && paramsDer.length > 0 ? paramsDer : undefined,
    signature: crl.signatureValue.valueBlock.valueHexView,
    scope,
    crlNumber,
  };
}

export interface CrlVerifyOptions {
  now: Date;
  allowSha1: boolean;
  /** Tolerance for the issuer's clock (thisUpdate in the future); default 5 minutes. */
  clockSkewMs?: number;
}

/**
 * Checks that `crl` was issued by `issuer` (name, cRLSign, signature; RFC 5280 §6.3.3 (f)-(g)) and is
 * current at `now` (thisUpdate ≤ now ≤ nextUpdate). Throws HISP_TRUST_REVOCATION_UNAVAILABLE.
 */
export function verifyCrl(crl: ParsedCrl, issuer: Certificate, options: CrlVerifyOptions): void {
  const what = `the CRL of ${issuer.subject}`;
  if (!crl.issuerDer.equals(issuer.subjectDer) && crl.issuer.toLowerCase() !== issuer.subject.toLowerCase()) {
    throw unusable(`${what} is issued by ${crl.issuer}, not by ${issuer.subject}`);
  }
  if (issuer.keyUsage && !issuer.keyUsage.has('cRLSign')) {
    throw unusable(`${issuer.subject} lacks the cRLSign key usage, so its CRL cannot be trusted`, false);
  }
  verifySignedObject({
    tbs: crl.tbs,
    algorithmOid: crl.signatureAlgorithmOid,
    algorithmParams: crl.signatureAlgorithmParams,
    signature: crl.signature,
    key: issuer.publicKey,
    allowSha1: options.allowSha1,
    errorCode: 'HISP_TRUST_REVOCATION_UNAVAILABLE',
    what,
  });
  const skew = options.clockSkewMs ?? 5 * 60_000;
  const now = options.now.getTime();
  if (crl.thisUpdate.getTime() > now + skew) {
    throw unusable(`${what} is not yet valid (thisUpdate ${crl.thisUpdate.toISOString()})`);
  }
  if (crl.nextUpdate && crl.nextUpdate.getTime() < now) {
    throw unusable(`${what} is stale (nextUpdate ${crl.nextUpdate.toISOString()} has passed)`);
  }
}

/** Throws HISP_TRUST_REVOKED when `cert` is listed on `crl` (which must be verified already). */
export function checkAgainstCrl(cert: Certificate, crl: ParsedCrl, source?: string): void {
  const entry = crl.revoked.get(normalizeSerial(cert.serialHex));
  if (!entry) return;
  const since = (entry.invalidSince ?? entry.revokedAt).toISOString();
  throw new HispError(
    'HISP_TRUST_REVOKED',
    `${cert.subject} (serial ${cert.serialHex}) is revoked by ${crl.issuer}: ${entry.reason} (since ${since})`,
    {
      details: {
        subject: cert.subject,
        serial: cert.serialHex,
        reason: entry.reason,
        revokedAt: entry.revokedAt.toISOString(),
        ...(source ? { crl: source } : {}),
      },
    },
  );
}

// -------------------------------------------------------------------------------------------------
// Fetching and caching

export interface RevocationCheckerOptions {
  /** Default: {@link createHttpFetcher} (with `lookup`, when given). */
  fetcher?: Fetcher;
  /** DNS resolution for the default fetcher (hisp's configured resolver). */
  lookup?: LookupFunction;
  /** Non-global addresses the default fetcher may reach ({@link createHttpFetcher}); default none. */
  allowAddresses?: readonly string[];
  /** The clock for CRL currency and the cache (tests inject one); default `new Date()`. */
  clock?: () => Date;
  timeoutMs?: number;
  maxBytes?: number;
  /** How long a CRL without nextUpdate is kept; default 1 hour. */
  defaultTtlMs?: number;
  /** How long a failure to get a CRL is remembered before trying again; default 60 s. */
  failureTtlMs?: number;
  /** Cached CRLs kept (least recently used dropped first); default 256. */
  maxEntries?: number;
}

export interface CertificateRevocationResult {
  status: 'good' | 'unavailable';
  /** The URL of the CRL that decided, when 'good'. */
  source?: string;
  /** Why no CRL could be used, and skipped distribution points. */
  notes: string[];
  /** The error for 'unavailable' (HISP_TRUST_REVOCATION_UNAVAILABLE). */
  error?: HispError;
}

export interface PathRevocationOptions {
  mode: RevocationMode;
  allowSha1?: boolean;
  /** The fetch budget of the message (or recipient) being checked: CRL downloads are charged to it. */
  budget?: FetchBudget;
}

export interface PathRevocationResult {
  revocation: 'checked' | 'unavailable' | 'off';
  warnings: string[];
}

interface CacheEntry {
  crl?: ParsedCrl;
  error?: HispError;
  /** Epoch ms after which the entry is not used. */
  until: number;
}

/**
 * Fetches, verifies and caches CRLs, and decides the revocation status of certificates and paths.
 * One instance serves the whole gateway: the cache is keyed by (URL, issuer), kept until nextUpdate,
 * and concurrent checks of the same CRL share one download.
 */
export class RevocationChecker {
  private readonly fetcher: Fetcher;
  private readonly clock: () => Date;
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private readonly defaultTtlMs: number;
  private readonly failureTtlMs: number;
  private readonly maxEntries: number;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<CacheEntry>>();

  constructor(options: RevocationCheckerOptions = {}) {
    this.fetcher =
      options.fetcher ??
      createHttpFetcher({ ...(options.lookup ? { lookup: options.lookup } : {}), ...(options.allowAddresses ? { allowAddresses: options.allowAddresses } : {}) });
    this.clock = options.clock ?? (() => new Date());
    this.timeoutMs = options.timeoutMs ?? FETCH_DEFAULTS.crl.timeoutMs;
    this.maxBytes = options.maxBytes ?? FETCH_DEFAULTS.crl.maxBytes;
    this.defaultTtlMs = options.defaultTtlMs ?? 60 * 60_000;
    this.failureTtlMs = options.failureTtlMs ?? 60_000;
    this.maxEntries = options.maxEntries ?? 256;
  }

  /** Forgets every cached CRL and failure. */
  clear(): void {
    this.cache.clear();
  }

  /**
   * The revocation status of `cert`, whose issuer is `issuer` (the next certificate of its path).
   * Throws HISP_TRUST_REVOKED when a verified, current CRL lists it; otherwise resolves to 'good'
   * or 'unavailable' (with the reasons), whatever the mode: the mode is applied by {@link checkPath}.
   * Downloads are charged to `budget` (a cached CRL costs nothing).
   */
  async checkCertificate(cert: Certificate, issuer: Certificate, allowSha1 = false, budget?: FetchBudget): Promise<CertificateRevocationResult> {
    const dps = crlDistributionPoints(cert);
    const { urls, notes: uriNotes } = fetchableUris(dps.uris, 'CRL distribution point');
    const notes = [...dps.skipped, ...uriNotes];
    if (urls.length === 0) {
      const why = dps.uris.length === 0 && dps.skipped.length === 0 ? 'names no CRL distribution point' : 'names no HTTP CRL distribution point';
      return {
        status: 'unavailable',
        notes,
        error: new HispError('HISP_TRUST_REVOCATION_UNAVAILABLE', `${cert.subject} ${why}, so its revocation status is unknown`, {
          details: { subject: cert.subject, notes },
        }),
      };
    }
    let last: HispError | undefined;
    for (const url of urls) {
      const entry = await this.crlFor(url, issuer, allowSha1, budget);
      if (entry.error || !entry.crl) {
        last = entry.error;
        notes.push(entry.error?.message ?? `no CRL at ${url.href}`);
        continue;
      }
      if ((entry.crl.scope === 'user' && cert.basicConstraints?.ca) || (entry.crl.scope === 'ca' && !cert.basicConstraints?.ca)) {
        notes.push(`the CRL at ${url.href} does not cover ${cert.basicConstraints?.ca ? 'CA' : 'end-entity'} certificates`);
        continue;
      }
      checkAgainstCrl(cert, entry.crl, url.href);
      return { status: 'good', source: url.href, notes };
    }
    const reason = notes.length > 0 ? notes.join('; ') : 'no CRL could be used';
    return {
      status: 'unavailable',
      notes,
      error: new HispError('HISP_TRUST_REVOCATION_UNAVAILABLE', `no usable CRL for ${cert.subject}: ${reason}`, {
        transient: last?.transient ?? true,
        details: { subject: cert.subject, notes },
      }),
    };
  }

  /**
   * Checks every certificate of a validated path except the anchor (path[i] against path[i+1]).
   * 'hard-fail' throws the first unavailability; 'soft-fail' reports it as a warning.
   */
  async checkPath(path: readonly Certificate[], options: PathRevocationOptions): Promise<PathRevocationResult> {
    if (options.mode === 'off') return { revocation: 'off', warnings: [] };
    const warnings: string[] = [];
    let unavailable = false;
    for (let i = 0; i + 1 < path.length; i++) {
      const result = await this.checkCertificate(path[i]!, path[i + 1]!, options.allowSha1 ?? false, options.budget);
      if (result.status === 'good') continue;
      if (options.mode === 'hard-fail') throw result.error!;
      unavailable = true;
      warnings.push(`revocation not checked (soft-fail): ${result.error?.message ?? 'no CRL'}`);
    }
    return { revocation: unavailable ? 'unavailable' : 'checked', warnings };
  }

  private async crlFor(url: URL, issuer: Certificate, allowSha1: boolean, budget: FetchBudget | undefined): Promise<CacheEntry> {
    const key = `${url.href} ${issuer.sha256} ${allowSha1 ? 'sha1' : ''}`;
    const now = this.clock().getTime();
    const hit = this.cache.get(key);
    if (hit && hit.until > now) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    if (hit) this.cache.delete(key);
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.load(url, issuer, allowSha1, budget).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    const entry = await p;
    // A spent budget is the message's, not the CRL's: the next message may fetch it.
    if (entry.error && isFetchBudgetError(entry.error)) return entry;
    this.cache.set(key, entry);
    while (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
    return entry;
  }

  private async load(url: URL, issuer: Certificate, allowSha1: boolean, budget: FetchBudget | undefined): Promise<CacheEntry> {
    const failed = (error: HispError): CacheEntry => ({ error, until: this.clock().getTime() + this.failureTtlMs });
    let body: Buffer;
    try {
      body = await this.fetcher(url, { purpose: 'crl', timeoutMs: this.timeoutMs, maxBytes: this.maxBytes, ...(budget ? { budget } : {}) });
    } catch (err) {
      const e = asFetchError(err, url, 'crl');
      const message = e.message.includes(url.href) ? e.message : `CRL ${url.href}: ${e.message}`;
      // A refused address stays refused (permanent); anything else may work later.
      return failed(new HispError('HISP_TRUST_REVOCATION_UNAVAILABLE', message, { transient: e.details?.refused !== true, cause: e, ...(e.details ? { details: e.details } : {}) }));
    }
    try {
      const crl = parseCrl(body);
      const now = this.clock();
      verifyCrl(crl, issuer, { now, allowSha1 });
      const until = crl.nextUpdate ? crl.nextUpdate.getTime() : now.getTime() + this.defaultTtlMs;
      return { crl, until };
    } catch (err) {
      if (!isHispError(err)) throw err;
      return failed(new HispError('HISP_TRUST_REVOCATION_UNAVAILABLE', `CRL at ${url.href}: ${err.message}`, { transient: err.transient, cause: err }));
    }
  }
}

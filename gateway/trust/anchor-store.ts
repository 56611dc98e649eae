import { readFileSync } from 'node:fs';
import type { Certificate } from '../core/certificate.js';
import { DirectAddress } from '../core/direct-address.js';
import { HispError, isHispError } from '../core/errors.js';
import { readCertificates } from '../agent/key-material.js';
import { parseTrustBundle, type BundleScope, type TrustBundleParseOptions, type TrustDirection } from './trust-bundle.js';
import { looksLikePem, pemBlocks } from './pkcs7.js';

/**
 * The trust anchors of the local addresses and domains (R-TRU-1, R-TRU-5): anchors are held per
 * local domain or per local address, separately for 'incoming' (validating senders' signing
 * certificates) and 'outgoing' (validating recipients' encryption certificates). An anchor may be a
 * root, an intermediate or a pinned end-entity certificate (validateChain accepts any of them).
 * Anchors come from certificate files (PEM/DER), bundle files (.p7b) and live trust bundle sources,
 * which are read at each lookup so that a refreshed bundle takes effect at once.
 */

export type { TrustDirection } from './trust-bundle.js';

/** Anything that holds a current anchor set (a TrustBundleSource, say). */
export interface AnchorSource {
  readonly anchors: readonly Certificate[];
  readonly name?: string;
}

type DirectionSpec = TrustDirection | 'both' | readonly TrustDirection[];

/** Every local domain. */
export const ALL_DOMAINS = '*';

function directionsOf(spec: DirectionSpec): TrustDirection[] {
  if (spec === 'both') return ['incoming', 'outgoing'];
  if (typeof spec === 'string') return [spec];
  return [...spec];
}

/** Normalized key of a scope: '*', a lowercased domain, or `local@domain` (local part lowercased). */
export function scopeKey(scope: string | DirectAddress): string {
  if (scope instanceof DirectAddress) return `${scope.local.toLowerCase()}@${scope.domain}`;
  const s = scope.trim();
  if (s === ALL_DOMAINS) return s;
  if (s.includes('@')) return scopeKey(DirectAddress.parse(s));
  const domain = s.toLowerCase().replace(/\.$/, '');
  if (!/^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/.test(domain)) {
    throw new HispError('HISP_USAGE', `not a domain or address: ${JSON.stringify(scope)}`);
  }
  return domain;
}

interface Binding {
  direction: TrustDirection;
  certs?: readonly Certificate[];
  source?: AnchorSource;
}

export class AnchorStore {
  private readonly bindings = new Map<string, Binding[]>();

  /** Adds anchors for a domain, an address or '*' (every domain). */
  add(scope: string | DirectAddress, directions: DirectionSpec, certificates: readonly Certificate[]): void {
    const key = scopeKey(scope);
    const list = this.bindings.get(key) ?? [];
    for (const direction of directionsOf(directions)) list.push({ direction, certs: [...certificates] });
    this.bindings.set(key, list);
  }

  /**
   * Reads anchors from a file: PEM (one or more CERTIFICATE blocks, or a PKCS7 bundle) or DER (a
   * certificate, or a certs-only/signed .p7b bundle). Returns what was added. Throws HISP_IO,
   * HISP_KEY_UNREADABLE or HISP_BUNDLE_*.
   */
  addFile(scope: string | DirectAddress, directions: DirectionSpec, path: string, bundleOptions: TrustBundleParseOptions = {}): Certificate[] {
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (cause) {
      throw new HispError('HISP_IO', `cannot read trust anchor file ${path}`, { cause });
    }
    const certs = readAnchorFile(bytes, path, bundleOptions);
    this.add(scope, directions, certs);
    return certs;
  }

  /**
   * Binds a live anchor source (a TrustBundleSource) to scopes; default the source's own scopes.
   * Its current anchors are read at every lookup.
   */
  addSource(source: AnchorSource & { readonly scopes?: readonly BundleScope[] }, scopes?: readonly BundleScope[]): void {
    const list = scopes ?? source.scopes ?? [];
    if (list.length === 0) throw new HispError('HISP_USAGE', `anchor source ${source.name ?? ''} is bound to no domain`);
    for (const s of list) {
      const key = scopeKey(s.scope);
      const bindings = this.bindings.get(key) ?? [];
      for (const direction of s.directions) bindings.push({ direction, source });
      this.bindings.set(key, bindings);
    }
  }

  /** Removes a source from every scope. */
  removeSource(source: AnchorSource): void {
    for (const [key, list] of this.bindings) {
      this.bindings.set(
        key,
        list.filter((b) => b.source !== source),
      );
    }
  }

  /**
   * The anchors that serve `addressOrDomain` in `direction`: for an address, its own anchors plus
   * its domain's, plus those bound to every domain; deduplicated, address-specific ones first.
   */
  anchorsFor(addressOrDomain: string | DirectAddress, direction: TrustDirection): Certificate[] {
    const key = scopeKey(addressOrDomain);
    const keys = key.includes('@') ? [key, key.slice(key.lastIndexOf('@') + 1), ALL_DOMAINS] : [key, ALL_DOMAINS];
    const seen = new Set<string>();
    const out: Certificate[] = [];
    for (const k of keys) {
      for (const b of this.bindings.get(k) ?? []) {
        if (b.direction !== direction) continue;
        for (const c of b.certs ?? b.source?.anchors ?? []) {
          if (seen.has(c.sha256)) continue;
          seen.add(c.sha256);
          out.push(c);
        }
      }
    }
    return out;
  }

  /** The scopes that have anchors bound (for reports). */
  scopes(): string[] {
    return [...this.bindings.keys()].filter((k) => (this.bindings.get(k) ?? []).length > 0);
  }
}

/** Certificates of an anchor file: PEM/DER certificates or a PKCS#7 bundle. */
export function readAnchorFile(bytes: Buffer, source: string, bundleOptions: TrustBundleParseOptions = {}): Certificate[] {
  const isPkcs7Pem = looksLikePem(bytes) && pemBlocks(bytes).some((b) => b.label === 'PKCS7' || b.label === 'CMS');
  if (isPkcs7Pem) return parseTrustBundle(bytes, { ...bundleOptions, source }).anchors;
  try {
    return readCertificates(bytes, source);
  } catch (err) {
    if (!isHispError(err) || looksLikePem(bytes)) throw err;
    // DER that is not a certificate: a .p7b bundle then (or, failing that, a broken certificate).
    try {
      return parseTrustBundle(bytes, { ...bundleOptions, source }).anchors;
    } catch (bundleErr) {
      if (isHispError(bundleErr) && bundleErr.code === 'HISP_BUNDLE_INVALID') throw err;
      throw bundleErr;
    }
  }
}

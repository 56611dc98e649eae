import * as pkijs from 'pkijs';
import type { Certificate } from '../core/certificate.js';

/**
 * The two "where to fetch" extensions of RFC 5280 that the trust layer follows: CRL distribution
 * points (§4.2.1.13, R-TRU-3) and Authority Information Access caIssuers (§4.2.2.1, R-TRU-4).
 * Decoded once per certificate (PKI.js already parsed them along with the certificate).
 */

const OID_CRL_DISTRIBUTION_POINTS = '2.5.29.31';
const OID_AUTHORITY_INFO_ACCESS = '1.3.6.1.5.5.7.1.1';
const OID_CA_ISSUERS = '1.3.6.1.5.5.7.48.2';
/** GeneralName choice [6] uniformResourceIdentifier. */
const GN_URI = 6;

export interface DistributionPoints {
  /** URIs of full-name distribution points whose CRL is issued by the certificate's issuer, in order. */
  uris: string[];
  /** Distribution points hisp cannot use and why (indirect CRLs, relative names). */
  skipped: string[];
}

const dpCache = new WeakMap<Certificate, DistributionPoints>();
const aiaCache = new WeakMap<Certificate, string[]>();

function extension(cert: Certificate, oid: string): unknown {
  return cert.structure.extensions?.find((e) => e.extnID === oid)?.parsedValue;
}

function uriOf(name: pkijs.GeneralName): string | undefined {
  return name.type === GN_URI && typeof name.value === 'string' ? name.value : undefined;
}

export function crlDistributionPoints(cert: Certificate): DistributionPoints {
  const hit = dpCache.get(cert);
  if (hit) return hit;
  const result: DistributionPoints = { uris: [], skipped: [] };
  const parsed = extension(cert, OID_CRL_DISTRIBUTION_POINTS);
  if (parsed instanceof pkijs.CRLDistributionPoints) {
    for (const dp of parsed.distributionPoints) {
      if (dp.cRLIssuer && dp.cRLIssuer.length > 0) {
        result.skipped.push('a distribution point with a cRLIssuer (indirect CRL) is not supported');
        continue;
      }
      const name = dp.distributionPoint;
      if (!Array.isArray(name)) {
        if (name) result.skipped.push('a distribution point named relative to the issuer is not supported');
        continue;
      }
      for (const gn of name) {
        const uri = uriOf(gn);
        if (uri !== undefined) result.uris.push(uri);
      }
    }
  }
  dpCache.set(cert, result);
  return result;
}

/** caIssuers URIs of the AIA extension, in order. */
export function caIssuersUris(cert: Certificate): string[] {
  const hit = aiaCache.get(cert);
  if (hit) return hit;
  const uris: string[] = [];
  const parsed = extension(cert, OID_AUTHORITY_INFO_ACCESS);
  if (parsed instanceof pkijs.InfoAccess) {
    for (const ad of parsed.accessDescriptions) {
      if (ad.accessMethod !== OID_CA_ISSUERS) continue;
      const uri = uriOf(ad.accessLocation);
      if (uri !== undefined) uris.push(uri);
    }
  }
  aiaCache.set(cert, uris);
  return uris;
}

/** Splits URIs into those fetched over HTTP(S) and notes for the others (ldap:, file:, …). */
export function fetchableUris(uris: readonly string[], what: string): { urls: URL[]; notes: string[] } {
  const urls: URL[] = [];
  const notes: string[] = [];
  for (const u of uris) {
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      notes.push(`${what} ${JSON.stringify(u.slice(0, 200))} is not a URL`);
      continue;
    }
    if (url.protocol === 'http:' || url.protocol === 'https:') urls.push(url);
    else if (url.protocol === 'ldap:' || url.protocol === 'ldaps:') notes.push(`${what} ${u} skipped: LDAP locations are not fetched`);
    else notes.push(`${what} ${u} skipped: ${url.protocol} locations are not fetched`);
  }
  return { urls, notes };
}

import { createPrivateKey, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { algorithm, decodeBer } from '../agent/asn1.js';
import { encode, raw, seq } from '../agent/der.js';
import { CrlReason as X509CrlReason, readTrustFile, signCrl, trustCert, trustKeyPem, type TrustCaName } from '../../test/fixtures/trust/trust-pki.js';
import type { Fetcher } from './http-fetch.js';
import { checkAgainstCrl, normalizeSerial, parseCrl, RevocationChecker, verifyCrl } from './revocation.js';
import { hispError as thrown, hispRejection as rejection } from '../../test/helpers/hisp-error.js';

const intermediate = trustCert('intermediate-ca');
const root = trustCert('root-ca');
const good = trustCert('leaf-good');
const revoked = trustCert('leaf-revoked');
const NOW = new Date('2026-03-01T00:00:00Z');
const INTERMEDIATE_CRL_URL = 'http://crl.hisp.test/intermediate-ca.crl';

/** An in-memory fetcher over a URL → bytes table that counts its calls. */
function tableFetcher(table: Map<string, Buffer | Error>): Fetcher & { calls: string[] } {
  const calls: string[] = [];
  const f: Fetcher = (url) => {
    calls.push(url.href);
    const v = table.get(url.href);
    if (v === undefined) return Promise.reject(new Error('HTTP 404'));
    if (v instanceof Error) return Promise.reject(v);
    return Promise.resolve(v);
  };
  return Object.assign(f, { calls });
}

/** Re-signs a CRL with another digest and algorithm OID (node:crypto), e.g. MD5, which WebCrypto cannot. */
function resign(crlDer: Buffer, issuer: TrustCaName, digest: string, algOid: string): Buffer {
  const [tbs] = decodeBer(crlDer, 'CRL').children();
  const fields = tbs!.children();
  // tbsCertList: version, signature, issuer, thisUpdate, nextUpdate, … ; replace the signature field
  const newTbs = encode(seq(raw(fields[0]!.raw), algorithm(algOid, 'null'), ...fields.slice(2).map((f) => raw(f.raw))));
  const sig = sign(digest, newTbs, createPrivateKey(trustKeyPem(issuer)));
  const bitString = Buffer.concat([Buffer.from([0x03]), lengthOf(sig.length + 1), Buffer.from([0]), sig]);
  return encode(seq(raw(newTbs), algorithm(algOid, 'null'), raw(bitString)));
}

function lengthOf(n: number): Buffer {
  return n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
}

describe('parseCrl', () => {
  it('reads the fixture CRL of intermediate-ca: dates, issuer and the revoked serial with its reason', () => {
    const crl = parseCrl(readTrustFile('intermediate-ca.crl'));
    expect(crl.issuer).toBe(intermediate.subject);
    expect(crl.issuerDer.equals(intermediate.subjectDer)).toBe(true);
    expect(crl.thisUpdate.toISOString()).toBe('2025-06-01T00:00:00.000Z');
    expect(crl.nextUpdate?.toISOString()).toBe('2049-12-01T00:00:00.000Z');
    expect(crl.revoked.size).toBe(1);
    const entry = crl.revoked.get(normalizeSerial(revoked.serialHex));
    expect(entry?.reason).toBe('keyCompromise');
    expect(entry?.revokedAt.toISOString()).toBe('2025-05-15T00:00:00.000Z');
    expect(crl.scope).toBe('all');
  });

  it('reads PEM CRLs too', () => {
    const der = readTrustFile('root-ca.crl');
    const pem = `-----BEGIN X509 CRL-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END X509 CRL-----\n`;
    expect(parseCrl(Buffer.from(pem)).der.equals(der)).toBe(true);
  });

  it('refuses what is not a CRL with HISP_TRUST_REVOCATION_UNAVAILABLE (a certificate, garbage, truncation, trailing data)', () => {
    const crl = readTrustFile('intermediate-ca.crl');
    for (const bad of [good.der, Buffer.from('not a crl'), crl.subarray(0, crl.length - 10), Buffer.concat([crl, Buffer.from([1, 2])]), Buffer.alloc(0)]) {
      expect(thrown(() => parseCrl(bad)).code).toBe('HISP_TRUST_REVOCATION_UNAVAILABLE');
    }
  });

  it('normalizeSerial drops redundant leading zero octets only', () => {
    expect(normalizeSerial('00ff01')).toBe('ff01');
    expect(normalizeSerial('0001')).toBe('01');
    expect(normalizeSerial('00')).toBe('00');
    expect(normalizeSerial('7F')).toBe('7f');
  });
});

describe('verifyCrl', () => {
  const crl = parseCrl(readTrustFile('intermediate-ca.crl'));

  it('accepts the CRL with its issuer at a time between thisUpdate and nextUpdate', () => {
    expect(() => verifyCrl(crl, intermediate, { now: NOW, allowSha1: false })).not.toThrow();
  });

  it('refuses it with another issuer (name), and a CRL whose signature does not verify', () => {
    expect(thrown(() => verifyCrl(crl, root, { now: NOW, allowSha1: false })).message).toMatch(/not by/);
    // same name, other key: flip a byte of the signature
    const der = Buffer.from(readTrustFile('intermediate-ca.crl'));
    der[der.length - 5]! ^= 0xff;
    const e = thrown(() => verifyCrl(parseCrl(der), intermediate, { now: NOW, allowSha1: false }));
    expect(e.code).toBe('HISP_TRUST_REVOCATION_UNAVAILABLE');
    expect(e.message).toMatch(/does not verify/);
  });

  it('refuses a stale CRL (nextUpdate passed) and one not yet valid', () => {
    expect(thrown(() => verifyCrl(crl, intermediate, { now: new Date('2050-01-01T00:00:00Z'), allowSha1: false })).message).toMatch(/stale/);
    expect(thrown(() => verifyCrl(crl, intermediate, { now: new Date('2025-05-01T00:00:00Z'), allowSha1: false })).message).toMatch(/not yet valid/);
  });

  it('SHA-1 signed CRLs need the legacy switch; MD5 signed ones are never accepted', async () => {
    const sha1 = parseCrl(await signCrl('intermediate-ca', { thisUpdate: new Date('2026-01-01T00:00:00Z'), hash: 'SHA-1' }));
    expect(sha1.signatureAlgorithmOid).toBe('1.2.840.113549.1.1.5');
    expect(thrown(() => verifyCrl(sha1, intermediate, { now: NOW, allowSha1: false })).message).toMatch(/SHA-1/);
    expect(() => verifyCrl(sha1, intermediate, { now: NOW, allowSha1: true })).not.toThrow();

    const md5 = parseCrl(resign(readTrustFile('intermediate-ca.crl'), 'intermediate-ca', 'md5', '1.2.840.113549.1.1.4'));
    expect(md5.signatureAlgorithmOid).toBe('1.2.840.113549.1.1.4');
    expect(thrown(() => verifyCrl(md5, intermediate, { now: NOW, allowSha1: true })).message).toMatch(/MD5/);
    // the re-signing itself is sound: the same CRL re-signed with SHA-256 verifies
    const sha256 = parseCrl(resign(readTrustFile('intermediate-ca.crl'), 'intermediate-ca', 'sha256', '1.2.840.113549.1.1.11'));
    expect(() => verifyCrl(sha256, intermediate, { now: NOW, allowSha1: false })).not.toThrow();
  });

  it('checkAgainstCrl: the revoked leaf throws HISP_TRUST_REVOKED (permanent) with reason keyCompromise; the good one passes', () => {
    const e = thrown(() => checkAgainstCrl(revoked, crl, INTERMEDIATE_CRL_URL));
    expect(e.code).toBe('HISP_TRUST_REVOKED');
    expect(e.transient).toBe(false);
    expect(e.details).toMatchObject({ reason: 'keyCompromise', serial: revoked.serialHex, crl: INTERMEDIATE_CRL_URL });
    expect(e.message).toMatch(/keyCompromise/);
    expect(() => checkAgainstCrl(good, crl)).not.toThrow();
  });
});

describe('RevocationChecker', () => {
  const crlBytes = readTrustFile('intermediate-ca.crl');

  it('good → good (with the deciding URL); revoked → HISP_TRUST_REVOKED', async () => {
    const fetcher = tableFetcher(new Map([[INTERMEDIATE_CRL_URL, crlBytes]]));
    const checker = new RevocationChecker({ fetcher, clock: () => NOW });
    await expect(checker.checkCertificate(good, intermediate)).resolves.toMatchObject({ status: 'good', source: INTERMEDIATE_CRL_URL });
    const e = await rejection(checker.checkCertificate(revoked, intermediate));
    expect(e.code).toBe('HISP_TRUST_REVOKED');
    expect(e.details?.reason).toBe('keyCompromise');
    expect(fetcher.calls).toEqual([INTERMEDIATE_CRL_URL]); // one fetch for both
  });

  it('caches a CRL until its nextUpdate (injected clock), then fetches it again', async () => {
    let now = new Date('2026-01-02T00:00:00Z');
    const table = new Map<string, Buffer | Error>([
      [INTERMEDIATE_CRL_URL, await signCrl('intermediate-ca', { thisUpdate: new Date('2026-01-01T00:00:00Z'), nextUpdate: new Date('2026-01-08T00:00:00Z') })],
    ]);
    const fetcher = tableFetcher(table);
    const checker = new RevocationChecker({ fetcher, clock: () => now });
    for (let i = 0; i < 5; i++) await checker.checkCertificate(good, intermediate);
    expect(fetcher.calls).toHaveLength(1);
    now = new Date('2026-01-07T23:59:59Z');
    await checker.checkCertificate(good, intermediate);
    expect(fetcher.calls).toHaveLength(1);
    // past nextUpdate: the cached CRL is dropped; the new one (published meanwhile) is fetched
    now = new Date('2026-01-08T00:00:01Z');
    table.set(
      INTERMEDIATE_CRL_URL,
      await signCrl('intermediate-ca', {
        thisUpdate: new Date('2026-01-08T00:00:00Z'),
        nextUpdate: new Date('2026-01-15T00:00:00Z'),
        entries: [{ serialHex: good.serialHex, reason: X509CrlReason.superseded }],
      }),
    );
    const e = await rejection(checker.checkCertificate(good, intermediate));
    expect(e.details?.reason).toBe('superseded');
    expect(fetcher.calls).toHaveLength(2);
  });

  it('concurrent checks of one CRL share one download', async () => {
    const fetcher = tableFetcher(new Map([[INTERMEDIATE_CRL_URL, crlBytes]]));
    const checker = new RevocationChecker({ fetcher, clock: () => NOW });
    await Promise.all(Array.from({ length: 10 }, () => checker.checkCertificate(good, intermediate)));
    expect(fetcher.calls).toHaveLength(1);
  });

  it('a stale CRL is unavailable, and the failure is remembered for failureTtlMs only', async () => {
    let now = new Date('2026-02-01T00:00:00Z');
    const stale = await signCrl('intermediate-ca', { thisUpdate: new Date('2026-01-01T00:00:00Z'), nextUpdate: new Date('2026-01-08T00:00:00Z') });
    const fetcher = tableFetcher(new Map([[INTERMEDIATE_CRL_URL, stale]]));
    const checker = new RevocationChecker({ fetcher, clock: () => now, failureTtlMs: 60_000 });
    const r = await checker.checkCertificate(good, intermediate);
    expect(r.status).toBe('unavailable');
    expect(r.error?.code).toBe('HISP_TRUST_REVOCATION_UNAVAILABLE');
    expect(r.error?.message).toMatch(/stale/);
    await checker.checkCertificate(good, intermediate);
    expect(fetcher.calls).toHaveLength(1);
    now = new Date(now.getTime() + 61_000);
    await checker.checkCertificate(good, intermediate);
    expect(fetcher.calls).toHaveLength(2);
  });

  it('no CRL distribution point, or only an LDAP one: unavailable, with the reason (never fetched)', async () => {
    const fetcher = tableFetcher(new Map());
    const checker = new RevocationChecker({ fetcher, clock: () => NOW });
    const none = await checker.checkCertificate(trustCert('leaf-no-cdp'), intermediate);
    expect(none.status).toBe('unavailable');
    expect(none.error?.message).toMatch(/names no CRL distribution point/);
    expect(none.error?.transient).toBe(false);
    const ldap = await checker.checkCertificate(trustCert('leaf-ldap-cdp'), intermediate);
    expect(ldap.status).toBe('unavailable');
    expect(ldap.notes.join(' ')).toMatch(/ldap:\/\/.*skipped: LDAP locations are not fetched/);
    expect(fetcher.calls).toEqual([]);
  });

  it('checkPath: soft-fail reports a warning, hard-fail throws HISP_TRUST_REVOCATION_UNAVAILABLE (transient), off checks nothing', async () => {
    const fetcher = tableFetcher(new Map([[INTERMEDIATE_CRL_URL, new Error('connect ECONNREFUSED')]]));
    const checker = new RevocationChecker({ fetcher, clock: () => NOW, failureTtlMs: 0 });
    const path = [good, intermediate, root];
    const soft = await checker.checkPath(path, { mode: 'soft-fail' });
    expect(soft.revocation).toBe('unavailable');
    expect(soft.warnings).toHaveLength(2); // the leaf's CRL is down; the intermediate's (root-ca.crl) is not in the table
    expect(soft.warnings[0]).toMatch(/soft-fail.*ECONNREFUSED/);
    const e = await rejection(checker.checkPath(path, { mode: 'hard-fail' }));
    expect(e.code).toBe('HISP_TRUST_REVOCATION_UNAVAILABLE');
    expect(e.transient).toBe(true);
    const calls = fetcher.calls.length;
    expect(await checker.checkPath(path, { mode: 'off' })).toEqual({ revocation: 'off', warnings: [] });
    expect(fetcher.calls).toHaveLength(calls);
  });

  it('checkPath: every certificate but the anchor is checked against its issuer’s CRL', async () => {
    const fetcher = tableFetcher(
      new Map([
        [INTERMEDIATE_CRL_URL, crlBytes],
        ['http://crl.hisp.test/root-ca.crl', readTrustFile('root-ca.crl')],
      ]),
    );
    const checker = new RevocationChecker({ fetcher, clock: () => NOW });
    expect(await checker.checkPath([good, intermediate, root], { mode: 'hard-fail' })).toEqual({ revocation: 'checked', warnings: [] });
    expect(fetcher.calls.sort()).toEqual(['http://crl.hisp.test/intermediate-ca.crl', 'http://crl.hisp.test/root-ca.crl']);
    // a revoked intermediate: root-ca's CRL now lists it
    const checker2 = new RevocationChecker({
      fetcher: tableFetcher(
        new Map([
          [INTERMEDIATE_CRL_URL, crlBytes],
          [
            'http://crl.hisp.test/root-ca.crl',
            await signCrl('root-ca', { thisUpdate: new Date('2026-01-01T00:00:00Z'), entries: [{ serialHex: intermediate.serialHex, reason: X509CrlReason.cACompromise }] }),
          ],
        ]),
      ),
      clock: () => NOW,
    });
    const e = await rejection(checker2.checkPath([good, intermediate, root], { mode: 'soft-fail' }));
    expect(e.code).toBe('HISP_TRUST_REVOKED');
    expect(e.details).toMatchObject({ reason: 'cACompromise', subject: intermediate.subject });
  });

  it('a CRL without nextUpdate is kept for defaultTtlMs', async () => {
    let now = new Date('2026-01-02T00:00:00Z');
    const fetcher = tableFetcher(new Map([[INTERMEDIATE_CRL_URL, await signCrl('intermediate-ca', { thisUpdate: new Date('2026-01-01T00:00:00Z') })]]));
    const checker = new RevocationChecker({ fetcher, clock: () => now, defaultTtlMs: 3_600_000 });
    await checker.checkCertificate(good, intermediate);
    now = new Date(now.getTime() + 3_599_000);
    await checker.checkCertificate(good, intermediate);
    expect(fetcher.calls).toHaveLength(1);
    now = new Date(now.getTime() + 2_000);
    await checker.checkCertificate(good, intermediate);
    expect(fetcher.calls).toHaveLength(2);
  });
});

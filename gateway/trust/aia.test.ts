import { describe, expect, it } from 'vitest';
import { readTrustFile, trustCert, trustCertPem } from '../../test/fixtures/trust/trust-pki.js';
import { AiaResolver, parseCaIssuersAnswer } from './aia.js';
import { caIssuersUris, crlDistributionPoints } from './cert-extensions.js';
import type { Fetcher } from './http-fetch.js';
import { missingIssuers } from './trust-validator.js';
import { hispError as thrown } from '../../test/helpers/hisp-error.js';

const root = trustCert('root-ca');
const intermediate = trustCert('intermediate-ca');
const good = trustCert('leaf-good');

describe('certificate extensions', () => {
  it('CRL distribution points and caIssuers of the fixture certificates', () => {
    expect(crlDistributionPoints(good)).toEqual({ uris: ['http://crl.hisp.test/intermediate-ca.crl'], skipped: [] });
    expect(caIssuersUris(good)).toEqual(['http://aia.hisp.test/intermediate-ca.cer']);
    expect(crlDistributionPoints(root)).toEqual({ uris: [], skipped: [] });
    expect(caIssuersUris(root)).toEqual([]);
    expect(crlDistributionPoints(trustCert('leaf-ldap-cdp')).uris[0]).toMatch(/^ldap:\/\//);
  });
});

describe('parseCaIssuersAnswer', () => {
  it('DER certificate, PEM certificate, certs-only PKCS#7 in DER and in PEM', () => {
    const p7c = readTrustFile('intermediate-ca.p7c');
    const p7cPem = Buffer.from(`-----BEGIN PKCS7-----\n${p7c.toString('base64')}\n-----END PKCS7-----\n`);
    for (const answer of [intermediate.der, Buffer.from(trustCertPem('intermediate-ca')), p7c, p7cPem]) {
      expect(parseCaIssuersAnswer(answer).map((c) => c.sha256)).toEqual([intermediate.sha256]);
    }
  });

  it('anything else: HISP_TRUST_AIA_FAILED', () => {
    for (const bad of [Buffer.from('<html>not found</html>'), Buffer.alloc(0), readTrustFile('intermediate-ca.crl'), Buffer.from('-----BEGIN X-----\nAAAA\n-----END X-----\n')]) {
      expect(thrown(() => parseCaIssuersAnswer(bad)).code).toBe('HISP_TRUST_AIA_FAILED');
    }
  });
});

describe('AiaResolver', () => {
  it('keeps only certificates whose subject is the issuer, and caches per URL until ttlMs', async () => {
    let now = 0;
    const calls: string[] = [];
    const fetcher: Fetcher = (url) => {
      calls.push(url.href);
      return Promise.resolve(Buffer.concat([Buffer.from(trustCertPem('root-ca')), Buffer.from(trustCertPem('intermediate-ca'))]));
    };
    const aia = new AiaResolver({ fetcher, clock: () => new Date(now), ttlMs: 1000 });
    const r = await aia.issuersOf(good);
    expect(r.certificates.map((c) => c.sha256)).toEqual([intermediate.sha256]);
    expect(r.notes.join(' ')).toMatch(/not the issuer/);
    await aia.issuersOf(good);
    expect(calls).toHaveLength(1);
    now = 1001;
    await aia.issuersOf(good);
    expect(calls).toHaveLength(2);
  });

  it('a certificate without AIA: nothing fetched, a note', async () => {
    const aia = new AiaResolver({ fetcher: () => Promise.reject(new Error('unexpected')) });
    const r = await aia.issuersOf(trustCert('bundle-signer'));
    expect(r).toMatchObject({ certificates: [], errors: [] });
    expect(r.notes[0]).toMatch(/no AIA caIssuers/);
  });
});

describe('missingIssuers', () => {
  it('finds the certificate whose issuer is nowhere: the leaf without intermediates, the intermediate without root', () => {
    expect(missingIssuers(good, [root], [])).toEqual([good]);
    expect(missingIssuers(good, [], [intermediate])).toEqual([intermediate]);
    expect(missingIssuers(good, [root], [intermediate])).toEqual([]);
    // a self-signed root that is no anchor is a dead end, not a missing issuer
    expect(missingIssuers(trustCert('other-root-ca'), [root], [])).toEqual([]);
  });
});

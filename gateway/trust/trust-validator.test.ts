// TrustValidator on certificates made for each case (mutation testing, docs/testing.md): the validation
// time, the certificate judged without an anchor (requirements §5.5: what the Blue Button+ exception
// still demands of it), and what AIA adds to a path (R-TRU-4). Revocation over HTTP is in
// test/integration/trust-revocation-aia.test.ts.
import { beforeAll, describe, expect, it } from 'vitest';
import { signCrl, trustCert } from '../../test/fixtures/trust/trust-pki.js';
import { hispRejection } from '../../test/helpers/hisp-error.js';
import { KeyUsageFlags, makeCaPair, makeCertificate, type CertSpec, type MadeCertificate } from '../../test/helpers/cert-factory.js';
import type { Fetcher } from './http-fetch.js';
import { missingIssuers, TrustValidator } from './trust-validator.js';

const AT = new Date('2030-06-01T00:00:00Z');
const validity = { notBefore: new Date('2030-01-01T00:00:00Z'), notAfter: new Date('2031-01-01T00:00:00Z') };

/** A fetcher serving `table` (URL → DER), recording what was asked. */
function tableFetcher(table: Record<string, Buffer> = {}): Fetcher & { calls: string[] } {
  const calls: string[] = [];
  const f: Fetcher = (url) => {
    calls.push(url.href);
    const body = table[url.href];
    return body ? Promise.resolve(body) : Promise.reject(new Error('HTTP 404'));
  };
  return Object.assign(f, { calls });
}

let root: MadeCertificate;
let intermediate: MadeCertificate;

beforeAll(async () => {
  ({ root, intermediate } = await makeCaPair('Validator'));
});

const leafUnder = (issuer: MadeCertificate, spec: Partial<CertSpec> = {}) => makeCertificate({ subject: 'CN=patient', issuer, ...validity, ...spec });

describe('TrustValidator.validate: the validation time', () => {
  it('without `at`, the validator’s clock decides', async () => {
    const leaf = await leafUnder(intermediate);
    const at2030 = new TrustValidator({ fetcher: tableFetcher(), clock: () => AT });
    const at2035 = new TrustValidator({ fetcher: tableFetcher(), clock: () => new Date('2035-01-01T00:00:00Z') });
    const options = { anchors: [root.cert], intermediates: [intermediate.cert], purpose: 'signing' as const, revocation: 'off' as const };
    expect((await at2030.validate(leaf.cert, options)).path).toHaveLength(3);
    expect((await hispRejection(at2035.validate(leaf.cert, options))).code).toBe('HISP_TRUST_EXPIRED');
    // an explicit `at` wins over the clock
    expect((await at2035.validate(leaf.cert, { ...options, at: AT })).anchor).toBe(root.cert);
  });
});

describe('TrustValidator.validateUnanchored: what is still demanded without an anchor (requirements §5.5)', () => {
  const validator = () => new TrustValidator({ fetcher: tableFetcher(), clock: () => AT });
  const options = { purpose: 'encryption' as const, revocation: 'off' as const };

  it('an end entity, valid, with a good key: accepted, revocation off → path of the leaf alone', async () => {
    const leaf = await leafUnder(intermediate);
    expect(await validator().validateUnanchored(leaf.cert, options)).toEqual({ path: [leaf.cert], warnings: [], revocation: 'off' });
  });

  it('an end entity without basicConstraints is an end entity', async () => {
    const leaf = await leafUnder(intermediate, { ca: null });
    expect((await validator().validateUnanchored(leaf.cert, options)).path).toEqual([leaf.cert]);
  });

  it('a CA certificate is refused: HISP_TRUST_BASIC_CONSTRAINTS', async () => {
    const e = await hispRejection(validator().validateUnanchored(intermediate.cert, options));
    expect(e.code).toBe('HISP_TRUST_BASIC_CONSTRAINTS');
    expect(e.message).toBe('CN=Validator Intermediate CA is a CA certificate, not an end entity');
  });

  it('a certificate not yet valid, or expired, at the time: HISP_TRUST_EXPIRED', async () => {
    const leaf = await leafUnder(intermediate, { notBefore: new Date('2030-07-01T00:00:00Z') });
    const e = await hispRejection(validator().validateUnanchored(leaf.cert, options));
    expect(e.code).toBe('HISP_TRUST_EXPIRED');
    expect(e.message).toBe('CN=patient is not valid at 2030-06-01T00:00:00.000Z (2030-07-01T00:00:00.000Z – 2031-01-01T00:00:00.000Z)');
    expect((await hispRejection(validator().validateUnanchored(leaf.cert, { ...options, at: new Date('2031-02-01T00:00:00Z') }))).code).toBe('HISP_TRUST_EXPIRED');
    expect((await validator().validateUnanchored(leaf.cert, { ...options, at: new Date('2030-08-01T00:00:00Z') })).path).toEqual([leaf.cert]);
  });

  it('a small RSA key: HISP_TRUST_WEAK_KEY, unless minRsaBits allows it', async () => {
    const leaf = await leafUnder(intermediate, { key: { kind: 'rsa', bits: 1024 } });
    const e = await hispRejection(validator().validateUnanchored(leaf.cert, options));
    expect(e.code).toBe('HISP_TRUST_WEAK_KEY');
    expect(e.message).toBe('CN=patient has an RSA-1024 key; at least 2048 bits are required');
    expect((await validator().validateUnanchored(leaf.cert, { ...options, minRsaBits: 1024 })).path).toEqual([leaf.cert]);
  });

  it('a SHA-1 signature: HISP_TRUST_WEAK_SIGNATURE, unless the legacy switch is on', async () => {
    const leaf = await leafUnder(intermediate, { digest: 'SHA-1' });
    expect((await hispRejection(validator().validateUnanchored(leaf.cert, options))).code).toBe('HISP_TRUST_WEAK_SIGNATURE');
    expect((await validator().validateUnanchored(leaf.cert, { ...options, allowSha1: true })).path).toEqual([leaf.cert]);
  });

  it('the key usage of the purpose: HISP_TRUST_KEY_USAGE', async () => {
    const leaf = await leafUnder(intermediate, { keyUsage: KeyUsageFlags.digitalSignature });
    const e = await hispRejection(validator().validateUnanchored(leaf.cert, options));
    expect(e.code).toBe('HISP_TRUST_KEY_USAGE');
    expect(e.message).toBe('CN=patient lacks the keyEncipherment key usage needed for encryption');
    expect((await validator().validateUnanchored(leaf.cert, { ...options, purpose: 'signing' })).path).toEqual([leaf.cert]);
  });

  it('a self-signed end entity whose self-signature does not verify: HISP_TRUST_BAD_SIGNATURE; one that verifies passes', async () => {
    const other = await makeCertificate({ subject: 'CN=self', ...validity, keyIds: false });
    const forged = await makeCertificate({ subject: 'CN=self', issuer: other, keyIds: false, ...validity });
    // `forged` names itself as issuer (CN=self) but was signed by `other`'s key
    const e = await hispRejection(validator().validateUnanchored(forged.cert, options));
    expect(e.code).toBe('HISP_TRUST_BAD_SIGNATURE');
    expect(e.message).toBe('the self-signature of CN=self does not verify');
    expect((await validator().validateUnanchored(other.cert, options)).path).toEqual([other.cert]);
  });
});

describe('TrustValidator.validateUnanchored: revocation needs the issuer', () => {
  it('the issuer among the intermediates is the one whose key signed the leaf; its CRL is then read', async () => {
    const impostor = await makeCertificate({ subject: 'CN=Validator Intermediate CA', issuer: root, ca: true, keyIds: false });
    const leaf = await leafUnder(intermediate, { crlUrls: ['http://crl.validator.test/i.crl'] });
    const fetcher = tableFetcher();
    const v = new TrustValidator({ fetcher, clock: () => AT });
    const r = await v.validateUnanchored(leaf.cert, { purpose: 'encryption', intermediates: [impostor.cert, intermediate.cert] });
    expect(r.path).toEqual([leaf.cert, intermediate.cert]);
    expect(fetcher.calls).toContain('http://crl.validator.test/i.crl');
    // the CRL could not be had: soft-fail says so
    expect(r.revocation).toBe('unavailable');
    expect(r.warnings.length).toBeGreaterThan(0);
    for (const w of r.warnings) expect(w).toMatch(/http:\/\/crl\.validator\.test\/i\.crl/);
  });

  it('no issuer to be found: soft-fail accepts with a warning, hard-fail refuses (transient)', async () => {
    const leaf = await leafUnder(intermediate);
    const v = new TrustValidator({ fetcher: tableFetcher(), clock: () => AT });
    const soft = await v.validateUnanchored(leaf.cert, { purpose: 'encryption' });
    expect(soft).toEqual({
      path: [leaf.cert],
      revocation: 'unavailable',
      warnings: ['revocation not checked (soft-fail): the issuer of CN=patient is not available, so its CRL cannot be verified'],
    });
    const e = await hispRejection(v.validateUnanchored(leaf.cert, { purpose: 'encryption', revocation: 'hard-fail' }));
    expect(e.code).toBe('HISP_TRUST_REVOCATION_UNAVAILABLE');
    expect(e.transient).toBe(true);
  });

  it('the issuer from AIA when it is not given, unless `aia` is false', async () => {
    const leaf = await leafUnder(intermediate, { caIssuers: ['http://aia.validator.test/i.cer'] });
    const fetcher = tableFetcher({ 'http://aia.validator.test/i.cer': intermediate.cert.der });
    const v = new TrustValidator({ fetcher, clock: () => AT });
    expect((await v.validateUnanchored(leaf.cert, { purpose: 'encryption' })).path).toEqual([leaf.cert, intermediate.cert]);
    const quiet = tableFetcher({ 'http://aia.validator.test/i.cer': intermediate.cert.der });
    const noAia = await new TrustValidator({ fetcher: quiet, clock: () => AT }).validateUnanchored(leaf.cert, { purpose: 'encryption', aia: false });
    expect(noAia.path).toEqual([leaf.cert]);
    expect(quiet.calls).toEqual([]);
  });

  it('a self-signed end entity has no issuer to look for: nothing is fetched', async () => {
    const self = await makeCertificate({ subject: 'CN=self signed', ...validity, caIssuers: ['http://aia.validator.test/self.cer'] });
    const fetcher = tableFetcher();
    const r = await new TrustValidator({ fetcher, clock: () => AT }).validateUnanchored(self.cert, { purpose: 'encryption' });
    expect(r.revocation).toBe('unavailable');
    expect(fetcher.calls).toEqual([]);
  });
});

describe('TrustValidator.validate: AIA completes the path (R-TRU-4)', () => {
  it('fetches the missing intermediate, reports it in aiaFetched, and stops after maxAiaDepth rounds', async () => {
    // root → ca1 → ca2 → leaf; only the leaf is given, each names its issuer by AIA
    const ca1 = await makeCertificate({ subject: 'CN=AIA CA 1', issuer: root, ca: true, ...validity, caIssuers: ['http://aia.validator.test/root.cer'] });
    const ca2 = await makeCertificate({ subject: 'CN=AIA CA 2', issuer: ca1, ca: true, ...validity, caIssuers: ['http://aia.validator.test/ca1.cer'] });
    const leaf = await leafUnder(ca2, { caIssuers: ['http://aia.validator.test/ca2.cer'] });
    const table = { 'http://aia.validator.test/ca1.cer': ca1.cert.der, 'http://aia.validator.test/ca2.cer': ca2.cert.der };
    const options = { anchors: [root.cert], purpose: 'encryption' as const, revocation: 'off' as const, at: AT };
    const r = await new TrustValidator({ fetcher: tableFetcher(table), clock: () => AT }).validate(leaf.cert, options);
    expect(r.path).toEqual([leaf.cert, ca2.cert, ca1.cert, root.cert]);
    expect(r.aiaFetched).toEqual([ca2.cert, ca1.cert]);
    // one round is not enough for two missing issuers
    const one = new TrustValidator({ fetcher: tableFetcher(table), clock: () => AT, maxAiaDepth: 1 });
    expect((await hispRejection(one.validate(leaf.cert, options))).code).toBe('HISP_TRUST_NO_ANCHOR');
    // given intermediates are not reported as fetched
    const given = await new TrustValidator({ fetcher: tableFetcher(table), clock: () => AT }).validate(leaf.cert, { ...options, intermediates: [ca2.cert] });
    expect(given.aiaFetched).toEqual([ca1.cert]);
  });

  it('four missing issuers are fetched in the four default rounds; a fifth is one too many (HISP_TRUST_NO_ANCHOR)', async () => {
    const chainBelowRoot = async (n: number) => {
      const table: Record<string, Buffer> = {};
      let issuer = root;
      for (let i = 0; i < n; i++) {
        const url = `http://aia.validator.test/${n}-${i}.cer`;
        table[url] = issuer === root ? Buffer.alloc(0) : issuer.cert.der;
        issuer = await makeCertificate({ subject: `CN=Depth ${n} CA ${i}`, issuer, ca: true, ...validity, caIssuers: [url] });
      }
      const leafUrl = `http://aia.validator.test/${n}-leaf.cer`;
      table[leafUrl] = issuer.cert.der;
      return { leaf: await leafUnder(issuer, { caIssuers: [leafUrl] }), table };
    };
    const options = { anchors: [root.cert], purpose: 'encryption' as const, revocation: 'off' as const, at: AT };
    const four = await chainBelowRoot(4);
    const r = await new TrustValidator({ fetcher: tableFetcher(four.table), clock: () => AT }).validate(four.leaf.cert, options);
    expect(r.path).toHaveLength(6);
    expect(r.aiaFetched).toHaveLength(4);
    const five = await chainBelowRoot(5);
    const e = await hispRejection(new TrustValidator({ fetcher: tableFetcher(five.table), clock: () => AT }).validate(five.leaf.cert, options));
    expect(e.code).toBe('HISP_TRUST_NO_ANCHOR');
  });

  it('an AIA answer that also holds the anchor: only the missing intermediate counts as fetched', async () => {
    const leaf = await leafUnder(intermediate, { caIssuers: ['http://aia.validator.test/bundle.pem'] });
    const pem = Buffer.from(intermediate.cert.toPem() + root.cert.toPem());
    const r = await new TrustValidator({ fetcher: tableFetcher({ 'http://aia.validator.test/bundle.pem': pem }), clock: () => AT }).validate(leaf.cert, {
      anchors: [root.cert],
      purpose: 'encryption',
      revocation: 'off',
    });
    expect(r.path).toEqual([leaf.cert, intermediate.cert, root.cert]);
    expect(r.aiaFetched).toEqual([intermediate.cert]);
  });

  it('an AIA fetch that fails: HISP_TRUST_AIA_FAILED, naming the subject and the failure', async () => {
    const leaf = await leafUnder(intermediate, { caIssuers: ['http://aia.validator.test/missing.cer'] });
    const e = await hispRejection(new TrustValidator({ fetcher: tableFetcher(), clock: () => AT }).validate(leaf.cert, { anchors: [root.cert], purpose: 'encryption', revocation: 'off' }));
    expect(e.code).toBe('HISP_TRUST_AIA_FAILED');
    expect(e.message).toMatch(/^no path from CN=patient to a trust anchor, and AIA failed: /);
    expect(e.details).toEqual({ subject: 'CN=patient', notes: [expect.stringContaining('HTTP 404')] });
  });

  it('a chain problem other than a missing issuer is not sent to AIA', async () => {
    const expired = await leafUnder(intermediate, { notAfter: new Date('2030-02-01T00:00:00Z'), caIssuers: ['http://aia.validator.test/i.cer'] });
    const fetcher = tableFetcher({ 'http://aia.validator.test/i.cer': intermediate.cert.der });
    const e = await hispRejection(
      new TrustValidator({ fetcher, clock: () => AT }).validate(expired.cert, { anchors: [root.cert], intermediates: [intermediate.cert], purpose: 'encryption', revocation: 'off' }),
    );
    expect(e.code).toBe('HISP_TRUST_EXPIRED');
    expect(fetcher.calls).toEqual([]);
  });
});

describe('TrustValidator.validate: the SHA-1 switch governs CRLs too (requirements §5.7)', () => {
  it('a CRL signed with SHA-1 is not used without the switch (revocation unavailable), and is with it', async () => {
    const at = new Date('2026-03-01T00:00:00Z');
    const crl = async (ca: 'root-ca' | 'intermediate-ca') =>
      signCrl(ca, { thisUpdate: new Date('2026-02-28T00:00:00Z'), nextUpdate: new Date('2026-03-07T00:00:00Z'), hash: 'SHA-1' });
    const table = { 'http://crl.hisp.test/intermediate-ca.crl': await crl('intermediate-ca'), 'http://crl.hisp.test/root-ca.crl': await crl('root-ca') };
    const options = { anchors: [trustCert('root-ca')], intermediates: [trustCert('intermediate-ca')], purpose: 'encryption' as const };
    const without = await new TrustValidator({ fetcher: tableFetcher(table), clock: () => at }).validate(trustCert('leaf-good'), options);
    expect(without.revocation).toBe('unavailable');
    expect(without.warnings.join(' ')).toMatch(/SHA-1/);
    const withSwitch = await new TrustValidator({ fetcher: tableFetcher(table), clock: () => at }).validate(trustCert('leaf-good'), { ...options, allowSha1: true });
    expect(withSwitch.revocation).toBe('checked');
  });
});

describe('missingIssuers', () => {
  it('an intermediate that is an anchor ends the walk: nothing above it is missing', async () => {
    const leaf = await leafUnder(intermediate);
    expect(missingIssuers(leaf.cert, [intermediate.cert], [])).toEqual([]);
  });

  it('a certificate reached twice is reported once', async () => {
    // two same-named CAs under one issuer Y whose own issuer is missing: Y is reached through both
    const other = await makeCaPair('Diamond');
    const x1 = await makeCertificate({ subject: 'CN=Diamond X', issuer: other.intermediate, ca: true, keyIds: false });
    const x2 = await makeCertificate({ subject: 'CN=Diamond X', issuer: other.intermediate, ca: true, keyIds: false });
    const leaf = await makeCertificate({ subject: 'CN=diamond leaf', issuer: x1, keyIds: false });
    expect(missingIssuers(leaf.cert, [], [x1.cert, x2.cert, other.intermediate.cert])).toEqual([other.intermediate.cert]);
  });

  it('the certificates whose issuer is nowhere, walking up through what is known; anchors and self-issued ones end the walk', async () => {
    const leaf = await leafUnder(intermediate);
    expect(missingIssuers(leaf.cert, [root.cert], [])).toEqual([leaf.cert]);
    expect(missingIssuers(leaf.cert, [root.cert], [intermediate.cert])).toEqual([]);
    // without the root, the walk stops at the intermediate: its issuer is the one to fetch
    expect(missingIssuers(leaf.cert, [], [intermediate.cert])).toEqual([intermediate.cert]);
    const other = await makeCaPair('Elsewhere');
    const orphan = await leafUnder(other.intermediate);
    expect(missingIssuers(orphan.cert, [root.cert], [])).toEqual([orphan.cert]);
    expect(missingIssuers(orphan.cert, [root.cert], [other.intermediate.cert])).toEqual([other.intermediate.cert]);
    // a self-issued root known but not an anchor ends the walk too: nothing to fetch above it
    expect(missingIssuers(orphan.cert, [root.cert], [other.intermediate.cert, other.root.cert])).toEqual([]);
  });
});

// Revocation (R-TRU-3) and AIA (R-TRU-4) over real HTTP: a node:http server on 127.0.0.1 (port 0)
// serves the CRLs and issuer certificates the test PKI's certificates point at; the default
// fetcher talks to it (the certificates' host names mapped to its port). Also the DCDT D17 (CRL)
// and D18 (AIA) credentials from test/fixtures/dcdt.
import { readFileSync } from 'node:fs';
import type { LookupFunction } from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Certificate } from '../../gateway/core/certificate.js';
import { createHttpFetcher } from '../../gateway/trust/http-fetch.js';
import { TrustValidator } from '../../gateway/trust/trust-validator.js';
import { mappedFetcher, startPkiServer, type PkiServer } from '../fixtures/trust/pki-server.js';
import { readTrustFile, signCrl, trustCert, trustCertPem } from '../fixtures/trust/trust-pki.js';
import { REPO_ROOT } from '../helpers/vectors.js';
import { hispRejection as rejection } from '../helpers/hisp-error.js';

const root = trustCert('root-ca');
const intermediate = trustCert('intermediate-ca');
const good = trustCert('leaf-good');
const revoked = trustCert('leaf-revoked');
const NOW = new Date('2026-03-01T00:00:00Z');

let server: PkiServer;

function serveDefaults(s: PkiServer): void {
  s.routes.clear();
  s.routes.set('/intermediate-ca.crl', { body: readTrustFile('intermediate-ca.crl') });
  s.routes.set('/root-ca.crl', { body: readTrustFile('root-ca.crl') });
  s.routes.set('/other-root-ca.crl', { body: readTrustFile('other-root-ca.crl') });
  s.routes.set('/intermediate-ca.cer', { body: readTrustFile('intermediate-ca.cert.der'), type: 'application/pkix-cert' });
  s.routes.set('/intermediate-ca.pem', { body: trustCertPem('intermediate-ca'), type: 'application/x-pem-file' });
  s.routes.set('/intermediate-ca.p7c', { body: readTrustFile('intermediate-ca.p7c'), type: 'application/pkcs7-mime' });
  s.routes.set('/root-ca.cer', { body: readTrustFile('root-ca.cert.der') });
}

beforeAll(async () => {
  server = await startPkiServer();
});
afterAll(async () => {
  await server.close();
});
afterEach(() => {
  serveDefaults(server);
  server.hits.clear();
});

/** A port nothing listens on: a server started and stopped. */
async function deadPort(): Promise<number> {
  const s = await startPkiServer();
  await s.close();
  return s.port;
}

describe('revocation over HTTP (R-TRU-3)', () => {
  it('a good leaf is accepted with revocation "checked" (its CRL and its intermediate’s fetched once each)', async () => {
    serveDefaults(server);
    const validator = new TrustValidator({ fetcher: mappedFetcher(() => server.port), clock: () => NOW });
    const r = await validator.validate(good, { anchors: [root], intermediates: [intermediate], purpose: 'encryption', revocation: 'hard-fail' });
    expect(r.path).toEqual([good, intermediate, root]);
    expect(r.revocation).toBe('checked');
    expect(r.warnings).toEqual([]);
    expect(server.hitCount('/intermediate-ca.crl')).toBe(1);
    expect(server.hitCount('/root-ca.crl')).toBe(1);
  });

  it('a revoked leaf is refused: HISP_TRUST_REVOKED, reason keyCompromise, permanent', async () => {
    serveDefaults(server);
    const validator = new TrustValidator({ fetcher: mappedFetcher(() => server.port), clock: () => NOW });
    const e = await rejection(validator.validate(revoked, { anchors: [root], intermediates: [intermediate], purpose: 'signing' }));
    expect(e.code).toBe('HISP_TRUST_REVOKED');
    expect(e.transient).toBe(false);
    expect(e.details).toMatchObject({ reason: 'keyCompromise', serial: revoked.serialHex, crl: 'http://crl.hisp.test/intermediate-ca.crl' });
  });

  it('the CRL is cached until its nextUpdate: repeated validations fetch it once, the first after nextUpdate fetches again', async () => {
    serveDefaults(server);
    let now = new Date('2026-03-01T00:00:00Z');
    server.routes.set('/intermediate-ca.crl', {
      body: await signCrl('intermediate-ca', { thisUpdate: new Date('2026-02-28T00:00:00Z'), nextUpdate: new Date('2026-03-02T00:00:00Z') }),
    });
    const validator = new TrustValidator({ fetcher: mappedFetcher(() => server.port), clock: () => now });
    const options = { anchors: [root], intermediates: [intermediate], purpose: 'encryption' as const, revocation: 'hard-fail' as const };
    for (let i = 0; i < 10; i++) await validator.validate(good, options);
    expect(server.hitCount('/intermediate-ca.crl')).toBe(1);
    now = new Date('2026-03-01T23:59:00Z');
    await validator.validate(good, options);
    expect(server.hitCount('/intermediate-ca.crl')).toBe(1);
    // the CA publishes its next CRL, which now lists good@trust.test
    now = new Date('2026-03-02T00:00:30Z');
    server.routes.set('/intermediate-ca.crl', {
      body: await signCrl('intermediate-ca', {
        thisUpdate: new Date('2026-03-02T00:00:00Z'),
        nextUpdate: new Date('2026-03-03T00:00:00Z'),
        entries: [{ serialHex: good.serialHex, reason: 1 }],
      }),
    });
    const e = await rejection(validator.validate(good, options));
    expect(e.code).toBe('HISP_TRUST_REVOKED');
    expect(server.hitCount('/intermediate-ca.crl')).toBe(2);
  });

  describe('when the CRL server is down', () => {
    it('soft-fail (the default): accepted, revocation "unavailable", a warning says why', async () => {
      const port = await deadPort();
      const validator = new TrustValidator({ fetcher: mappedFetcher(() => port), clock: () => NOW });
      const r = await validator.validate(good, { anchors: [root], intermediates: [intermediate], purpose: 'encryption' });
      expect(r.revocation).toBe('unavailable');
      expect(r.warnings.length).toBe(2);
      expect(r.warnings[0]).toMatch(/soft-fail.*crl\.hisp\.test\/intermediate-ca\.crl.*ECONNREFUSED/);
    });

    it('hard-fail: HISP_TRUST_REVOCATION_UNAVAILABLE, transient (defer and retry)', async () => {
      const port = await deadPort();
      const validator = new TrustValidator({ fetcher: mappedFetcher(() => port), clock: () => NOW });
      const e = await rejection(validator.validate(good, { anchors: [root], intermediates: [intermediate], purpose: 'encryption', revocation: 'hard-fail' }));
      expect(e.code).toBe('HISP_TRUST_REVOCATION_UNAVAILABLE');
      expect(e.transient).toBe(true);
      expect(e.message).toMatch(/ECONNREFUSED/);
    });

    it('a server that never answers: the fetch times out (hard-fail refuses, soft-fail warns)', async () => {
      serveDefaults(server);
      server.routes.set('/intermediate-ca.crl', { hang: true });
      const fetcher = mappedFetcher(() => server.port);
      const short: typeof fetcher = Object.assign((u: URL, r: Parameters<typeof fetcher>[1]) => fetcher(u, { ...r, timeoutMs: 200 }), { calls: fetcher.calls });
      const validator = new TrustValidator({ fetcher: short, clock: () => NOW });
      const e = await rejection(validator.validate(good, { anchors: [root], intermediates: [intermediate], purpose: 'encryption', revocation: 'hard-fail' }));
      expect(e.code).toBe('HISP_TRUST_REVOCATION_UNAVAILABLE');
      expect(e.message).toMatch(/within 200 ms/);
    });

    it('revocation "off" fetches nothing', async () => {
      const port = await deadPort();
      const fetcher = mappedFetcher(() => port);
      const validator = new TrustValidator({ fetcher, clock: () => NOW });
      const r = await validator.validate(good, { anchors: [root], intermediates: [intermediate], purpose: 'encryption', revocation: 'off' });
      expect(r.revocation).toBe('off');
      expect(fetcher.calls).toEqual([]);
    });
  });

  it('a 404 for the CRL, an HTML error page, a CRL of another CA: unavailable (soft-fail warns with the reason)', async () => {
    serveDefaults(server);
    const cases: [string, Parameters<PkiServer['routes']['set']>[1], RegExp][] = [
      ['404', { status: 404 }, /HTTP 404/],
      ['html', { body: '<html>oops</html>', type: 'text/html' }, /not a decodable CRL/],
      ['other CA', { body: readTrustFile('other-root-ca.crl') }, /not by/],
    ];
    for (const [, route, reason] of cases) {
      server.routes.set('/intermediate-ca.crl', route);
      const validator = new TrustValidator({ fetcher: mappedFetcher(() => server.port), clock: () => NOW });
      const r = await validator.validate(good, { anchors: [root], intermediates: [intermediate], purpose: 'encryption' });
      expect(r.revocation).toBe('unavailable');
      expect(r.warnings[0]).toMatch(reason);
    }
  });

  it('the default fetcher resolves host names through the given lookup function (hisp’s DNS client)', async () => {
    serveDefaults(server);
    const asked: string[] = [];
    const lookup: LookupFunction = (hostname, options, callback) => {
      asked.push(hostname);
      if ((options as { all?: boolean }).all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
      else callback(null, '127.0.0.1', 4);
    };
    const fetcher = createHttpFetcher({ lookup, allowAddresses: ['127.0.0.1/32'] });
    const body = await fetcher(new URL(`http://pki.hisp.test:${server.port}/root-ca.crl`), { purpose: 'crl', timeoutMs: 5000, maxBytes: 1 << 20 });
    expect(body.equals(readTrustFile('root-ca.crl'))).toBe(true);
    expect(asked).toEqual(['pki.hisp.test']);
  });
});

describe('AIA caIssuers over HTTP (R-TRU-4)', () => {
  for (const [leafName, file] of [
    ['leaf-good', '/intermediate-ca.cer'],
    ['leaf-aia-pem', '/intermediate-ca.pem'],
    ['leaf-aia-p7c', '/intermediate-ca.p7c'],
  ] as const) {
    it(`${leafName}: the missing intermediate is fetched from ${file} and the path completes to the anchor`, async () => {
      serveDefaults(server);
      const validator = new TrustValidator({ fetcher: mappedFetcher(() => server.port), clock: () => NOW });
      const leaf = trustCert(leafName);
      const r = await validator.validate(leaf, { anchors: [root], purpose: 'encryption', revocation: 'off' });
      expect(r.path.map((c) => c.subject)).toEqual([leaf.subject, intermediate.subject, root.subject]);
      expect(r.aiaFetched.map((c) => c.sha256)).toEqual([intermediate.sha256]);
      expect(server.hitCount(file)).toBe(1);
    });
  }

  it('fetched issuers are cached: a second validation fetches nothing', async () => {
    serveDefaults(server);
    const validator = new TrustValidator({ fetcher: mappedFetcher(() => server.port), clock: () => NOW });
    await validator.validate(good, { anchors: [root], purpose: 'encryption', revocation: 'off' });
    await validator.validate(trustCert('leaf-revoked'), { anchors: [root], purpose: 'encryption', revocation: 'off' });
    expect(server.hitCount('/intermediate-ca.cer')).toBe(1);
  });

  it('AIA then revocation: the fetched intermediate is checked against the root’s CRL too', async () => {
    serveDefaults(server);
    const validator = new TrustValidator({ fetcher: mappedFetcher(() => server.port), clock: () => NOW });
    const r = await validator.validate(good, { anchors: [root], purpose: 'encryption', revocation: 'hard-fail' });
    expect(r.revocation).toBe('checked');
    expect(server.hitCount('/root-ca.crl')).toBe(1);
    const e = await rejection(validator.validate(revoked, { anchors: [root], purpose: 'encryption', revocation: 'hard-fail' }));
    expect(e.code).toBe('HISP_TRUST_REVOKED');
  });

  it('AIA server down: HISP_TRUST_AIA_FAILED (transient)', async () => {
    const port = await deadPort();
    const validator = new TrustValidator({ fetcher: mappedFetcher(() => port), clock: () => NOW });
    const e = await rejection(validator.validate(good, { anchors: [root], purpose: 'encryption', revocation: 'off' }));
    expect(e.code).toBe('HISP_TRUST_AIA_FAILED');
    expect(e.transient).toBe(true);
  });

  it('an AIA answer that is not the issuer (or garbage) does not help: HISP_TRUST_NO_ANCHOR / HISP_TRUST_AIA_FAILED', async () => {
    serveDefaults(server);
    server.routes.set('/intermediate-ca.cer', { body: readTrustFile('other-root-ca.cert.der') });
    const v1 = new TrustValidator({ fetcher: mappedFetcher(() => server.port), clock: () => NOW });
    const e1 = await rejection(v1.validate(good, { anchors: [root], purpose: 'encryption', revocation: 'off' }));
    expect(e1.code).toBe('HISP_TRUST_NO_ANCHOR');
    expect(JSON.stringify(e1.details)).toMatch(/not the issuer/);
    server.routes.set('/intermediate-ca.cer', { body: 'garbage' });
    const v2 = new TrustValidator({ fetcher: mappedFetcher(() => server.port), clock: () => NOW });
    expect((await rejection(v2.validate(good, { anchors: [root], purpose: 'encryption', revocation: 'off' }))).code).toBe('HISP_TRUST_AIA_FAILED');
  });

  it('AIA never makes an untrusted chain trusted: patient@phr.test’s root is fetched but is no anchor → HISP_TRUST_NO_ANCHOR', async () => {
    serveDefaults(server);
    server.routes.set('/other-root-ca.cer', { body: readTrustFile('other-root-ca.cert.der') });
    const validator = new TrustValidator({ fetcher: mappedFetcher(() => server.port), clock: () => NOW });
    const e = await rejection(validator.validate(trustCert('patient'), { anchors: [root], purpose: 'encryption', revocation: 'off' }));
    expect(e.code).toBe('HISP_TRUST_NO_ANCHOR');
    expect(server.hitCount('/other-root-ca.cer')).toBe(1);
  });

  it('aia: false fetches nothing: HISP_TRUST_NO_ANCHOR', async () => {
    const fetcher = mappedFetcher(() => server.port);
    const validator = new TrustValidator({ fetcher, clock: () => NOW });
    expect((await rejection(validator.validate(good, { anchors: [root], purpose: 'encryption', revocation: 'off', aia: false }))).code).toBe(
      'HISP_TRUST_NO_ANCHOR',
    );
    expect(fetcher.calls).toEqual([]);
  });
});

describe('DCDT D17 (CRL revocation) and D18 (AIA intermediate) credentials from test/fixtures/dcdt', () => {
  const DCDT = path.join(REPO_ROOT, 'test/fixtures/dcdt');
  const dcdtCert = (name: string) => Certificate.fromDer(readFileSync(path.join(DCDT, 'certs', `${name}.cer`)));
  const anchor = () => Certificate.fromDer(readFileSync(path.join(DCDT, 'trust/anchor_dcdt.test_ca_root.cer')));
  let pki: PkiServer;
  beforeAll(async () => {
    pki = await startPkiServer();
    for (const ca of ['dcdt.test_ca_root', 'dcdt.test_ca_intermediate1']) {
      pki.routes.set(`/${ca}.crl`, { body: readFileSync(path.join(DCDT, 'crl', `${ca}.crl`)) });
      pki.routes.set(`/${ca}.cer`, { body: readFileSync(path.join(DCDT, 'certs', `${ca}.cer`)) });
    }
  });
  afterAll(async () => {
    await pki.close();
  });
  const validator = () => new TrustValidator({ fetcher: mappedFetcher(() => pki.port, {}, ['pki.dcdt.test']) });

  it('D17: D17_valA is accepted with its CRL checked; D17_invB and D17_invC are revoked (keyCompromise)', async () => {
    const v = validator();
    const ok = await v.validate(dcdtCert('D17_valA'), { anchors: [anchor()], purpose: 'encryption', revocation: 'hard-fail' });
    expect(ok.revocation).toBe('checked');
    for (const name of ['D17_invB', 'D17_invC']) {
      const e = await rejection(v.validate(dcdtCert(name), { anchors: [anchor()], purpose: 'encryption', revocation: 'soft-fail' }));
      expect(e.code).toBe('HISP_TRUST_REVOKED');
      expect(e.details?.reason).toBe('keyCompromise');
    }
    expect(pki.hitCount('/dcdt.test_ca_root.crl')).toBe(1);
  });

  it('D18: D18_valA chains to the root only through the AIA-fetched dcdt.test_ca_intermediate1', async () => {
    const r = await validator().validate(dcdtCert('D18_valA'), { anchors: [anchor()], purpose: 'encryption', revocation: 'hard-fail' });
    expect(r.path.map((c) => c.subject)).toEqual(['emailAddress=d18@domain10.dcdt.test,CN=D18_valA', 'CN=dcdt.test_ca_intermediate1', 'CN=dcdt.test_ca_root']);
    expect(r.aiaFetched).toHaveLength(1);
    expect(r.revocation).toBe('checked');
  });
});

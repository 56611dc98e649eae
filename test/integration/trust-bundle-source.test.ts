// Trust bundle distribution (R-TB-2, R-TB-3) against a real HTTPS server: node:https on 127.0.0.1
// (port 0) with the self-signed test certificate test/fixtures/trust/tls-server.*. TLS is verified:
// refused with the system roots, accepted when the test passes the server's certificate as CA.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AnchorStore } from '../../gateway/trust/anchor-store.js';
import { TrustBundleSource } from '../../gateway/trust/trust-bundle.js';
import { startPkiServer, type PkiServer } from '../fixtures/trust/pki-server.js';
import { readTrustFile, trustCert, trustCertPem, trustKeyPem } from '../fixtures/trust/trust-pki.js';

const root = trustCert('root-ca');
const otherRoot = trustCert('other-root-ca');
const signer = trustCert('bundle-signer');
const tlsCa = trustCertPem('tls-server');
const AT = new Date('2026-01-01T00:00:00Z');

let https: PkiServer;
let http: PkiServer;

beforeAll(async () => {
  https = await startPkiServer({ tls: { cert: trustCertPem('tls-server'), key: trustKeyPem('tls-server') } });
  http = await startPkiServer();
});
afterAll(async () => {
  await https.close();
  await http.close();
});
beforeEach(() => {
  https.routes.clear();
  https.hits.clear();
  https.routes.set('/bundle.p7m', { body: readTrustFile('bundle-signed.p7m'), type: 'application/pkcs7-mime' });
  https.routes.set('/bundle.p7b', { body: readTrustFile('bundle.p7b') });
});

/** The test servers are on loopback, which bundle fetches refuse unless allowed (issue 14 item 4). */
const LOOPBACK = ['127.0.0.1/32'];

describe('TrustBundleSource over HTTPS (R-TB-2)', () => {
  it('refused without connecting when the bundle’s address is not allowed (loopback, by default): HISP_BUNDLE_FETCH_FAILED, permanent', async () => {
    const before = https.connections();
    const src = new TrustBundleSource({ url: https.url('/bundle.p7m'), signers: [signer], ca: tlsCa, clock: () => AT });
    const o = await src.refresh();
    expect(o.status).toBe('failed');
    expect(o.error?.code).toBe('HISP_BUNDLE_FETCH_FAILED');
    expect(o.error?.transient).toBe(false);
    expect(o.error?.message).toMatch(/127\.0\.0\.1, which is not an allowed address \(loopback/);
    expect(https.connections()).toBe(before);
  });

  it('refused when the server’s TLS certificate is not trusted (system roots): HISP_BUNDLE_FETCH_FAILED, no anchors', async () => {
    const src = new TrustBundleSource({ allowAddresses: LOOPBACK, url: https.url('/bundle.p7m'), signers: [signer], clock: () => AT });
    const o = await src.refresh();
    expect(o.status).toBe('failed');
    expect(o.error?.code).toBe('HISP_BUNDLE_FETCH_FAILED');
    expect(o.error?.message).toMatch(/self-signed certificate/);
    expect(src.anchors).toEqual([]);
  });

  it('accepted when the test passes the server’s certificate as CA: the signed bundle verifies, 1 anchor', async () => {
    const src = new TrustBundleSource({ allowAddresses: LOOPBACK, url: https.url('/bundle.p7m'), signers: [signer], ca: tlsCa, clock: () => AT });
    const o = await src.refresh();
    expect(o).toMatchObject({ status: 'updated', anchors: 1 });
    expect(src.anchors.map((c) => c.sha256)).toEqual([root.sha256]);
    expect(src.bundle?.signer?.sha256).toBe(signer.sha256);
  });

  it('a refresh with an unchanged checksum does not swap the anchor set', async () => {
    const src = new TrustBundleSource({ allowAddresses: LOOPBACK, url: https.url('/bundle.p7m'), signers: [signer], ca: tlsCa, clock: () => AT });
    await src.refresh();
    const before = src.anchors;
    const o = await src.refresh();
    expect(o.status).toBe('unchanged');
    expect(src.anchors).toBe(before);
    expect(https.hitCount('/bundle.p7m')).toBe(2);
  });

  it('a bundle with a wrong signature is rejected and the last good set is kept (and the reason reported)', async () => {
    const reported: string[] = [];
    const src = new TrustBundleSource({
      allowAddresses: LOOPBACK,
      url: https.url('/bundle.p7m'),
      signers: [signer],
      ca: tlsCa,
      clock: () => AT,
      onRefresh: (o) => reported.push(`${o.status}${o.error ? ` ${o.error.code}` : ''}`),
    });
    await src.refresh();
    const good = src.anchors;
    https.routes.set('/bundle.p7m', { body: readTrustFile('bundle-signed-other.p7m') });
    const o = await src.refresh();
    expect(o.status).toBe('failed');
    expect(o.error?.code).toBe('HISP_BUNDLE_SIGNATURE');
    expect(src.anchors).toBe(good);
    expect(src.lastOutcome?.error?.code).toBe('HISP_BUNDLE_SIGNATURE');
    // the server goes away: still the last good set
    https.routes.set('/bundle.p7m', { status: 503 });
    expect((await src.refresh()).error?.code).toBe('HISP_BUNDLE_FETCH_FAILED');
    expect(src.anchors).toBe(good);
    expect(reported).toEqual(['updated', 'failed HISP_BUNDLE_SIGNATURE', 'failed HISP_BUNDLE_FETCH_FAILED']);
  });

  it('a changed bundle (new checksum) swaps the set atomically; an AnchorStore bound to the source sees it at once (R-TB-3)', async () => {
    https.routes.set('/community.p7b', { body: readTrustFile('bundle.p7b') });
    const src = new TrustBundleSource({
      allowAddresses: LOOPBACK,
      url: https.url('/community.p7b'),
      ca: tlsCa,
      scopes: [{ scope: 'hisp.test', directions: ['outgoing'] }],
    });
    const store = new AnchorStore();
    store.addSource(src);
    expect(store.anchorsFor('alice@hisp.test', 'outgoing')).toEqual([]);
    await src.refresh();
    expect(store.anchorsFor('alice@hisp.test', 'outgoing').map((c) => c.sha256)).toEqual([root.sha256]);
    expect(store.anchorsFor('alice@hisp.test', 'incoming')).toEqual([]);
    https.routes.set('/community.p7b', { body: readTrustFile('bundle-two-metadata.p7b') });
    expect((await src.refresh()).status).toBe('updated');
    expect(store.anchorsFor('hisp.test', 'outgoing').map((c) => c.sha256)).toEqual([root.sha256, otherRoot.sha256]);
  });

  it('a redirect to http:// is refused (HTTPS only), an oversized answer too', async () => {
    http.routes.set('/bundle.p7b', { body: readTrustFile('bundle.p7b') });
    https.routes.set('/moved.p7b', { redirect: http.url('/bundle.p7b') });
    const moved = new TrustBundleSource({ allowAddresses: LOOPBACK, url: https.url('/moved.p7b'), ca: tlsCa });
    const o = await moved.refresh();
    expect(o.error?.code).toBe('HISP_BUNDLE_FETCH_FAILED');
    expect(o.error?.message).toMatch(/http: URLs are not allowed/);
    const small = new TrustBundleSource({ allowAddresses: LOOPBACK, url: https.url('/bundle.p7b'), ca: tlsCa, maxBytes: 100 });
    expect((await small.refresh()).error?.message).toMatch(/exceeds the limit of 100/);
  });

  it('plain http:// only when explicitly allowed (tests)', async () => {
    http.routes.set('/bundle.p7b', { body: readTrustFile('bundle.p7b') });
    expect(() => new TrustBundleSource({ allowAddresses: LOOPBACK, url: http.url('/bundle.p7b') })).toThrow(/only https/);
    const src = new TrustBundleSource({ allowAddresses: LOOPBACK, url: http.url('/bundle.p7b'), allowHttp: true });
    expect((await src.refresh()).status).toBe('updated');
  });
});

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { readTrustFile, trustCert } from '../../test/fixtures/trust/trust-pki.js';
import type { Fetcher } from './http-fetch.js';
import { parseTrustBundle, readBundleFile, TrustBundleSource, type RefreshOutcome } from './trust-bundle.js';
import { hispError as thrown } from '../../test/helpers/hisp-error.js';

const root = trustCert('root-ca');
const otherRoot = trustCert('other-root-ca');
const signer = trustCert('bundle-signer');
const otherSigner = trustCert('bundle-signer-other');
const AT = new Date('2026-01-01T00:00:00Z');

describe('parseTrustBundle: certs-only PKCS#7', () => {
  it('DER and PEM forms give the same single anchor, no metadata, unsigned', () => {
    for (const file of ['bundle.p7b', 'bundle.pem.p7b']) {
      const bytes = readTrustFile(file);
      const b = parseTrustBundle(bytes, { source: file });
      expect(b.anchors.map((c) => c.sha256)).toEqual([root.sha256]);
      expect(b.signed).toBe(false);
      expect(b.signer).toBeUndefined();
      expect(b.metadata).toBeUndefined();
      expect(b.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
      expect(b.warnings).toEqual([]);
    }
  });

  it('eContent is returned as metadata', () => {
    const b = parseTrustBundle(readTrustFile('bundle-two-metadata.p7b'));
    expect(b.anchors.map((c) => c.subject)).toEqual([root.subject, otherRoot.subject]);
    expect(b.metadata?.toString('utf8')).toContain('<Profile>hisp test community</Profile>');
  });

  it('refuses an unsigned bundle when a signer is configured (HISP_BUNDLE_SIGNATURE)', () => {
    expect(thrown(() => parseTrustBundle(readTrustFile('bundle.p7b'), { signers: [signer], at: AT })).code).toBe('HISP_BUNDLE_SIGNATURE');
  });

  it('refuses non-bundles with HISP_BUNDLE_INVALID: a certificate, garbage, PEM without PKCS7, an EnvelopedData-like OID', () => {
    const certPem = Buffer.from(root.toPem());
    for (const bad of [root.der, Buffer.from('invalid'), certPem, Buffer.alloc(0), Buffer.from([0x30, 0x03, 0x06, 0x01, 0x00])]) {
      expect(thrown(() => parseTrustBundle(bad)).code).toBe('HISP_BUNDLE_INVALID');
    }
  });
});

describe('parseTrustBundle: CMS-signed bundles (R-TB-1)', () => {
  it('eContent in DER, verified against the configured signer: 1 anchor', () => {
    const b = parseTrustBundle(readTrustFile('bundle-signed.p7m'), { signers: [signer], at: AT });
    expect(b.signed).toBe(true);
    expect(b.signer?.sha256).toBe(signer.sha256);
    expect(b.anchors.map((c) => c.sha256)).toEqual([root.sha256]);
  });

  it('eContent in PEM text (as the Java RI signs): 1 anchor', () => {
    const b = parseTrustBundle(readTrustFile('bundle-signed-pem.p7m'), { signers: [signer], at: AT });
    expect(b.anchors.map((c) => c.sha256)).toEqual([root.sha256]);
    expect(b.signer?.sha256).toBe(signer.sha256);
  });

  it('signed by someone else: HISP_BUNDLE_SIGNATURE naming the actual signer', () => {
    const e = thrown(() => parseTrustBundle(readTrustFile('bundle-signed-other.p7m'), { signers: [signer], at: AT }));
    expect(e.code).toBe('HISP_BUNDLE_SIGNATURE');
    expect(e.message).toContain(otherSigner.subject);
    // …and accepted when that one is the configured signer
    expect(parseTrustBundle(readTrustFile('bundle-signed-other.p7m'), { signers: [otherSigner], at: AT }).anchors).toHaveLength(1);
  });

  it('a bundle without its signer certificate is verified with the configured one', () => {
    const b = parseTrustBundle(readTrustFile('bundle-signed-nocert.p7m'), { signers: [signer], at: AT });
    expect(b.anchors.map((c) => c.sha256)).toEqual([root.sha256]);
    expect(thrown(() => parseTrustBundle(readTrustFile('bundle-signed-nocert.p7m'), { signers: [otherSigner], at: AT })).code).toBe(
      'HISP_BUNDLE_SIGNATURE',
    );
  });

  it('an altered eContent breaks the signature (HISP_BUNDLE_SIGNATURE)', () => {
    const bytes = Buffer.from(readTrustFile('bundle-signed.p7m'));
    const inner = readTrustFile('bundle.p7b');
    const at = bytes.indexOf(inner);
    expect(at).toBeGreaterThan(0);
    // flip a byte inside the root certificate's signature, deep in the eContent
    bytes[at + inner.length - 300]! ^= 0x01;
    const e = thrown(() => parseTrustBundle(bytes, { signers: [signer], at: AT }));
    expect(e.code).toBe('HISP_BUNDLE_SIGNATURE');
    expect(e.message).toMatch(/messageDigest|altered/);
  });

  it('the configured signer must be valid at the verification time', () => {
    const e = thrown(() => parseTrustBundle(readTrustFile('bundle-signed.p7m'), { signers: [signer], at: new Date('2060-01-01T00:00:00Z') }));
    expect(e.code).toBe('HISP_BUNDLE_SIGNATURE');
    expect(e.message).toMatch(/not valid at 2060/);
  });

  it('without a configured signer a signed bundle is read, unverified, with a warning; requireSignature refuses it', () => {
    const b = parseTrustBundle(readTrustFile('bundle-signed.p7m'));
    expect(b.signed).toBe(true);
    expect(b.signer).toBeUndefined();
    expect(b.warnings.join(' ')).toMatch(/not verified/);
    expect(thrown(() => parseTrustBundle(readTrustFile('bundle-signed.p7m'), { requireSignature: true })).code).toBe('HISP_BUNDLE_SIGNATURE');
  });

  it('readBundleFile: the anchors, with one optional signer', () => {
    expect(readBundleFile(readTrustFile('bundle-signed.p7m'), { signer, at: AT }).map((c) => c.sha256)).toEqual([root.sha256]);
    expect(readBundleFile(readTrustFile('bundle.pem.p7b')).map((c) => c.sha256)).toEqual([root.sha256]);
  });
});

/** A fetcher serving whatever `current` holds (a Buffer or an Error), counting calls. */
function switchable(initial: Buffer | Error): Fetcher & { set(v: Buffer | Error): void; calls: number } {
  let current = initial;
  const f = Object.assign(
    (() => {
      f.calls++;
      return current instanceof Error ? Promise.reject(current) : Promise.resolve(current);
    }) as Fetcher,
    {
      calls: 0,
      set: (v: Buffer | Error) => {
        current = v;
      },
    },
  );
  return f;
}

describe('TrustBundleSource (injected fetcher)', () => {
  it('refuses http:// URLs unless allowHttp, and non-URLs (HISP_USAGE)', () => {
    expect(thrown(() => new TrustBundleSource({ url: 'http://bundles.example/b.p7b' })).code).toBe('HISP_USAGE');
    expect(thrown(() => new TrustBundleSource({ url: 'not a url' })).code).toBe('HISP_USAGE');
    expect(() => new TrustBundleSource({ url: 'http://bundles.example/b.p7b', allowHttp: true })).not.toThrow();
  });

  it('updated → unchanged (same checksum: the anchor array is the very same object) → updated on change', async () => {
    const fetcher = switchable(readTrustFile('bundle.p7b'));
    const outcomes: RefreshOutcome[] = [];
    const src = new TrustBundleSource({ url: 'https://bundles.example/b.p7b', fetcher, clock: () => AT, onRefresh: (o) => outcomes.push(o) });
    expect(src.anchors).toEqual([]);
    expect((await src.refresh()).status).toBe('updated');
    const first = src.anchors;
    expect(first.map((c) => c.sha256)).toEqual([root.sha256]);
    expect(Object.isFrozen(first)).toBe(true);
    const again = await src.refresh();
    expect(again.status).toBe('unchanged');
    expect(src.anchors).toBe(first);
    fetcher.set(readTrustFile('bundle-two-metadata.p7b'));
    const changed = await src.refresh();
    expect(changed).toMatchObject({ status: 'updated', anchors: 2 });
    expect(src.anchors).not.toBe(first);
    expect(first).toHaveLength(1); // the old snapshot is untouched (readers holding it see a consistent set)
    expect(outcomes.map((o) => o.status)).toEqual(['updated', 'unchanged', 'updated']);
    expect(src.checksum).toBe(createHash('sha256').update(readTrustFile('bundle-two-metadata.p7b')).digest('hex'));
  });

  it('a failed refresh keeps the last good set and says why (fetch error, invalid bundle, wrong signature)', async () => {
    const fetcher = switchable(readTrustFile('bundle-signed.p7m'));
    const src = new TrustBundleSource({ url: 'https://bundles.example/b.p7m', fetcher, signers: [signer], clock: () => AT });
    await src.refresh();
    const good = src.anchors;
    const cases: [Buffer | Error, string][] = [
      [new Error('connect ECONNREFUSED'), 'HISP_BUNDLE_FETCH_FAILED'],
      [Buffer.from('invalid'), 'HISP_BUNDLE_INVALID'],
      [readTrustFile('bundle-signed-other.p7m'), 'HISP_BUNDLE_SIGNATURE'],
      [readTrustFile('bundle.p7b'), 'HISP_BUNDLE_SIGNATURE'],
    ];
    for (const [answer, code] of cases) {
      fetcher.set(answer);
      const o = await src.refresh();
      expect(o.status).toBe('failed');
      expect(o.error?.code).toBe(code);
      expect(o.warnings[0]).toMatch(/keeping the last good set/);
      expect(o.anchors).toBe(1);
      expect(src.anchors).toBe(good);
      expect(src.lastOutcome).toBe(o);
    }
  });

  it('concurrent refresh() calls share one fetch', async () => {
    const fetcher = switchable(readTrustFile('bundle.p7b'));
    const src = new TrustBundleSource({ url: 'https://bundles.example/b.p7b', fetcher });
    const [a, b] = await Promise.all([src.refresh(), src.refresh()]);
    expect(a).toBe(b);
    expect(fetcher.calls).toBe(1);
  });

  it('start() refreshes at once and then on the interval; stop() ends it', async () => {
    const fetcher = switchable(readTrustFile('bundle.p7b'));
    const src = new TrustBundleSource({ url: 'https://bundles.example/b.p7b', fetcher, refreshIntervalMs: 20 });
    expect((await src.start()).status).toBe('updated');
    await new Promise((r) => setTimeout(r, 120));
    src.stop();
    const calls = fetcher.calls;
    expect(calls).toBeGreaterThanOrEqual(3);
    await new Promise((r) => setTimeout(r, 60));
    expect(fetcher.calls).toBe(calls);
  });
});

// The trust layer against the reference implementations' vectors (../shared/vectors, read from
// there; each group is skipped, saying why, when absent): the Java and .NET RI trust bundles
// (unsigned DER and PEM, with and without TB-IG metadata, CMS-signed with the Java RI's PEM
// eContent, an invalid one) and the .NET chain whose CAs lack basicConstraints.
import { describe, expect, it } from 'vitest';
import { Certificate } from '../../gateway/core/certificate.js';
import { validateChain } from '../../gateway/trust/chain-validator.js';
import { readSignedData } from '../../gateway/trust/pkcs7.js';
import { parseTrustBundle } from '../../gateway/trust/trust-bundle.js';
import { TrustValidator } from '../../gateway/trust/trust-validator.js';
import { hispErrorOf, vectorGroup } from '../helpers/vectors.js';
import { hispRejection as rejection } from '../helpers/hisp-error.js';

const javaBundles = vectorGroup('java-ri', [
  'bundles/signedbundle.p7b',
  'bundles/signedbundle.p7m',
  'bundles/bundleSigner.der',
  'bundles/sm1.direct.com Root CA.der',
  'bundles/invalidBundle.der',
  'bundles/providerTestBundle.p7b',
  'bundles/UnSignedMetaData.p7b',
  'bundles/UnSignedNoMetaData.p7b',
  'bundles/signedmetadata1.p7m',
  'bundles/signednometadata1.p7m',
  'bundles/TrustBundleMetadata.xml',
]);

describe.skipIf(!javaBundles.present)(javaBundles.title('Java RI trust bundles (R-TB-1)'), () => {
  const read = (f: string) => javaBundles.read(`bundles/${f}`);
  const cert = (f: string) => Certificate.fromDer(read(f));

  it('signedbundle.p7b: PEM-armoured certs-only PKCS#7 with 1 anchor, sm1.direct.com Root CA', () => {
    expect(read('signedbundle.p7b').subarray(0, 19).toString('latin1')).toBe('-----BEGIN PKCS7---');
    const b = parseTrustBundle(read('signedbundle.p7b'));
    expect(b.anchors).toHaveLength(1);
    expect(b.anchors[0]!.subject).toBe('ST=MO,C=US,CN=sm1.direct.com Root CA');
    expect(b.signed).toBe(false);
    // Not the same certificate as signers/"sm1.direct.com Root CA.der": same name, another key and serial.
    const file = cert('sm1.direct.com Root CA.der');
    expect(file.subject).toBe(b.anchors[0]!.subject);
    expect(file.der.equals(b.anchors[0]!.der)).toBe(false);
  });

  it('providerTestBundle.p7b: DER certs-only PKCS#7 with 6 HISP CA anchors', () => {
    const b = parseTrustBundle(read('providerTestBundle.p7b'));
    expect(b.anchors).toHaveLength(6);
    expect(b.anchors.map((a) => a.subject)).toEqual(
      expect.arrayContaining(['CN=BIDMC Direct Test CA', 'CN=BIDMC Direct', expect.stringContaining('CN=CernerDirect Cert Professional Community CA')]),
    );
    expect(b.metadata).toBeUndefined();
  });

  it('UnSignedMetaData.p7b: 2 anchors and eContent = TrustBundleMetadata.xml byte for byte; UnSignedNoMetaData.p7b: the same anchors, no metadata', () => {
    const withMeta = parseTrustBundle(read('UnSignedMetaData.p7b'));
    const noMeta = parseTrustBundle(read('UnSignedNoMetaData.p7b'));
    expect(withMeta.anchors).toHaveLength(2);
    expect(withMeta.metadata?.equals(read('TrustBundleMetadata.xml'))).toBe(true);
    expect(noMeta.metadata).toBeUndefined();
    expect(noMeta.anchors.map((a) => a.sha256)).toEqual(withMeta.anchors.map((a) => a.sha256));
  });

  describe('signedbundle.p7m: SHA-1 SignedData by sm2.direct.com (valid 2012-12-05 – 2022-12-03), eContent = the PEM text of signedbundle.p7b', () => {
    const at = new Date('2020-06-01T00:00:00Z');

    it('the eContent is indeed PEM text', () => {
      const parts = readSignedData(read('signedbundle.p7m'));
      expect(parts.signerInfoCount).toBe(1);
      expect(parts.eContent?.subarray(0, 21).toString('latin1')).toBe('-----BEGIN PKCS7-----');
    });

    it('verified against bundleSigner.der at 2020-06-01 with the legacy SHA-1 switch: 1 anchor (sm1.direct.com Root CA)', () => {
      const b = parseTrustBundle(read('signedbundle.p7m'), { signers: [cert('bundleSigner.der')], allowSha1: true, at });
      expect(b.anchors.map((a) => a.sha256)).toEqual(parseTrustBundle(read('signedbundle.p7b')).anchors.map((a) => a.sha256));
      expect(b.anchors[0]!.subject).toBe('ST=MO,C=US,CN=sm1.direct.com Root CA');
      expect(b.signed).toBe(true);
      expect(b.signer?.der.equals(cert('bundleSigner.der').der)).toBe(true);
    });

    it('against "sm1.direct.com Root CA.der" (the wrong signer, as the RI test): HISP_BUNDLE_SIGNATURE', () => {
      const e = hispErrorOf(() => parseTrustBundle(read('signedbundle.p7m'), { signers: [cert('sm1.direct.com Root CA.der')], allowSha1: true, at }));
      expect(e.code).toBe('HISP_BUNDLE_SIGNATURE');
      expect(e.message).toMatch(/not the configured signer/);
    });

    it('without the SHA-1 switch: HISP_BUNDLE_SIGNATURE (SHA-1); today, the signer having expired in 2022: HISP_BUNDLE_SIGNATURE', () => {
      const sha1 = hispErrorOf(() => parseTrustBundle(read('signedbundle.p7m'), { signers: [cert('bundleSigner.der')], at }));
      expect(sha1.code).toBe('HISP_BUNDLE_SIGNATURE');
      expect(sha1.message).toMatch(/SHA-1/);
      const expired = hispErrorOf(() => parseTrustBundle(read('signedbundle.p7m'), { signers: [cert('bundleSigner.der')], allowSha1: true }));
      expect(expired.code).toBe('HISP_BUNDLE_SIGNATURE');
      expect(expired.message).toMatch(/not valid at/);
    });
  });

  it('signedmetadata1.p7m / signednometadata1.p7m (SHA-256, signer CN=Satyajeet valid 2013-05-02 – 2014-05-02): 2 anchors, with and without metadata', () => {
    const at = new Date('2013-09-01T00:00:00Z');
    for (const [file, meta] of [
      ['signedmetadata1.p7m', true],
      ['signednometadata1.p7m', false],
    ] as const) {
      const signerDer = readSignedData(read(file)).certificates[0]!;
      const signer = Certificate.fromDer(signerDer);
      expect(signer.subject).toContain('CN=Satyajeet');
      const b = parseTrustBundle(read(file), { signers: [signer], at });
      expect(b.anchors.map((a) => a.sha256)).toEqual(parseTrustBundle(read('UnSignedNoMetaData.p7b')).anchors.map((a) => a.sha256));
      expect(b.metadata !== undefined).toBe(meta);
      if (meta) expect(b.metadata?.equals(read('TrustBundleMetadata.xml'))).toBe(true);
      // and not by another key
      expect(hispErrorOf(() => parseTrustBundle(read(file), { signers: [cert('bundleSigner.der')], at })).code).toBe('HISP_BUNDLE_SIGNATURE');
    }
  });

  it('invalidBundle.der (7 bytes "invalid"): HISP_BUNDLE_INVALID, with or without a configured signer', () => {
    expect(read('invalidBundle.der').toString('latin1')).toBe('invalid');
    expect(hispErrorOf(() => parseTrustBundle(read('invalidBundle.der'))).code).toBe('HISP_BUNDLE_INVALID');
    expect(hispErrorOf(() => parseTrustBundle(read('invalidBundle.der'), { signers: [cert('bundleSigner.der')] })).code).toBe('HISP_BUNDLE_INVALID');
  });
});

const dotnetBundles = vectorGroup('dotnet-ri', ['bundles/bundleNoMetadata.p7b', 'bundles/bundleWithMetadata.p7b', 'bundles/bundlePEM.p7b']);

describe.skipIf(!dotnetBundles.present)(dotnetBundles.title('.NET RI trust bundles'), () => {
  const read = (f: string) => dotnetBundles.read(`bundles/${f}`);

  it('bundleNoMetadata.p7b: DER, 2 CA anchors, no metadata', () => {
    const b = parseTrustBundle(read('bundleNoMetadata.p7b'));
    expect(b.anchors).toHaveLength(2);
    expect(b.anchors.every((a) => a.basicConstraints?.ca !== false)).toBe(true);
    expect(b.metadata).toBeUndefined();
  });

  it('bundleWithMetadata.p7b: the same 2 anchors and eContent <xml><testStructure>test</testStructure>', () => {
    const b = parseTrustBundle(read('bundleWithMetadata.p7b'));
    expect(b.anchors.map((a) => a.sha256)).toEqual(parseTrustBundle(read('bundleNoMetadata.p7b')).anchors.map((a) => a.sha256));
    expect(b.metadata?.toString('utf8').replace(/\s+/g, '')).toBe('<xml><testStructure>test</testStructure>');
  });

  it('bundlePEM.p7b: PEM-armoured, 8 production HISP CA anchors', () => {
    const b = parseTrustBundle(read('bundlePEM.p7b'));
    expect(b.anchors).toHaveLength(8);
    expect(b.anchors.some((a) => a.subject.includes('MaxMD CA'))).toBe(true);
    expect(b.anchors.some((a) => a.subject.includes('CernerDirect Professional Community CA'))).toBe(true);
  });
});

const CHAIN = 'certs/chain-no-basicconstraints';
const dotnetChain = vectorGroup('dotnet-ri', [`${CHAIN}/root.cer`, `${CHAIN}/inter1.cer`, `${CHAIN}/inter11.cer`, `${CHAIN}/end.cer`]);

describe.skipIf(!dotnetChain.present)(dotnetChain.title('.NET RI chain without basicConstraints (SHA-1, RSA-1024, v3 CAs without basicConstraints)'), () => {
  const cert = (n: string) => Certificate.fromDer(dotnetChain.read(`${CHAIN}/${n}.cer`));
  // Read only when present: vitest runs a skipped describe's body too, to collect its tests.
  const [root, inter1, inter11, end] = (dotnetChain.present ? ['root', 'inter1', 'inter11', 'end'].map(cert) : []) as [Certificate, Certificate, Certificate, Certificate];
  // valid 2010-10-06 … 2039-12-31; checked with the SHA-1 switch so that only structure and key size remain
  const at = new Date('2020-01-01T00:00:00Z');
  const base = { anchors: [root], intermediates: [inter1, inter11], at, purpose: 'signing' as const, allowSha1: true };

  it('is the chain the INDEX describes: v3 without basicConstraints or keyUsage (only the obsolete 2.5.29.1 AKI), SHA-1/RSA-1024, valid at 2020-01-01', () => {
    for (const c of [root, inter1, inter11, end]) {
      expect(c.structure.version).toBe(2);
      expect(c.basicConstraints).toBeUndefined();
      expect(c.keyUsage).toBeUndefined();
      expect((c.structure.extensions ?? []).map((x) => x.extnID)).toEqual(['2.5.29.1']);
      expect(c.signatureAlgorithmOid).toBe('1.3.14.3.2.29'); // OIW sha1WithRSASignature, not PKCS#1's 1.2.840.113549.1.1.5
      expect(c.publicKeyBits).toBe(1024);
      expect(c.isValidAt(at)).toBe(true);
    }
  });

  it('validateChain: HISP_TRUST_BASIC_CONSTRAINTS (inter11 is no CA), reported before the 1024-bit keys', () => {
    const e = hispErrorOf(() => validateChain(end, base));
    expect(e.code).toBe('HISP_TRUST_BASIC_CONSTRAINTS');
    expect(e.message).toMatch(/inter11\.xyz.*not a CA \(basicConstraints absent\)/);
  });

  it('still HISP_TRUST_BASIC_CONSTRAINTS when 1024-bit keys are allowed: the refusal is not about key size', () => {
    expect(hispErrorOf(() => validateChain(end, { ...base, minRsaBits: 1024 })).code).toBe('HISP_TRUST_BASIC_CONSTRAINTS');
    // the same holds for the intermediates themselves (inter1 issues inter11 without being a CA)
    expect(hispErrorOf(() => validateChain(inter11, { ...base, minRsaBits: 1024 })).code).toBe('HISP_TRUST_BASIC_CONSTRAINTS');
    // control: the end certificate pinned as its own anchor has no issuer to check and is accepted
    expect(validateChain(end, { ...base, anchors: [end], minRsaBits: 1024 }).path).toEqual([end]);
  });

  it('the OIW SHA-1 OID counts as SHA-1: without the legacy switch the first signature checked is refused (HISP_TRUST_WEAK_SIGNATURE)', () => {
    const e = hispErrorOf(() => validateChain(inter1, { ...base, allowSha1: false, minRsaBits: 1024 }));
    expect(e.code).toBe('HISP_TRUST_WEAK_SIGNATURE');
    expect(e.message).toMatch(/SHA-1/);
  });

  it('TrustValidator (revocation off, AIA on) gives the same HISP_TRUST_BASIC_CONSTRAINTS without fetching anything', async () => {
    const calls: string[] = [];
    const validator = new TrustValidator({ fetcher: (u) => (calls.push(u.href), Promise.reject(new Error('no network'))) });
    const e = await rejection(validator.validate(end, { ...base, minRsaBits: 1024, revocation: 'off' }));
    expect(e.code).toBe('HISP_TRUST_BASIC_CONSTRAINTS');
    expect(calls).toEqual([]);
  });
});

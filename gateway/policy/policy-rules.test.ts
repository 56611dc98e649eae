// The certificate policy's rules on the edges the suite left open (mutation testing, docs/testing.md):
// what an operator reads when a policy in the configuration is wrong, which certificates' signatures a
// decision relies on, and that the Blue Button+ exception (requirements §5.5) rescues a certificate
// only from a missing anchor, never from a path that is wrong.
import { beforeAll, describe, expect, it } from 'vitest';
import { trustCert } from '../../test/fixtures/trust/trust-pki.js';
import { KeyUsageFlags, makeCaPair, makeCertificate, type MadeCertificate } from '../../test/helpers/cert-factory.js';
import { hispError, hispRejection } from '../../test/helpers/hisp-error.js';
import { TrustValidator } from '../trust/trust-validator.js';
import { acceptedSignatureAlgorithms, applyPolicy, DEFAULT_CERTIFICATE_POLICY, PolicyStore, resolvePolicy, SIGNATURE_ALGORITHMS } from './cert-policy.js';
import { decideTrust } from './trust-decision.js';

describe('resolvePolicy: what the operator reads for a wrong policy (HISP_USAGE)', () => {
  const message = (input: Parameters<typeof resolvePolicy>[0]) => hispError(() => resolvePolicy(input)).message;

  it('names the key and the value', () => {
    expect(message({ minRsaBits: 512 })).toBe('certificate policy: minRsaBits must be an integer between 1024 and 16384 (got 512)');
    expect(message({ minRsaBits: 16385 })).toBe('certificate policy: minRsaBits must be an integer between 1024 and 16384 (got 16385)');
    expect(message({ revocation: 'sometimes' as 'off' })).toBe('certificate policy: unknown revocation mode sometimes');
    expect(message({ requiredKeyUsage: { signing: ['signing' as 'digitalSignature'] } })).toBe('certificate policy: unknown key usage signing');
    expect(message({ allowedSignatureAlgorithms: ['rot13'] })).toBe('certificate policy: unknown signature algorithm rot13');
  });

  it('the bounds of minRsaBits are included', () => {
    expect(resolvePolicy({ minRsaBits: 1024 }).minRsaBits).toBe(1024);
    expect(resolvePolicy({ minRsaBits: 16384 }).minRsaBits).toBe(16384);
  });

  it('every revocation mode is accepted', () => {
    for (const revocation of ['soft-fail', 'hard-fail', 'off'] as const) expect(resolvePolicy({ revocation }).revocation).toBe(revocation);
  });

  it('MD2, MD4 and MD5 (PKCS#1 and OIW) are never allowed, by OID, and the message names them', () => {
    for (const [oid, name] of [
      ['1.2.840.113549.1.1.4', 'md5WithRSAEncryption'],
      ['1.2.840.113549.1.1.3', 'md4WithRSAEncryption'],
      ['1.2.840.113549.1.1.2', 'md2WithRSAEncryption'],
      ['1.3.14.3.2.3', 'md5WithRSA (OIW)'],
    ]) {
      expect(message({ allowedSignatureAlgorithms: [oid!] })).toBe(`certificate policy: ${name} is never allowed`);
    }
  });

  it('a dotted OID is taken as such, multi-digit arcs included; anything else must be a known name', () => {
    expect(resolvePolicy({ allowedSignatureAlgorithms: ['12.345.6'] }).allowedSignatureAlgorithms).toEqual(['12.345.6']);
    for (const bad of ['x1.2.840', '1.2.840x', '1', '1.', 'sha256WithRSAEncryption.1']) {
      expect(message({ allowedSignatureAlgorithms: [bad] }), bad).toBe(`certificate policy: unknown signature algorithm ${bad}`);
    }
  });

  it('every SHA-1 algorithm counts only with the legacy switch, whoever lists it', () => {
    const sha1 = ['sha1WithRSAEncryption', 'ecdsa-with-SHA1', 'dsa-with-SHA1', 'sha1WithRSASignature'] as const;
    const listed = resolvePolicy({ allowedSignatureAlgorithms: [...sha1, 'sha256WithRSAEncryption'] });
    expect([...acceptedSignatureAlgorithms(listed)]).toEqual([SIGNATURE_ALGORITHMS.sha256WithRSAEncryption]);
    const allowed = resolvePolicy({ allowedSignatureAlgorithms: [...sha1], allowSha1: true });
    expect([...acceptedSignatureAlgorithms(allowed)]).toEqual(sha1.map((n) => SIGNATURE_ALGORITHMS[n]));
  });
});

describe('PolicyStore: domain names as the configuration writes them', () => {
  it('a domain with spaces around, capitals or a trailing dot is the same domain', () => {
    const store = new PolicyStore();
    store.set(' Legacy.Example.TEST. ', { allowSha1: true });
    expect(store.policyFor('legacy.example.test').allowSha1).toBe(true);
    expect(store.policyFor('doctor@LEGACY.example.test').allowSha1).toBe(true);
    expect(store.policyFor('  doctor@legacy.example.test ').allowSha1).toBe(true);
    expect(store.policyFor('example.test').allowSha1).toBe(false);
  });
});

let root: MadeCertificate;
let intermediate: MadeCertificate;
const AT = new Date('2030-06-01T00:00:00Z');
const validity = { notBefore: new Date('2030-01-01T00:00:00Z'), notAfter: new Date('2031-01-01T00:00:00Z') };

beforeAll(async () => {
  ({ root, intermediate } = await makeCaPair('Policy'));
});

describe('applyPolicy: what it judges', () => {
  it('an empty path is a programming error: HISP_USAGE', () => {
    const e = applyPolicy(DEFAULT_CERTIFICATE_POLICY, { path: [], anchored: true, purpose: 'signing' });
    expect(e?.code).toBe('HISP_USAGE');
    expect(e?.message).toBe('applyPolicy: empty path');
  });

  it('a required key usage on a leaf without keyUsage: refused, saying the extension is missing', async () => {
    const noKu = await makeCertificate({ subject: 'CN=no ku', issuer: intermediate, keyUsage: null });
    const e = applyPolicy(resolvePolicy({ requiredKeyUsage: { signing: ['digitalSignature'] } }), {
      path: [noKu.cert, intermediate.cert, root.cert],
      anchored: true,
      purpose: 'signing',
    });
    expect(e?.details?.rule).toBe('key-usage');
    expect(e?.message).toBe("CN=no ku: has no keyUsage extension; the domain's policy requires digitalSignature");
  });

  it('the RSA minimum does not apply to EC keys, and its refusal names the size', async () => {
    const ec = await makeCertificate({ subject: 'CN=ec', issuer: intermediate });
    expect(applyPolicy(resolvePolicy({ minRsaBits: 4096 }), { path: [ec.cert, intermediate.cert, root.cert], anchored: true, purpose: 'signing' })).toBeUndefined();
    const rsa = await makeCertificate({ subject: 'CN=rsa', issuer: intermediate, key: { kind: 'rsa', bits: 2048 } });
    const e = applyPolicy(resolvePolicy({ minRsaBits: 3072 }), { path: [rsa.cert, intermediate.cert, root.cert], anchored: true, purpose: 'signing' });
    expect(e?.message).toBe("CN=rsa: RSA-2048 key; the domain's policy requires at least 3072 bits");
  });

  it('without an anchor only the leaf’s signature is relied on (its issuer’s may be anything)', async () => {
    const sha1Issuer = await makeCertificate({ subject: 'CN=SHA-1 issued', issuer: root, ca: true, digest: 'SHA-1' });
    const leaf = await makeCertificate({ subject: 'CN=bb leaf', issuer: sha1Issuer });
    expect(applyPolicy(DEFAULT_CERTIFICATE_POLICY, { path: [leaf.cert, sha1Issuer.cert], anchored: false, purpose: 'signing' })).toBeUndefined();
    // anchored, the same issuer is relied on
    expect(applyPolicy(DEFAULT_CERTIFICATE_POLICY, { path: [leaf.cert, sha1Issuer.cert, root.cert], anchored: true, purpose: 'signing' })?.details?.rule).toBe(
      'signature-algorithm',
    );
  });

  it('an algorithm off the list that is not SHA-1 is refused without the legacy-switch hint', async () => {
    const ec = await makeCertificate({ subject: 'CN=ec', issuer: intermediate });
    const rsaOnly = resolvePolicy({ allowedSignatureAlgorithms: ['sha256WithRSAEncryption'] });
    const e = applyPolicy(rsaOnly, { path: [ec.cert, intermediate.cert, root.cert], anchored: true, purpose: 'signing' });
    expect(e?.message).toBe("CN=ec: signed with ecdsa-with-SHA256, not allowed by the domain's policy");
    // SHA-1 with the switch on but not listed: no hint either (the switch is on)
    const sha1 = await makeCertificate({ subject: 'CN=sha1', issuer: intermediate, digest: 'SHA-1' });
    const on = resolvePolicy({ allowSha1: true, allowedSignatureAlgorithms: ['ecdsa-with-SHA256'] });
    expect(applyPolicy(on, { path: [sha1.cert, intermediate.cert, root.cert], anchored: true, purpose: 'signing' })?.message).toBe(
      "CN=sha1: signed with ecdsa-with-SHA1, not allowed by the domain's policy",
    );
  });
});

describe('decideTrust: the policy on the path the validator built', () => {
  const validator = new TrustValidator({ fetcher: () => Promise.reject(new Error('no fetch expected')), clock: () => new Date('2020-06-01T00:00:00Z') });

  it('judges at the time given, not the validator’s clock', async () => {
    const leaf = await makeCertificate({ subject: 'CN=dated', issuer: intermediate, ...validity });
    const d = await decideTrust(validator, leaf.cert, { policy: DEFAULT_CERTIFICATE_POLICY, anchors: [root.cert], intermediates: [intermediate.cert], purpose: 'signing', at: AT });
    expect(d.basis).toBe('anchor');
    expect((await hispRejection(decideTrust(validator, leaf.cert, { policy: DEFAULT_CERTIFICATE_POLICY, anchors: [root.cert], intermediates: [intermediate.cert], purpose: 'signing' }))).code).toBe(
      'HISP_TRUST_EXPIRED',
    );
  });

  it('relies on the intermediates’ signatures of an anchored path: one signed with an algorithm off the list is refused', async () => {
    // the SHA-1 switch lets the validator pass it; the policy's list does not have it
    const ecdsaSha1Ca = await makeCertificate({ subject: 'CN=ECDSA-SHA1 CA', issuer: root, ca: true, digest: 'SHA-1', ...validity });
    const leaf = await makeCertificate({ subject: 'CN=under sha1 ca', issuer: ecdsaSha1Ca, ...validity });
    const policy = resolvePolicy({ allowSha1: true, allowedSignatureAlgorithms: ['ecdsa-with-SHA256'] });
    const e = await hispRejection(decideTrust(validator, leaf.cert, { policy, anchors: [root.cert], intermediates: [ecdsaSha1Ca.cert], purpose: 'signing', at: AT }));
    expect(e.code).toBe('HISP_TRUST_POLICY');
    expect(e.details).toMatchObject({ rule: 'signature-algorithm', subject: 'CN=ECDSA-SHA1 CA' });
  });
});

describe('decideTrust: the Blue Button+ exception rescues from a missing anchor only (requirements §5.5)', () => {
  const bbOn = resolvePolicy({ blueButtonPlus: { enabled: true }, revocation: 'off' });
  const validator = new TrustValidator({ fetcher: () => Promise.reject(new Error('connect ECONNREFUSED')), clock: () => AT });
  const patientDirected = { policy: bbOn, purpose: 'encryption' as const, at: AT, patientDirected: true };

  it('a path that reaches an anchor through an issuer that is no CA is refused as such, not accepted as Blue Button+', async () => {
    const notCa = await makeCertificate({ subject: 'CN=Not a CA', issuer: root, ca: false, keyUsage: KeyUsageFlags.keyCertSign, ...validity });
    const leaf = await makeCertificate({ subject: 'CN=patient', issuer: notCa, emails: ['patient@phr.test'], ...validity });
    const e = await hispRejection(decideTrust(validator, leaf.cert, { ...patientDirected, anchors: [root.cert], intermediates: [notCa.cert] }));
    expect(e.code).toBe('HISP_TRUST_BASIC_CONSTRAINTS');
  });

  it('a missing issuer that AIA could not fetch (HISP_TRUST_AIA_FAILED) is a missing anchor: accepted as Blue Button+', async () => {
    // leaf-aia-pem names its issuer by AIA only; the fetch fails
    const aiaLeaf = trustCert('leaf-aia-pem');
    const at = new Date('2026-03-01T00:00:00Z');
    const v = new TrustValidator({ fetcher: () => Promise.reject(new Error('connect ECONNREFUSED')), clock: () => at });
    const strict = await hispRejection(decideTrust(v, aiaLeaf, { ...patientDirected, at, policy: DEFAULT_CERTIFICATE_POLICY, anchors: [trustCert('root-ca')] }));
    expect(strict.code).toBe('HISP_TRUST_AIA_FAILED');
    const d = await decideTrust(v, aiaLeaf, { ...patientDirected, at, anchors: [trustCert('root-ca')] });
    expect(d.basis).toBe('blue-button-plus');
  });

  it('without an anchor, the leaf alone is judged by the policy: a leaf signed with an algorithm off the list is refused', async () => {
    const other = await makeCaPair('Elsewhere');
    const leaf = await makeCertificate({ subject: 'CN=patient ec', issuer: other.intermediate, ...validity });
    const rsaOnly = resolvePolicy({ blueButtonPlus: { enabled: true }, revocation: 'off', allowedSignatureAlgorithms: ['sha256WithRSAEncryption'] });
    const e = await hispRejection(decideTrust(validator, leaf.cert, { ...patientDirected, policy: rsaOnly, anchors: [root.cert] }));
    expect(e.code).toBe('HISP_TRUST_POLICY');
    expect(e.details).toMatchObject({ rule: 'signature-algorithm', subject: 'CN=patient ec' });
    // the same leaf under the default list: accepted without an anchor
    expect((await decideTrust(validator, leaf.cert, { ...patientDirected, anchors: [root.cert] })).basis).toBe('blue-button-plus');
  });

  it('requireDnssec: the refusal says why', async () => {
    const other = await makeCaPair('Unsigned zone');
    const leaf = await makeCertificate({ subject: 'CN=patient dns', issuer: other.intermediate, ...validity });
    const policy = resolvePolicy({ blueButtonPlus: { enabled: true, requireDnssec: true }, revocation: 'off' });
    const e = await hispRejection(decideTrust(validator, leaf.cert, { ...patientDirected, policy, anchors: [root.cert] }));
    expect(e.message).toBe(
      'CN=patient dns does not chain to an anchor, and the Blue Button+ exception of this domain requires a DNSSEC-validated discovery answer',
    );
  });
});

import { describe, expect, it } from 'vitest';
import type { Certificate } from '../core/certificate.js';
import { readCertificates } from '../agent/key-material.js';
import { readCredentialPem, type CredentialName } from '../../test/helpers/pki.js';
import { readTrustFile, trustCert } from '../../test/fixtures/trust/trust-pki.js';
import type { Fetcher } from '../trust/http-fetch.js';
import { TrustValidator } from '../trust/trust-validator.js';
import {
  acceptedSignatureAlgorithms,
  applyPolicy,
  DEFAULT_CERTIFICATE_POLICY,
  PolicyStore,
  resolvePolicy,
  SIGNATURE_ALGORITHMS,
  validationSettings,
} from './cert-policy.js';
import { decideTrust } from './trust-decision.js';
import { hispError as thrown, hispRejection as rejection } from '../../test/helpers/hisp-error.js';

const pki = (name: CredentialName): Certificate => readCertificates(Buffer.from(readCredentialPem(name).certPem))[0]!;
const root = pki('root-ca');
const intermediate = pki('intermediate-ca');

describe('certificate policy values', () => {
  it('defaults: RSA ≥ 2048, no SHA-1, soft-fail revocation, Blue Button+ off (requirements §5.1, §5.5, §5.7)', () => {
    const p = DEFAULT_CERTIFICATE_POLICY;
    expect(p.minRsaBits).toBe(2048);
    expect(p.allowSha1).toBe(false);
    expect(p.revocation).toBe('soft-fail');
    expect(p.blueButtonPlus).toEqual({ enabled: false, requireDnssec: false });
    expect(p.requiredKeyUsage).toEqual({ signing: [], encryption: [] });
    const accepted = acceptedSignatureAlgorithms(p);
    expect(accepted.has(SIGNATURE_ALGORITHMS.sha256WithRSAEncryption)).toBe(true);
    expect(accepted.has(SIGNATURE_ALGORITHMS.sha1WithRSAEncryption)).toBe(false);
    expect(acceptedSignatureAlgorithms(resolvePolicy({ allowSha1: true })).has(SIGNATURE_ALGORITHMS.sha1WithRSAEncryption)).toBe(true);
  });

  it('resolvePolicy takes names or OIDs and refuses nonsense with HISP_USAGE (MD5 never, even when listed)', () => {
    expect(resolvePolicy({ allowedSignatureAlgorithms: ['sha384WithRSAEncryption', '1.2.840.10045.4.3.2'] }).allowedSignatureAlgorithms).toEqual([
      '1.2.840.113549.1.1.12',
      '1.2.840.10045.4.3.2',
    ]);
    for (const bad of [
      { minRsaBits: 512 },
      { minRsaBits: 2048.5 },
      { allowedSignatureAlgorithms: ['md5WithRSAEncryption'] },
      { allowedSignatureAlgorithms: ['1.2.840.113549.1.1.4'] },
      { allowedSignatureAlgorithms: ['rot13'] },
      { requiredKeyUsage: { encryption: ['keyEncypherment' as 'keyEncipherment'] } },
      { revocation: 'maybe' as 'off' },
    ]) {
      expect(thrown(() => resolvePolicy(bad)).code).toBe('HISP_USAGE');
    }
  });

  it('PolicyStore: per domain over the store defaults; addresses use their domain', () => {
    const store = new PolicyStore({ revocation: 'hard-fail' });
    store.set('Legacy.Test', { allowSha1: true });
    store.set('phr-sender.test', { blueButtonPlus: { enabled: true, requireDnssec: true } });
    expect(store.policyFor('someone@legacy.test')).toMatchObject({ allowSha1: true, revocation: 'hard-fail' });
    expect(store.policyFor('other.test')).toMatchObject({ allowSha1: false, revocation: 'hard-fail' });
    expect(store.policyFor('phr-sender.test').blueButtonPlus).toEqual({ enabled: true, requireDnssec: true });
    expect(validationSettings(store.policyFor('legacy.test'))).toEqual({ allowSha1: true, minRsaBits: 2048, revocation: 'hard-fail' });
    expect(Object.isFrozen(store.policyFor('legacy.test'))).toBe(true);
  });
});

describe('applyPolicy → HISP_TRUST_POLICY with the rule broken', () => {
  const anchoredPath = (leaf: CredentialName) => [pki(leaf), intermediate, root];

  it('required key usages must be asserted by the leaf', () => {
    const policy = resolvePolicy({ requiredKeyUsage: { encryption: ['keyEncipherment'], signing: ['digitalSignature', 'nonRepudiation'] } });
    expect(applyPolicy(policy, { path: [pki('recipient-domain'), intermediate, root], anchored: true, purpose: 'encryption' })).toBeUndefined();
    const e = applyPolicy(policy, { path: anchoredPath('sender-rsa'), anchored: true, purpose: 'signing' });
    expect(e?.code).toBe('HISP_TRUST_POLICY');
    expect(e?.details?.rule).toBe('key-usage');
    expect(e?.message).toMatch(/nonRepudiation/);
  });

  it('minimum RSA size applies to every certificate of the path', () => {
    const policy = resolvePolicy({ minRsaBits: 3072 });
    const e = applyPolicy(policy, { path: [pki('recipient-domain'), intermediate, root], anchored: true, purpose: 'encryption' });
    expect(e?.details).toMatchObject({ rule: 'key-size', subject: intermediate.subject });
    expect(applyPolicy(resolvePolicy({ minRsaBits: 2048 }), { path: [pki('recipient-domain'), intermediate, root], anchored: true, purpose: 'encryption' })).toBeUndefined();
    expect(applyPolicy(DEFAULT_CERTIFICATE_POLICY, { path: anchoredPath('sender-rsa1024'), anchored: true, purpose: 'signing' })?.details?.rule).toBe('key-size');
  });

  it('signature algorithms: SHA-1 only with the legacy switch; a restricted list; the anchor’s own signature is not judged', () => {
    const sha1 = anchoredPath('sender-sha1');
    const e = applyPolicy(DEFAULT_CERTIFICATE_POLICY, { path: sha1, anchored: true, purpose: 'signing' });
    expect(e?.details?.rule).toBe('signature-algorithm');
    expect(e?.message).toMatch(/sha1WithRSAEncryption.*legacy switch/);
    expect(applyPolicy(resolvePolicy({ allowSha1: true }), { path: sha1, anchored: true, purpose: 'signing' })).toBeUndefined();
    const only384 = resolvePolicy({ allowedSignatureAlgorithms: ['sha384WithRSAEncryption'] });
    expect(applyPolicy(only384, { path: anchoredPath('sender-rsa'), anchored: true, purpose: 'signing' })?.details?.rule).toBe('signature-algorithm');
    // a pinned leaf (path of one, anchored): its own signature is not relied on
    expect(applyPolicy(only384, { path: [pki('sender-sha1')], anchored: true, purpose: 'signing' })).toBeUndefined();
    // without an anchor (Blue Button+), the leaf's signature algorithm is judged
    expect(applyPolicy(DEFAULT_CERTIFICATE_POLICY, { path: [pki('sender-sha1')], anchored: false, purpose: 'signing' })?.details?.rule).toBe('signature-algorithm');
  });
});

/** URL → bytes fetcher for the patient PKI (other-root-ca: its CRL and its certificate by AIA). */
function patientFetcher(overrides: Record<string, Buffer | Error> = {}): Fetcher & { calls: string[] } {
  const table: Record<string, Buffer | Error> = {
    'http://crl.hisp.test/other-root-ca.crl': readTrustFile('other-root-ca.crl'),
    'http://aia.hisp.test/other-root-ca.cer': readTrustFile('other-root-ca.cert.der'),
    'http://crl.hisp.test/intermediate-ca.crl': readTrustFile('intermediate-ca.crl'),
    'http://crl.hisp.test/root-ca.crl': readTrustFile('root-ca.crl'),
    ...overrides,
  };
  const calls: string[] = [];
  const f: Fetcher = (url) => {
    calls.push(url.href);
    const v = table[url.href];
    return v === undefined ? Promise.reject(new Error('HTTP 404')) : v instanceof Error ? Promise.reject(v) : Promise.resolve(v);
  };
  return Object.assign(f, { calls });
}

describe('decideTrust and the Blue Button+ patient-directed switch (requirements §5.5)', () => {
  const at = new Date('2026-03-01T00:00:00Z');
  const anchors = [trustCert('root-ca')];
  const patient = trustCert('patient');
  const bbOn = resolvePolicy({ blueButtonPlus: { enabled: true } });
  const validator = () => new TrustValidator({ fetcher: patientFetcher(), clock: () => at });

  it('anchored: a valid path that meets the policy → basis "anchor"', async () => {
    const d = await decideTrust(validator(), trustCert('leaf-good'), {
      policy: DEFAULT_CERTIFICATE_POLICY,
      anchors,
      intermediates: [trustCert('intermediate-ca')],
      purpose: 'encryption',
      at,
    });
    expect(d).toMatchObject({ basis: 'anchor', revocation: 'checked', warnings: [] });
    expect(d.anchor?.sha256).toBe(anchors[0]!.sha256);
  });

  it('anchored but against the policy: HISP_TRUST_POLICY', async () => {
    const policy = resolvePolicy({ requiredKeyUsage: { encryption: ['dataEncipherment'] } });
    const e = await rejection(decideTrust(validator(), trustCert('leaf-good'), { policy, anchors, intermediates: [trustCert('intermediate-ca')], purpose: 'encryption', at }));
    expect(e.code).toBe('HISP_TRUST_POLICY');
    expect(e.details?.rule).toBe('key-usage');
  });

  it('off by default: a patient certificate without an anchor is refused (HISP_TRUST_NO_ANCHOR), even patient-directed', async () => {
    const e = await rejection(decideTrust(validator(), patient, { policy: DEFAULT_CERTIFICATE_POLICY, anchors, purpose: 'encryption', at, patientDirected: true }));
    expect(e.code).toBe('HISP_TRUST_NO_ANCHOR');
  });

  it('on, but not a patient-directed send: still HISP_TRUST_NO_ANCHOR', async () => {
    expect((await rejection(decideTrust(validator(), patient, { policy: bbOn, anchors, purpose: 'encryption', at }))).code).toBe('HISP_TRUST_NO_ANCHOR');
  });

  it('on and patient-directed: well-formed, unexpired, unrevoked → accepted without an anchor (issuer from AIA, CRL checked)', async () => {
    const fetcher = patientFetcher();
    const d = await decideTrust(new TrustValidator({ fetcher, clock: () => at }), patient, { policy: bbOn, anchors, purpose: 'encryption', at, patientDirected: true });
    expect(d.basis).toBe('blue-button-plus');
    expect(d.anchor).toBeUndefined();
    expect(d.path.map((c) => c.subject)).toEqual([patient.subject, trustCert('other-root-ca').subject]);
    expect(d.revocation).toBe('checked');
    expect(d.warnings[0]).toMatch(/without a trust anchor under the Blue Button\+/);
    expect(fetcher.calls).toContain('http://crl.hisp.test/other-root-ca.crl');
  });

  it('on and patient-directed, but revoked, expired, weak, a CA, or unverifiable under hard-fail: refused with the typed reason', async () => {
    const base = { anchors, purpose: 'encryption' as const, at, patientDirected: true };
    const revoked = await rejection(decideTrust(validator(), trustCert('patient-revoked'), { ...base, policy: bbOn }));
    expect(revoked.code).toBe('HISP_TRUST_REVOKED');
    expect(revoked.details?.reason).toBe('keyCompromise');
    expect((await rejection(decideTrust(validator(), pki('sender-expired'), { ...base, policy: bbOn }))).code).toBe('HISP_TRUST_EXPIRED');
    expect((await rejection(decideTrust(validator(), pki('sender-rsa1024'), { ...base, policy: bbOn }))).code).toBe('HISP_TRUST_WEAK_KEY');
    expect((await rejection(decideTrust(validator(), pki('sender-sha1'), { ...base, policy: bbOn }))).code).toBe('HISP_TRUST_WEAK_SIGNATURE');
    expect((await rejection(decideTrust(validator(), trustCert('other-root-ca'), { ...base, policy: bbOn }))).code).toBe('HISP_TRUST_BASIC_CONSTRAINTS');
    const hard = resolvePolicy({ blueButtonPlus: { enabled: true }, revocation: 'hard-fail' });
    const down = new TrustValidator({ fetcher: patientFetcher({ 'http://crl.hisp.test/other-root-ca.crl': new Error('connect ECONNREFUSED') }), clock: () => at });
    const e = await rejection(decideTrust(down, patient, { ...base, policy: hard }));
    expect(e.code).toBe('HISP_TRUST_REVOCATION_UNAVAILABLE');
    expect(e.transient).toBe(true);
  });

  it('requireDnssec: refused (HISP_TRUST_POLICY, rule dnssec) unless the discovery answer was DNSSEC-validated', async () => {
    const policy = resolvePolicy({ blueButtonPlus: { enabled: true, requireDnssec: true } });
    const base = { policy, anchors, purpose: 'encryption' as const, at, patientDirected: true };
    const e = await rejection(decideTrust(validator(), patient, base));
    expect(e.code).toBe('HISP_TRUST_POLICY');
    expect(e.details?.rule).toBe('dnssec');
    expect((await decideTrust(validator(), patient, { ...base, dnssecValidated: true })).basis).toBe('blue-button-plus');
  });
});

import { createPublicKey, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hispError } from '../../test/helpers/hisp-error.js';
import { credentialPaths, type CredentialName, type LeafName } from '../../test/helpers/pki.js';
import { buildConfig } from '../config/load-config.js';
import type { HispConfig } from '../config/schema.js';
import { DomainRegistry } from './domain-registry.js';
import { parseTrustBundle } from '../trust/trust-bundle.js';
import { readTrustFile } from '../../test/fixtures/trust/trust-pki.js';

const dataDir = mkdtempSync(join(tmpdir(), 'hisp-registry-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const cert = (name: CredentialName) => credentialPaths(name).cert;
const credential = (name: LeafName, extra: Record<string, unknown> = {}) => ({ key: credentialPaths(name).key, cert: credentialPaths(name).chain, ...extra });

interface DomainOverrides {
  name?: string;
  bundles?: unknown[];
  catchAll?: boolean;
  credentials?: unknown[];
  anchors?: unknown;
  addresses?: unknown[];
  policy?: unknown;
}

function domain(o: DomainOverrides = {}) {
  return {
    name: o.name ?? 'recipient.test',
    catchAll: o.catchAll ?? false,
    credentials: o.credentials ?? [credential('recipient-domain')],
    anchors: o.anchors ?? { incoming: [cert('root-ca')], outgoing: [cert('intermediate-ca')] },
    addresses: o.addresses ?? [{ address: 'patient@recipient.test' }, { address: 'Nurse.Jane@recipient.test' }],
    ...(o.policy !== undefined ? { policy: o.policy } : {}),
    ...(o.bundles !== undefined ? { bundles: o.bundles } : {}),
  };
}

function config(domains: unknown[]): HispConfig {
  const raw = { dataDir, submission: { enabled: false }, inbound: { enabled: false }, domains };
  return buildConfig(raw, { baseDir: dataDir, env: {} }).config;
}

const subjects = (list: readonly { certificate: { subject: string } }[]) => list.map((c) => c.certificate.subject).sort();

describe('DomainRegistry.load', () => {
  it('knows its local domains, case-insensitively and with a trailing dot', () => {
    const r = DomainRegistry.load(config([domain(), domain({ name: 'sender.test', credentials: [credential('sender-domain')], addresses: [] })]));
    expect(r.names.sort()).toEqual(['recipient.test', 'sender.test']);
    expect(r.isLocalDomain('Recipient.TEST.')).toBe(true);
    expect(r.isLocalDomain('other.test')).toBe(false);
    expect(r.domainConfig('RECIPIENT.test').name).toBe('recipient.test');
  });

  it('refuses to answer for a domain that is not local (HISP_CONFIG_INVALID)', () => {
    const r = DomainRegistry.load(config([domain()]));
    expect(hispError(() => r.signers('other.test')).code).toBe('HISP_CONFIG_INVALID');
  });

  describe('acceptance (RCPT on the receive side)', () => {
    it('catchAll off: listed addresses accepted (case-insensitively), others unknown-address', () => {
      const r = DomainRegistry.load(config([domain({ catchAll: false })]));
      expect(r.acceptance('patient@recipient.test')).toBe('accept');
      expect(r.acceptance('PATIENT@Recipient.Test')).toBe('accept');
      expect(r.acceptance('nurse.jane@recipient.test')).toBe('accept');
      expect(r.acceptance('<patient@recipient.test>')).toBe('accept');
      expect(r.acceptance('someone@recipient.test')).toBe('unknown-address');
    });

    it('catchAll on: any address of the domain accepted', () => {
      const r = DomainRegistry.load(config([domain({ catchAll: true })]));
      expect(r.acceptance('patient@recipient.test')).toBe('accept');
      expect(r.acceptance('anyone@recipient.test')).toBe('accept');
    });

    it('another domain, a subdomain and garbage are not-local, catchAll or not', () => {
      for (const catchAll of [false, true]) {
        const r = DomainRegistry.load(config([domain({ catchAll })]));
        expect(r.acceptance('patient@other.test')).toBe('not-local');
        expect(r.acceptance('patient@sub.recipient.test')).toBe('not-local');
        expect(r.acceptance('patient@recipient.test.evil.test')).toBe('not-local');
        expect(r.acceptance('not an address')).toBe('not-local');
        expect(r.acceptance('')).toBe('not-local');
      }
    });
  });

  describe('credentials', () => {
    // recipient-domain: both, active; recipient-rsa: both, retired; recipient2-rsa: decrypt only
    // (keyEncipherment); sender-ec256: sign only (an EC key cannot decrypt).
    const credentials = [
      credential('recipient-domain'),
      credential('recipient-rsa', { retired: true }),
      credential('recipient2-rsa', { use: 'decrypt' }),
      credential('sender-ec256', { use: 'sign' }),
    ];
    const r = DomainRegistry.load(config([domain({ credentials })]));

    it('signers: active sign/both credentials, not retired and not decrypt-only ones', () => {
      expect(subjects(r.signers('recipient.test'))).toEqual(['CN=recipient.test', 'CN=sender@sender.test'].sort());
      // Each signer carries its chain (the intermediate of the domain certificate).
      const domainSigner = r.signers('recipient.test').find((s) => s.certificate.subject === 'CN=recipient.test');
      expect(domainSigner?.chain.map((c) => c.subject)).toContain('CN=hisp Test Intermediate CA,O=hisp tests');
    });

    it('decryptors: every RSA decryption key, retired ones too, not sign-only ones', () => {
      expect(subjects(r.decryptors('recipient.test'))).toEqual(['CN=other@recipient.test', 'CN=patient@recipient.test', 'CN=recipient.test'].sort());
      for (const d of r.decryptors('recipient.test')) expect(d.key.asymmetricKeyType).toBe('rsa');
    });

    it('encryptionCertificates: active decryption certificates only (not the retired one)', () => {
      expect(r.encryptionCertificates('recipient.test').map((c) => c.subject).sort()).toEqual(['CN=other@recipient.test', 'CN=recipient.test'].sort());
    });

    it('each decryptor key belongs to its certificate', () => {
      for (const d of r.decryptors('recipient.test')) {
        const spki = (k: KeyObject) => k.export({ format: 'der', type: 'spki' });
        expect(spki(createPublicKey(d.key)).equals(spki(d.certificate.publicKey))).toBe(true);
      }
    });
  });

  describe('anchors', () => {
    const r = DomainRegistry.load(config([domain(), domain({ name: 'sender.test', credentials: [credential('sender-domain')], addresses: [], anchors: { incoming: [cert('untrusted-root-ca')], outgoing: [] } })]));

    it('serves the configured incoming and outgoing anchors of the domain, for an address and for the domain', () => {
      expect(r.anchorsFor('patient@recipient.test', 'incoming').map((c) => c.subject)).toEqual(['CN=hisp Test Root CA,O=hisp tests']);
      expect(r.anchorsFor('patient@recipient.test', 'outgoing').map((c) => c.subject)).toEqual(['CN=hisp Test Intermediate CA,O=hisp tests']);
      expect(r.anchorsFor('recipient.test', 'incoming').map((c) => c.subject)).toEqual(['CN=hisp Test Root CA,O=hisp tests']);
    });

    it('keeps each domain to its own anchors', () => {
      expect(r.anchorsFor('x@sender.test', 'incoming').map((c) => c.subject)).toEqual(['CN=Untrusted Root CA']);
      expect(r.anchorsFor('x@sender.test', 'outgoing')).toEqual([]);
      expect(r.anchorsFor('x@other.test', 'incoming')).toEqual([]);
    });
  });

  describe('policy', () => {
    it('takes the domain policy from the configuration', () => {
      const r = DomainRegistry.load(config([domain({ policy: { minRsaBits: 3072, allowSha1: true, revocation: 'hard-fail' } })]));
      const p = r.policy('recipient.test');
      expect(p.minRsaBits).toBe(3072);
      expect(p.allowSha1).toBe(true);
      expect(p.revocation).toBe('hard-fail');
    });

    it('gives the defaults when the configuration has none', () => {
      const p = DomainRegistry.load(config([domain()])).policy('recipient.test');
      expect(p.minRsaBits).toBe(2048);
      expect(p.allowSha1).toBe(false);
      // Signature algorithms by OID.
      expect(p.allowedSignatureAlgorithms).toContain('1.2.840.113549.1.1.11');
    });

    it('keeps policies per domain', () => {
      const r = DomainRegistry.load(config([domain({ policy: { minRsaBits: 4096 } }), domain({ name: 'sender.test', credentials: [credential('sender-domain')], addresses: [] })]));
      expect(r.policy('recipient.test').minRsaBits).toBe(4096);
      expect(r.policy('sender.test').minRsaBits).toBe(2048);
    });
  });

  describe('a domain that cannot sign', () => {
    it('is refused by the configuration when its only credential is use = "decrypt"', () => {
      const err = hispError(() => config([domain({ credentials: [credential('recipient-domain', { use: 'decrypt' })] })]));
      expect(err.code).toBe('HISP_CONFIG_INVALID');
      expect(err.message).toContain('domains[0].credentials');
      expect(err.message).toContain('no active signing credential');
    });

    it('is refused by DomainRegistry.load itself (HISP_CONFIG_INVALID), for a configuration built another way', () => {
      const good = config([domain()]);
      const d = good.domains[0]!;
      const bad: HispConfig = { ...good, domains: [{ ...d, credentials: d.credentials.map((c) => ({ ...c, use: 'decrypt' as const })) }] };
      const err = hispError(() => DomainRegistry.load(bad));
      expect(err.code).toBe('HISP_CONFIG_INVALID');
      expect(err.message).toContain('recipient.test');
      expect(err.message).toContain('no active signing credential');
    });

    it('DomainRegistry.load refuses a domain whose only credentials are retired', () => {
      const good = config([domain()]);
      const d = good.domains[0]!;
      const bad: HispConfig = { ...good, domains: [{ ...d, credentials: d.credentials.map((c) => ({ ...c, retired: true })) }] };
      expect(hispError(() => DomainRegistry.load(bad)).code).toBe('HISP_CONFIG_INVALID');
    });

    it('DomainRegistry.load refuses a domain with no RSA decryption key', () => {
      const good = config([domain()]);
      const d = good.domains[0]!;
      const bad: HispConfig = { ...good, domains: [{ ...d, credentials: [{ key: credentialPaths('sender-ec256').key, cert: credentialPaths('sender-ec256').chain!, use: 'both', retired: false }] }] };
      const err = hispError(() => DomainRegistry.load(bad));
      expect(err.code).toBe('HISP_CONFIG_INVALID');
      expect(err.message).toContain('no RSA decryption credential');
    });
  });
});

describe('DomainRegistry: the Blue Button+ Patient trust bundle (R-BB-5)', () => {
  // Served from the fixtures (the fetching itself is test/integration/trust-bundle-source.test.ts's).
  const bundleFetcher = (url: URL) => Promise.resolve(readTrustFile(url.pathname.slice(1)));
  const bundleAnchors = parseTrustBundle(readTrustFile('bundle.p7b')).anchors.map((c) => c.sha256).sort();

  it('serves a patient bundle\'s anchors to patient-directed sends only; an ordinary bundle to every send', async () => {
    const r = DomainRegistry.load(
      config([domain({ anchors: { incoming: [cert('root-ca')], outgoing: [] }, bundles: [{ url: 'https://bundles.example/bundle.p7b', patient: true }] })]),
      { bundleFetcher },
    );
    await r.startBundles();
    try {
      expect(bundleAnchors.length).toBeGreaterThan(0);
      expect(r.anchorsFor('recipient.test', 'outgoing')).toEqual([]);
      expect(r.anchorsFor('patient@recipient.test', 'outgoing', { patientDirected: true }).map((c) => c.sha256).sort()).toEqual(bundleAnchors);
      // Never for what comes in.
      expect(r.anchorsFor('recipient.test', 'incoming', { patientDirected: true }).map((c) => c.sha256)).toEqual(r.anchorsFor('recipient.test', 'incoming').map((c) => c.sha256));
    } finally {
      r.stopBundles();
    }
    const ordinary = DomainRegistry.load(config([domain({ anchors: { incoming: [cert('root-ca')], outgoing: [] }, bundles: [{ url: 'https://bundles.example/bundle.p7b', direction: 'outgoing' }] })]), { bundleFetcher });
    await ordinary.startBundles();
    try {
      expect(ordinary.anchorsFor('recipient.test', 'outgoing').map((c) => c.sha256).sort()).toEqual(bundleAnchors);
    } finally {
      ordinary.stopBundles();
    }
  });

  it('a patient bundle is outgoing: another direction is a configuration error', () => {
    const err = hispError(() => config([domain({ bundles: [{ url: 'https://bundles.example/bundle.p7b', patient: true, direction: 'incoming' }] })]));
    expect(err.code).toBe('HISP_CONFIG_INVALID');
    expect(err.message).toMatch(/patient bundle serves patient-directed sends only/);
  });
});

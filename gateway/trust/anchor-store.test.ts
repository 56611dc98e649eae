import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Certificate } from '../core/certificate.js';
import { readCertificates } from '../agent/key-material.js';
import { credentialPaths, readCredentialPem, type CredentialName } from '../../test/helpers/pki.js';
import { trustCert, trustPath } from '../../test/fixtures/trust/trust-pki.js';
import { AnchorStore, scopeKey } from './anchor-store.js';
import { TrustValidator } from './trust-validator.js';
import { hispError as thrown, hispRejection as rejection } from '../../test/helpers/hisp-error.js';

const pki = (name: CredentialName) => readCertificates(Buffer.from(readCredentialPem(name).certPem))[0]!;
const rootCa = pki('root-ca');
const intermediateCa = pki('intermediate-ca');
const senderRsa = pki('sender-rsa');
const senderEc = pki('sender-ec256');
const untrustedRoot = pki('untrusted-root-ca');

const tmp = mkdtempSync(path.join(tmpdir(), 'hisp-anchors-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('AnchorStore scopes and directions (R-TRU-1, R-TRU-5)', () => {
  it('an address gets its own anchors plus its domain’s plus every-domain ones; others of the domain only the domain’s', () => {
    const store = new AnchorStore();
    store.add('hospital.test', 'incoming', [rootCa]);
    store.add('dr.who@hospital.test', 'incoming', [untrustedRoot]);
    store.add('*', 'both', [intermediateCa]);
    const sub = (cs: Certificate[]) => cs.map((c) => c.subject);
    expect(sub(store.anchorsFor('dr.who@hospital.test', 'incoming'))).toEqual([untrustedRoot.subject, rootCa.subject, intermediateCa.subject]);
    expect(sub(store.anchorsFor('nurse@hospital.test', 'incoming'))).toEqual([rootCa.subject, intermediateCa.subject]);
    expect(sub(store.anchorsFor('hospital.test', 'incoming'))).toEqual([rootCa.subject, intermediateCa.subject]);
    expect(sub(store.anchorsFor('clinic.test', 'incoming'))).toEqual([intermediateCa.subject]);
  });

  it('incoming and outgoing are separate', () => {
    const store = new AnchorStore();
    store.add('hospital.test', 'incoming', [rootCa]);
    store.add('hospital.test', ['outgoing'], [untrustedRoot]);
    expect(store.anchorsFor('a@hospital.test', 'incoming')).toEqual([rootCa]);
    expect(store.anchorsFor('a@hospital.test', 'outgoing')).toEqual([untrustedRoot]);
  });

  it('domains compare case-insensitively (trailing dot ignored), local parts too; duplicates are dropped', () => {
    const store = new AnchorStore();
    store.add('Hospital.TEST.', 'incoming', [rootCa, rootCa]);
    store.add('Dr.Who@HOSPITAL.test', 'incoming', [rootCa]);
    expect(store.anchorsFor('dr.who@hospital.test', 'incoming')).toEqual([rootCa]);
    expect(scopeKey('Dr.Who@HOSPITAL.test')).toBe('dr.who@hospital.test');
    expect(thrown(() => scopeKey('not a domain')).code).toBe('HISP_USAGE');
    expect(store.scopes().sort()).toEqual(['dr.who@hospital.test', 'hospital.test']);
  });

  it('addFile reads PEM (several certificates), DER certificates, and .p7b bundles (DER or PEM)', () => {
    const store = new AnchorStore();
    expect(store.addFile('a.test', 'incoming', credentialPaths('sender-rsa').chain!).map((c) => c.subject)).toEqual([senderRsa.subject, intermediateCa.subject]);
    expect(store.addFile('b.test', 'incoming', credentialPaths('root-ca').certDer)).toEqual([rootCa]);
    const bundleRoot = trustCert('root-ca');
    expect(store.addFile('c.test', 'incoming', trustPath('bundle.p7b'))).toEqual([bundleRoot]);
    expect(store.addFile('d.test', 'outgoing', trustPath('bundle.pem.p7b'))).toEqual([bundleRoot]);
    expect(store.anchorsFor('x@d.test', 'outgoing')).toEqual([bundleRoot]);
  });

  it('addFile errors: missing file HISP_IO, garbage HISP_KEY_UNREADABLE, a signed bundle with the wrong signer HISP_BUNDLE_SIGNATURE', () => {
    const store = new AnchorStore();
    expect(thrown(() => store.addFile('a.test', 'incoming', path.join(tmp, 'nope.pem'))).code).toBe('HISP_IO');
    const garbage = path.join(tmp, 'garbage.der');
    writeFileSync(garbage, Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]));
    expect(thrown(() => store.addFile('a.test', 'incoming', garbage)).code).toBe('HISP_KEY_UNREADABLE');
    expect(
      thrown(() => store.addFile('a.test', 'incoming', trustPath('bundle-signed-other.p7m'), { signers: [trustCert('bundle-signer')], at: new Date('2026-01-01') })).code,
    ).toBe('HISP_BUNDLE_SIGNATURE');
    expect(store.anchorsFor('a.test', 'incoming')).toEqual([]);
  });

  it('a live source is read at each lookup; removeSource unbinds it', () => {
    const store = new AnchorStore();
    const source: { anchors: readonly Certificate[]; name: string } = { anchors: [rootCa], name: 'bundle' };
    store.addSource(source, [{ scope: '*', directions: ['incoming', 'outgoing'] }]);
    expect(store.anchorsFor('a@b.test', 'outgoing')).toEqual([rootCa]);
    source.anchors = [untrustedRoot];
    expect(store.anchorsFor('a@b.test', 'incoming')).toEqual([untrustedRoot]);
    store.removeSource(source);
    expect(store.anchorsFor('a@b.test', 'incoming')).toEqual([]);
    expect(thrown(() => store.addSource(source)).code).toBe('HISP_USAGE');
  });
});

describe('an anchor may be a root, an intermediate or a pinned end-entity certificate (test PKI)', () => {
  const validator = new TrustValidator({ fetcher: () => Promise.reject(new Error('no network in this test')) });
  const at = new Date('2030-01-01T00:00:00Z');

  it('root anchor: sender-rsa → intermediate → root', async () => {
    const store = new AnchorStore();
    store.addFile('recipient.test', 'incoming', credentialPaths('root-ca').cert);
    const r = await validator.validate(senderRsa, {
      anchors: store.anchorsFor('patient@recipient.test', 'incoming'),
      intermediates: [intermediateCa],
      purpose: 'signing',
      at,
    });
    expect(r.path).toEqual([senderRsa, intermediateCa, rootCa]);
    // the test PKI names no CRL distribution point: soft-fail says so
    expect(r.revocation).toBe('unavailable');
    expect(r.warnings[0]).toMatch(/names no CRL distribution point/);
  });

  it('intermediate anchor: the path stops at the intermediate, the root is not needed', async () => {
    const store = new AnchorStore();
    store.add('recipient.test', 'incoming', [intermediateCa]);
    const r = await validator.validate(senderRsa, { anchors: store.anchorsFor('recipient.test', 'incoming'), purpose: 'signing', at, revocation: 'off' });
    expect(r.path).toEqual([senderRsa, intermediateCa]);
    expect(r.anchor).toBe(intermediateCa);
  });

  it('pinned leaf: trusted alone (no issuer needed, nothing to revoke-check), but it trusts no sibling', async () => {
    const store = new AnchorStore();
    store.add('patient@recipient.test', 'incoming', [senderRsa]);
    const anchors = store.anchorsFor('patient@recipient.test', 'incoming');
    const r = await validator.validate(senderRsa, { anchors, purpose: 'signing', at, revocation: 'hard-fail' });
    expect(r.path).toEqual([senderRsa]);
    expect(r.revocation).toBe('checked');
    const e = await rejection(validator.validate(senderEc, { anchors, intermediates: [intermediateCa], purpose: 'signing', at, revocation: 'off', aia: false }));
    expect(e.code).toBe('HISP_TRUST_NO_ANCHOR');
    // and the pin is the address's own: another address of the domain does not have it
    expect(store.anchorsFor('other@recipient.test', 'incoming')).toEqual([]);
  });

  it('an untrusted chain stays untrusted whatever the anchors of other scopes', async () => {
    const store = new AnchorStore();
    store.add('recipient.test', 'incoming', [rootCa]);
    store.add('elsewhere.test', 'incoming', [untrustedRoot]);
    const untrusted = Certificate.fromDer(readCertificates(Buffer.from(readCredentialPem('sender-untrusted').certPem))[0]!.der);
    const e = await rejection(validator.validate(untrusted, { anchors: store.anchorsFor('recipient.test', 'incoming'), purpose: 'signing', at, revocation: 'off' }));
    expect(e.code).toBe('HISP_TRUST_NO_ANCHOR');
  });
});

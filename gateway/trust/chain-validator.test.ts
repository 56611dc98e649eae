// validateChain, the offline part of the trust decision (R-TRU-2, RFC 5280 §6 as Direct needs it), on
// paths made for each rule: which certificates a HISP trusts and, when it does not, the reason the
// operator reads (the HISP_TRUST_* code and its message).
import { beforeAll, describe, expect, it } from 'vitest';
import type { Certificate } from '../core/certificate.js';
import { hispError } from '../../test/helpers/hisp-error.js';
import { KeyUsageFlags, makeCaPair, makeCertificate, type CertSpec, type MadeCertificate } from '../../test/helpers/cert-factory.js';
import { checkSignatureAlgorithm, validateChain, type ChainValidationOptions } from './chain-validator.js';

const DAY = 86_400_000;
const NOW = Date.now();
/** A validity window well away from now, so that "default now" cases are unambiguous. */
const FROM = new Date('2030-01-01T00:00:00Z');
const UNTIL = new Date('2031-01-01T00:00:00Z');

let root: MadeCertificate;
let intermediate: MadeCertificate;
let leaf: MadeCertificate;

beforeAll(async () => {
  ({ root, intermediate } = await makeCaPair('Chain'));
  leaf = await makeCertificate({ subject: 'CN=leaf', issuer: intermediate, emails: ['leaf@chain.test'] });
});

const leafUnder = (issuer: MadeCertificate, spec: Partial<CertSpec> = {}) => makeCertificate({ subject: 'CN=made leaf', issuer, ...spec });

function validate(cert: Certificate, options: Partial<ChainValidationOptions> = {}) {
  return validateChain(cert, { anchors: [root.cert], intermediates: [intermediate.cert], purpose: 'signing', ...options });
}

describe('validateChain: a good path', () => {
  it('returns the path leaf first, anchor last, and the anchor', () => {
    const r = validate(leaf.cert);
    expect(r.path).toEqual([leaf.cert, intermediate.cert, root.cert]);
    expect(r.anchor).toBe(root.cert);
  });

  it('an intermediate configured as anchor ends the path there (R-TRU-1)', () => {
    const r = validate(leaf.cert, { anchors: [intermediate.cert], intermediates: [] });
    expect(r.path).toEqual([leaf.cert, intermediate.cert]);
    expect(r.anchor).toBe(intermediate.cert);
  });

  it('a pinned end-entity certificate is a path of one', () => {
    const r = validate(leaf.cert, { anchors: [leaf.cert], intermediates: [] });
    expect(r.path).toEqual([leaf.cert]);
    expect(r.anchor).toBe(leaf.cert);
  });

  it('without intermediates, a leaf whose issuer is not an anchor has no path: HISP_TRUST_NO_ANCHOR with subject and issuer', () => {
    const e = hispError(() => validate(leaf.cert, { intermediates: [] }));
    expect(e.code).toBe('HISP_TRUST_NO_ANCHOR');
    expect(e.message).toBe('no path from CN=leaf to a trust anchor');
    expect(e.details).toEqual({ subject: 'CN=leaf', issuer: 'CN=Chain Intermediate CA' });
  });

  it('anchors of another PKI do not help', async () => {
    const other = await makeCaPair('Other');
    expect(hispError(() => validate(leaf.cert, { anchors: [other.root.cert] })).code).toBe('HISP_TRUST_NO_ANCHOR');
  });

  it('the anchor’s own signature is not checked: a SHA-1 self-signed root anchors SHA-256 paths without the legacy switch', async () => {
    const sha1Root = await makeCertificate({ subject: 'CN=SHA-1 Root', ca: true, digest: 'SHA-1' });
    const under = await leafUnder(sha1Root);
    expect(validate(under.cert, { anchors: [sha1Root.cert], intermediates: [] }).anchor).toBe(sha1Root.cert);
  });
});

describe('validateChain: validity at the validation time (RFC 5280 §6.1.3 (a)(2))', () => {
  let dated: MadeCertificate;
  beforeAll(async () => {
    dated = await leafUnder(intermediate, { notBefore: FROM, notAfter: UNTIL });
  });

  it('a certificate not yet valid is refused: HISP_TRUST_EXPIRED naming its window', () => {
    const at = new Date(FROM.getTime() - 1000);
    const e = hispError(() => validate(dated.cert, { at }));
    expect(e.code).toBe('HISP_TRUST_EXPIRED');
    expect(e.message).toBe(
      `the certificate CN=made leaf is not valid at ${at.toISOString()} (2030-01-01T00:00:00.000Z – 2031-01-01T00:00:00.000Z)`,
    );
  });

  it('valid from the first second of notBefore to the last of notAfter, both included', () => {
    expect(validate(dated.cert, { at: FROM }).path[0]).toBe(dated.cert);
    expect(validate(dated.cert, { at: UNTIL }).path[0]).toBe(dated.cert);
    expect(hispError(() => validate(dated.cert, { at: new Date(UNTIL.getTime() + 1000) })).code).toBe('HISP_TRUST_EXPIRED');
  });

  it('without `at`, the validation time is now: a certificate valid next year only is refused today', () => {
    expect(hispError(() => validate(dated.cert)).code).toBe('HISP_TRUST_EXPIRED');
  });

  it('an expired certificate is refused now, and accepted at a time inside its window', async () => {
    const old = await leafUnder(intermediate, { notBefore: new Date(NOW - 30 * DAY), notAfter: new Date(NOW - DAY) });
    expect(hispError(() => validate(old.cert)).code).toBe('HISP_TRUST_EXPIRED');
    expect(validate(old.cert, { at: new Date(NOW - 2 * DAY) }).path).toHaveLength(3);
  });

  it('an intermediate not yet valid voids the path, and the message names it as the intermediate', async () => {
    const futureCa = await makeCertificate({ subject: 'CN=Future CA', issuer: root, ca: true, notBefore: new Date(NOW + DAY), notAfter: new Date(NOW + 10 * DAY) });
    const under = await leafUnder(futureCa);
    const e = hispError(() => validate(under.cert, { intermediates: [futureCa.cert] }));
    expect(e.code).toBe('HISP_TRUST_EXPIRED');
    expect(e.message).toMatch(/^an intermediate CN=Future CA is not valid at /);
    expect(validate(under.cert, { intermediates: [futureCa.cert], at: new Date(NOW + 2 * DAY) }).path).toHaveLength(3);
  });

  it('an expired anchor is named as the anchor', async () => {
    const oldRoot = await makeCertificate({ subject: 'CN=Old Root', ca: true, notBefore: new Date(NOW - 30 * DAY), notAfter: new Date(NOW - DAY) });
    const under = await leafUnder(oldRoot);
    const e = hispError(() => validateChain(under.cert, { anchors: [oldRoot.cert], purpose: 'signing' }));
    expect(e.code).toBe('HISP_TRUST_EXPIRED');
    expect(e.message).toMatch(/^the anchor CN=Old Root is not valid at /);
  });
});

describe('validateChain: issuers (RFC 5280 §4.2.1.9, §6.1.4)', () => {
  it('an issuer whose basicConstraints say CA:FALSE cannot issue: HISP_TRUST_BASIC_CONSTRAINTS', async () => {
    const notCa = await makeCertificate({ subject: 'CN=Not a CA', issuer: root, ca: false, keyUsage: KeyUsageFlags.keyCertSign });
    const under = await leafUnder(notCa);
    const e = hispError(() => validate(under.cert, { intermediates: [notCa.cert] }));
    expect(e.code).toBe('HISP_TRUST_BASIC_CONSTRAINTS');
    expect(e.message).toBe('CN=Not a CA issues CN=made leaf but is not a CA (basicConstraints CA:FALSE)');
  });

  it('an issuer without basicConstraints is not a CA either', async () => {
    const noBc = await makeCertificate({ subject: 'CN=No BC', issuer: root, ca: null, keyUsage: KeyUsageFlags.keyCertSign });
    const under = await leafUnder(noBc);
    const e = hispError(() => validate(under.cert, { intermediates: [noBc.cert] }));
    expect(e.code).toBe('HISP_TRUST_BASIC_CONSTRAINTS');
    expect(e.message).toContain('(basicConstraints absent)');
  });

  it('pathLenConstraint counts the intermediates below the issuer', async () => {
    const r0 = await makeCertificate({ subject: 'CN=Root pathLen 0', ca: 0 });
    const i0 = await makeCertificate({ subject: 'CN=Under pathLen 0', issuer: r0, ca: true });
    const direct = await leafUnder(r0);
    const below = await leafUnder(i0);
    // pathLen 0: the root may issue end entities only
    expect(validateChain(direct.cert, { anchors: [r0.cert], purpose: 'signing' }).path).toHaveLength(2);
    const e = hispError(() => validateChain(below.cert, { anchors: [r0.cert], intermediates: [i0.cert], purpose: 'signing' }));
    expect(e.code).toBe('HISP_TRUST_BASIC_CONSTRAINTS');
    expect(e.message).toBe('CN=Root pathLen 0 allows a path length of 0');
    // pathLen 1: one intermediate below is fine
    const r1 = await makeCertificate({ subject: 'CN=Root pathLen 1', ca: 1 });
    const i1 = await makeCertificate({ subject: 'CN=Under pathLen 1', issuer: r1, ca: 0 });
    const leaf1 = await leafUnder(i1);
    expect(validateChain(leaf1.cert, { anchors: [r1.cert], intermediates: [i1.cert], purpose: 'signing' }).path).toHaveLength(3);
  });

  it('an issuer whose keyUsage lacks keyCertSign cannot issue: HISP_TRUST_KEY_USAGE; without keyUsage it may', async () => {
    const noSign = await makeCertificate({ subject: 'CN=CRL only', issuer: root, ca: true, keyUsage: KeyUsageFlags.cRLSign });
    const under = await leafUnder(noSign);
    const e = hispError(() => validate(under.cert, { intermediates: [noSign.cert] }));
    expect(e.code).toBe('HISP_TRUST_KEY_USAGE');
    expect(e.message).toBe('CN=CRL only lacks keyCertSign');
    const noKu = await makeCertificate({ subject: 'CN=No KU CA', issuer: root, ca: true, keyUsage: null });
    const under2 = await leafUnder(noKu);
    expect(validate(under2.cert, { intermediates: [noKu.cert] }).path).toHaveLength(3);
  });

  it('a certificate whose signature does not verify with its issuer’s key: HISP_TRUST_BAD_SIGNATURE', async () => {
    // same issuer name, another key, no key identifiers to rule it out early
    const impostor = await makeCertificate({ subject: 'CN=Chain Intermediate CA', issuer: root, ca: true, keyIds: false });
    const forged = await makeCertificate({ subject: 'CN=forged', issuer: impostor, keyIds: false });
    const e = hispError(() => validate(forged.cert));
    expect(e.code).toBe('HISP_TRUST_BAD_SIGNATURE');
    expect(e.message).toBe('the signature of CN=forged does not verify with CN=Chain Intermediate CA');
  });

  it('an issuer candidate whose subjectKeyIdentifier disagrees with the authorityKeyIdentifier is not tried (NO_ANCHOR, not BAD_SIGNATURE)', async () => {
    const impostor = await makeCertificate({ subject: 'CN=Chain Intermediate CA', issuer: root, ca: true });
    const forged = await makeCertificate({ subject: 'CN=forged', issuer: impostor });
    expect(hispError(() => validate(forged.cert)).code).toBe('HISP_TRUST_NO_ANCHOR');
    // with only one side of the key identifiers, the candidate is tried (and its signature fails)
    const noAki = await makeCertificate({ subject: 'CN=forged', issuer: impostor, keyIds: false });
    expect(hispError(() => validate(noAki.cert)).code).toBe('HISP_TRUST_BAD_SIGNATURE');
  });

  it('of two same-named issuers, the one whose key signed the leaf is found, in either order', async () => {
    const twinKeys = await makeCertificate({ subject: 'CN=Twin CA', issuer: root, ca: true, keyIds: false });
    const twin = await makeCertificate({ subject: 'CN=Twin CA', issuer: root, ca: true, keyIds: false });
    const under = await makeCertificate({ subject: 'CN=twin leaf', issuer: twinKeys, keyIds: false });
    for (const order of [
      [twin.cert, twinKeys.cert],
      [twinKeys.cert, twin.cert],
    ]) {
      expect(validate(under.cert, { intermediates: order }).path[1]).toBe(twinKeys.cert);
    }
  });

  it('when every path fails, the most specific reason is reported whatever the order tried', async () => {
    // the leaf's issuer name has two anchors: one with another key (BAD_SIGNATURE), the real one expired (EXPIRED)
    const realKey = await makeCertificate({ subject: 'CN=Spec CA', ca: true, keyIds: false, notBefore: new Date(NOW - 30 * DAY), notAfter: new Date(NOW - DAY) });
    const otherKey = await makeCertificate({ subject: 'CN=Spec CA', ca: true, keyIds: false });
    const under = await makeCertificate({ subject: 'CN=spec leaf', issuer: realKey, keyIds: false });
    for (const anchors of [
      [realKey.cert, otherKey.cert],
      [otherKey.cert, realKey.cert],
    ]) {
      expect(hispError(() => validateChain(under.cert, { anchors, purpose: 'signing' })).code).toBe('HISP_TRUST_EXPIRED');
    }
  });

  it('of a defective issuer and a forged one, the defect is reported, not the forged signature (the most specific reason)', async () => {
    // Two intermediates of one name and key: I1 issued by the root with a defect, I2 "issued by the
    // root" but signed by another key. The operator must read I1's defect, whatever the order tried.
    const fakeRoot = await makeCertificate({ subject: 'CN=Chain Root CA', ca: true, keyIds: false });
    const cases: [string, Partial<CertSpec>][] = [
      ['HISP_TRUST_WEAK_SIGNATURE', { digest: 'SHA-1', key: { kind: 'rsa', bits: 2048 } }],
      ['HISP_TRUST_WEAK_KEY', { key: { kind: 'rsa', bits: 1024 } }],
      ['HISP_TRUST_KEY_USAGE', { keyUsage: KeyUsageFlags.cRLSign }],
      ['HISP_TRUST_BASIC_CONSTRAINTS', { ca: false, keyUsage: KeyUsageFlags.keyCertSign }],
    ];
    for (const [code, defect] of cases) {
      const i1 = await makeCertificate({ subject: 'CN=Twin I', issuer: root, ca: true, keyIds: false, ...defect });
      const i2 = await makeCertificate({ subject: 'CN=Twin I', issuer: fakeRoot, keys: i1.keys, ca: true, keyIds: false, key: defect.key });
      const under = await makeCertificate({ subject: 'CN=twin leaf', issuer: i1, keyIds: false });
      for (const order of [
        [i1.cert, i2.cert],
        [i2.cert, i1.cert],
      ]) {
        expect(hispError(() => validate(under.cert, { intermediates: order })).code, code).toBe(code);
      }
    }
  });

  it('a loop of cross-certified CAs without an anchor ends: HISP_TRUST_NO_ANCHOR', async () => {
    const aKeys = await makeCertificate({ subject: 'CN=Loop A', ca: true, keyIds: false });
    const bKeys = await makeCertificate({ subject: 'CN=Loop B', ca: true, keyIds: false });
    // A certified by B, B certified by A: neither self-issued
    const aByB = await makeCertificate({ subject: 'CN=Loop A', issuer: bKeys, keys: aKeys.keys, ca: true, keyIds: false });
    const bByA = await makeCertificate({ subject: 'CN=Loop B', issuer: aKeys, keys: bKeys.keys, ca: true, keyIds: false });
    const under = await makeCertificate({ subject: 'CN=loop leaf', issuer: aKeys, keyIds: false });
    expect(hispError(() => validate(under.cert, { intermediates: [aByB.cert, bByA.cert] })).code).toBe('HISP_TRUST_NO_ANCHOR');
  });

  it('paths of up to eight certificates are built, longer ones are not', async () => {
    const chainOf = async (intermediates: number) => {
      const top = await makeCertificate({ subject: `CN=Long Root ${intermediates}`, ca: true });
      const cas: MadeCertificate[] = [];
      let issuer = top;
      for (let i = 0; i < intermediates; i++) {
        issuer = await makeCertificate({ subject: `CN=Long ${intermediates} CA ${i}`, issuer, ca: true });
        cas.push(issuer);
      }
      const end = await leafUnder(issuer);
      return () => validateChain(end.cert, { anchors: [top.cert], intermediates: cas.map((c) => c.cert), purpose: 'signing' });
    };
    expect((await chainOf(6))().path).toHaveLength(8);
    expect(hispError(await chainOf(7)).code).toBe('HISP_TRUST_NO_ANCHOR');
  });
});

describe('validateChain: the leaf’s key (R-CRT-4, R-ENC-4)', () => {
  it('signing needs digitalSignature, encryption keyEncipherment, when the leaf has a keyUsage extension', async () => {
    const encOnly = await leafUnder(intermediate, { keyUsage: KeyUsageFlags.keyEncipherment });
    const e = hispError(() => validate(encOnly.cert, { purpose: 'signing' }));
    expect(e.code).toBe('HISP_TRUST_KEY_USAGE');
    expect(e.message).toBe('CN=made leaf lacks the digitalSignature key usage needed for signing');
    expect(validate(encOnly.cert, { purpose: 'encryption' }).path).toHaveLength(3);

    const sigOnly = await leafUnder(intermediate, { keyUsage: KeyUsageFlags.digitalSignature });
    expect(hispError(() => validate(sigOnly.cert, { purpose: 'encryption' })).message).toBe(
      'CN=made leaf lacks the keyEncipherment key usage needed for encryption',
    );
    expect(validate(sigOnly.cert, { purpose: 'signing' }).path).toHaveLength(3);
  });

  it('a leaf without keyUsage may do both (RFC 5280 §4.2.1.3)', async () => {
    const noKu = await leafUnder(intermediate, { keyUsage: null });
    expect(validate(noKu.cert, { purpose: 'signing' }).path).toHaveLength(3);
    expect(validate(noKu.cert, { purpose: 'encryption' }).path).toHaveLength(3);
  });

  it('RSA keys below 2048 bits are refused (HISP_TRUST_WEAK_KEY) unless minRsaBits allows them; 2048 passes', async () => {
    const small = await leafUnder(intermediate, { key: { kind: 'rsa', bits: 1024 } });
    const e = hispError(() => validate(small.cert));
    expect(e.code).toBe('HISP_TRUST_WEAK_KEY');
    expect(e.message).toBe('the certificate CN=made leaf has an RSA-1024 key; at least 2048 bits are required (R-ENC-4)');
    expect(validate(small.cert, { minRsaBits: 1024 }).path).toHaveLength(3);
    expect(hispError(() => validate(small.cert, { minRsaBits: 1025 })).code).toBe('HISP_TRUST_WEAK_KEY');
    const enough = await leafUnder(intermediate, { key: { kind: 'rsa', bits: 2048 } });
    expect(validate(enough.cert).path).toHaveLength(3);
  });

  it('an intermediate with a small RSA key voids the path too', async () => {
    const weakCa = await makeCertificate({ subject: 'CN=Weak CA', issuer: root, ca: true, key: { kind: 'rsa', bits: 1024 } });
    const under = await leafUnder(weakCa);
    const e = hispError(() => validate(under.cert, { intermediates: [weakCa.cert] }));
    expect(e.code).toBe('HISP_TRUST_WEAK_KEY');
    expect(e.message).toMatch(/^an intermediate CN=Weak CA has an RSA-1024 key/);
  });
});

describe('validateChain and checkSignatureAlgorithm: SHA-1 and MD5 (requirements §5.7)', () => {
  it('a SHA-1-signed certificate is refused without the legacy switch and accepted with it', async () => {
    const sha1 = await leafUnder(intermediate, { digest: 'SHA-1' });
    const e = hispError(() => validate(sha1.cert));
    expect(e.code).toBe('HISP_TRUST_WEAK_SIGNATURE');
    expect(e.message).toBe('CN=made leaf is signed with SHA-1, refused unless the legacy SHA-1 switch is on (--allow-sha1)');
    expect(validate(sha1.cert, { allowSha1: true }).path).toHaveLength(3);
  });

  it('a SHA-1-signed RSA intermediate is refused the same way', async () => {
    const rsaRoot = await makeCertificate({ subject: 'CN=RSA Root', ca: true, key: { kind: 'rsa', bits: 2048 } });
    const sha1Ca = await makeCertificate({ subject: 'CN=SHA-1 CA', issuer: rsaRoot, ca: true, digest: 'SHA-1' });
    const under = await leafUnder(sha1Ca);
    const e = hispError(() => validateChain(under.cert, { anchors: [rsaRoot.cert], intermediates: [sha1Ca.cert], purpose: 'signing' }));
    expect(e.code).toBe('HISP_TRUST_WEAK_SIGNATURE');
    expect(e.message).toMatch(/^CN=SHA-1 CA is signed with SHA-1/);
  });

  it('checkSignatureAlgorithm: every SHA-1 and MD2/4/5 signature OID, with and without the switch', () => {
    const withOid = (oid: string) => ({ signatureAlgorithmOid: oid, subject: 'CN=x' }) as Certificate;
    for (const oid of ['1.2.840.113549.1.1.2', '1.2.840.113549.1.1.3', '1.2.840.113549.1.1.4', '1.3.14.3.2.3']) {
      for (const allow of [false, true]) {
        const e = hispError(() => checkSignatureAlgorithm(withOid(oid), allow));
        expect(e.code, oid).toBe('HISP_TRUST_WEAK_SIGNATURE');
        expect(e.message).toBe('CN=x is signed with MD5/MD2, never accepted');
      }
    }
    for (const oid of ['1.2.840.113549.1.1.5', '1.2.840.10045.4.1', '1.2.840.10040.4.3', '1.3.14.3.2.29', '1.3.14.3.2.27', '1.3.14.3.2.13']) {
      expect(hispError(() => checkSignatureAlgorithm(withOid(oid), false)).code, oid).toBe('HISP_TRUST_WEAK_SIGNATURE');
      expect(() => checkSignatureAlgorithm(withOid(oid), true)).not.toThrow();
    }
    for (const oid of ['1.2.840.113549.1.1.11', '1.2.840.10045.4.3.2', '1.2.840.113549.1.1.10']) {
      expect(() => checkSignatureAlgorithm(withOid(oid), false)).not.toThrow();
    }
  });
});

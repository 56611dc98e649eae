// The certificate–entity binding of AS §4.1 (R-CRT-1, R-CRT-2, requirements §5.8), on certificates made
// for each case: which address or domain a certificate may sign or be encrypted for.
import { beforeAll, describe, expect, it } from 'vitest';
import { DirectAddress } from '../core/direct-address.js';
import { hispError } from '../../test/helpers/hisp-error.js';
import { makeCertificate, type MadeCertificate } from '../../test/helpers/cert-factory.js';
import { checkBinding } from './name-binding.js';

const patient = DirectAddress.parse('patient@direct.example.test');
let ca: MadeCertificate;

beforeAll(async () => {
  ca = await makeCertificate({ subject: 'CN=Binding CA', ca: true });
});

const leaf = (subject: string, names: { emails?: string[]; dnsNames?: string[] } = {}) => makeCertificate({ subject, issuer: ca, ...names });

describe('checkBinding: address- and domain-bound certificates (R-CRT-1)', () => {
  it('an rfc822Name equal to the address binds the certificate to the address', async () => {
    const { cert } = await leaf('CN=patient', { emails: ['patient@direct.example.test'] });
    expect(checkBinding(cert, patient)).toBe('address');
    // the domain part compares without regard to case (RFC 5321 §2.4)
    expect(checkBinding(cert, DirectAddress.parse('patient@DIRECT.Example.test'))).toBe('address');
  });

  it('a dNSName equal to the domain binds the certificate to every address of the domain, trailing dot and case aside', async () => {
    const { cert } = await leaf('CN=direct.example.test', { dnsNames: ['Direct.Example.Test.'] });
    expect(checkBinding(cert, patient)).toBe('domain');
    expect(checkBinding(cert, DirectAddress.parse('someone.else@direct.example.test'))).toBe('domain');
  });

  it('an address certificate prefers its address binding over a dNSName it also carries', async () => {
    const { cert } = await leaf('CN=both', { emails: ['patient@direct.example.test'], dnsNames: ['direct.example.test'] });
    expect(checkBinding(cert, patient)).toBe('address');
  });

  it('a certificate of another address of the same domain does not bind: HISP_TRUST_BINDING_MISMATCH naming what it is bound to', async () => {
    const { cert } = await leaf('CN=other', { emails: ['doctor@direct.example.test'] });
    const e = hispError(() => checkBinding(cert, patient));
    expect(e.code).toBe('HISP_TRUST_BINDING_MISMATCH');
    expect(e.message).toContain('rfc822Name doctor@direct.example.test');
    expect(e.message).toContain('not to patient@direct.example.test');
  });

  it('the refusal lists every name the certificate is bound to', async () => {
    const { cert } = await leaf('CN=two names', { emails: ['doctor@direct.example.test', 'nurse@direct.example.test'], dnsNames: ['other.test'] });
    expect(hispError(() => checkBinding(cert, patient)).message).toBe(
      'CN=two names is bound to rfc822Name doctor@direct.example.test, rfc822Name nurse@direct.example.test, dNSName other.test, not to patient@direct.example.test or its domain',
    );
  });

  it('a dNSName of a parent or sub domain, or a wildcard, does not bind (no wildcards, Applicability Statement 1.3)', async () => {
    for (const dns of ['example.test', 'sub.direct.example.test', '*.example.test']) {
      const { cert } = await leaf(`CN=${dns}`, { dnsNames: [dns] });
      const e = hispError(() => checkBinding(cert, patient));
      expect(e.code, dns).toBe('HISP_TRUST_BINDING_MISMATCH');
      expect(e.message).toContain(`dNSName ${dns}`);
    }
  });

  it('a certificate without subjectAltName is bound to nothing, even with the address as its subject emailAddress', async () => {
    const { cert } = await leaf('CN=patient, E=patient@direct.example.test');
    const e = hispError(() => checkBinding(cert, patient));
    expect(e.code).toBe('HISP_TRUST_BINDING_MISMATCH');
    expect(e.message).toContain('has no subjectAltName');
    expect(e.message).toContain('R-CRT-1');
  });

  it('an rfc822Name that is not an address is ignored, not a crash', async () => {
    const { cert } = await leaf('CN=odd', { emails: ['not an address', 'patient@direct.example.test'] });
    expect(checkBinding(cert, patient)).toBe('address');
  });
});

describe('checkBinding: a subject emailAddress that contradicts the subjectAltName voids the certificate (R-CRT-2)', () => {
  it('refuses a certificate whose rfc822Name is the address when its subject emailAddress names someone else', async () => {
    const { cert } = await leaf('CN=patient, E=mallory@elsewhere.test', { emails: ['patient@direct.example.test'] });
    const e = hispError(() => checkBinding(cert, patient));
    expect(e.code).toBe('HISP_TRUST_BINDING_MISMATCH');
    expect(e.message).toContain('subject emailAddress mallory@elsewhere.test differs from its subjectAltName (R-CRT-2)');
  });

  it('refuses it also when the emailAddress is another address of the same domain', async () => {
    const { cert } = await leaf('CN=patient, E=doctor@direct.example.test', { emails: ['patient@direct.example.test'] });
    expect(hispError(() => checkBinding(cert, patient)).message).toContain('R-CRT-2');
  });

  it('accepts a subject emailAddress that repeats an rfc822Name (domain in another case)', async () => {
    const { cert } = await leaf('CN=patient, E=patient@DIRECT.example.test', { emails: ['patient@direct.example.test'] });
    expect(checkBinding(cert, patient)).toBe('address');
  });

  it('accepts an emailAddress equal to any one of several rfc822Names', async () => {
    const { cert } = await leaf('CN=two, E=patient@direct.example.test', { emails: ['first@direct.example.test', 'patient@direct.example.test'] });
    expect(checkBinding(cert, DirectAddress.parse('first@direct.example.test'))).toBe('address');
  });

  it('judges every subject emailAddress, not only the first', async () => {
    const { cert } = await leaf('CN=patient, E=patient@direct.example.test, E=mallory@elsewhere.test', { emails: ['patient@direct.example.test'] });
    expect(hispError(() => checkBinding(cert, patient)).message).toContain('mallory@elsewhere.test differs');
  });

  it('a domain-bound certificate (dNSName only) with an organisational emailAddress stays bound to its domain', async () => {
    const { cert } = await leaf('CN=direct.example.test, E=admin@operator.test', { dnsNames: ['direct.example.test'] });
    expect(checkBinding(cert, patient)).toBe('domain');
  });

  it('an emailAddress that is not an address contradicts nothing', async () => {
    const { cert } = await leaf('CN=patient, E=not-an-address', { emails: ['patient@direct.example.test'] });
    expect(checkBinding(cert, patient)).toBe('address');
  });
});

import { describe, expect, it } from 'vitest';
import { addressInScopes, normalizeScope } from './address-scope.js';
import { DirectAddress } from './direct-address.js';

describe('addressInScopes', () => {
  it('takes a full address or any address of an @domain, case-insensitively', () => {
    const scopes = ['ehr@hospital.example', '@clinic.example'];
    expect(addressInScopes(scopes, 'ehr@hospital.example')).toBe(true);
    expect(addressInScopes(scopes, 'EHR@Hospital.Example')).toBe(true);
    expect(addressInScopes(scopes, 'anyone@CLINIC.example')).toBe(true);
    expect(addressInScopes(scopes, DirectAddress.parse('doc@clinic.example.'))).toBe(true);
    expect(addressInScopes(['@clinic.example.'], 'doc@clinic.example')).toBe(true);
  });

  it('refuses other addresses, subdomains, look-alikes and what is not an address', () => {
    const scopes = ['ehr@hospital.example', '@clinic.example'];
    expect(addressInScopes(scopes, 'other@hospital.example')).toBe(false);
    expect(addressInScopes(scopes, 'doc@sub.clinic.example')).toBe(false);
    expect(addressInScopes(scopes, 'doc@clinic.example.evil')).toBe(false);
    expect(addressInScopes(scopes, 'clinic.example')).toBe(false);
    expect(addressInScopes(scopes, '@clinic.example')).toBe(false);
    expect(addressInScopes([], 'ehr@hospital.example')).toBe(false);
  });
});

describe('normalizeScope', () => {
  it('keeps addresses and @domains in one form', () => {
    expect(normalizeScope(' EHR@Hospital.Example. ')).toBe('EHR@hospital.example');
    expect(normalizeScope('@Clinic.Example.')).toBe('@clinic.example');
  });

  it('refuses what is neither', () => {
    for (const bad of ['', '@', 'clinic.example', '@-bad-.example', '@a..b', 'a@b c', `a@${'x'.repeat(64)}.example`, `${'a'.repeat(320)}@b.example`]) {
      expect(normalizeScope(bad), bad).toBeUndefined();
    }
  });
});

import { describe, expect, it } from 'vitest';
import { hispError } from '../../test/helpers/hisp-error.js';
import { uuidOid, XdsOidMinter } from './xds-oid-minter.js';

describe('XdsOidMinter', () => {
  it("writes a UUID as the 2.25 OID of ITU-T X.667 (the standard's own example)", () => {
    expect(uuidOid('f81d4fae-7dec-11d0-a765-00a0c91e6bf6')).toBe('2.25.329800735698586629295641978511506172918');
  });

  it('mints ids under a root, one batch per minter, counting from 1; and 2.25 OIDs without one', () => {
    const a = new XdsOidMinter('1.2.3');
    const [first, second] = [a.next(), a.next()];
    expect(first).toMatch(/^1\.2\.3\.(\d+)\.1$/);
    expect(second).toBe(first.replace(/1$/, '2'));
    expect(new XdsOidMinter('1.2.3').next()).not.toBe(first);
    expect(new XdsOidMinter().next()).toMatch(/^2\.25\.[1-9]\d{0,38}$/);
  });

  it('refuses a root that is not an OID, or too long to mint 64-character ids under (HISP_USAGE)', () => {
    for (const root of ['', '1', '1.02', '3.1', '1.2.', 'urn:oid:1.2']) expect(hispError(() => new XdsOidMinter(root)).code).toBe('HISP_USAGE');
    expect(hispError(() => new XdsOidMinter(`1.${'2'.repeat(40)}`).next()).message).toMatch(/too long/);
    // Decided by the root's length alone (38 characters at most), whatever batch a minter draws.
    for (let i = 0; i < 50; i++) expect(new XdsOidMinter(`1.${'2'.repeat(36)}`).next().length).toBeLessThanOrEqual(64);
    expect(hispError(() => new XdsOidMinter(`1.${'2'.repeat(37)}`)).message).toMatch(/too long/);
  });
});

import { scryptSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hispError } from '../../test/helpers/hisp-error.js';
import { hashPassword, parsePasswordHash, PASSWORD_HASH_DEFAULTS, verifyPassword } from './password-hash.js';

describe('password hashes (scrypt$N$r$p$saltB64$hashB64)', () => {
  it('round-trips: the right password verifies, a wrong one does not', async () => {
    const hash = await hashPassword('correct horse battery staple');
    expect(hash).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/);
    expect(await verifyPassword('correct horse battery staple', hash)).toBe(true);
    expect(await verifyPassword('correct horse battery stapler', hash)).toBe(false);
    expect(await verifyPassword('', hash)).toBe(false);
  });

  it('salts every hash, and normalizes the password (NFC) first', async () => {
    const [a, b] = await Promise.all([hashPassword('same password'), hashPassword('same password')]);
    expect(a).not.toBe(b);
    const composed = await hashPassword('caf\u00e9-password');
    expect(await verifyPassword('cafe\u0301-password', composed)).toBe(true);
  });

  it('is the documented form: another implementation of scrypt with the same parameters verifies', async () => {
    const salt = Buffer.alloc(16, 7);
    const key = scryptSync('interop', salt, 32, { N: 16384, r: 8, p: 1 });
    expect(await verifyPassword('interop', `scrypt$16384$8$1$${salt.toString('base64')}$${key.toString('base64')}`)).toBe(true);
    // Base64 padding is optional.
    expect(await verifyPassword('interop', `scrypt$16384$8$1$${salt.toString('base64').replace(/=+$/, '')}$${key.toString('base64').replace(/=+$/, '')}`)).toBe(true);
  });

  it('refuses malformed and weak parameters without echoing the hash, and never verifies against them', async () => {
    const salt = Buffer.alloc(16).toString('base64');
    const key = Buffer.alloc(32).toString('base64');
    for (const [bad, why] of [
      ['plaintext-password', 'not a password hash'],
      [`bcrypt$10$${salt}$${key}`, 'not a password hash'],
      [`scrypt$1024$8$1$${salt}$${key}`, 'power of two from 2^14'],
      [`scrypt$20000$8$1$${salt}$${key}`, 'power of two'],
      [`scrypt$16384$0$1$${salt}$${key}`, 'r must be'],
      [`scrypt$16384$8$99$${salt}$${key}`, 'p must be'],
      [`scrypt$16384$8$1$AAAA$${key}`, 'salt must have at least 16 bytes'],
      [`scrypt$16384$8$1$${salt}$AAAA`, 'derived key must have'],
    ] as const) {
      const err = hispError(() => parsePasswordHash(bad));
      expect(err.message).toContain(why);
      expect(err.message).not.toContain(bad);
      expect(await verifyPassword('x', bad)).toBe(false);
    }
    expect(parsePasswordHash(`scrypt$16384$8$1$${salt}$${key}`)).toMatchObject({ N: 16384, r: 8, p: 1 });
    expect(PASSWORD_HASH_DEFAULTS.N).toBe(32768);
  });

  it('refuses to hash an empty password', async () => {
    await expect(hashPassword('')).rejects.toMatchObject({ code: 'HISP_USAGE' });
  });
});

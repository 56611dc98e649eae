import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { HispError } from '../core/errors.js';

/**
 * Password hashes of the submission accounts (`submission.users[].passwordHash`), with node:crypto's
 * scrypt (RFC 7914). The string form is
 *
 *     scrypt$N$r$p$saltB64$hashB64
 *
 * N (CPU/memory cost, a power of two), r (block size) and p (parallelisation) as decimal numbers,
 * then the salt and the derived key in standard base64 (padding optional). `hashPassword` uses
 * N = 2^15, r = 8, p = 1 (32 MiB, about 50-100 ms), a 16-byte random salt and a 32-byte key;
 * `verifyPassword` accepts any parameters in the ranges below, so they can be raised later without
 * invalidating existing hashes. The password is NFC-normalized first (the same text typed on two
 * systems gives the same bytes). `hisp config hash-password` prints a hash for the configuration.
 */

export interface PasswordHashParameters {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

export const PASSWORD_HASH_DEFAULTS = { N: 2 ** 15, r: 8, p: 1, saltBytes: 16, keyBytes: 32 } as const;

/** Accepted ranges: weaker parameters are refused as a configuration error; stronger ones as a denial of service. */
const LIMITS = { minN: 2 ** 14, maxN: 2 ** 20, maxR: 32, maxP: 16, minSalt: 16, minKey: 16, maxKey: 128 } as const;

const FORM = /^scrypt\$(\d{1,8})\$(\d{1,3})\$(\d{1,3})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

/**
 * Parses and checks a hash string; throws HISP_USAGE saying what is wrong with it (never echoing it:
 * a hash is not the password, but it is still kept out of messages and logs).
 */
export function parsePasswordHash(text: string): PasswordHashParameters {
  const m = FORM.exec(text);
  if (!m) throw new HispError('HISP_USAGE', 'not a password hash of the form scrypt$N$r$p$saltB64$hashB64 (see `hisp config hash-password`)');
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const salt = Buffer.from(m[4] ?? '', 'base64');
  const hash = Buffer.from(m[5] ?? '', 'base64');
  if (N < LIMITS.minN || N > LIMITS.maxN || (N & (N - 1)) !== 0) {
    throw new HispError('HISP_USAGE', `scrypt N must be a power of two from 2^14 to 2^20 (got ${N})`);
  }
  if (r < 1 || r > LIMITS.maxR) throw new HispError('HISP_USAGE', `scrypt r must be from 1 to ${LIMITS.maxR} (got ${r})`);
  if (p < 1 || p > LIMITS.maxP) throw new HispError('HISP_USAGE', `scrypt p must be from 1 to ${LIMITS.maxP} (got ${p})`);
  if (salt.length < LIMITS.minSalt) throw new HispError('HISP_USAGE', `the salt must have at least ${LIMITS.minSalt} bytes (got ${salt.length})`);
  if (hash.length < LIMITS.minKey || hash.length > LIMITS.maxKey) {
    throw new HispError('HISP_USAGE', `the derived key must have ${LIMITS.minKey} to ${LIMITS.maxKey} bytes (got ${hash.length})`);
  }
  return { N, r, p, salt, hash };
}

function derive(password: string, salt: Buffer, keyBytes: number, N: number, r: number, p: number): Promise<Buffer> {
  // scrypt needs 128·N·r bytes (plus 128·r·p); Node's default maxmem (32 MiB) is just short for N = 2^15, r = 8.
  const options: ScryptOptions = { N, r, p, maxmem: 256 * N * r + 256 * r * p };
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, keyBytes, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** A new hash of `password` in the string form above (random salt). Runs on the libuv thread pool. */
export async function hashPassword(password: string): Promise<string> {
  if (password.length === 0) throw new HispError('HISP_USAGE', 'the password is empty');
  const { N, r, p, saltBytes, keyBytes } = PASSWORD_HASH_DEFAULTS;
  const salt = randomBytes(saltBytes);
  const key = await derive(password, salt, keyBytes, N, r, p);
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/**
 * True when `password` matches `hash`, compared in constant time (timingSafeEqual). A malformed
 * hash never matches (loadConfig refuses such hashes, so this is a safety net).
 */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  let parsed: PasswordHashParameters;
  try {
    parsed = parsePasswordHash(hash);
  } catch {
    return false;
  }
  const key = await derive(password, parsed.salt, parsed.hash.length, parsed.N, parsed.r, parsed.p);
  return timingSafeEqual(key, parsed.hash);
}

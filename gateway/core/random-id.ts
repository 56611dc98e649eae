import { randomUUID } from 'node:crypto';

/**
 * `digits` (at most 30) random hexadecimal digits for an identifier that must be unique, not secret
 * (message ids, audit entries, transmissions), from Node's randomUUID, which draws its randomness
 * from the system generator 128 UUIDs at a time. A synchronous randomBytes call per identifier
 * cost 15-30 µs on a gateway's main thread while its crypto workers draw random octets too (the
 * profiles of bench/api-bench.ts and bench/transmit-bench.ts), against under 1 µs here.
 *
 * A version 4 UUID (RFC 9562 §5.4) has 122 random bits: its version digit (the 13th) and the two
 * variant bits of its 17th digit are fixed, so both digits are left out; 30 digits remain.
 */
export function randomHexId(digits: number): string {
  if (!Number.isInteger(digits) || digits < 1 || digits > 30) throw new RangeError(`randomHexId: 1-30 digits, not ${digits}`);
  const u = randomUUID();
  // xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx
  return (u.slice(0, 8) + u.slice(9, 13) + u.slice(15, 18) + u.slice(20, 23) + u.slice(24)).slice(0, digits);
}

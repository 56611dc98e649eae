/**
 * Failed SMTP AUTH attempts per client key (client-key.ts) and per user name (issue 14, item 3):
 * `maxFailures` failures within `windowMs` lock that key out for `lockoutMs`. While locked, AUTH
 * is answered 454 4.7.0 (RFC 4954 §6: temporary authentication failure) without checking the
 * password, so a guesser learns nothing more and costs no scrypt. A success clears the key's
 * failures.
 *
 * A lock per user name is also a lock an attacker can put on a real account: it is counted apart
 * from the per-client one, with a larger threshold, so that one client alone is stopped by its own
 * lock well before it locks the account (docs/gateway.md, "AUTH limits").
 *
 * Memory is bounded: at most `maxKeys` keys (the least recently failed forgotten first), each
 * holding at most `maxFailures` times.
 */
export interface AuthLimiterOptions {
  /** Failures within the window that lock the key; 0: never locked. */
  maxFailures: number;
  windowMs: number;
  lockoutMs: number;
  /** Default 65,536. */
  maxKeys?: number;
  now?: () => number;
}

interface Failures {
  /** Times of the failures within the window, oldest first. */
  times: number[];
  lockedUntil: number;
}

export class AuthLimiter {
  private readonly keys = new Map<string, Failures>();
  private readonly now: () => number;
  private readonly maxKeys: number;

  constructor(private readonly options: AuthLimiterOptions) {
    this.now = options.now ?? Date.now;
    this.maxKeys = options.maxKeys ?? 65_536;
  }

  /** Milliseconds the key stays locked; 0 when it is not locked. */
  lockedFor(key: string): number {
    const f = this.keys.get(key);
    if (f === undefined) return 0;
    const left = f.lockedUntil - this.now();
    return left > 0 ? left : 0;
  }

  /** Records a failure; true when it locks the key (from now, for lockoutMs). */
  fail(key: string): boolean {
    if (this.options.maxFailures <= 0) return false;
    const now = this.now();
    let f = this.keys.get(key);
    if (f === undefined) f = { times: [], lockedUntil: 0 };
    else this.keys.delete(key); // re-inserted last: the map's order is the order of recent use
    f.times = f.times.filter((t) => now - t < this.options.windowMs);
    f.times.push(now);
    let locked = false;
    if (f.times.length >= this.options.maxFailures) {
      f.lockedUntil = now + this.options.lockoutMs;
      f.times = [];
      locked = true;
    }
    this.keys.set(key, f);
    if (this.keys.size > this.maxKeys) this.evict(now);
    return locked;
  }

  /**
   * Forgets one key to stay within maxKeys: the least recently failed one that is not locked (a
   * flood of fresh keys must not push a lock out), looking at the 64 oldest; all locked: the oldest.
   */
  private evict(now: number): void {
    let seen = 0;
    let oldest: string | undefined;
    for (const [key, f] of this.keys) {
      oldest ??= key;
      if (f.lockedUntil <= now) {
        this.keys.delete(key);
        return;
      }
      if (++seen >= 64) break;
    }
    if (oldest !== undefined) this.keys.delete(oldest);
  }

  /** A success: the key's failures are forgotten (a lock, being a decision already made, stays). */
  succeed(key: string): void {
    const f = this.keys.get(key);
    if (f !== undefined && f.lockedUntil <= this.now()) this.keys.delete(key);
  }
}

import { createHmac, randomBytes } from 'node:crypto';
import { verifyPassword } from '../config/password-hash.js';
import { HispError } from '../core/errors.js';

export interface PasswordVerifierOptions {
  /**
   * scrypt runs at once at most (issue 14, item 3). scrypt runs on libuv's thread pool (4 threads),
   * the pool that also makes the store's writes durable (fdatasync): unbounded, a flood of AUTH
   * commands holds every thread and every acknowledgement waits behind it. Default 1.
   */
  concurrency?: number;
  /** Checks waiting for a turn at most; beyond, AUTH is answered 454 4.7.0 at once. Default 32. */
  maxWaiting?: number;
  /**
   * How long a successful check is remembered, so that an EHR that connects for every message
   * does not pay (nor make the gateway pay) a scrypt each time. 0: never. Default 10 minutes.
   */
  rememberMs?: number;
  /** Successes remembered at most (least recently used forgotten first). Default 1,024. */
  rememberMax?: number;
  verify?: (password: string, hash: string) => Promise<boolean>;
  now?: () => number;
}

/**
 * Password checks of the submission port with bounded concurrency and a short memory of
 * successes. What is remembered is an HMAC, under a key that lives only in this process, of the
 * user name, the stored hash and the password: no password is kept, and a changed hash (a new
 * configuration) matches nothing remembered. Failures are never remembered.
 */
export class PasswordVerifier {
  private readonly key = randomBytes(32);
  private readonly remembered = new Map<string, number>();
  private readonly waiting: (() => void)[] = [];
  /** Client keys with a check waiting in line. */
  private readonly waitingClients = new Set<string>();
  private running = 0;
  private readonly concurrency: number;
  private readonly maxWaiting: number;
  private readonly rememberMs: number;
  private readonly rememberMax: number;
  private readonly check: (password: string, hash: string) => Promise<boolean>;
  private readonly now: () => number;

  constructor(options: PasswordVerifierOptions = {}) {
    this.concurrency = Math.max(1, options.concurrency ?? 1);
    this.maxWaiting = Math.max(0, options.maxWaiting ?? 32);
    this.rememberMs = options.rememberMs ?? 600_000;
    this.rememberMax = options.rememberMax ?? 1024;
    this.check = options.verify ?? verifyPassword;
    this.now = options.now ?? Date.now;
  }

  /** Checks running now (tests, metrics). */
  get active(): number {
    return this.running;
  }

  /**
   * True when `password` matches `hash`. Throws HISP_SMTP_AUTH_TEMPORARY (transient) when too many
   * checks are waiting already.
   */
  async verify(user: string, password: string, hash: string, client = ''): Promise<boolean> {
    const token = this.rememberMs > 0 ? this.token(user, password, hash) : undefined;
    if (token !== undefined) {
      const until = this.remembered.get(token);
      if (until !== undefined && until > this.now()) {
        this.remembered.delete(token);
        this.remembered.set(token, until);
        return true;
      }
      if (until !== undefined) this.remembered.delete(token);
    }
    await this.turn(client);
    let ok: boolean;
    try {
      ok = await this.check(password, hash).catch(() => false);
    } finally {
      this.release();
    }
    if (ok && token !== undefined) {
      this.remembered.set(token, this.now() + this.rememberMs);
      if (this.remembered.size > this.rememberMax) {
        const oldest = this.remembered.keys().next().value;
        if (oldest !== undefined) this.remembered.delete(oldest);
      }
    }
    return ok;
  }

  private token(user: string, password: string, hash: string): string {
    return createHmac('sha256', this.key).update(`${user.toLowerCase()}\u0000${hash}\u0000`).update(password.normalize('NFC'), 'utf8').digest('base64');
  }

  /**
   * A turn to run scrypt. Waiting in line is fair between clients: one check of each client key
   * waits at most (a flood from one client cannot fill the line and keep the others out).
   */
  private turn(client: string): Promise<void> {
    if (this.running < this.concurrency) {
      this.running++;
      return Promise.resolve();
    }
    if (this.waiting.length >= this.maxWaiting || this.waitingClients.has(client)) {
      return Promise.reject(new HispError('HISP_SMTP_AUTH_TEMPORARY', 'too many authentications in progress: try again later', { transient: true }));
    }
    this.waitingClients.add(client);
    // The slot is handed over by release(): `running` stays counted.
    return new Promise((resolve) =>
      this.waiting.push(() => {
        this.waitingClients.delete(client);
        resolve();
      }),
    );
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.running--;
  }
}

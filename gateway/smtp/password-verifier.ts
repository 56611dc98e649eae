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
  /** Checks waiting in line, per client key. */
  private readonly waitingBy = new Map<string, number>();
  /** Checks running or waiting, by their token: a second identical one shares the first's answer. */
  private readonly inFlight = new Map<string, Promise<boolean>>();
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
    // The same check in flight already (an EHR that opens several connections at once): its
    // answer is this one's too, for one scrypt.
    const key = token ?? this.token(user, password, hash);
    let flight = this.inFlight.get(key);
    if (flight === undefined) {
      flight = this.run(password, hash, client).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, flight);
    }
    const ok = await flight;
    if (ok && token !== undefined) {
      this.remembered.set(token, this.now() + this.rememberMs);
      if (this.remembered.size > this.rememberMax) {
        const oldest = this.remembered.keys().next().value;
        if (oldest !== undefined) this.remembered.delete(oldest);
      }
    }
    return ok;
  }

  private async run(password: string, hash: string, client: string): Promise<boolean> {
    await this.turn(client);
    try {
      return await this.check(password, hash).catch(() => false);
    } finally {
      this.release();
    }
  }

  private token(user: string, password: string, hash: string): string {
    return createHmac('sha256', this.key).update(`${user.toLowerCase()}\u0000${hash}\u0000`).update(password.normalize('NFC'), 'utf8').digest('base64');
  }

  /**
   * A turn to run scrypt. Waiting in line is shared between clients: one client key holds at most
   * a quarter of the places (a flood from one client cannot fill the line and keep the others out;
   * an EHR's few parallel connections still wait their turn).
   */
  private turn(client: string): Promise<void> {
    if (this.running < this.concurrency) {
      this.running++;
      return Promise.resolve();
    }
    const mine = this.waitingBy.get(client) ?? 0;
    if (this.waiting.length >= this.maxWaiting || mine >= Math.max(1, Math.floor(this.maxWaiting / 4))) {
      return Promise.reject(new HispError('HISP_SMTP_AUTH_TEMPORARY', 'too many authentications in progress: try again later', { transient: true }));
    }
    this.waitingBy.set(client, mine + 1);
    // The slot is handed over by release(): `running` stays counted.
    return new Promise((resolve) =>
      this.waiting.push(() => {
        const n = (this.waitingBy.get(client) ?? 1) - 1;
        if (n <= 0) this.waitingBy.delete(client);
        else this.waitingBy.set(client, n);
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

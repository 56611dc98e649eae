/**
 * Per-client rates of a listener (issue 14, item 5): messages and bytes a minute per client key
 * (client-key.ts), as token buckets refilled continuously. Octets are counted as they arrive; the
 * bytes bucket may go into debt by up to a minute's worth (a message in progress is let finish),
 * beyond which the client's transfers are cut; a client in debt is refused at its next MAIL until
 * the bucket has refilled, as Postfix's anvil does with
 * smtpd_client_message_rate_limit: refused with a transient reply, so that a legitimate peer
 * retries later (RFC 5321 §4.5.4.1) and nothing is lost.
 *
 * Memory is bounded: at most `maxClients` keys are remembered (the least recently seen forgotten
 * first), and a key whose buckets are full again is as good as forgotten.
 */
export interface RateLimiterOptions {
  /** Messages a minute per client; 0: no limit. */
  messagesPerMinute: number;
  /** Bytes a minute per client; 0: no limit. */
  bytesPerMinute: number;
  /** Keys remembered at most; default 65,536. */
  maxClients?: number;
  now?: () => number;
}

interface Buckets {
  messages: number;
  bytes: number;
  at: number;
}

const MINUTE_MS = 60_000;

export class RateLimiter {
  private readonly clients = new Map<string, Buckets>();
  private readonly now: () => number;
  private readonly maxClients: number;

  constructor(private readonly options: RateLimiterOptions) {
    this.now = options.now ?? Date.now;
    this.maxClients = options.maxClients ?? 65_536;
  }

  get enabled(): boolean {
    return this.options.messagesPerMinute > 0 || this.options.bytesPerMinute > 0;
  }

  /**
   * Whether the client may start a message now: undefined when it may, else which limit it is
   * over. Nothing is taken here: {@link record} takes what the message used once it is in.
   */
  check(key: string): 'messages' | 'bytes' | undefined {
    if (!this.enabled) return undefined;
    const b = this.refill(key);
    if (this.options.messagesPerMinute > 0 && b.messages < 1) return 'messages';
    if (this.options.bytesPerMinute > 0 && b.bytes <= 0) return 'bytes';
    return undefined;
  }

  /** Counts octets of DATA as they arrive (taken or not: what a client sends is what costs). */
  consume(key: string, bytes: number): void {
    if (this.options.bytesPerMinute <= 0) return;
    this.refill(key).bytes -= bytes;
  }

  /** Counts a message whose DATA ended (taken or not). */
  countMessage(key: string): void {
    if (this.options.messagesPerMinute <= 0) return;
    this.refill(key).messages -= 1;
  }

  /**
   * True when the client owes more than a minute's worth of octets: its transfers in progress are
   * cut (the debt of one message is allowed; several at once over parallel connections are not).
   */
  overdrawn(key: string): boolean {
    return this.options.bytesPerMinute > 0 && this.refill(key).bytes < -this.options.bytesPerMinute;
  }

  /** The buckets of `key`, refilled for the time since they were last seen (and seen now). */
  private refill(key: string): Buckets {
    const now = this.now();
    const { messagesPerMinute: m, bytesPerMinute: y } = this.options;
    let b = this.clients.get(key);
    if (b === undefined) {
      b = { messages: m, bytes: y, at: now };
    } else {
      this.clients.delete(key);
      const elapsed = Math.max(0, now - b.at);
      b.messages = Math.min(m, b.messages + (m * elapsed) / MINUTE_MS);
      b.bytes = Math.min(y, b.bytes + (y * elapsed) / MINUTE_MS);
      b.at = now;
    }
    this.clients.set(key, b);
    if (this.clients.size > this.maxClients) {
      const oldest = this.clients.keys().next().value;
      if (oldest !== undefined) this.clients.delete(oldest);
    }
    return b;
  }
}

import { HispError } from '../core/errors.js';

export interface RetryScheduleOptions {
  /**
   * Minutes to wait after the 1st, 2nd, … failed try; after the last, its interval repeats.
   * Default [1, 5, 15, 30, 60, 120, 240] (the `queue.retrySchedule` of the configuration).
   */
  retrySchedule?: readonly number[];
  /** After this long since the message was accepted, a transient failure becomes final. Default 24. */
  giveUpHours?: number;
  /**
   * Turns a nominal delay into the one used, so that the deliveries deferred together by one remote
   * outage do not all come back in the same second. Default: uniform within ±10 %. Tests pass
   * `(ms) => ms`.
   */
  jitter?: (delayMs: number) => number;
}

export type RetryDecision = { action: 'retry'; at: Date } | { action: 'give-up'; deadline: Date };

/** ±10 %, uniformly. */
export function defaultJitter(delayMs: number): number {
  return delayMs * (0.9 + Math.random() * 0.2);
}

/**
 * When a delivery that failed transiently (4xx, connection error, a transient discovery failure) is
 * tried again, and when it is given up (then failed, with a DSN to the sender). The give-up time
 * runs from when the message was accepted; the last retry falls on it rather than after it, so a
 * message is always tried once more at its deadline before it fails.
 *
 * @example
 * const schedule = new RetrySchedule(config.queue);
 * const next = schedule.next(d.attempts + 1, d.receivedAt, new Date());
 * if (next.action === 'retry') await queue.defer(d, reply, next.at);
 * else await queue.fail(d, { ...reply, text: `gave up: ${reply.text}` });
 */
export class RetrySchedule {
  private readonly delaysMs: readonly number[];
  private readonly giveUpMs: number;
  private readonly jitter: (delayMs: number) => number;

  constructor(options: RetryScheduleOptions = {}) {
    const minutes = options.retrySchedule ?? [1, 5, 15, 30, 60, 120, 240];
    if (minutes.length === 0 || minutes.some((m) => !Number.isFinite(m) || m <= 0)) {
      throw new HispError('HISP_USAGE', `the retry schedule must be a non-empty list of positive minutes, not ${JSON.stringify(minutes)}`);
    }
    const hours = options.giveUpHours ?? 24;
    if (!Number.isFinite(hours) || hours <= 0) throw new HispError('HISP_USAGE', `giveUpHours must be positive, not ${hours}`);
    this.delaysMs = minutes.map((m) => m * 60_000);
    this.giveUpMs = hours * 3_600_000;
    this.jitter = options.jitter ?? defaultJitter;
  }

  /** The nominal wait after the `failedTries`-th failed try (1-based), before jitter. */
  delayMs(failedTries: number): number {
    const i = Math.min(Math.max(1, Math.floor(failedTries)), this.delaysMs.length) - 1;
    return this.delaysMs[i] as number;
  }

  /** When a message accepted at `receivedAt` is given up. */
  deadline(receivedAt: Date): Date {
    return new Date(receivedAt.getTime() + this.giveUpMs);
  }

  /** After the `failedTries`-th failed try at `now`: when to try again, or give up. */
  next(failedTries: number, receivedAt: Date, now: Date): RetryDecision {
    const deadline = this.deadline(receivedAt);
    if (now.getTime() >= deadline.getTime()) return { action: 'give-up', deadline };
    const wait = Math.max(0, this.jitter(this.delayMs(failedTries)));
    return { action: 'retry', at: new Date(Math.min(now.getTime() + wait, deadline.getTime())) };
  }
}

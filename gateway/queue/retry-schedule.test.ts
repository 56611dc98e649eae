import { describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { defaultJitter, RetrySchedule } from './retry-schedule.js';

const MINUTE = 60_000;
const accepted = new Date(Date.UTC(2026, 0, 1, 12));
const at = (ms: number) => new Date(accepted.getTime() + ms);
const exact = (ms: number) => ms;

describe('RetrySchedule', () => {
  it('waits the configured minutes after each failed try, repeating the last interval', () => {
    const s = new RetrySchedule({ retrySchedule: [1, 5, 15], giveUpHours: 24, jitter: exact });
    expect([1, 2, 3, 4, 10].map((n) => s.delayMs(n) / MINUTE)).toEqual([1, 5, 15, 15, 15]);
    expect(s.next(1, accepted, at(0))).toEqual({ action: 'retry', at: at(MINUTE) });
    expect(s.next(2, accepted, at(MINUTE))).toEqual({ action: 'retry', at: at(6 * MINUTE) });
    expect(s.next(7, accepted, at(60 * MINUTE))).toEqual({ action: 'retry', at: at(75 * MINUTE) });
  });

  it('defaults to 1, 5, 15, 30, 60, 120, 240 minutes and 24 hours', () => {
    const s = new RetrySchedule({ jitter: exact });
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => s.delayMs(n) / MINUTE)).toEqual([1, 5, 15, 30, 60, 120, 240, 240]);
    expect(s.deadline(accepted)).toEqual(at(24 * 60 * MINUTE));
  });

  it('applies the injected jitter to the delay', () => {
    const s = new RetrySchedule({ retrySchedule: [10], jitter: (ms) => ms * 1.1 });
    expect(s.next(1, accepted, at(0))).toEqual({ action: 'retry', at: at(11 * MINUTE) });
  });

  it('the default jitter stays within ±10 %', () => {
    for (let i = 0; i < 1000; i++) {
      const v = defaultJitter(1000);
      expect(v).toBeGreaterThanOrEqual(900);
      expect(v).toBeLessThanOrEqual(1100);
    }
  });

  it('puts the last retry on the give-up deadline, then gives up', () => {
    const s = new RetrySchedule({ retrySchedule: [60], giveUpHours: 2, jitter: exact });
    const deadline = at(120 * MINUTE);
    expect(s.next(2, accepted, at(100 * MINUTE))).toEqual({ action: 'retry', at: deadline });
    expect(s.next(3, accepted, deadline)).toEqual({ action: 'give-up', deadline });
    expect(s.next(3, accepted, at(500 * MINUTE))).toEqual({ action: 'give-up', deadline });
  });

  it('a negative jitter never schedules in the past', () => {
    const s = new RetrySchedule({ retrySchedule: [1], jitter: () => -5 });
    expect(s.next(1, accepted, at(0))).toEqual({ action: 'retry', at: at(0) });
  });

  it('refuses an empty or non-positive schedule and a non-positive give-up time', () => {
    for (const bad of [{ retrySchedule: [] }, { retrySchedule: [5, 0] }, { retrySchedule: [Number.NaN] }, { giveUpHours: 0 }]) {
      expect(() => new RetrySchedule(bad)).toThrow(HispError);
    }
  });
});

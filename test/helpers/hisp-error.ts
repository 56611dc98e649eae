import { expect } from 'vitest';
import { HispError } from '../../gateway/core/errors.js';

/** Runs `fn` and returns the HispError it throws (fails the test if it returns or throws anything else). */
export function hispError(fn: () => unknown): HispError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(HispError);
    return err as HispError;
  }
  throw new Error('expected a HispError, nothing was thrown');
}

/** The HispError a promise rejects with (fails the test if it resolves or rejects with anything else). */
export async function hispRejection(p: Promise<unknown>): Promise<HispError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(HispError);
    return err as HispError;
  }
  throw new Error('expected a rejection with a HispError, the promise resolved');
}

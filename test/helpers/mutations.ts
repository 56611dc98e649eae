import fc from 'fast-check';
import { HispError } from '../../gateway/core/errors.js';

/**
 * The mutation machinery of the parser property tests: every parser that reads bytes from the network
 * gets random edits of valid inputs and must answer with a HispError (or a result), never another
 * error and never a hang.
 */
export type Mutation =
  | { kind: 'flip'; pos: number; bit: number }
  | { kind: 'set'; pos: number; value: number }
  | { kind: 'truncate'; len: number }
  | { kind: 'insert'; pos: number; bytes: Uint8Array }
  | { kind: 'delete'; pos: number; len: number };

/** Octets that stress BER and MIME readers when inserted. */
export const NASTY_BER = [
  [0x00], [0x80], [0xff], [0x30, 0x80], [0xa0, 0x80], [0x24, 0x80], [0x00, 0x00],
  [0x04, 0x84, 0xff, 0xff, 0xff, 0xff], [0x30, 0x84, 0x7f, 0xff, 0xff, 0xff], [0x1f, 0xff, 0xff, 0xff, 0xff, 0x7f],
  [0x06, 0x00], [0x02, 0x00], [0x0d], [0x0a], [0x0d, 0x0a, 0x0d, 0x0a], [0x2d, 0x2d], [0x3d], [0x3a], [0x20],
].map((xs) => Uint8Array.from(xs));

/** Octets that stress MIME and report-field readers when inserted. */
export const NASTY_TEXT = ['\r\n', '\n', '\r', '\r\n\r\n', ':', ';', '/', ',', '=', '"', '(', ')', '<', '>', ' ', '\t', '--', '\u0000', '\xff', '=\r\n', 'Disposition:'].map((s) =>
  Uint8Array.from(Buffer.from(s, 'latin1')),
);

export interface MutationWeights {
  flip: number;
  set: number;
  truncate: number;
  insert: number;
  delete: number;
}

export function mutationArbitrary(nasty: readonly Uint8Array[], w: MutationWeights = { flip: 6, set: 2, truncate: 1, insert: 2, delete: 1 }): fc.Arbitrary<Mutation> {
  return fc.oneof(
    { weight: w.flip, arbitrary: fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }) },
    { weight: w.set, arbitrary: fc.record({ kind: fc.constant('set' as const), pos: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }) },
    { weight: w.truncate, arbitrary: fc.record({ kind: fc.constant('truncate' as const), len: fc.nat() }) },
    {
      weight: w.insert,
      arbitrary: fc.record({
        kind: fc.constant('insert' as const),
        pos: fc.nat(),
        bytes: fc.oneof(fc.constantFrom(...nasty), fc.uint8Array({ minLength: 1, maxLength: 16 })),
      }),
    },
    { weight: w.delete, arbitrary: fc.record({ kind: fc.constant('delete' as const), pos: fc.nat(), len: fc.integer({ min: 1, max: 64 }) }) },
  );
}

export function applyMutation(input: Buffer, m: Mutation): Buffer {
  const n = input.length;
  switch (m.kind) {
    case 'flip': {
      if (n === 0) return input;
      const out = Buffer.from(input);
      out[m.pos % n]! ^= 1 << m.bit;
      return out;
    }
    case 'set': {
      if (n === 0) return input;
      const out = Buffer.from(input);
      out[m.pos % n] = m.value;
      return out;
    }
    case 'truncate':
      return input.subarray(0, n === 0 ? 0 : m.len % n);
    case 'insert': {
      const at = m.pos % (n + 1);
      return Buffer.concat([input.subarray(0, at), Buffer.from(m.bytes), input.subarray(at)]);
    }
    case 'delete': {
      if (n === 0) return input;
      const at = m.pos % n;
      return Buffer.concat([input.subarray(0, at), input.subarray(at + m.len)]);
    }
  }
}

/** Runs fn; anything thrown must be a HispError, and the call must end within `maxMs`. */
export function onlyHispError(fn: () => unknown, maxMs = 3000): void {
  const t0 = performance.now();
  try {
    fn();
  } catch (err) {
    if (!(err instanceof HispError)) {
      const e = err as Error;
      throw new Error(`non-HispError escaped: ${e?.constructor?.name ?? typeof err}: ${e?.message ?? String(err)}`, { cause: err });
    }
  }
  const ms = performance.now() - t0;
  if (ms > maxMs) throw new Error(`call took ${ms.toFixed(0)} ms`);
}

// decodeBase64Text: what it accepts is exactly what the pattern it replaced accepted, whatever the
// text (malformed base64 above all), and what it gives is the decoding; on Node 20 and Node 24 alike
// (their decoders differ inside: the fast path rests on how they skip and stop).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BASE64_TEXT, decodeBase64Text } from './api-schemas.js';

describe('decodeBase64Text', () => {
  it('the usual cases', () => {
    expect(decodeBase64Text('PGEvPg==')?.toString()).toBe('<a/>');
    expect(decodeBase64Text('')?.length).toBe(0);
    expect(decodeBase64Text('QR==')?.toString('hex')).toBe('41'); // padding bits set: accepted, as the pattern did
    expect(decodeBase64Text('PGEvPg')?.toString()).toBe('<a/>'); // unpadded: accepted, as the pattern did
    for (const bad of ['PGE-Pg==', 'PGE_Pg==', 'PGEv\nPg==', 'PGEv Pg==', 'PG=vPg==', 'PGEvPg===', '!!!!', 'PGEvPg=\u00e9']) expect(decodeBase64Text(bad), bad).toBeUndefined();
  });

  it('any text: accepted exactly when it matches RFC 4648 §4 base64, and then its decoding', () => {
    const char = fc.oneof(
      { arbitrary: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'), weight: 20 },
      { arbitrary: fc.constantFrom('=', '-', '_', ' ', '\n', '\r', '\t', '!', '.', '\u0000', '\u00e9', '\u2028', '\ud83d\ude00'), weight: 2 },
    );
    const text = fc.oneof(
      fc.array(char, { maxLength: 40 }).map((a) => a.join('')),
      // Valid base64 of random octets, then one character changed, inserted or removed.
      fc
        .tuple(fc.uint8Array({ maxLength: 60 }), fc.nat(), char, fc.constantFrom('replace', 'insert', 'remove', 'keep'))
        .map(([bytes, at, c, how]) => {
          const s = Buffer.from(bytes).toString('base64');
          const i = s.length === 0 ? 0 : at % s.length;
          if (how === 'replace') return s.slice(0, i) + c + s.slice(i + 1);
          if (how === 'insert') return s.slice(0, i) + c + s.slice(i);
          if (how === 'remove') return s.slice(0, i) + s.slice(i + 1);
          return s;
        }),
    );
    fc.assert(
      fc.property(text, (s) => {
        const decoded = decodeBase64Text(s);
        expect(decoded !== undefined).toBe(BASE64_TEXT.test(s));
        if (decoded) expect(decoded.equals(Buffer.from(s, 'base64'))).toBe(true);
      }),
      { numRuns: 20000 },
    );
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Base64Decoder } from './base64-decoder.js';
import { splitAt } from '../../test/helpers/split-at.js';
import { decodeBase64 } from './mime-entity.js';

describe('Base64Decoder: the streaming decoder of large bodies (RFC 2045 §6.8)', () => {
  it('gives what the whole-buffer decoder gives, however the text is cut, with line breaks, spaces and foreign characters', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 3000 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.constantFrom('', '\r\n', ' ', '\t', '!', '-_'),
        fc.integer({ min: 1, max: 100 }),
        fc.integer({ min: 0, max: 4000 }),
        (data, cuts, noise, every, announced) => {
          const b64 = Buffer.from(data).toString('base64');
          const text = Buffer.from(b64.replace(new RegExp(`(.{${every}})`, 'g'), `$1${noise}`), 'latin1');
          const decoder = new Base64Decoder(announced);
          for (const c of splitAt(text, cuts)) decoder.push(c);
          const out = decoder.end();
          expect(out.equals(decodeBase64(text))).toBe(true);
          if (noise === '') expect(out.equals(Buffer.from(data))).toBe(true);
          expect(decoder.sawForeign).toBe(/[!_-]/.test(text.toString('latin1')));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('stops at the padding: what follows it is not decoded', () => {
    const d = new Base64Decoder(16);
    d.push(Buffer.from('YWI='));
    d.push(Buffer.from('YWJj'));
    expect(d.end().toString()).toBe('ab');
  });
});

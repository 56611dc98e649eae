// SevenBitScan (RFC 2045 §2.7 7bit data, plus no line beginning with `--=_`): the rules one at a
// time, and chunked reading equal to a plain reading of the whole body for any split.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSevenBit, SevenBitScan } from './seven-bit.js';

/** The rules read plainly, octet by octet: the oracle. */
function oracle(body: Buffer): boolean {
  let line: number[] = [];
  const lineOk = () => line.length <= 998 && !Buffer.from(line.slice(0, 4)).equals(Buffer.from('--=_'));
  for (let i = 0; i < body.length; i++) {
    const b = body[i]!;
    if (b === 0 || b > 0x7f) return false;
    if (b === 0x0d) {
      if (body[i + 1] !== 0x0a) return false;
      if (!lineOk()) return false;
      line = [];
      i++;
      continue;
    }
    if (b === 0x0a) return false;
    line.push(b);
  }
  return lineOk();
}

describe('SevenBitScan', () => {
  it('takes US-ASCII CRLF lines of at most 998 octets, with or without a last CRLF', () => {
    expect(isSevenBit(Buffer.from(''))).toBe(true);
    expect(isSevenBit(Buffer.from('<ClinicalDocument>\r\n  <title>Summary</title>\r\n</ClinicalDocument>'))).toBe(true);
    expect(isSevenBit(Buffer.from('<a/>\r\n\r\n'))).toBe(true);
    expect(isSevenBit(Buffer.from(`${'x'.repeat(998)}\r\n${'y'.repeat(998)}`))).toBe(true);
    expect(isSevenBit(Buffer.from('a - b -- c\r\n-x\r\n'))).toBe(true);
    // C-CDA section banners close with --> at the start of a line.
    expect(isSevenBit(Buffer.from('<!--\r\n*** ALLERGIES ***\r\n-->\r\n--\r\n--=\r\n'))).toBe(true);
  });

  it('refuses what 7bit cannot carry as it is: bare LF or CR, NUL, 8-bit octets, a 999-octet line, a line beginning with --=_', () => {
    expect(isSevenBit(Buffer.from('<a/>\n<b/>'))).toBe(false);
    expect(isSevenBit(Buffer.from('\n'))).toBe(false);
    expect(isSevenBit(Buffer.from('<a/>\r<b/>'))).toBe(false);
    expect(isSevenBit(Buffer.from('<a/>\r'))).toBe(false);
    expect(isSevenBit(Buffer.from('<a/>\r\r\n'))).toBe(false);
    expect(isSevenBit(Buffer.from('a\u0000b'))).toBe(false);
    expect(isSevenBit(Buffer.from('Müller'))).toBe(false);
    expect(isSevenBit(Buffer.from(`${'x'.repeat(999)}\r\n`))).toBe(false);
    expect(isSevenBit(Buffer.from('x'.repeat(999)))).toBe(false);
    expect(isSevenBit(Buffer.from('<a/>\r\n--=_hisp-0123-Part_1\r\n'))).toBe(false);
    expect(isSevenBit(Buffer.from('--=_'))).toBe(false);
    expect(isSevenBit(Buffer.from('%PDF-1.4\n%\u00e2\u00e3'))).toBe(false);
  });

  it('reads a CRLF, a 998-octet line and a leading --=_ split across chunks as it reads them whole', () => {
    const scan = (...chunks: string[]) => chunks.reduce((s, c) => s.update(Buffer.from(c)), new SevenBitScan()).clean;
    expect(scan('<a/>\r', '\n<b/>')).toBe(true);
    expect(scan('<a/>\r', 'x')).toBe(false);
    expect(scan('<a/>\r')).toBe(false);
    expect(scan('a\r\n-', '-', '=_b')).toBe(false);
    expect(scan('a\r\n--=', '_')).toBe(false);
    expect(scan('a\r\n-', '-=b_')).toBe(true);
    expect(scan('x'.repeat(500), 'x'.repeat(498), '\r\n')).toBe(true);
    expect(scan('x'.repeat(500), 'x'.repeat(499), '\r\n')).toBe(false);
  });

  it('any body split anywhere: the same answer as the plain reading', () => {
    const octet = fc.oneof(
      { arbitrary: fc.constantFrom(0x61, 0x3c, 0x20), weight: 10 },
      { arbitrary: fc.constantFrom(0x0d, 0x0a), weight: 4 },
      { arbitrary: fc.constantFrom(0x2d, 0x2d, 0x3d, 0x5f), weight: 4 },
      { arbitrary: fc.constantFrom(0x00, 0x7f, 0x80, 0xff), weight: 1 },
    );
    const body = fc.oneof(
      fc.array(octet, { maxLength: 200 }).map((a) => Buffer.from(a)),
      // Lines about the 998-octet limit.
      fc.array(fc.integer({ min: 990, max: 1002 }), { minLength: 1, maxLength: 3 }).map((ns) => Buffer.from(ns.map((n) => 'x'.repeat(n)).join('\r\n'))),
    );
    fc.assert(
      fc.property(body, fc.array(fc.nat(), { maxLength: 6 }), (b, cuts) => {
        return check(b, cuts);
      }),
      { numRuns: 3000 },
    );
    // Bodies over the scan's 64 KiB slice (it splits a long chunk itself): a valid body of short lines
    // with a stretch of random octets put across the 65,536th octet (a CRLF, a --=_ line start, a
    // bare CR or LF, a long line, straddling the cut).
    const SLICE = 64 * 1024;
    const longBody = fc
      .tuple(fc.array(octet, { minLength: 1, maxLength: 40 }), fc.integer({ min: -20, max: 20 }), fc.integer({ min: 0, max: 3000 }))
      .map(([stretch, shift, tail]) => {
        const lines = Buffer.from('<x>abc</x>\r\n'.repeat(Math.ceil((SLICE + 4000) / 12))).subarray(0, SLICE + shift);
        return Buffer.concat([lines, Buffer.from(stretch), Buffer.from('\r\n<y/>\r\n'.repeat(Math.ceil(tail / 8)))]);
      });
    fc.assert(
      fc.property(longBody, fc.array(fc.nat(), { maxLength: 2 }), (b, cuts) => {
        return check(b, cuts);
      }),
      { numRuns: 300 },
    );
  });
});

/** The scan fed `b` in the pieces `cuts` make, and isSevenBit over it whole, against the oracle. */
function check(b: Buffer, cuts: number[]): boolean {
  const points = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const scan = new SevenBitScan();
  let from = 0;
  for (const p of [...points, b.length]) {
    scan.update(b.subarray(from, p));
    from = p;
  }
  expect(scan.clean).toBe(oracle(b));
  expect(isSevenBit(b)).toBe(oracle(b));
  return true;
}

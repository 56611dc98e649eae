// Unit tests of the byte-exact MIME skeleton: header parsing, Content-Type parameters, multipart
// splitting (RFC 2046 §5.1.1), base64 bodies and line-end canonicalization.
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import {
  decodeBase64 as decodeBase64Impl,
  base64LinesLength,
  encodeBase64Lines,
  findBareLineEnd,
  MimeEntity,
  parseContentType,
  splitMultipart,
  toCanonicalCrlf,
  writeBase64Lines,
} from './mime-entity.js';
import { hispError } from '../../test/helpers/hisp-error.js';

const b = (s: string) => Buffer.from(s, 'latin1');
/** decodeBase64, ignoring the `what` label the tests pass (the function no longer takes one). */
const decodeBase64 = (body: Buffer, _what?: string): Buffer => decodeBase64Impl(body);
const s = (x: Buffer) => x.toString('latin1');


// ------------------------------------------------------------------------------------------------

describe('MimeEntity.parse: header section', () => {
  it('splits at the first CRLF CRLF; header section and body are exact slices of the input', () => {
    const input = b('From: a@b.test\r\nTo: c@d.test\r\n\r\nbody\r\n\r\nmore\r\n');
    const e = MimeEntity.parse(input);
    expect(e.headers.map((h) => [h.name, h.value])).toEqual([
      ['From', 'a@b.test'],
      ['To', 'c@d.test'],
    ]);
    expect(s(e.headerSection)).toBe('From: a@b.test\r\nTo: c@d.test\r\n\r\n');
    expect(s(e.body)).toBe('body\r\n\r\nmore\r\n');
    expect(Buffer.concat([e.headerSection, e.body])).toEqual(input);
    expect(e.headers.map((h) => s(h.raw)).join('')).toBe('From: a@b.test\r\nTo: c@d.test\r\n');
  });

  it('unfolds folded fields (CRLF before WSP removed, WSP kept); raw keeps the folding', () => {
    const e = MimeEntity.parse(b('Subject: one\r\n two\r\n\tthree\r\nX-A: 1\r\n\r\n'));
    expect(e.header('subject')).toBe('one two\tthree');
    expect(s(e.headers[0]!.raw)).toBe('Subject: one\r\n two\r\n\tthree\r\n');
    expect(e.header('x-a')).toBe('1');
  });

  it('folded Content-Type parameters (as wrapMessage writes the boundary)', () => {
    const e = MimeEntity.parse(
      b('Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;\r\n boundary="xyz"\r\n\r\n'),
    );
    expect(e.contentType()).toEqual({
      mediaType: 'multipart/signed',
      params: { protocol: 'application/pkcs7-signature', micalg: 'sha-256', boundary: 'xyz' },
    });
  });

  it('LF-only input: splits at LF LF, unfolds LF folding', () => {
    const e = MimeEntity.parse(b('From: a@b.test\nSubject: x\n y\n\nbody\n'));
    expect(e.headers.map((h) => [h.name, h.value])).toEqual([
      ['From', 'a@b.test'],
      ['Subject', 'x y'],
    ]);
    expect(s(e.headerSection)).toBe('From: a@b.test\nSubject: x\n y\n\n');
    expect(s(e.body)).toBe('body\n');
  });

  it('mixed line ends: LF then CRLF ends the header section', () => {
    const e = MimeEntity.parse(b('A: 1\n\r\nbody'));
    expect(e.header('a')).toBe('1');
    expect(s(e.body)).toBe('body');
  });

  it('an mbox "From " line before the header fields is skipped', () => {
    const e = MimeEntity.parse(b('From sender@sender.test Tue Jan  1 00:00:00 2030\r\nFrom: sender@sender.test\r\n\r\nx'));
    expect(e.headers.map((h) => h.name)).toEqual(['From']);
    expect(e.header('from')).toBe('sender@sender.test');
  });

  it('a "From " line after the first field is malformed', () => {
    expect(hispError(() => MimeEntity.parse(b('To: x@y.test\r\nFrom x Tue\r\n\r\n'))).code).toBe('HISP_MIME_MALFORMED');
  });

  it('no blank line: everything is header, the body is empty', () => {
    const e = MimeEntity.parse(b('A: 1\r\nB: 2\r\n'));
    expect(e.headers).toHaveLength(2);
    expect(e.body).toHaveLength(0);
  });

  it('starts with a blank line: no header fields, the rest is body', () => {
    for (const input of ['\r\nbody', '\nbody']) {
      const e = MimeEntity.parse(b(input));
      expect(e.headers).toHaveLength(0);
      expect(s(e.body)).toBe('body');
    }
  });

  it('empty input: no headers, empty body', () => {
    const e = MimeEntity.parse(Buffer.alloc(0));
    expect(e.headers).toHaveLength(0);
    expect(e.body).toHaveLength(0);
    expect(e.contentType()).toEqual({ mediaType: 'text/plain', params: { charset: 'us-ascii' } });
  });

  it('header() is case-insensitive and returns the first field of that name', () => {
    const e = MimeEntity.parse(b('X-Dup: first\r\nx-dup: second\r\n\r\n'));
    expect(e.header('X-DUP')).toBe('first');
    expect(e.header('missing')).toBeUndefined();
  });

  it('spaces before the colon are tolerated (obs-optional, RFC 5322 §4.5.3), value trimmed', () => {
    const e = MimeEntity.parse(b('Subject :   spaced  \r\n\r\n'));
    expect(e.headers[0]!.name).toBe('Subject');
    expect(e.header('subject')).toBe('spaced');
  });

  it('empty values are kept', () => {
    expect(MimeEntity.parse(b('Subject:\r\n\r\n')).header('subject')).toBe('');
  });

  it.each([
    ['a line without a colon', 'From: a@b.test\r\nnot a header\r\n\r\n'],
    ['a name with a space', 'Bad Name: x\r\n\r\n'],
    ['an empty name', ': x\r\n\r\n'],
    ['a continuation line first', ' folded: x\r\n\r\n'],
    ['a control character in the name', 'X\x01Y: z\r\n\r\n'],
    ['an 8-bit name', 'X\xe9: z\r\n\r\n'],
  ])('%s → HISP_MIME_MALFORMED', (_name, input) => {
    expect(hispError(() => MimeEntity.parse(b(input))).code).toBe('HISP_MIME_MALFORMED');
  });

  it('more than 1000 header fields → HISP_MIME_MALFORMED; 1000 are fine', () => {
    const many = (n: number) => b(`${'X-F: v\r\n'.repeat(n)}\r\nbody`);
    expect(MimeEntity.parse(many(1000)).headers).toHaveLength(1000);
    expect(hispError(() => MimeEntity.parse(many(1001))).code).toBe('HISP_MIME_MALFORMED');
  });

  it('8-bit octets in values survive as latin1 and in raw', () => {
    const e = MimeEntity.parse(b('Subject: caf\xe9\r\n\r\n'));
    expect(e.header('subject')).toBe('caf\xe9');
    expect(e.headers[0]!.raw[12]).toBe(0xe9);
  });
});

// ------------------------------------------------------------------------------------------------

describe('Content-Type parameters', () => {
  const signedParams = { protocol: 'application/pkcs7-signature', micalg: 'sha-256', boundary: 'b1' };

  it.each([
    ['quoted, RFC order', 'multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="b1"'],
    ['unquoted', 'multipart/signed; protocol=application/pkcs7-signature; micalg=sha-256; boundary=b1'],
    ['other order', 'multipart/signed; boundary=b1; micalg="sha-256"; protocol="application/pkcs7-signature"'],
    ['no spaces', 'multipart/signed;boundary="b1";micalg=sha-256;protocol="application/pkcs7-signature"'],
    ['stray whitespace and a trailing semicolon', 'multipart/signed ;  boundary = "b1" ; micalg=sha-256 ;protocol="application/pkcs7-signature";'],
    ['upper-case type and names', 'Multipart/Signed; BOUNDARY="b1"; MicAlg=sha-256; Protocol="application/pkcs7-signature"'],
  ])('%s', (_name, value) => {
    expect(parseContentType(value)).toEqual({ mediaType: 'multipart/signed', params: signedParams });
  });

  it('parameter values keep their case', () => {
    expect(parseContentType('multipart/signed; boundary="AbC"; micalg=SHA-256').params).toEqual({
      boundary: 'AbC',
      micalg: 'SHA-256',
    });
  });

  it('quoted values may hold ; = and escaped quotes', () => {
    expect(parseContentType('multipart/mixed; boundary="a;b=c\\"d"').params.boundary).toBe('a;b=c"d');
  });

  it('an unquoted boundary with = (as many MUAs write it)', () => {
    expect(parseContentType('multipart/mixed; boundary==_Part_1_=').params.boundary).toBe('=_Part_1_=');
  });

  it('x-pkcs7 types and smime-type', () => {
    expect(parseContentType('application/x-pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"')).toEqual({
      mediaType: 'application/x-pkcs7-mime',
      params: { 'smime-type': 'enveloped-data', name: 'smime.p7m' },
    });
  });

  it('RFC 2231 continuations', () => {
    expect(parseContentType('application/pkcs7-mime; name*0="smi"; name*1="me.p7m"').params.name).toBe('smime.p7m');
  });

  it('RFC 2231 charset/percent encoding, alone and in continuations', () => {
    expect(parseContentType("application/octet-stream; name*=utf-8''%E2%82%AC.txt").params.name).toBe('€.txt');
    expect(parseContentType("application/octet-stream; name*0*=utf-8''%E2%82; name*1*=%AC; name*2=\".txt\"").params.name).toBe(
      '€.txt',
    );
  });

  it('absent Content-Type is text/plain; charset=us-ascii (RFC 2045 §5.2)', () => {
    expect(MimeEntity.parse(b('Subject: x\r\n\r\n')).contentType()).toEqual({
      mediaType: 'text/plain',
      params: { charset: 'us-ascii' },
    });
  });
});

// ------------------------------------------------------------------------------------------------

describe('splitMultipart', () => {
  const parts = (body: string, boundary = 'b') => splitMultipart(b(body), boundary).map(s);

  it('the CRLF before a delimiter belongs to the delimiter', () => {
    expect(parts('--b\r\nA\r\n--b\r\nB\r\n--b--\r\n')).toEqual(['A', 'B']);
  });

  it('a part ending in CRLF keeps it (only the last CRLF is the delimiter\'s)', () => {
    expect(parts('--b\r\nA\r\n\r\n--b\r\nB\r\n\r\n\r\n--b--')).toEqual(['A\r\n', 'B\r\n\r\n']);
  });

  it('parts are exact slices of the body (byte-exact, nothing re-encoded)', () => {
    const body = b('--b\r\nContent-Type: text/plain\r\n\r\nx\xff\x00y\r\n--b--\r\n');
    const [p] = splitMultipart(body, 'b');
    expect(p!.buffer).toBe(body.buffer);
    expect(s(p!)).toBe('Content-Type: text/plain\r\n\r\nx\xff\x00y');
  });

  it('preamble and epilogue are dropped', () => {
    expect(parts('This is a preamble\r\n--b\r\nA\r\n--b--\r\nThis is the epilogue\r\n--b\r\nnot a part\r\n')).toEqual(['A']);
  });

  it('a preamble line ending right before the first delimiter does not leak into the first part', () => {
    expect(parts('preamble\r\n--b\r\nA\r\n--b--')).toEqual(['A']);
  });

  it('transport padding (spaces, tabs) after delimiters and the close delimiter', () => {
    expect(parts('--b \t \r\nA\r\n--b\t\r\nB\r\n--b--  \r\n')).toEqual(['A', 'B']);
  });

  it('lines that start with the boundary but are longer are not delimiters', () => {
    expect(parts('--b\r\nA\r\n--bXYZ\r\nstill A\r\n--b-x\r\n--b--\r\n')).toEqual(['A\r\n--bXYZ\r\nstill A\r\n--b-x']);
  });

  it('"--b--" followed by more text on the line is not a close delimiter', () => {
    expect(parts('--b\r\nA\r\n--b--x\r\nB\r\n--b--\r\n')).toEqual(['A\r\n--b--x\r\nB']);
  });

  it('the boundary in the middle of a line is not a delimiter', () => {
    expect(parts('--b\r\nA --b\r\nx--b--\r\n--b--')).toEqual(['A --b\r\nx--b--']);
  });

  it('a boundary that is a prefix of a longer boundary in the body (nested multiparts)', () => {
    const body = '--outer\r\nContent-Type: multipart/mixed; boundary=outer2\r\n\r\n--outer2\r\nX\r\n--outer2--\r\n--outer--\r\n';
    expect(parts(body, 'outer')).toEqual(['Content-Type: multipart/mixed; boundary=outer2\r\n\r\n--outer2\r\nX\r\n--outer2--']);
  });

  it('LF-only bodies', () => {
    expect(parts('--b\nA\n--b\nB\n--b--\n')).toEqual(['A', 'B']);
  });

  it('close delimiter at the end without a line end', () => {
    expect(parts('--b\r\nA\r\n--b--')).toEqual(['A']);
  });

  it('an empty part', () => {
    expect(parts('--b\r\n\r\n--b\r\nB\r\n--b--')).toEqual(['', 'B']);
  });

  it('boundaries with characters special in regular expressions', () => {
    expect(parts("--a.b+c*(?)'\r\nA\r\n--a.b+c*(?)'--\r\n", "a.b+c*(?)'")).toEqual(['A']);
  });

  it('wrapMessage-style boundary "----=_hisp_…"', () => {
    const bd = '----=_hisp_0123';
    expect(parts(`--${bd}\r\nA\r\n--${bd}\r\nB\r\n--${bd}--\r\n`, bd)).toEqual(['A', 'B']);
  });

  it.each([
    ['no close delimiter', '--b\r\nA\r\n--b\r\nB\r\n'],
    ['no delimiter at all', 'just text\r\n'],
    ['only a close delimiter (no part)', 'preamble\r\n--b--\r\n'],
    ['a delimiter as the last line, unclosed', '--b\r\nA\r\n--b'],
    ['empty body', ''],
  ])('%s → HISP_MIME_MALFORMED', (_name, body) => {
    expect(hispError(() => splitMultipart(b(body), 'b')).code).toBe('HISP_MIME_MALFORMED');
  });

  it('missing or over-long boundary → HISP_MIME_MALFORMED', () => {
    expect(hispError(() => splitMultipart(b('--\r\nA\r\n----'), '')).code).toBe('HISP_MIME_MALFORMED');
    const long = 'x'.repeat(201);
    expect(hispError(() => splitMultipart(b(`--${long}\r\nA\r\n--${long}--`), long)).code).toBe('HISP_MIME_MALFORMED');
  });

  it('property: joining parts with CRLF--b CRLF and a close delimiter splits back into the same parts', () => {
    const partArb = fc
      .array(fc.constantFrom('a', 'B', '-', ' ', '\r\n', '--', 'x--b', '=', '\xff'), { maxLength: 20 })
      .map((xs) => xs.join(''))
      // a part must not contain a line that starts with the delimiter, nor end with a bare CR
      .filter((p) => !`\n${p}`.includes('\n--b') && !p.endsWith('\r'));
    fc.assert(
      fc.property(fc.array(partArb, { minLength: 1, maxLength: 5 }), fc.constantFrom('', 'pre\r\n'), (ps, preamble) => {
        const body = `${preamble}--b\r\n${ps.join('\r\n--b\r\n')}\r\n--b--\r\nepilogue`;
        expect(parts(body)).toEqual(ps);
      }),
      { numRuns: 300 },
    );
  });
});

// ------------------------------------------------------------------------------------------------

describe('decodeBase64', () => {
  const data = randomBytes(3000);
  const b64 = data.toString('base64');

  it('76-character CRLF lines', () => {
    expect(decodeBase64(encodeBase64LinesBuf(data), 'x')).toEqual(data);
  });

  it('one very long line (no line breaks at all)', () => {
    expect(decodeBase64(b(b64), 'x')).toEqual(data);
  });

  it('lines of 64, 1000 and irregular lengths, LF or CRLF, trailing whitespace', () => {
    const lines = (n: number, eol: string) => b64.replace(new RegExp(`.{${n}}`, 'g'), `$&${eol}`);
    expect(decodeBase64(b(lines(64, '\n')), 'x')).toEqual(data);
    expect(decodeBase64(b(lines(1000, '\r\n')), 'x')).toEqual(data);
    const irregular = b64.replace(/(.{7})(.{13})/g, '$1 \r\n$2\t\r\n');
    expect(decodeBase64(b(`${irregular}\r\n\r\n  `), 'x')).toEqual(data);
  });

  it('padding: one and two "=", and unpadded input', () => {
    expect(s(decodeBase64(b('YWI='), 'x'))).toBe('ab');
    expect(s(decodeBase64(b('YQ=='), 'x'))).toBe('a');
    expect(s(decodeBase64(b('YQ'), 'x'))).toBe('a');
  });

  it('empty and whitespace-only input decode to nothing', () => {
    expect(decodeBase64(b(''), 'x')).toHaveLength(0);
    expect(decodeBase64(b(' \r\n\t'), 'x')).toHaveLength(0);
  });

  it('a body past the native-decoder limit (> 4 MB, 76-character lines) decodes the same', () => {
    const big = randomBytes(3 * 1024 * 1024 + 7);
    const text = encodeBase64LinesBuf(big);
    expect(text.length).toBeGreaterThan(4 * 1024 * 1024);
    expect(decodeBase64(text, 'x').equals(big)).toBe(true);
  });

  it('the answer does not depend on the size of the body (the same text padded past 4 MB with whitespace)', () => {
    // decodeBase64 has two paths: Node's native decoder up to 4 MB and its own decoder above, and
    // promises that both give the same result. Whitespace is meaningless in base64 (RFC 2045 §6.8),
    // so a body and the same body followed by 4 MB of blank lines must decode alike; otherwise what a
    // message says depends on its size. (Node's decoder also reads the base64url characters - and _
    // as 62 and 63; RFC 2045 says to ignore characters outside the alphabet, as the large path does.)
    const pad = Buffer.alloc(4 * 1024 * 1024 + 2, '\r\n');
    const outcome = (x: Buffer): string => {
      try {
        return decodeBase64(x, 'x').toString('hex');
      } catch (err) {
        return err instanceof HispError ? err.code : 'not a HispError';
      }
    };
    const examples = ['YWJj', 'YW#Jj', 'YWJj-_', 'YW-J_j', 'Y', '=YWJj', 'YQ=', 'YQ=YWJj', 'YQ==YWJj', 'YWJj=', 'YWJ\x0bj', 'YWJ\xa0j', 'YW\x00Jj'];
    const mismatches = examples
      .map((e) => ({ input: e, small: outcome(b(e)), large: outcome(Buffer.concat([b(e), pad])) }))
      .filter((r) => r.small !== r.large);
    expect(mismatches).toEqual([]);
  });
});

function encodeBase64LinesBuf(data: Buffer): Buffer {
  const out: unknown = encodeBase64Lines(data);
  return typeof out === 'string' ? b(out) : (out as Buffer);
}

// ------------------------------------------------------------------------------------------------

describe('encodeBase64Lines', () => {
  it('gives the same lines for the data in pieces, whatever the cuts (empty pieces, cuts inside and across slices)', () => {
    const data = randomBytes(200_003);
    const whole = encodeBase64Lines(data);
    for (const cuts of [[0], [1, 2, 3], [56_999, 57_000, 57_001], [100_000, 100_000, 114_000], [200_003], [5, 199_999]]) {
      const pieces: Buffer[] = [];
      let from = 0;
      for (const c of cuts) {
        pieces.push(data.subarray(from, c));
        from = c;
      }
      pieces.push(data.subarray(from));
      expect(encodeBase64Lines(pieces).equals(whole)).toBe(true);
    }
    expect(encodeBase64Lines([Buffer.alloc(0), Buffer.alloc(0)])).toHaveLength(0);
  });

  it('writes exactly the folded base64 at an offset, leaving the bytes around it alone (sizes around the 57,000-octet slices)', () => {
    for (const n of [0, 1, 57, 56_999, 57_000, 57_001, 114_001, 150_000]) {
      const data = randomBytes(n);
      const expected = Buffer.from(data.toString('base64').replace(/.{1,76}/g, '$&\r\n'), 'latin1');
      const out = Buffer.alloc(base64LinesLength(n) + 10, 0x7e);
      const end = writeBase64Lines([data], out, 3);
      expect(end).toBe(3 + expected.length);
      expect(out.subarray(3, end).equals(expected)).toBe(true);
      expect([...out.subarray(0, 3), ...out.subarray(end)].every((x) => x === 0x7e)).toBe(true);
    }
  });

  it('76-character lines, each ending in CRLF, decoding back to the input', () => {
    for (const n of [1, 2, 3, 56, 57, 58, 114, 1000]) {
      const data = randomBytes(n);
      const text = s(encodeBase64LinesBuf(data));
      expect(text.endsWith('\r\n')).toBe(true);
      const lines = text.slice(0, -2).split('\r\n');
      for (const line of lines.slice(0, -1)) expect(line).toHaveLength(76);
      expect(lines.at(-1)!.length).toBeLessThanOrEqual(76);
      expect(Buffer.from(lines.join(''), 'base64')).toEqual(data);
    }
  });
});

// ------------------------------------------------------------------------------------------------

describe('findBareLineEnd / toCanonicalCrlf', () => {
  it.each([
    ['', -1],
    ['a\r\nb\r\n', -1],
    ['\r\n', -1],
    ['\n', 0],
    ['a\nb', 1],
    ['a\r\nb\n', 4],
    ['a\rb', 1],
    ['a\r', 1],
    ['\r\r\n', 0],
    ['a\r\n\n', 3],
  ])('findBareLineEnd(%j) = %i', (input, expected) => {
    expect(findBareLineEnd(b(input))).toBe(expected);
  });

  it('findBareLineEnd returns the FIRST bare line end when a bare CR comes before a bare LF', () => {
    // Documented as "index of the first bare CR or bare LF": a bare CR at 1 precedes the bare LF at 3.
    expect(findBareLineEnd(b('a\rb\nc'))).toBe(1);
  });

  it('toCanonicalCrlf turns bare LF and bare CR into CRLF and leaves CRLF alone', () => {
    expect(s(toCanonicalCrlf(b('a\nb\r\nc\rd\n')))).toBe('a\r\nb\r\nc\r\nd\r\n');
    expect(s(toCanonicalCrlf(b('\r\r\n\n')))).toBe('\r\n\r\n\r\n');
  });

  it('toCanonicalCrlf returns canonical input itself (no copy)', () => {
    const x = b('a\r\nb\r\n');
    expect(toCanonicalCrlf(x)).toBe(x);
  });

  it('toCanonicalCrlf keeps 8-bit octets', () => {
    expect([...toCanonicalCrlf(b('\xe9\n\xff'))]).toEqual([0xe9, 0x0d, 0x0a, 0xff]);
  });

  it('property: the result has no bare line end and is idempotent', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('a', '\r', '\n', '\r\n', '\xff', ' '), { maxLength: 40 }), (xs) => {
        const once = toCanonicalCrlf(b(xs.join('')));
        expect(findBareLineEnd(once)).toBe(-1);
        expect(toCanonicalCrlf(once)).toEqual(once);
      }),
      { numRuns: 300 },
    );
  });
});

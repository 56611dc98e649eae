import fc from 'fast-check';
import DataStream from 'nodemailer/lib/smtp-connection/data-stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { describe, expect, it } from 'vitest';
import { splitAt } from '../../test/helpers/split-at.js';
import { encodeBase64Lines } from '../mime/mime-entity.js';
import { isTransparent, RelayConnection, TRANSPARENT_FAST_PATH, vouchTransparent, withTransparentFastPath } from './relay-connection.js';

interface Counted {
  inByteCount: number;
  outByteCount: number;
}

/** Runs `chunks` through a DataStream (with or without the fast path); the output and its counters. */
async function run(chunks: readonly Buffer[], fast: boolean): Promise<{ out: Buffer; inBytes: number; outBytes: number }> {
  const plain = new DataStream();
  const stream = fast ? withTransparentFastPath(plain as unknown as Parameters<typeof withTransparentFastPath>[0]) : plain;
  const parts: Buffer[] = [];
  (stream as unknown as DataStream).on('data', (b: Buffer) => parts.push(b));
  const ended = new Promise<void>((resolve) => (stream as unknown as DataStream).once('end', () => resolve()));
  for (const c of chunks) (stream as unknown as DataStream).write(c);
  (stream as unknown as DataStream).end();
  await ended;
  const counted = stream as unknown as Counted;
  return { out: Buffer.concat(parts), inBytes: counted.inByteCount, outBytes: counted.outByteCount };
}


describe('RelayConnection DATA fast path (RFC 5321 §4.5.2 transparency)', () => {
  it('hooks this nodemailer: an upgrade that renames _createSendStream fails here, not in production', () => {
    expect(TRANSPARENT_FAST_PATH).toBe(true);
    expect(Object.prototype.hasOwnProperty.call(RelayConnection.prototype, '_createSendStream')).toBe(true);
    expect(new RelayConnection({ host: '127.0.0.1', port: 1 })).toBeInstanceOf(SMTPConnection);
  });

  it('sends a CRLF base64 body unchanged, ending with CRLF.CRLF', async () => {
    const body = Buffer.from('Content-Type: application/pkcs7-mime\r\n\r\nMIIB\r\nAAAA\r\n', 'latin1');
    expect(isTransparent(body, false)).toBe(true);
    const { out } = await run([body], true);
    expect(out.toString('latin1')).toBe(`${body.toString('latin1')}.\r\n`);
  });

  it.each([
    ['a dot at the start', '.hidden\r\n', false],
    ['a dot after CRLF', 'a\r\n.b\r\n', false],
    ['a bare LF', 'a\nb\r\n', false],
    ['a bare CR', 'a\rb\r\n', false],
    ['a final CR (judged with the next chunk)', 'a\r', true],
    ['a dot inside a line', 'a.b\r\n', true],
  ])('judges %s', (_what, text, transparent) => {
    expect(isTransparent(Buffer.from(text, 'latin1'), false)).toBe(transparent);
  });

  it('judges across chunks: a dot or a non-LF after a CR that ended the last chunk', () => {
    expect(isTransparent(Buffer.from('.x'), 0x0a)).toBe(false);
    expect(isTransparent(Buffer.from('x'), 0x0d)).toBe(false);
    expect(isTransparent(Buffer.from('\n.'), 0x0d)).toBe(false);
    expect(isTransparent(Buffer.from('\nx'), 0x0d)).toBe(true);
    expect(isTransparent(Buffer.from('.x'), 0x41)).toBe(true);
  });

  it('gives byte for byte what DataStream gives, for any bytes and any chunking', async () => {
    // Bytes drawn mostly from the ones that matter (CR, LF, dot), so that every rule is hit often.
    const byte = fc.oneof(fc.constantFrom(0x0d, 0x0a, 0x2e), fc.constantFrom(0x41, 0x20), fc.integer({ min: 0, max: 255 }));
    await fc.assert(
      fc.asyncProperty(fc.array(byte, { maxLength: 300 }), fc.array(fc.nat(), { maxLength: 6 }), async (bytes, cuts) => {
        const data = Buffer.from(bytes);
        const chunks = splitAt(data, cuts);
        const [fast, plain] = await Promise.all([run(chunks, true), run(chunks, false)]);
        expect(fast.out.equals(plain.out)).toBe(true);
        expect(fast.inBytes).toBe(plain.inBytes);
        expect(fast.outBytes).toBe(plain.outBytes);
      }),
      { numRuns: 1500 },
    );
  });

  it('vouches for a wrapped message only when its header lines need nothing, and then sends it unchanged', async () => {
    const body = encodeBase64Lines(Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 256)));
    const message = (header: string) => {
      const h = Buffer.from(header, 'latin1');
      return { buf: Buffer.concat([h, body]), headerLength: h.length };
    };
    const clean = message('From: a@b.test\r\nTo: c@d.test\r\nContent-Transfer-Encoding: base64\r\n\r\n');
    expect(vouchTransparent(clean.buf, clean.headerLength)).toBe(true);
    const [fast, plain] = await Promise.all([run([clean.buf], true), run([clean.buf], false)]);
    expect(fast.out.equals(plain.out)).toBe(true);
    expect(fast.out.equals(Buffer.concat([clean.buf, Buffer.from('.\r\n')]))).toBe(true);

    // A header field whose name starts with a dot, or a bare LF in a header: DataStream's own code.
    for (const header of ['.X-Dot: 1\r\nFrom: a@b.test\r\n\r\n', 'From: a@b.test\nTo: c@d.test\r\n\r\n']) {
      const m = message(header);
      expect(vouchTransparent(m.buf, m.headerLength)).toBe(false);
      const [f, p] = await Promise.all([run([m.buf], true), run([m.buf], false)]);
      expect(f.out.equals(p.out)).toBe(true);
      expect(f.out.equals(Buffer.concat([m.buf, Buffer.from('.\r\n')]))).toBe(false);
    }
  });

  it('takes a vouched message as it is (it is not scanned), but only where a line starts', async () => {
    // Vouched for by its header alone, a body that would need dot-stuffing goes out unchanged:
    // this is what vouching means, and why only hisp's own base64 is vouched for.
    const header = Buffer.from('From: a@b.test\r\n\r\n', 'latin1');
    const m = Buffer.concat([header, Buffer.from('QUJD\r\n.hidden\r\n', 'latin1')]);
    expect(vouchTransparent(m, header.length)).toBe(true);
    const vouched = await run([m], true);
    expect(vouched.out.equals(Buffer.concat([m, Buffer.from('.\r\n')]))).toBe(true);
    // After a chunk that ended with CR, the same buffer is judged by DataStream's own code.
    const afterCr = await run([Buffer.from('x\r'), m], true);
    const plain = await run([Buffer.from('x\r'), m], false);
    expect(afterCr.out.equals(plain.out)).toBe(true);
    expect(afterCr.out.includes(Buffer.from('\r\n..hidden'))).toBe(true);
    // A header that does not end a line is not vouched for.
    expect(vouchTransparent(Buffer.from('From: a@b.test\r\nQUJD\r\n'), 10)).toBe(false);
  });

  it('gives what DataStream gives for CRLF text that is mostly clean (the fast path taken)', async () => {
    const line = fc.stringMatching(/^[A-Za-z0-9+/=. ]{0,20}$/);
    await fc.assert(
      fc.asyncProperty(fc.array(line, { maxLength: 40 }), fc.array(fc.nat(), { maxLength: 4 }), async (lines, cuts) => {
        const chunks = splitAt(Buffer.from(lines.map((l) => `${l}\r\n`).join(''), 'latin1'), cuts);
        const [fast, plain] = await Promise.all([run(chunks, true), run(chunks, false)]);
        expect(fast.out.equals(plain.out)).toBe(true);
        expect(fast.outBytes).toBe(plain.outBytes);
      }),
      { numRuns: 500 },
    );
  });
});

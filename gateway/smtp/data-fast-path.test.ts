import fc from 'fast-check';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { describe, expect, it } from 'vitest';
import { splitAt } from '../../test/helpers/split-at.js';
import { feedDataStream, installDataFastPath, PORTED_FROM_SHA256, sourceSha256, upstreamFeedDataStream } from './data-fast-path.js';

type Feed = typeof feedDataStream;

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Drives one SMTPStream the way smtp-server's connection does (DATA switches to data mode and
 * continues when the data stream ends) and writes what it sees: the commands, and for every DATA
 * its bytes, byte count and size flag.
 */
async function transcript(chunks: readonly Buffer[], feed: Feed, maxBytes = 64): Promise<string[]> {
  const stream = new SMTPStream();
  (stream as unknown as { _feedDataStream: Feed })._feedDataStream = feed;
  const seen: string[] = [];
  let open: Buffer[] | undefined;
  stream.oncommand = (command: Buffer, callback?: () => void) => {
    const line = command.toString('latin1');
    seen.push(`command ${JSON.stringify(line)}`);
    if (line === 'DATA') {
      const data = stream.startDataMode(maxBytes);
      const parts: Buffer[] = [];
      open = parts;
      data.on('data', (b: Buffer) => parts.push(b));
      data.on('end', () => {
        open = undefined;
        seen.push(`data ${Buffer.concat(parts).toString('hex')} bytes=${data.byteLength} exceeded=${data.sizeExceeded}`);
        stream.continue();
      });
    }
    // Later, as smtp-server's own handlers answer (ours are asynchronous). A handler that calls back
    // at once can stall upstream's parser: continue() clears its callback after running it, so a
    // DATA pipelined behind another and ended in the same chunk loses its own continuation.
    if (callback) setImmediate(callback);
  };
  const finished = new Promise<void>((resolve, reject) => {
    stream.once('finish', () => resolve());
    stream.once('error', reject);
  });
  for (const c of chunks) stream.write(c);
  stream.end();
  // A stalled parser shows as a difference rather than as the test's time-out. The deadline is
  // generous: 100 KB fed a byte at a time takes a second or more on a loaded 2-CPU machine, and a
  // deadline that fires on slowness, not on a stall, makes the two transcripts differ by chance.
  let timer: NodeJS.Timeout | undefined;
  const stalled = await Promise.race([finished.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), 10_000)))]);
  clearTimeout(timer);
  if (stalled) seen.push('did not finish');
  for (let i = 0; i < 5; i++) await tick();
  if (open) seen.push(`unfinished ${Buffer.concat(open).toString('hex')} bytes=${stream.dataBytes}`);
  return seen;
}


describe('smtp-server DATA fast path (RFC 5321 §4.1.1.4 end of data, §4.5.2 transparency)', () => {
  it('is ported from the installed smtp-server: an upgrade that changes _feedDataStream fails here', () => {
    expect(sourceSha256(upstreamFeedDataStream), 'smtp-server changed SMTPStream._feedDataStream: port the change into data-fast-path.ts and update PORTED_FROM_SHA256').toBe(PORTED_FROM_SHA256);
    expect(installDataFastPath()).toBe(true);
    expect(Object.getOwnPropertyDescriptor(SMTPStream.prototype, '_feedDataStream')?.value).toBe(feedDataStream);
    expect(installDataFastPath()).toBe(true);
  });

  it('ends DATA at CRLF.CRLF, removes a transparency dot and passes what follows to the command parser', async () => {
    const input = Buffer.from('DATA\r\nSubject: x\r\n\r\n..leading dot\r\nline\r\n.\r\nQUIT\r\n', 'latin1');
    const seen = await transcript([input], feedDataStream, 1000);
    expect(seen).toEqual([
      'command "DATA"',
      `data ${Buffer.from('Subject: x\r\n\r\n.leading dot\r\nline\r\n', 'latin1').toString('hex')} bytes=34 exceeded=false`,
      'command "QUIT"',
    ]);
  });

  it('does not end DATA early on a terminator split across segments at the start of data', async () => {
    // "..\r\n" is a transparent single dot line; sent in two segments it must stay content.
    const chunks = ['DATA\r\n', '.', '.\r\n', 'x\r\n.\r\n', 'NOOP\r\n'].map((s) => Buffer.from(s, 'latin1'));
    const [fast, upstream] = await Promise.all([transcript(chunks, feedDataStream), transcript(chunks, upstreamFeedDataStream)]);
    expect(fast).toEqual(upstream);
    expect(fast[1]).toBe(`data ${Buffer.from('.\r\nx\r\n', 'latin1').toString('hex')} bytes=6 exceeded=false`);
  });

  it('sees what upstream sees, for any bytes, commands and segmentation', async () => {
    // Tokens drawn around the bytes that matter, so that terminators, stuffed dots, bare line ends
    // and pipelined commands meet chunk boundaries often.
    const token = fc.oneof(
      fc.constantFrom('\r\n', '.', '..', '\r\n.\r\n', '\r\n..\r\n', '.\r\n', '\n', '\r', '\n.', 'DATA\r\n', 'NOOP\r\n', 'ab', 'x\r\n'),
      fc.integer({ min: 0, max: 255 }).map((b) => String.fromCharCode(b)),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(token, { maxLength: 60 }), fc.array(fc.nat(), { maxLength: 8 }), fc.integer({ min: 1, max: 80 }), async (tokens, cuts, maxBytes) => {
        const chunks = splitAt(Buffer.from(`DATA\r\n${tokens.join('')}`, 'latin1'), cuts);
        const [fast, upstream] = await Promise.all([transcript(chunks, feedDataStream, maxBytes), transcript(chunks, upstreamFeedDataStream, maxBytes)]);
        expect(fast).toEqual(upstream);
      }),
      { numRuns: 1500 },
    );
  });

  it('sees what upstream sees for a 100 KB message in TLS-record-sized segments', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 20_000 }), { minLength: 1, maxLength: 12 }), fc.array(fc.nat({ max: 1800 }), { maxLength: 5 }), async (sizes, stuffed) => {
        const lines = Array.from({ length: 1800 }, (_, i) => (stuffed.includes(i) ? `..line ${i}` : `line ${i} ${'A'.repeat(40)}`));
        const data = Buffer.from(`DATA\r\n${lines.join('\r\n')}\r\n.\r\nQUIT\r\n`, 'latin1');
        const cuts: number[] = [];
        for (let at = 0, k = 0; at < data.length; k++) cuts.push((at += sizes[k % sizes.length]!));
        const chunks = splitAt(data, cuts);
        const [fast, upstream] = await Promise.all([transcript(chunks, feedDataStream, 1 << 20), transcript(chunks, upstreamFeedDataStream, 1 << 20)]);
        expect(fast).toEqual(upstream);
        expect(fast.at(-1)).toBe('command "QUIT"');
      }),
      { numRuns: 40 },
    );
  });
});

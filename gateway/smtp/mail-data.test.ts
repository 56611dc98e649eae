import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { splitAt } from '../../test/helpers/split-at.js';
import { findBareLineEnd } from '../mime/mime-entity.js';
import { MailData, type MailDataFault } from './mail-data.js';

const dir = mkdtempSync(join(tmpdir(), 'hisp-mail-data-'));

/** What the whole message, scanned at once, says (the reference: findBareLineEnd and indexOf). */
function reference(data: Buffer, maxBytes: number): MailDataFault | undefined {
  if (data.length > maxBytes) return { kind: 'too-big' };
  const bare = findBareLineEnd(data);
  const nul = data.indexOf(0);
  if (bare === -1 && nul === -1) return undefined;
  if (nul !== -1 && (bare === -1 || nul < bare)) return { kind: 'nul', at: nul };
  return { kind: 'bare-line-end', at: bare, octet: data[bare] === 0x0d ? 'CR' : 'LF' };
}

describe('MailData: DATA received as it arrives (issue 14, items 6 and 10)', () => {
  it('finds the first bare CR, bare LF or NUL wherever the chunks are cut, and keeps exactly the octets otherwise', async () => {
    const octet = fc.constantFrom(0x0d, 0x0a, 0x00, 0x41, 0x2e, 0x20);
    await fc.assert(
      fc.asyncProperty(fc.array(octet, { maxLength: 400 }), fc.array(fc.nat(), { maxLength: 10 }), fc.integer({ min: 0, max: 64 }), async (octets, cuts, memoryBytes) => {
        // Mostly CRLF pairs, so that messages without a fault come up too.
        const data = Buffer.from(octets.flatMap((o) => (o === 0x0d ? [0x0d, 0x0a] : o === 0x0a && octets.length % 3 === 0 ? [0x0d, 0x0a] : [o])));
        const m = new MailData({ dir, maxBytes: 1 << 20, memoryBytes, minFreeBytes: 0 });
        for (const c of splitAt(data, cuts)) await m.write(c);
        const end = await m.end();
        const expected = reference(data, 1 << 20);
        if (expected === undefined) {
          expect('message' in end).toBe(true);
          if (!('message' in end)) return;
          const got = end.message.whole ? end.message.head : readFileSync(end.message.file!);
          expect(got.equals(data)).toBe(true);
          expect(end.message.whole).toBe(data.length <= memoryBytes);
        } else {
          expect(end).toEqual({ fault: expected });
        }
      }),
      { numRuns: 500 },
    );
    // Every file of a fault was removed; those of messages are the caller's (removed here).
    for (const f of readdirSync(dir)) expect(f).toMatch(/\.data$/);
  });

  it('too many octets: the rest is dropped, nothing is kept, the fault says so', async () => {
    const m = new MailData({ dir: mkdtempSync(join(tmpdir(), 'hisp-md-')), maxBytes: 1000, memoryBytes: 10, minFreeBytes: 0 });
    await m.write(Buffer.alloc(600, 0x41));
    await m.write(Buffer.alloc(600, 0x41));
    expect(m.received).toBe(1200);
    expect(await m.end()).toEqual({ fault: { kind: 'too-big' } });
  });

  it('never writes a message to the last free space of the disk: below minFreeBytes the rest is dropped (storage)', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'hisp-md-'));
    let free = 10 * 1024 * 1024;
    const m = new MailData({ dir: folder, maxBytes: 1 << 30, memoryBytes: 1024, minFreeBytes: 5 * 1024 * 1024, freeBytes: () => Promise.resolve(free) });
    await m.write(Buffer.alloc(2048, 0x41)); // to a file: 10 MiB free
    expect(readdirSync(folder)).toHaveLength(1);
    free = 4 * 1024 * 1024;
    for (let i = 0; i < 5; i++) await m.write(Buffer.alloc(2 * 1024 * 1024, 0x41)); // checked again past 8 MiB
    expect(await m.end()).toEqual({ fault: { kind: 'storage' } });
    expect(readdirSync(folder)).toEqual([]);
  });

  it('refuse(): the caller drops the rest (a client over its rate); the file goes at once', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'hisp-md-'));
    const m = new MailData({ dir: folder, maxBytes: 1 << 20, memoryBytes: 10, minFreeBytes: 0 });
    await m.write(Buffer.from('Subject: x\r\n\r\nbody body\r\n'));
    const file = readdirSync(folder)[0]!;
    await m.refuse({ kind: 'rate' });
    expect(existsSync(join(folder, file))).toBe(false);
    await m.write(Buffer.from('more\r\n'));
    expect(await m.end()).toEqual({ fault: { kind: 'rate' } });
  });
});

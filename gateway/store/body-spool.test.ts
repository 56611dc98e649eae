import { fdatasync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { BodySpool, SPOOL_RECORD_HEADER_BYTES } from './body-spool.js';

let dir: string;
const spools: BodySpool[] = [];
const spool = (options: ConstructorParameters<typeof BodySpool>[1] = {}): BodySpool => {
  const s = new BodySpool(dir, options);
  spools.push(s);
  return s;
};

beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), 'hisp-spool-')), 'spool');
});

afterEach(async () => {
  for (const s of spools.splice(0)) await s.close();
  rmSync(join(dir, '..'), { recursive: true, force: true });
});

const body = (n: number, fill = 0x61): Buffer => Buffer.alloc(n, fill);

describe('BodySpool', () => {
  it('appends records to a 0600 segment and reads them back, also from another instance', async () => {
    const s = spool();
    const a = await s.append('q1', body(10));
    const b = await s.append('q2', Buffer.from('second body'));
    expect(a).toEqual({ segment: 1, offset: 0 });
    expect(b).toEqual({ segment: 1, offset: SPOOL_RECORD_HEADER_BYTES + 10 });
    const file = readFileSync(s.segmentPath(1));
    // HSB1, the length, the CRC-32 of the queue id, that of the body, the body.
    expect(file.subarray(0, 8)).toEqual(Buffer.from([0x48, 0x53, 0x42, 0x31, 0, 0, 0, 10]));
    expect(file.readUInt32BE(8)).toBe(crc32('q1'));
    expect(file.readUInt32BE(12)).toBe(crc32(body(10)));
    expect(file.subarray(16, 26)).toEqual(body(10));
    expect(await s.read(b, 'q2', 11)).toEqual(Buffer.from('second body'));
    expect(await spool().read(a, 'q1', 10)).toEqual(body(10));
    expect(statSync(s.segmentPath(1)).mode & 0o777).toBe(0o600);
  });

  it('starts a new segment when the next record would not fit, and never appends to a segment it did not create', async () => {
    const s = spool({ segmentBytes: 100 });
    const refs = [];
    for (let i = 0; i < 5; i++) refs.push(await s.append(`q${i}`, body(40, 0x30 + i)));
    // 56 octets a record: one per 100-octet segment after the first fills up.
    expect(refs.map((r) => r.segment)).toEqual([1, 2, 3, 4, 5]);
    const later = spool({ segmentBytes: 100 });
    expect((await later.append('q9', body(1))).segment).toBe(6);
    for (const [i, r] of refs.entries()) expect(await later.read(r, `q${i}`, 40)).toEqual(body(40, 0x30 + i));
    // A record larger than a segment gets one of its own.
    expect(await later.append('big', body(500))).toEqual({ segment: 7, offset: 0 });
    expect(s.segments()).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('an append resolves only after an fdatasync that started after its write; concurrent appends share one', async () => {
    const calls: (() => void)[] = [];
    const s = spool({ fdatasync: (fd, done) => calls.push(() => fdatasync(fd, done)) });
    let resolved = 0;
    const appends = Array.from({ length: 20 }, (_, i) =>
      s.append(`q${i}`, body(100)).then((r) => {
        resolved++;
        return r;
      }),
    );
    // Wait until the first sync was asked for: nobody is answered before it ends.
    while (calls.length === 0) await new Promise((r) => setTimeout(r, 1));
    await new Promise((r) => setTimeout(r, 20));
    expect(resolved).toBe(0);
    // Each run syncs and lets the ones behind it start theirs: 20 appends, at most two syncs.
    let syncs = 0;
    while (resolved < 20) {
      const next = calls.shift();
      if (next) {
        syncs++;
        next();
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(calls).toEqual([]);
    expect(syncs).toBeLessThanOrEqual(2);
    expect(new Set((await Promise.all(appends)).map((r) => r.offset)).size).toBe(20);
  });

  it('after a failed fdatasync, it reports once and refuses every append (fail-stop)', async () => {
    const failures: Error[] = [];
    let fail = true;
    const s = spool({
      fdatasync: (fd, done) => (fail ? done(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })) : fdatasync(fd, done)),
      onSyncFailure: (err) => failures.push(err),
    });
    await expect(s.append('q1', body(10))).rejects.toMatchObject({ code: 'HISP_IO', transient: true });
    fail = false;
    await expect(s.append('q2', body(10))).rejects.toMatchObject({ code: 'HISP_IO', transient: true });
    expect(failures.map((e) => e.message)).toEqual(['EIO: i/o error, fdatasync']);
  });

  it('refuses to read a record of another message, a short or missing one, with HISP_IO', async () => {
    const s = spool();
    const ref = await s.append('q1', body(100));
    await expect(s.read(ref, 'q2', 100)).rejects.toMatchObject({ code: 'HISP_IO', transient: false });
    await expect(s.read(ref, 'q1', 99)).rejects.toMatchObject({ code: 'HISP_IO', transient: false });
    await expect(s.read({ segment: 1, offset: 3 }, 'q1', 100)).rejects.toMatchObject({ code: 'HISP_IO' });
    await expect(s.read({ segment: 2, offset: 0 }, 'q1', 100)).rejects.toMatchObject({ code: 'HISP_IO', transient: false });
    // One octet of the body changed on disk.
    const damaged = readFileSync(s.segmentPath(1));
    damaged.writeUInt8(damaged.readUInt8(SPOOL_RECORD_HEADER_BYTES + 50) ^ 1, SPOOL_RECORD_HEADER_BYTES + 50);
    writeFileSync(s.segmentPath(1), damaged);
    await expect(spool().read(ref, 'q1', 100)).rejects.toThrow(/missing or damaged/);
    truncateSync(s.segmentPath(1), 50);
    await expect(spool().read(ref, 'q1', 100)).rejects.toThrow(/missing or damaged/);
    expect(() => s.segmentPath(-1)).toThrow(HispError);
  });

  it('reclaim() removes the old segments nothing refers to, never the one being written, and only after settling', async () => {
    const s = spool({ segmentBytes: 1, reclaimAgeMs: 60_000 });
    for (let i = 0; i < 4; i++) await s.append(`q${i}`, body(10));
    writeFileSync(join(dir, 'notes.txt'), 'not a segment');
    const events: string[] = [];
    const settle = () => {
      events.push(`settle with ${readdirSync(dir).length} files`);
      return Promise.resolve();
    };
    // Too young: nothing goes, and nothing needs settling.
    expect(await s.reclaim(() => false, settle)).toBe(0);
    expect(events).toEqual([]);
    const old = (Date.now() - 120_000) / 1000;
    for (const n of s.segments()) utimesSync(s.segmentPath(n), old, old);
    // Segment 3 is referred to once settled (a row that committed meanwhile): asked again, it stays.
    let settled = false;
    expect(await s.reclaim((n) => n === 2 || (settled && n === 3), () => settle().then(() => (settled = true)))).toBe(1);
    expect(events).toEqual(['settle with 5 files']);
    expect(readdirSync(dir).sort()).toEqual(['0000000002.spool', '0000000003.spool', '0000000004.spool', 'notes.txt']);
  });

  it('erase() overwrites records with zeros and syncs them; a record of a segment gone is skipped', async () => {
    const synced: number[] = [];
    const s = spool({ fdatasync: (fd, done) => (synced.push(fd), fdatasync(fd, done)) });
    const a = await s.append('q1', body(100, 0x41));
    const b = await s.append('q2', body(70_000, 0x42));
    const c = await s.append('q3', body(10, 0x43));
    const before = synced.length;
    expect(
      await s.erase([
        { ref: b, size: 70_000, queueId: 'q2' },
        { ref: a, size: 100, queueId: 'q1' },
        { ref: { segment: 9, offset: 0 }, size: 10, queueId: 'q9' },
      ]),
    ).toBe(2);
    expect(synced.length).toBe(before + 1);
    const file = readFileSync(s.segmentPath(1));
    expect(file.subarray(0, c.offset).every((x) => x === 0)).toBe(true);
    await expect(s.read(b, 'q2', 70_000)).rejects.toThrow(/missing or damaged/);
    expect(await s.read(c, 'q3', 10)).toEqual(body(10, 0x43));
    // Erased already: nothing written, nothing synced.
    expect(await s.erase([{ ref: a, size: 100, queueId: 'q1' }])).toBe(0);
    expect(synced.length).toBe(before + 1);
  });

  it('erase() leaves a record alone unless its header names that message and size (a stale reference never zeroes another body)', async () => {
    const s = spool();
    const a = await s.append('q1', body(100, 0x41));
    const b = await s.append('q2', body(200, 0x42));
    // Another queue id, another size, an offset inside a record: all refused.
    expect(
      await s.erase([
        { ref: a, size: 100, queueId: 'q-other' },
        { ref: b, size: 199, queueId: 'q2' },
        { ref: { segment: a.segment, offset: a.offset + 8 }, size: 100, queueId: 'q1' },
      ]),
    ).toBe(0);
    expect(await s.read(a, 'q1', 100)).toEqual(body(100, 0x41));
    expect(await s.read(b, 'q2', 200)).toEqual(body(200, 0x42));
  });

  it('close() waits for the writes in flight and refuses appends afterwards', async () => {
    const s = spool();
    const pending = s.append('q1', body(1000));
    await s.close();
    expect(await pending).toEqual({ segment: 1, offset: 0 });
    await expect(s.append('q2', body(1))).rejects.toMatchObject({ code: 'HISP_IO' });
  });

  it('reading any damaged segment gives the body or a HispError, never a crash', async () => {
    const s = spool();
    const ref = await s.append('q1', body(64, 0x7a));
    const original = readFileSync(s.segmentPath(1));
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 200 }),
        fc.nat({ max: 120 }),
        fc.nat({ max: 100 }),
        fc.boolean(),
        async (garbage, offset, size, keepHead) => {
          const file = join(dir, `${String(100 + n++).padStart(10, '0')}.spool`);
          writeFileSync(file, keepHead ? Buffer.concat([original.subarray(0, offset), garbage]) : garbage);
          const segment = Number(file.slice(-16, -6));
          try {
            const got = await s.read({ segment, offset: ref.offset }, 'q1', size);
            expect(size).toBe(64);
            expect(got).toEqual(body(64, 0x7a));
          } catch (err) {
            expect(err).toBeInstanceOf(HispError);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

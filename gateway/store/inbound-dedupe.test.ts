import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HispDatabase } from './database.js';
import { InboundDedupe } from './inbound-dedupe.js';

let dir: string;
let db: HispDatabase;
let clock: number;
let dedupe: InboundDedupe;
const HOUR = 3_600_000;
const WINDOW = 72 * HOUR;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-dedupe-'));
  db = HispDatabase.open({ dataDir: dir });
  clock = Date.UTC(2026, 0, 1);
  dedupe = new InboundDedupe(db, { now: () => clock });
});

afterEach(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('InboundDedupe.seen', () => {
  it('is false the first time (and remembers), true for the same sender, Message-ID and recipient within the window', () => {
    expect(dedupe.seen('hisp@sender.example', '<m1@sender.example>', 'p@phr.example', WINDOW)).toBe(false);
    clock += WINDOW - 1;
    expect(dedupe.seen('hisp@sender.example', '<m1@sender.example>', 'p@phr.example', WINDOW)).toBe(true);
  });

  it('compares addresses case-insensitively and Message-IDs with or without brackets', () => {
    expect(dedupe.seen('HISP@Sender.Example', 'm1@sender.example', '<P@PHR.example>', WINDOW)).toBe(false);
    expect(dedupe.seen('hisp@sender.example', '<m1@sender.example>', 'p@phr.example', WINDOW)).toBe(true);
  });

  it('another recipient, sender or Message-ID is not a duplicate', () => {
    expect(dedupe.seen('s@a.example', 'm1@a', 'p@phr.example', WINDOW)).toBe(false);
    expect(dedupe.seen('s@a.example', 'm1@a', 'q@phr.example', WINDOW)).toBe(false);
    expect(dedupe.seen('t@a.example', 'm1@a', 'p@phr.example', WINDOW)).toBe(false);
    expect(dedupe.seen('s@a.example', 'm2@a', 'p@phr.example', WINDOW)).toBe(false);
  });

  it('after the window the message counts as new, and the window starts again', () => {
    expect(dedupe.seen('s@a.example', 'm1@a', 'p@phr.example', WINDOW)).toBe(false);
    clock += WINDOW;
    expect(dedupe.seen('s@a.example', 'm1@a', 'p@phr.example', WINDOW)).toBe(false);
    clock += WINDOW - 1;
    expect(dedupe.seen('s@a.example', 'm1@a', 'p@phr.example', WINDOW)).toBe(true);
  });

  it('a message without a Message-ID is never a duplicate', () => {
    expect(dedupe.seen('s@a.example', null, 'p@phr.example', WINDOW)).toBe(false);
    expect(dedupe.seen('s@a.example', '', 'p@phr.example', WINDOW)).toBe(false);
    expect(dedupe.seen('s@a.example', undefined, 'p@phr.example', WINDOW)).toBe(false);
  });

  it('a sighting in a commit that rolls back is not remembered', async () => {
    await expect(
      db.batch(() => {
        expect(dedupe.seen('s@a.example', 'm1@a', 'p@phr.example', WINDOW)).toBe(false);
        throw new Error('storing the message failed');
      }),
    ).rejects.toThrow('storing the message failed');
    expect(dedupe.seen('s@a.example', 'm1@a', 'p@phr.example', WINDOW)).toBe(false);
  });

  it('forget() and prune() drop sightings', () => {
    dedupe.seen('s@a.example', 'm1@a', 'p@phr.example', WINDOW);
    expect(dedupe.forget('S@A.example', '<m1@a>', 'p@phr.example')).toBe(true);
    expect(dedupe.seen('s@a.example', 'm1@a', 'p@phr.example', WINDOW)).toBe(false);
    clock += HOUR;
    dedupe.seen('s@a.example', 'm2@a', 'p@phr.example', WINDOW);
    expect(dedupe.prune(HOUR / 2)).toBe(1);
    expect(dedupe.seen('s@a.example', 'm2@a', 'p@phr.example', WINDOW)).toBe(true);
  });
});

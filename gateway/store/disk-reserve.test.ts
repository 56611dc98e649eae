import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { DISK_RESERVE_FILE, DiskReserve, isDiskFull } from './disk-reserve.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-reserve-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('DiskReserve', () => {
  it('writes the reserve at its size, mode 0600, random (a compressing file system must not store it in nothing)', async () => {
    const reserve = new DiskReserve(dir, 3 * 1024 * 1024 + 5);
    expect(await reserve.ensure()).toBe(true);
    const path = join(dir, DISK_RESERVE_FILE);
    expect(statSync(path).size).toBe(3 * 1024 * 1024 + 5);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const bytes = readFileSync(path);
    expect(bytes.subarray(0, 4096).equals(Buffer.alloc(4096))).toBe(false);
    // Present and whole: not written again.
    const before = statSync(path).ino;
    expect(await reserve.ensure()).toBe(true);
    expect(statSync(path).ino).toBe(before);
  });

  it('release() frees it and says how much; ensure() writes it again', async () => {
    const reserve = new DiskReserve(dir, 64 * 1024);
    await reserve.ensure();
    expect(reserve.release()).toBe(64 * 1024);
    expect(reserve.size()).toBe(0);
    expect(reserve.release()).toBe(0);
    await reserve.ensure();
    expect(reserve.size()).toBe(64 * 1024);
  });

  it('an operator command (no configured size) writes back only what it released', async () => {
    await new DiskReserve(dir, 96 * 1024).ensure();
    const cli = new DiskReserve(dir);
    await cli.ensure();
    expect(cli.size()).toBe(96 * 1024);
    expect(cli.release()).toBe(96 * 1024);
    await cli.ensure();
    expect(cli.size()).toBe(96 * 1024);
    // Nothing there and nothing released: it writes none.
    rmSync(join(dir, DISK_RESERVE_FILE));
    await new DiskReserve(dir).ensure();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('follows the configuration: 0 removes it, a lower size shrinks it', async () => {
    await new DiskReserve(dir, 128 * 1024).ensure();
    await new DiskReserve(dir, 32 * 1024).ensure();
    expect(statSync(join(dir, DISK_RESERVE_FILE)).size).toBe(32 * 1024);
    await new DiskReserve(dir, 0).ensure();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('removes the temporary file of a reserve whose writing was cut short (a crash), not one being written', async () => {
    const stale = join(dir, '.disk-reserve-4242-0.tmp');
    const fresh = join(dir, '.disk-reserve-4243-0.tmp');
    writeFileSync(stale, 'x');
    writeFileSync(fresh, 'x');
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(stale, old, old);
    await new DiskReserve(dir, 4096).ensure();
    expect(readdirSync(dir).sort()).toEqual(['.disk-reserve-4243-0.tmp', DISK_RESERVE_FILE]);
  });

  it('reports the room left on the file system', () => {
    expect(new DiskReserve(dir).available()).toBeGreaterThan(0);
  });
});

describe('isDiskFull', () => {
  it("recognises SQLite's and the system's full disk, through the store's wrapping", () => {
    const sqlite = Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
    expect(isDiskFull(new HispError('HISP_IO', 'the database could not commit', { cause: sqlite }))).toBe(true);
    expect(isDiskFull(Object.assign(new Error('no space'), { code: 'ENOSPC' }))).toBe(true);
    expect(isDiskFull(new HispError('HISP_IO', 'x', { cause: Object.assign(new Error('busy'), { code: 'SQLITE_BUSY' }) }))).toBe(false);
    expect(isDiskFull('SQLITE_FULL')).toBe(false);
  });
});

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hispError } from '../../test/helpers/hisp-error.js';
import { DataFolderLock } from './data-folder-lock.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const folder = () => {
  const d = mkdtempSync(join(tmpdir(), 'hisp-lock-'));
  dirs.push(d);
  return d;
};

describe('DataFolderLock', () => {
  it('holds the data folder for this process and frees it on release', () => {
    const dir = folder();
    const lock = DataFolderLock.acquire(dir);
    expect(readFileSync(join(dir, 'hisp.pid'), 'utf8')).toBe(`${process.pid}\n`);
    lock.release();
    expect(existsSync(join(dir, 'hisp.pid'))).toBe(false);
  });

  it('refuses a second gateway while the holder runs, naming its pid', () => {
    const dir = folder();
    // A live process other than this one: the parent of the test runner.
    writeFileSync(join(dir, 'hisp.pid'), `${process.ppid}\n`);
    expect(hispError(() => DataFolderLock.acquire(dir))).toMatchObject({ code: 'HISP_IO', message: expect.stringContaining(`pid ${process.ppid}`) as string });
  });

  it('takes over a file whose pid now belongs to another program (a reboot, a container restart)', () => {
    const dir = folder();
    // A live process that is not Node: a sleeping shell.
    const other = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      writeFileSync(join(dir, 'hisp.pid'), `${other.pid}\n`);
      const lock = DataFolderLock.acquire(dir);
      expect(readFileSync(join(dir, 'hisp.pid'), 'utf8')).toBe(`${process.pid}\n`);
      lock.release();
    } finally {
      other.kill();
    }
  });

  it('takes over the file of a process that is gone (killed with SIGKILL)', () => {
    const dir = folder();
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    writeFileSync(join(dir, 'hisp.pid'), `${gone}\n`);
    const lock = DataFolderLock.acquire(dir);
    expect(readFileSync(join(dir, 'hisp.pid'), 'utf8')).toBe(`${process.pid}\n`);
    lock.release();
  });
});

import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { HispError } from '../core/errors.js';

/**
 * One running gateway per data folder: `<dataDir>/hisp.pid`, created exclusively with the process
 * id. A file left by a process that no longer runs (SIGKILL, power loss) is taken over. Holding it
 * is what lets a starting gateway release every lease in the queue at once: no other process can be
 * working on them, so the deliveries a killed gateway held are due now, not when their leases expire.
 * The operator verbs (`hisp queue`, `hisp status`) do not take it: they only read or make work due.
 */
export class DataFolderLock {
  private constructor(readonly path: string) {}

  static acquire(dataDir: string): DataFolderLock {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const path = join(dataDir, 'hisp.pid');
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fd = openSync(path, 'wx', 0o600);
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        return new DataFolderLock(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new HispError('HISP_IO', `cannot create ${path}`, { cause: err });
      }
      const holder = readHolder(path);
      if (holder !== undefined && holder !== process.pid && isRunning(holder)) {
        throw new HispError('HISP_IO', `another hisp (pid ${holder}) runs on the data folder ${dataDir}; stop it first, or give another data folder`);
      }
      // Stale: its process is gone. Remove and try again (another starter may race us: O_EXCL decides).
      try {
        unlinkSync(path);
      } catch {
        // removed by the other starter
      }
    }
    throw new HispError('HISP_IO', `cannot take ${path}`);
  }

  release(): void {
    try {
      if (readHolder(this.path) === process.pid) unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

function readHolder(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * True when `pid` runs and may be a hisp: after a reboot or a container restart the pid in a stale
 * file can belong to another program, so where /proc tells the command line, it must be Node's.
 */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const argv0 = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0')[0] ?? '';
    return /node|hisp/i.test(argv0);
  } catch {
    return true; // no /proc (or not allowed to read it): assume it is
  }
}

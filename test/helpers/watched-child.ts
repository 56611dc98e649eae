/**
 * A program run for a test as the child of a small watchdog shell, so that it cannot outlive the
 * test process (a killed vitest worker included): the shell kills it when its stdin, a pipe from
 * this process, closes. The shell leads its own process group, so killNow() takes everything.
 * Shared by the DCDT harness (knotd, slapd) and the Postfix harness (master, smtp-sink).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { accessSync, constants as fsConstants } from 'node:fs';
import type net from 'node:net';
import path from 'node:path';

const WATCHDOG = [
  'exec 3<&0',
  '"$@" </dev/null 3<&- &',
  'child=$!',
  '{ while read -r _ <&3; do :; done; kill -TERM "$child" 2>/dev/null; } &',
  'watcher=$!',
  'wait "$child"; status=$?',
  'kill "$watcher" 2>/dev/null',
  'exit "$status"',
].join('\n');

export const INSTALL_HINT = 'install the test peers with `sudo bash scripts/install-test-peers.sh`';

/** An executable from PATH or the sbin folders (which a non-root PATH often lacks), or undefined. */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const p = path.join(dir, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return undefined;
}

export function requireExecutable(name: string): string {
  const p = findExecutable(name);
  if (p === undefined) throw new Error(`${name} not found (PATH, /usr/sbin, /sbin): ${INSTALL_HINT}`);
  return p;
}

/** Runs a program to its end: exit code and output (a failure to start it rejects). */
export function execFileText(file: string, args: readonly string[], timeoutMs = 10_000): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') {
        reject(new Error(`${file} ${args.join(' ')}: ${error.message}`, { cause: error }));
        return;
      }
      resolve({ code: typeof error?.code === 'number' ? error.code : 0, out: stdout, err: stderr });
    });
  });
}

/** The `code` of an error (ENOENT, EPERM…), if it has one. */
export function errorCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String(e.code) : undefined;
}

/** True while process `pid` exists (EPERM: it exists, owned by another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errorCode(e) === 'EPERM';
  }
}

/** Sends `signal` to a process group; false when the group no longer exists. */
export function killGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

export class WatchedChild {
  readonly exited: Promise<void>;
  exitCode: number | null | undefined;
  /** Where stdout and stderr go, when given. */
  readonly logFile: string | undefined;
  private readonly child: ChildProcess;

  /** stdout and stderr go to `logFile` (appended) or, without one, to `onOutput`. */
  constructor(
    readonly name: string,
    command: string,
    args: readonly string[],
    output: { logFile: string } | { onOutput: (chunk: Buffer) => void },
  ) {
    this.logFile = 'logFile' in output ? output.logFile : undefined;
    if ('logFile' in output) {
      const log = openSync(output.logFile, 'a');
      try {
        this.child = spawn('/bin/sh', ['-c', WATCHDOG, name, command, ...args], { detached: true, stdio: ['pipe', log, log] });
      } finally {
        closeSync(log);
      }
    } else {
      this.child = spawn('/bin/sh', ['-c', WATCHDOG, name, command, ...args], { detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
      for (const stream of [this.child.stdout, this.child.stderr]) {
        stream?.on('data', output.onOutput);
        (stream as net.Socket | null)?.unref();
      }
    }
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code) => {
        this.exitCode = code;
        resolve();
      });
      this.child.once('error', () => {
        this.exitCode = null;
        resolve();
      });
    });
    this.child.stdin?.on('error', () => {}); // EPIPE when the shell is already gone
    this.child.unref();
    (this.child.stdin as net.Socket | null)?.unref();
  }

  /** The process id of the watchdog shell, which leads the child's process group (`detached`). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** SIGKILL to the watchdog's group at once (exit hook; fallback of stop()). */
  killNow(): void {
    if (this.child.pid !== undefined) killGroup(this.child.pid, 'SIGKILL');
  }

  /** Closes the watchdog's stdin (it sends SIGTERM), waits up to `graceMs`, then SIGKILL. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.running) {
      this.child.stdin?.end();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        this.exited.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), graceMs);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        this.killNow();
        await this.exited;
      }
    }
    this.killNow(); // the watcher subshell, if it is still there
  }
}


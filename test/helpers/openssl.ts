// Small helpers for interop tests: spawning the `openssl` CLI and the built `hisp` CLI, temp dirs,
// and making sure dist/ is not older than the TypeScript sources before the CLI is run.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Absolute path of the repository root. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface RunResult {
  /** Exit status (null when killed by a signal). */
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs a command synchronously with optional stdin, never through a shell. */
export function run(command: string, args: readonly string[], input?: Buffer): RunResult {
  const r = spawnSync(command, args, {
    input,
    cwd: REPO_ROOT,
    maxBuffer: 64 * 1024 * 1024,
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString('utf8') };
}

/** `openssl …`, whatever its exit status. */
export function openssl(args: readonly string[], input?: Buffer): RunResult {
  return run('openssl', args, input);
}

/** `openssl …`; throws (with the command line and stderr) unless it exits 0. Returns stdout. */
export function opensslOk(args: readonly string[], input?: Buffer): Buffer {
  const r = openssl(args, input);
  if (r.status !== 0) {
    throw new Error(`openssl ${args.join(' ')} exited ${String(r.status)}:\n${r.stderr}`);
  }
  return r.stdout;
}

/** The OpenSSL version line (`OpenSSL 3.0.x …`), or undefined when openssl cannot be run. */
export function opensslVersion(): string | undefined {
  try {
    const r = openssl(['version']);
    return r.status === 0 ? r.stdout.toString('utf8').trim() : undefined;
  } catch {
    return undefined;
  }
}

/** The built CLI: `node bin/hisp.js …` from the repository root. */
export function hispCli(args: readonly string[], input?: Buffer): RunResult {
  return run(process.execPath, [path.join(REPO_ROOT, 'bin/hisp.js'), ...args], input);
}

function newestMtime(dir: string, ext: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p, ext));
    else if (entry.name.endsWith(ext) && !entry.name.endsWith(`.test${ext}`)) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * Runs `npm run build` when dist/ lacks the CLI or is older than any gateway/ source, so that CLI
 * tests never exercise stale JavaScript. Returns true when it built.
 */
export function ensureBuilt(): boolean {
  const entry = path.join(REPO_ROOT, 'dist/gateway/cli/main.js');
  const built = existsSync(entry) ? newestMtime(path.join(REPO_ROOT, 'dist/gateway'), '.js') : 0;
  if (built !== 0 && built >= newestMtime(path.join(REPO_ROOT, 'gateway'), '.ts')) return false;
  const r = run('npm', ['run', 'build']);
  if (r.status !== 0) throw new Error(`npm run build failed:\n${r.stdout.toString('utf8')}\n${r.stderr}`);
  return true;
}

export interface TempDir {
  dir: string;
  /** Absolute path of a file in the directory. */
  file(name: string): string;
  /** Removes the directory and everything in it. */
  cleanup(): void;
}

/** A fresh directory under os.tmpdir(). */
export function makeTempDir(prefix: string): TempDir {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return {
    dir,
    file: (name) => path.join(dir, name),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

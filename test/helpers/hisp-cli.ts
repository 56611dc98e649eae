// The built CLI (bin/hisp.js) run as a user runs it, with a clean environment: PATH, and only the
// variables a test gives (none of the caller's HISP_*).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './openssl.js';

const run = promisify(execFile);

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs `hisp args…` in `cwd`; a non-zero exit is a result, not an error. */
export async function runHisp(args: readonly string[], options: { cwd: string; env?: Record<string, string> }): Promise<CliResult> {
  try {
    const r = await run(process.execPath, [join(REPO_ROOT, 'bin', 'hisp.js'), ...args], { cwd: options.cwd, env: { PATH: process.env.PATH ?? '', ...(options.env ?? {}) } });
    return { status: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { status: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

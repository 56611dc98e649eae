/**
 * `hisp start` as a child process, the way a user runs it (`node bin/hisp.js start`, under a shell
 * with a given umask, or through `npx`), with its two output streams kept apart: stdout carries the
 * log (JSON lines when not a terminal), stderr the banner and messages for a person.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { REPO_ROOT } from './openssl.js';

export const HISP_BIN = path.join(REPO_ROOT, 'bin', 'hisp.js');

export interface RunningHisp {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The environment of a user who set none of hisp's variables (and is not inside an npm script). */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('HISP_') || k.startsWith('npm_')) continue;
    env[k] = v;
  }
  return { ...env, HISP_LOG_LEVEL: 'info', ...extra };
}

/**
 * Spawns `command args…` with pipes for stdout and stderr. `how`: `node` runs bin/hisp.js with
 * this Node; `umask` the same under `sh -c 'umask U; exec node …'`; `npx` runs `npx hisp …` in the
 * repository, as the README says.
 */
export function spawnHisp(
  args: readonly string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; how?: 'node' | { umask: string } | 'npx' },
): RunningHisp {
  const how = options.how ?? 'node';
  const env = options.env ?? cleanEnv();
  let child: ChildProcess;
  if (how === 'node') child = spawn(process.execPath, [HISP_BIN, ...args], { cwd: options.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  // --offline: the same exec chain, and never a registry look-up (npx links this checkout into its cache).
  else if (how === 'npx') child = spawn('npx', ['--offline', '--yes', 'hisp', ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  else {
    child = spawn('sh', ['-c', `umask ${how.umask} && exec "$0" "$@"`, process.execPath, HISP_BIN, ...args], {
      cwd: options.cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Polls `check` every 50 ms until it returns a value (not undefined/false), or throws at the deadline. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000, context: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${context()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits for the banner's "hisp: listening: submission N, inbound M" line (on stderr; on stdout before issue 14). */
export async function listening(h: RunningHisp, timeoutMs = 60_000): Promise<{ submission: number; inbound: number }> {
  const m = await waitFor(
    'the "listening" line',
    () => {
      if (h.child.exitCode !== null) throw new Error(`hisp start exited ${h.child.exitCode}:\n${h.stdout()}\n${h.stderr()}`);
      return /^hisp: listening: submission (\d+), inbound (\d+)/m.exec(`${h.stderr()}\n${h.stdout()}`) ?? undefined;
    },
    timeoutMs,
    () => `${h.stdout()}\n${h.stderr()}`,
  );
  return { submission: Number(m[1]), inbound: Number(m[2]) };
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Submits one message as the embedded default's `dev` account (STARTTLS + AUTH). */
export async function submitToEmbedded(dataDir: string, port: number, raw: string, to = 'patient@direct.localhost'): Promise<string> {
  const password = readFileSync(path.join(dataDir, 'private', 'submission-password'), 'utf8').trim();
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    requireTLS: true,
    auth: { user: 'dev', pass: password },
    tls: { rejectUnauthorized: false },
  });
  try {
    const info = await transport.sendMail({ envelope: { from: 'provider@direct.localhost', to: [to] }, raw });
    return info.response;
  } finally {
    transport.close();
  }
}

/** The messages in a Maildir's new/ folder, oldest name first. */
export function maildirNew(dir: string): Buffer[] {
  const d = path.join(dir, 'new');
  if (!existsSync(d)) return [];
  return readdirSync(d)
    .sort()
    .map((f) => readFileSync(path.join(d, f)));
}

/** Every file and folder under `root` (root included) with its permission bits, as `mode path`. */
export function modesUnder(root: string): { path: string; kind: 'dir' | 'file' | 'other'; mode: number }[] {
  const out: { path: string; kind: 'dir' | 'file' | 'other'; mode: number }[] = [];
  const walk = (p: string): void => {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return; // removed meanwhile (a Maildir tmp file, a spool segment)
    }
    const kind = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
    out.push({ path: path.relative(root, p) || '.', kind, mode: st.mode & 0o777 });
    if (kind === 'dir') for (const e of readdirSync(p)) walk(path.join(p, e));
  };
  walk(root);
  return out;
}

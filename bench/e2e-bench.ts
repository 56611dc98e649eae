import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { DEFAULTS } from '../gateway/config/schema.js';
import {
  EDGE_PASSWORD,
  EDGE_USER,
  gatewayConfigObject,
  knotAvailable,
  startDirectNetwork,
  writeToml,
  type DirectNetwork,
} from '../test/helpers/direct-network.js';
import { postfixUnavailableReason, smtpSinkAvailable, startPostfix, startSmtpSink, type SmtpSink } from '../test/helpers/postfix.js';
import { REPO_ROOT } from './agent-workload.js';

/**
 * The end-to-end path, against real peers on loopback, hisp gateways as `hisp start
 * --config` child processes (so that their CPU time and peak RSS are their own, from /proc):
 *
 * - hop: the sending gateway alone. N messages are submitted over 1 or 20 SMTP sessions (STARTTLS +
 *   AUTH once per session, then one message per transaction) into gateway A (a.test), which signs
 *   and encrypts each one to sink.test's certificate (found through a CERT record in knotd), queues
 *   it durably and relays it to smtp-sink standing in for the remote HISP (`remoteDomains.sink.test
 *   .route`). The reference is a Debian Postfix relay instance (queue fsynced, as shipped) doing
 *   the same hop into its own smtp-sink, with the same messages over the same number of sessions
 *   (STARTTLS, no AUTH: Postfix's smtpd SASL needs Dovecot or saslauthd).
 * - full: gateway A relays to gateway B (b.test, MX and CERT in knotd), which decrypts, verifies,
 *   delivers into a Maildir and sends processed and dispatched MDNs back to A, which decrypts,
 *   verifies and records them (and forwards the timely ones into the sender's Maildir). "MDNs back"
 *   is when A has finished all 2 N of them (its inbound deliveries, read from its database).
 *   Reference: the same load through the Postfix relay into smtp-sink.
 * - sink_direct: the same client straight into smtp-sink (plain SMTP), for what the client and the
 *   sink can do on this machine at most (both references share the machine with the client).
 *
 * messages/s = N / (time from the first submission until N are counted at the far end: smtp-sink's
 * counters, or the files in B's Maildir new/, polled every 10 ms). The clock starts after the
 * sessions are open (connected, STARTTLS, AUTH) and after a warm-up has gone all the way through:
 * 20 messages, and 3,000 for the hop loads that have a target, which are measured in steady state
 * over several seconds (Postfix gets the same warm-up and N). A fresh Node process compiles its hot
 * functions in the background for its first 10-15 s under load (V8's optimising compiler: 184
 * compilations in the first 2 s of a 100 KB hop, 40 in the 2 s after 10 s, 11 after 16 s, by
 * `--trace-opt`; 10-15 % of the gateway's CPU early on, by `perf record`), and its wrap thread is a
 * second isolate that warms up alike; a HISP runs for weeks, and that start-up cost is not what an
 * operator sizes a server by. The 1-session loads keep 20 messages of warm-up: they show the cold
 * process. Submit-to-delivered latency: the client stamps each message at its 250 (Date.now());
 * delivered is the mtime of its file in B's Maildir (written and fsynced before it is linked into
 * new/; the file-system clock is coarse, a few ms). CPU s/msg: utime + stime of the gateway process
 * (/proc/PID/stat, all threads) over the measured interval (until the last MDN is back, for the full
 * path), per message; Postfix's CPU is the same sum over master's process group (live processes,
 * plus the children master reaped). Peak RSS: VmHWM of the gateway process at the end of the run
 * (its whole life: start-up, warm-up and the run). Every run gets fresh processes and data folders.
 * The hop loads that have a target (20 sessions) run in three pairs, Postfix then hisp: their
 * figures are the medians (peak RSS the highest), with the lowest and highest pair ratio beside.
 *
 * The gateway configuration is the default one except for what the network needs (ports, domains,
 * DNS server, remote ports): queue workers, fsync, log level `info` (to a file, as Postfix's maillog)
 * are what a deployment gets. Nothing is turned off to go faster.
 */

export interface E2eFigure {
  name: string;
  value: number;
  unit: string;
  reference: number | null;
  target: string | null;
  pass: boolean | null;
}

export interface E2eOptions {
  /** Multiplies every N (a quick check: 0.1). */
  scale?: number;
  /** Only these parts. */
  only?: readonly ('hop' | 'full')[];
  /** Only the runs whose figure prefix (`e2e.hop.10KB.20_sessions`) contains this. */
  match?: string;
  /** Run the gateway processes with `node --cpu-prof`, profiles written here (one folder per run). */
  cpuProfileDir?: string;
  /** Progress lines on stderr. */
  verbose?: boolean;
}

export interface Load {
  size: '10KB' | '100KB';
  sessions: number;
  n: number;
  /** Messages sent (and waited for at the far end) before the clock starts; default WARM_UP. */
  warmUp?: number;
}

// N chosen so that each hisp run takes several seconds on a 2-core machine. The loads with a
// target are measured in steady state: after STEADY_WARM_UP messages, over 7-10 s (see the header).
export const STEADY_WARM_UP = 3000;
const HOP_LOADS: Load[] = [
  { size: '10KB', sessions: 20, n: 5000, warmUp: STEADY_WARM_UP },
  { size: '100KB', sessions: 20, n: 3000, warmUp: STEADY_WARM_UP },
  { size: '10KB', sessions: 1, n: 1000 },
  { size: '100KB', sessions: 1, n: 600 },
];
const FULL_LOADS: Load[] = [
  { size: '10KB', sessions: 20, n: 500 },
  { size: '100KB', sessions: 20, n: 300 },
  { size: '10KB', sessions: 1, n: 200 },
  { size: '100KB', sessions: 1, n: 100 },
];
const WARM_UP = 20;
/** Rounds of the hop loads that have a target (their figures are medians). */
const ROUNDS = 3;
/** Fail a run when nothing more arrives for this long. */
const STALL_MS = 60_000;
const BYTES = { '10KB': 10 * 1024, '100KB': 100 * 1024 } as const;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const who = (sessions: number): string => (sessions === 1 ? '1_session' : `${sessions}_sessions`);

// ---------------------------------------------------------------------------------------------
// Messages

const bodies = new Map<string, string>();

/** The base64 body of `bytes` bytes (random content, 76-character lines), one per size. */
function bodyOf(bytes: number): string {
  let b = bodies.get(String(bytes));
  if (!b) {
    const lines = Math.max(1, Math.ceil(bytes / 78));
    const raw = randomBytes(lines * 57);
    const parts: string[] = [];
    for (let i = 0; i < lines; i++) parts.push(raw.subarray(i * 57, i * 57 + 57).toString('base64'));
    b = `${parts.join('\r\n')}\r\n`;
    bodies.set(String(bytes), b);
  }
  return b;
}

let runCounter = 0;
let tagCounter = 0;

/** A message of about `bytes` bytes from provider@a.test, its Message-ID `<e2e-TAG.SEQ@a.test>`. */
function message(tag: string, seq: number, to: string, bytes: number): Buffer {
  const head =
    `From: Dr. Provider <provider@a.test>\r\nTo: ${to}\r\nSubject: Continuity of care document ${seq}\r\n` +
    `Date: Wed, 25 Nov 2026 09:00:00 +0000\r\nMessage-ID: <e2e-${tag}.${seq}@a.test>\r\nMIME-Version: 1.0\r\n` +
    'Content-Type: application/xml; name=ccda.xml\r\nContent-Transfer-Encoding: base64\r\n\r\n';
  return Buffer.from(head + bodyOf(Math.max(100, bytes - head.length)), 'latin1');
}

/** The raw message of sequence number `seq` of a run tagged `tag`. */
export type MessageMaker = (tag: string, seq: number) => Buffer;

const MESSAGE_ID_RE = /^Message-ID:\s*<e2e-([\w-]+)\.(\d+)@a\.test>/im;

// ---------------------------------------------------------------------------------------------
// SMTP client sessions

export interface SessionOptions {
  port: number;
  /** STARTTLS (required) and, with credentials, AUTH. */
  tls: boolean;
  auth?: { user: string; pass: string };
}

function callback<T>(fn: (cb: (err: Error | null | undefined, v?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));
}

export async function openSession(o: SessionOptions): Promise<SMTPConnection> {
  const c = new SMTPConnection({
    host: '127.0.0.1',
    port: o.port,
    name: 'bench.client.test',
    secure: false,
    requireTLS: o.tls,
    ignoreTLS: !o.tls,
    tls: { rejectUnauthorized: false },
    connectionTimeout: 30_000,
    greetingTimeout: 30_000,
    socketTimeout: 300_000,
    allowInternalNetworkInterfaces: true,
  });
  c.on('error', () => undefined); // reported through the callbacks
  await new Promise<void>((resolve, reject) => {
    c.once('error', reject);
    c.connect(() => {
      c.removeListener('error', reject);
      resolve();
    });
  });
  const auth = o.auth;
  if (auth) await callback<true>((cb) => c.login(auth, cb as never));
  return c;
}

export interface Submitted {
  /** performance.now() before the first MAIL FROM. */
  t0: number;
  /** Date.now() at each message's 250, by sequence number. */
  acceptedAt: Float64Array;
  /** ms from the start of the transaction to the 250, sorted. */
  submitMs: number[];
}

/**
 * Sends messages `from`..`from + n - 1` over the open sessions, each session taking the next
 * sequence number as soon as its previous transaction ends.
 */
export async function submit(sessions: SMTPConnection[], n: number, make: (seq: number) => { from: string; to: string[]; raw: Buffer }): Promise<Submitted> {
  const acceptedAt = new Float64Array(n);
  const submitMs: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    sessions.map(async (c) => {
      for (;;) {
        const seq = next++;
        if (seq >= n) return;
        const m = make(seq);
        const s = performance.now();
        await callback((cb) => c.send({ from: m.from, to: m.to }, m.raw, cb as never)).catch((err: unknown) => {
          throw new Error(`submission of message ${seq} failed: ${(err as Error).message}`);
        });
        acceptedAt[seq] = Date.now();
        submitMs.push(performance.now() - s);
      }
    }),
  );
  submitMs.sort((a, b) => a - b);
  return { t0, acceptedAt, submitMs };
}

export function closeSessions(sessions: SMTPConnection[]): void {
  for (const c of sessions) c.quit();
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(sorted.length * p) - 1))]!;
}

/** Polls `count` until it reaches `target`; returns performance.now() then. Fails after STALL_MS without progress. */
export async function waitCount(what: string, count: () => number, target: number, intervalMs = 10): Promise<number> {
  let last = -1;
  let lastChange = performance.now();
  for (;;) {
    const c = count();
    const now = performance.now();
    if (c >= target) return now;
    if (c !== last) {
      last = c;
      lastChange = now;
    } else if (now - lastChange > STALL_MS) {
      throw new Error(`${what}: ${c} of ${target}, nothing more for ${STALL_MS / 1000} s`);
    }
    await sleep(intervalMs);
  }
}

function countFiles(dir: string): number {
  try {
    return readdirSync(dir).length;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Processes: CPU and memory from /proc

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Fields of /proc/PID/stat after the command name: [0] is field 3 (state). */
function statFields(pid: number): string[] | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** utime + stime of one process (all its threads), seconds. */
export function cpuSeconds(pid: number): number {
  const f = statFields(pid);
  if (!f) return NaN;
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/**
 * CPU seconds of a process group: utime + stime of every live member, plus cutime + cstime (the
 * children each one reaped). Members that exited but were not reaped yet are still listed.
 */
function groupCpuSeconds(pgid: number): number {
  let ticks = 0;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (!f || Number(f[2]) !== pgid) continue;
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return ticks / CLK_TCK;
}

/** CPU seconds of this process (the SMTP client sessions) and of smtp-sink, to take differences of. */
export function peerCpu(sink: SmtpSink): { client: number; sink: number } {
  const u = process.cpuUsage();
  return { client: (u.user + u.system) / 1e6, sink: sink.pgid === undefined ? NaN : groupCpuSeconds(sink.pgid) };
}

export function peerCpuPerMsg(start: { client: number; sink: number }, sink: SmtpSink, n: number): PeerCpu {
  const end = peerCpu(sink);
  return { clientCpuPerMsg: (end.client - start.client) / n, sinkCpuPerMsg: (end.sink - start.sink) / n };
}

/** VmHWM (peak resident set) of a process, bytes. */
export function peakRss(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** The submission port a gateway process printed ("hisp: listening: submission N, inbound M"). */
function submissionPort(logFile: string): number {
  const m = /^hisp: listening: submission (\d+)/m.exec(readFileSync(logFile, 'utf8'));
  if (!m) throw new Error(`${logFile}: no submission port printed`);
  return Number(m[1]);
}

export interface GatewayProcess {
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
let exitHook = false;

/** `node bin/hisp.js start --config FILE`, its output in `logFile`; ready at "hisp: listening". */
export async function startGatewayProcess(name: string, configFile: string, logFile: string, cpuProfileDir?: string, hispRoot = REPO_ROOT): Promise<GatewayProcess> {
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const c of children) c.kill('SIGKILL');
    });
  }
  const fd = openSync(logFile, 'a');
  const args = [
    ...(cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfileDir}`, `--cpu-prof-name=${name}.cpuprofile`] : []),
    // Extra node options for the gateways, to look inside a run (E2E_NODE_FLAGS='--trace-gc').
    ...(process.env.E2E_NODE_FLAGS ? process.env.E2E_NODE_FLAGS.split(' ').filter(Boolean) : []),
    join(hispRoot, 'bin', 'hisp.js'),
    'start',
    '--config',
    configFile,
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', fd, fd], env: { ...process.env, HISP_LOG_LEVEL: 'info' } });
  closeSync(fd);
  children.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      children.delete(child);
      throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) at start:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
    }
    if (/^hisp: listening/m.test(readFileSync(logFile, 'utf8'))) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} did not start in 30 s:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
    }
    await sleep(25);
  }
  return {
    pid: child.pid!,
    logFile,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(timer);
      }
      children.delete(child);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The runs

/** CPU of the machine's other parts of a run, per message: the client (this process) and smtp-sink. */
export interface PeerCpu {
  clientCpuPerMsg: number;
  sinkCpuPerMsg: number;
}

export interface HopResult extends PeerCpu {
  perSec: number;
  cpuPerMsg: number;
  peakRssMiB: number;
  submitP50: number;
  submitP99: number;
}

interface FullResult {
  perSec: number;
  mdnPerSec: number;
  latencyP50: number;
  latencyP99: number;
  cpuPerMsgA: number;
  cpuPerMsgB: number;
  peakRssMiBA: number;
  peakRssMiBB: number;
  submitP50: number;
  submitP99: number;
}

interface Reference extends PeerCpu {
  perSec: number;
  cpuPerMsg: number;
  submitP50: number;
  submitP99: number;
}

export class E2eBench {
  constructor(
    private readonly net: DirectNetwork,
    private readonly options: E2eOptions,
  ) {}

  log(line: string): void {
    if (this.options.verbose) process.stderr.write(`e2e: ${line}\n`);
  }

  runDir(label: string): string {
    const dir = join(this.net.dir, `run${++runCounter}-${label}`);
    mkdirSync(dir, { recursive: true });
    return dir;
  }

  /** Opens the sessions, sends the warm-up (waiting for `warmedUp`), then the N messages (`make`'s, else message()'s). */
  private async drive(
    load: Load,
    session: SessionOptions,
    to: string,
    warmedUp: (count: number) => Promise<void>,
    make?: MessageMaker,
  ): Promise<{ tag: string; submitted: Submitted }> {
    const tag = `r${++tagCounter}`;
    const sessions = await Promise.all(Array.from({ length: load.sessions }, () => openSession(session)));
    try {
      const bytes = BYTES[load.size];
      const warmUp = load.warmUp ?? WARM_UP;
      const raw = make ?? ((t: string, seq: number) => message(t, seq, to, bytes));
      await submit(sessions, warmUp, (seq) => ({ from: 'provider@a.test', to: [to], raw: raw(`${tag}w`, seq) }));
      await warmedUp(warmUp);
      const submitted = await submit(sessions, load.n, (seq) => ({ from: 'provider@a.test', to: [to], raw: raw(tag, seq) }));
      return { tag, submitted };
    } finally {
      closeSessions(sessions);
    }
  }

  /** The client straight into smtp-sink (plain SMTP): what the client and the sink can do at most. */
  async sinkDirect(load: Load): Promise<number> {
    const sink = await startSmtpSink();
    try {
      const { submitted } = await this.drive(load, { port: sink.port, tls: false }, 'patient@sink.test', async (w) => {
        await waitCount('smtp-sink warm-up', () => sink.counters().messages, w);
      });
      const end = await waitCount('smtp-sink', () => sink.counters().messages, (load.warmUp ?? WARM_UP) + load.n, 2);
      return (load.n / (end - submitted.t0)) * 1000;
    } finally {
      await sink.stop();
    }
  }

  /** Postfix (relay mode, STARTTLS on smtpd, queue as shipped) relaying into smtp-sink. */
  async postfix(load: Load): Promise<Reference> {
    const sink = await startSmtpSink();
    const cred = this.net.credentials['sink.test']!;
    const relay = await startPostfix({ mode: 'relay', relayhost: { port: sink.port }, smtpdTls: { keyFile: cred.keyFile, certFile: cred.certFile } });
    try {
      const pgid = Number(readFileSync(join(relay.tempDir, 'spool', 'pid', 'master.pid'), 'latin1').trim());
      let base = 0;
      let cpu0 = 0;
      let peers0 = peerCpu(sink);
      const { submitted } = await this.drive(load, { port: relay.port, tls: true }, 'patient@sink.test', async (w) => {
        await waitCount('Postfix warm-up at smtp-sink', () => sink.counters().messages, w);
        base = w;
        cpu0 = groupCpuSeconds(pgid);
        peers0 = peerCpu(sink);
      });
      const end = await waitCount('Postfix relay into smtp-sink', () => sink.counters().messages, base + load.n);
      const cpu = groupCpuSeconds(pgid) - cpu0;
      return {
        perSec: (load.n / (end - submitted.t0)) * 1000,
        cpuPerMsg: cpu / load.n,
        ...peerCpuPerMsg(peers0, sink, load.n),
        submitP50: percentile(submitted.submitMs, 0.5),
        submitP99: percentile(submitted.submitMs, 0.99),
      };
    } finally {
      await relay.stop();
      await sink.stop();
    }
  }

  /** A gateway's configuration file in `dir`; `sections`: top-level sections added (e.g. `api`). */
  async gatewayConfig(
    dir: string,
    domain: string,
    remote: Record<string, unknown>,
    ports?: { submission: number; inbound: number },
    sections: Record<string, unknown> = {},
  ): Promise<string> {
    const spec = this.net.spec(domain, {
      dataDir: join(dir, `data-${domain}`),
      // The deployment defaults (tests shorten the retry schedule and give up within a minute).
      extra: { queue: { ...DEFAULTS.queue, retrySchedule: [...DEFAULTS.queue.retrySchedule] }, log: { level: 'info' } },
    });
    const raw = await gatewayConfigObject(spec, this.net.dns.address);
    raw.remoteDomains = { ...(raw.remoteDomains as Record<string, unknown>), ...remote };
    if (ports) {
      raw.submission = { ...(raw.submission as Record<string, unknown>), port: ports.submission };
      raw.inbound = { ...(raw.inbound as Record<string, unknown>), port: ports.inbound };
    }
    Object.assign(raw, sections);
    const file = join(dir, `${domain}.toml`);
    writeToml(file, raw);
    return file;
  }

  private profileDir(dir: string): string | undefined {
    if (!this.options.cpuProfileDir) return undefined;
    const d = join(this.options.cpuProfileDir, dir.slice(dir.lastIndexOf('/') + 1));
    mkdirSync(d, { recursive: true });
    return d;
  }

  /**
   * Gateway A alone, relaying into smtp-sink (sink.test routed to it; its certificate in DNS).
   * `hispRoot`: the checkout whose bin/hisp.js (and dist/) runs the gateway, default this one;
   * `make`: the messages, from provider@a.test to patient@sink.test (default: message()'s of the load's size).
   */
  async hop(load: Load, hispRoot = REPO_ROOT, make?: MessageMaker): Promise<HopResult> {
    const dir = this.runDir(`hop-${load.size}-${load.sessions}`);
    const sink = await startSmtpSink();
    let a: GatewayProcess | undefined;
    try {
      const config = await this.gatewayConfig(dir, 'a.test', { 'sink.test': { route: '127.0.0.1', port: sink.port } });
      a = await startGatewayProcess('a.test', config, join(dir, 'a.test.log'), this.profileDir(dir), hispRoot);
      const pid = a.pid;
      let base = 0;
      let cpu0 = 0;
      let peers0 = peerCpu(sink);
      const { submitted } = await this.drive(
        load,
        { port: this.net.ports['a.test']!.submission, tls: true, auth: { user: EDGE_USER, pass: EDGE_PASSWORD } },
        'patient@sink.test',
        async (w) => {
          await waitCount('hisp warm-up at smtp-sink', () => sink.counters().messages, w);
          base = w;
          cpu0 = cpuSeconds(pid);
          peers0 = peerCpu(sink);
        },
        make,
      );
      const end = await waitCount('hisp relay into smtp-sink', () => sink.counters().messages, base + load.n);
      const cpu = cpuSeconds(pid) - cpu0;
      return {
        perSec: (load.n / (end - submitted.t0)) * 1000,
        cpuPerMsg: cpu / load.n,
        ...peerCpuPerMsg(peers0, sink, load.n),
        peakRssMiB: peakRss(pid) / 2 ** 20,
        submitP50: percentile(submitted.submitMs, 0.5),
        submitP99: percentile(submitted.submitMs, 0.99),
      };
    } finally {
      await a?.stop();
      await sink.stop();
      if (process.env.E2E_KEEP_LOGS) {
        try {
          copyFileSync(join(dir, 'a.test.log'), join(process.env.E2E_KEEP_LOGS, `${dir.slice(dir.lastIndexOf('/') + 1)}.log`));
        } catch (err) {
          this.log(`E2E_KEEP_LOGS: ${(err as Error).message}`);
        }
      }
    }
  }

  /**
   * Two builds side by side on the sending hop, at the same time: each gateway (this checkout's and
   * `otherRoot`'s, both as a.test on their own data folder and ports) gets half of the sessions and
   * of the messages, and relays into its own smtp-sink. Both see the same machine at every instant
   * (the other tenants of a shared VM move single runs by ±15 %), so their CPU per message compares
   * the builds; msg/s is each one's share of a machine both saturate.
   */
  async hopPair(load: Load, otherRoot: string): Promise<{ this: HopResult; other: HopResult }> {
    const dir = this.runDir(`pair-${load.size}-${load.sessions}`);
    const sinks = [await startSmtpSink(), await startSmtpSink()];
    const gateways: GatewayProcess[] = [];
    try {
      const roots = [REPO_ROOT, otherRoot];
      const ports: number[] = [];
      for (const [i, root] of roots.entries()) {
        const sub = join(dir, i === 0 ? 'this' : 'other');
        mkdirSync(sub, { recursive: true });
        // Each its own ports (the network's are for one gateway per domain): 0, the gateway picks
        // free ones and prints them.
        const config = await this.gatewayConfig(sub, 'a.test', { 'sink.test': { route: '127.0.0.1', port: sinks[i]!.port } }, { submission: 0, inbound: 0 });
        const g = await startGatewayProcess(`a.test-${i}`, config, join(sub, 'a.test.log'), undefined, root);
        gateways.push(g);
        ports.push(submissionPort(g.logFile));
      }
      const half: Load = { ...load, sessions: Math.max(1, load.sessions / 2), n: Math.round(load.n / 2), ...(load.warmUp !== undefined ? { warmUp: Math.round(load.warmUp / 2) } : {}) };
      const base = [0, 0];
      const cpu0 = [0, 0];
      const peers0 = sinks.map((sink) => peerCpu(sink));
      let warmed = 0;
      let bothWarm: () => void = () => undefined;
      const allWarm = new Promise<void>((resolve) => (bothWarm = resolve));
      const runs = gateways.map(async (g, i) => {
        const sink = sinks[i]!;
        const { submitted } = await this.drive(half, { port: ports[i]!, tls: true, auth: { user: EDGE_USER, pass: EDGE_PASSWORD } }, 'patient@sink.test', async (w) => {
          await waitCount(`gateway ${i} warm-up at smtp-sink`, () => sink.counters().messages, w);
          // Both measure the same interval: the clock starts when both are warm.
          if (++warmed === 2) bothWarm();
          await allWarm;
          base[i] = w;
          cpu0[i] = cpuSeconds(g.pid);
          peers0[i] = peerCpu(sink);
        });
        const end = await waitCount(`gateway ${i} relay into smtp-sink`, () => sink.counters().messages, base[i]! + half.n);
        const cpu = cpuSeconds(g.pid) - cpu0[i]!;
        return {
          perSec: (half.n / (end - submitted.t0)) * 1000,
          cpuPerMsg: cpu / half.n,
          // The client is shared by both halves: its figure is the whole run's per message of this half.
          ...peerCpuPerMsg(peers0[i]!, sink, half.n),
          peakRssMiB: peakRss(g.pid) / 2 ** 20,
          submitP50: percentile(submitted.submitMs, 0.5),
          submitP99: percentile(submitted.submitMs, 0.99),
        };
      });
      const [a, b] = await Promise.all(runs);
      return { this: a!, other: b! };
    } finally {
      for (const g of gateways) await g.stop();
      for (const s of sinks) await s.stop();
    }
  }

  /** A → B over real DNS, delivered into B's Maildir, MDNs back at A. */
  async full(load: Load): Promise<FullResult> {
    const dir = this.runDir(`full-${load.size}-${load.sessions}`);
    const ports = this.net.ports;
    const prof = this.profileDir(dir);
    let a: GatewayProcess | undefined;
    let b: GatewayProcess | undefined;
    try {
      a = await startGatewayProcess('a.test', await this.gatewayConfig(dir, 'a.test', {}), join(dir, 'a.test.log'), prof);
      b = await startGatewayProcess('b.test', await this.gatewayConfig(dir, 'b.test', {}), join(dir, 'b.test.log'), prof);
      const delivered = join(dir, 'data-b.test', 'maildir', 'patient@b.test', 'new');
      // Every MDN back at A, read from its queue: B sends a processed and a dispatched MDN per message,
      // and A forwards both to the sender's Maildir only when the processed one arrives first (a
      // processed MDN after the dispatched one is a duplicate and dropped), so the Maildir cannot be
      // counted. The inbound deliveries of A are these MDNs; finished = delivered or dropped.
      const aDb = new Database(join(dir, 'data-a.test', 'hisp.sqlite'), { readonly: true, fileMustExist: true });
      const finishedMdns = aDb.prepare<[], { n: number }>("SELECT count(*) AS n FROM deliveries WHERE direction = 'inbound' AND state <> 'queued'");
      const mdnsBack = () => finishedMdns.get()?.n ?? 0;
      const pids = { a: a.pid, b: b.pid };
      let cpu0 = { a: 0, b: 0 };
      let end: number;
      let mdnEnd: number;
      let drove: { tag: string; submitted: Submitted };
      try {
        drove = await this.drive(load, { port: ports['a.test']!.submission, tls: true, auth: { user: EDGE_USER, pass: EDGE_PASSWORD } }, 'patient@b.test', async (w) => {
          await waitCount('warm-up delivered at b.test', () => countFiles(delivered), w);
          await waitCount('warm-up MDNs back at a.test', mdnsBack, 2 * w, 20);
          cpu0 = { a: cpuSeconds(pids.a), b: cpuSeconds(pids.b) };
        });
        end = await waitCount('delivered at b.test', () => countFiles(delivered), (load.warmUp ?? WARM_UP) + load.n);
        mdnEnd = await waitCount('processed and dispatched MDNs back at a.test', mdnsBack, 2 * ((load.warmUp ?? WARM_UP) + load.n), 20);
      } finally {
        aDb.close();
      }
      const { tag, submitted } = drove;
      const cpu = { a: cpuSeconds(pids.a) - cpu0.a, b: cpuSeconds(pids.b) - cpu0.b };

      const latencies: number[] = [];
      const head = Buffer.alloc(4096);
      for (const name of readdirSync(delivered)) {
        const file = join(delivered, name);
        const fd = openSync(file, 'r');
        let len: number;
        try {
          len = readSync(fd, head, 0, head.length, 0);
        } finally {
          closeSync(fd);
        }
        const m = MESSAGE_ID_RE.exec(head.subarray(0, len).toString('latin1'));
        if (!m || m[1] !== tag) continue;
        latencies.push(statSync(file).mtimeMs - submitted.acceptedAt[Number(m[2])]!);
      }
      if (latencies.length !== load.n) throw new Error(`found ${latencies.length} of ${load.n} measured messages in ${delivered}`);
      latencies.sort((x, y) => x - y);
      return {
        perSec: (load.n / (end - submitted.t0)) * 1000,
        mdnPerSec: (load.n / (mdnEnd - submitted.t0)) * 1000,
        latencyP50: percentile(latencies, 0.5),
        latencyP99: percentile(latencies, 0.99),
        cpuPerMsgA: cpu.a / load.n,
        cpuPerMsgB: cpu.b / load.n,
        peakRssMiBA: peakRss(pids.a) / 2 ** 20,
        peakRssMiBB: peakRss(pids.b) / 2 ** 20,
        submitP50: percentile(submitted.submitMs, 0.5),
        submitP99: percentile(submitted.submitMs, 0.99),
      };
    } finally {
      await a?.stop();
      await b?.stop();
    }
  }
}

/** Why the end-to-end bench cannot run here, or undefined. */
export function e2eUnavailableReason(): string | undefined {
  if (!knotAvailable()) return 'knotd is not installed (scripts/install-test-peers.sh)';
  if (!smtpSinkAvailable()) return 'smtp-sink (Debian postfix) is not installed (scripts/install-test-peers.sh)';
  const postfix = postfixUnavailableReason();
  if (postfix) return postfix;
  if (!existsSync('/proc/self/stat')) return 'no /proc: CPU and RSS of the gateway processes cannot be read';
  return undefined;
}

/** The end-to-end figures (see the comment at the top), or why they were skipped. */
export async function benchE2e(options: E2eOptions = {}): Promise<E2eFigure[] | { skipped: string }> {
  const why = e2eUnavailableReason();
  if (why) return { skipped: why };
  const scale = options.scale ?? 1;
  const scaled = (l: Load): Load => ({
    ...l,
    n: Math.max(20, Math.round(l.n * scale)),
    ...(l.warmUp !== undefined ? { warmUp: Math.max(WARM_UP, Math.round(l.warmUp * scale)) } : {}),
  });
  const only = new Set(options.only ?? ['hop', 'full']);
  const figures: E2eFigure[] = [];
  const fig = (name: string, value: number, unit: string, reference: number | null = null, target: string | null = null, pass: boolean | null = null) =>
    figures.push({ name, value, unit, reference, target, pass });

  const net = await startDirectNetwork(['a.test', 'b.test', 'sink.test']);
  const bench = new E2eBench(net, options);
  const references = new Map<string, Reference>();
  const reference = async (l: Load): Promise<Reference> => {
    const key = `${l.size}.${l.sessions}.${l.n}`;
    let r = references.get(key);
    if (!r) {
      r = await bench.postfix(l);
      references.set(key, r);
      bench.log(`postfix ${l.size} ${who(l.sessions)} n=${l.n}: ${r.perSec.toFixed(0)} msg/s, ${(r.cpuPerMsg * 1000).toFixed(2)} ms CPU/msg`);
    }
    return r;
  };
  try {
    bench.log(`load average at start: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    if (only.has('hop')) {
      for (const load of HOP_LOADS.map(scaled)) {
        const id = `${load.size}.${who(load.sessions)}`;
        if (options.match && !`e2e.hop.${id}`.includes(options.match)) continue;
        if (load.sessions > 1) {
          const direct = await bench.sinkDirect(load);
          fig(`e2e.sink_direct.${id}.msgs_per_s`, direct, 'msg/s');
        }
        // The loads with a target run in ROUNDS pairs (Postfix, then hisp, fresh processes each):
        // single runs move ±15 % on a shared VM; the figures are the medians, and the lowest and
        // highest ratio of a pair are reported beside them.
        const target = load.sessions > 1;
        const pairs: { pf: Reference; h: HopResult }[] = [];
        for (let round = 0; round < (target ? ROUNDS : 1); round++) {
          const pfRun = round === 0 ? await reference(load) : await bench.postfix(load);
          const hRun = await bench.hop(load);
          pairs.push({ pf: pfRun, h: hRun });
          bench.log(`hop ${id} n=${load.n}: ${hRun.perSec.toFixed(0)} msg/s (Postfix ${pfRun.perSec.toFixed(0)}), ${(hRun.cpuPerMsg * 1000).toFixed(2)} ms CPU/msg`);
        }
        const pf: Reference = {
          perSec: median(pairs.map((x) => x.pf.perSec)),
          cpuPerMsg: median(pairs.map((x) => x.pf.cpuPerMsg)),
          submitP50: median(pairs.map((x) => x.pf.submitP50)),
          submitP99: median(pairs.map((x) => x.pf.submitP99)),
          clientCpuPerMsg: median(pairs.map((x) => x.pf.clientCpuPerMsg)),
          sinkCpuPerMsg: median(pairs.map((x) => x.pf.sinkCpuPerMsg)),
        };
        const h: HopResult = {
          perSec: median(pairs.map((x) => x.h.perSec)),
          cpuPerMsg: median(pairs.map((x) => x.h.cpuPerMsg)),
          submitP50: median(pairs.map((x) => x.h.submitP50)),
          submitP99: median(pairs.map((x) => x.h.submitP99)),
          peakRssMiB: Math.max(...pairs.map((x) => x.h.peakRssMiB)),
          clientCpuPerMsg: median(pairs.map((x) => x.h.clientCpuPerMsg)),
          sinkCpuPerMsg: median(pairs.map((x) => x.h.sinkCpuPerMsg)),
        };
        if (pairs.length > 1) {
          const ratios = pairs.map((x) => x.h.perSec / x.pf.perSec);
          fig(`e2e.hop.${id}.ratio_lowest`, Math.min(...ratios), 'ratio');
          fig(`e2e.hop.${id}.ratio_highest`, Math.max(...ratios), 'ratio');
        }
        fig(`e2e.hop.${id}.msgs_per_s`, h.perSec, 'msg/s', pf.perSec, target ? 'ratio >= 1.0' : null, target ? h.perSec / pf.perSec >= 1 : null);
        fig(`e2e.hop.${id}.cpu_ms_per_msg`, h.cpuPerMsg * 1000, 'ms', pf.cpuPerMsg * 1000);
        fig(`e2e.hop.${id}.submit_p50_ms`, h.submitP50, 'ms', pf.submitP50);
        fig(`e2e.hop.${id}.submit_p99_ms`, h.submitP99, 'ms', pf.submitP99);
        fig(`e2e.hop.${id}.peak_rss`, h.peakRssMiB, 'MiB');
        // The rest of the machine's work per message in the same runs (client and smtp-sink share the
        // two CPUs with the relay under test): what the ratio of msg/s is made of.
        fig(`e2e.hop.${id}.client_cpu_ms_per_msg`, h.clientCpuPerMsg * 1000, 'ms', pf.clientCpuPerMsg * 1000);
        fig(`e2e.hop.${id}.sink_cpu_ms_per_msg`, h.sinkCpuPerMsg * 1000, 'ms', pf.sinkCpuPerMsg * 1000);
      }
    }
    if (only.has('full')) {
      for (const load of FULL_LOADS.map(scaled)) {
        const id = `${load.size}.${who(load.sessions)}`;
        if (options.match && !`e2e.full.${id}`.includes(options.match)) continue;
        const pf = await reference(load);
        const f = await bench.full(load);
        bench.log(`full ${id} n=${load.n}: ${f.perSec.toFixed(0)} msg/s (Postfix ${pf.perSec.toFixed(0)}), p50 ${f.latencyP50.toFixed(0)} ms, p99 ${f.latencyP99.toFixed(0)} ms`);
        fig(`e2e.full.${id}.msgs_per_s`, f.perSec, 'msg/s', pf.perSec);
        fig(`e2e.full.${id}.mdns_back_msgs_per_s`, f.mdnPerSec, 'msg/s');
        fig(`e2e.full.${id}.latency_p50_ms`, f.latencyP50, 'ms');
        fig(`e2e.full.${id}.latency_p99_ms`, f.latencyP99, 'ms');
        fig(`e2e.full.${id}.submit_p99_ms`, f.submitP99, 'ms', pf.submitP99);
        fig(`e2e.full.${id}.cpu_ms_per_msg.a`, f.cpuPerMsgA * 1000, 'ms', pf.cpuPerMsg * 1000);
        fig(`e2e.full.${id}.cpu_ms_per_msg.b`, f.cpuPerMsgB * 1000, 'ms');
        fig(`e2e.full.${id}.peak_rss.a`, f.peakRssMiBA, 'MiB');
        fig(`e2e.full.${id}.peak_rss.b`, f.peakRssMiBB, 'MiB');
      }
    }
  } finally {
    await net.stop();
  }
  return figures;
}

/**
 * A/B of two builds on the sending hop, for development: the hop loads matching `match` run
 * `rounds` times in alternation, this checkout then `otherRoot` (another checkout, built), fresh
 * processes each, no Postfix. Single runs move ±15 % on a shared VM; alternating and taking medians
 * shows a change of a few per cent that a before/after pair of full bench runs would hide.
 */
export async function compareHop(
  otherRoot: string,
  options: { match?: string; scale?: number; rounds?: number; verbose?: boolean; together?: boolean } = {},
): Promise<string[]> {
  const why = e2eUnavailableReason();
  if (why) return [`e2e: skipped: ${why}`];
  const scale = options.scale ?? 1;
  const rounds = options.rounds ?? 3;
  const net = await startDirectNetwork(['a.test', 'b.test', 'sink.test']);
  const bench = new E2eBench(net, { verbose: options.verbose ?? true });
  const lines: string[] = [];
  try {
    for (const l of HOP_LOADS) {
      const load: Load = { ...l, n: Math.max(20, Math.round(l.n * scale)), ...(l.warmUp !== undefined ? { warmUp: Math.max(WARM_UP, Math.round(l.warmUp * scale)) } : {}) };
      const id = `${load.size}.${who(load.sessions)}`;
      if (options.match && !`e2e.hop.${id}`.includes(options.match)) continue;
      const runs: Record<'this' | 'other', HopResult[]> = { this: [], other: [] };
      const show = (which: string, r: HopResult) =>
        bench.log(
          `${which} ${id}: ${r.perSec.toFixed(0)} msg/s, ${(r.cpuPerMsg * 1000).toFixed(2)} ms CPU/msg, client ${(r.clientCpuPerMsg * 1000).toFixed(2)}, sink ${(r.sinkCpuPerMsg * 1000).toFixed(2)}, submit p50 ${r.submitP50.toFixed(1)} ms`,
        );
      for (let round = 0; round < rounds; round++) {
        if (options.together) {
          const pair = await bench.hopPair(load, otherRoot);
          for (const which of ['this', 'other'] as const) {
            runs[which].push(pair[which]);
            show(which, pair[which]);
          }
          continue;
        }
        for (const which of ['this', 'other'] as const) {
          const r = await bench.hop(load, which === 'this' ? REPO_ROOT : otherRoot);
          runs[which].push(r);
          show(which, r);
        }
      }
      const m = (which: 'this' | 'other', f: (r: HopResult) => number) => median(runs[which].map(f));
      lines.push(
        `${id}: this ${m('this', (r) => r.perSec).toFixed(0)} msg/s ${(m('this', (r) => r.cpuPerMsg) * 1000).toFixed(2)} ms CPU/msg; ` +
          `other ${m('other', (r) => r.perSec).toFixed(0)} msg/s ${(m('other', (r) => r.cpuPerMsg) * 1000).toFixed(2)} ms CPU/msg; ` +
          `sink ${(m('this', (r) => r.sinkCpuPerMsg) * 1000).toFixed(2)}/${(m('other', (r) => r.sinkCpuPerMsg) * 1000).toFixed(2)} ms/msg; ` +
          `msg/s this/other ${(m('this', (r) => r.perSec) / m('other', (r) => r.perSec)).toFixed(3)}, ` +
          `CPU/msg this/other ${(m('this', (r) => r.cpuPerMsg) / m('other', (r) => r.cpuPerMsg)).toFixed(3)} (medians of ${rounds}${options.together ? ', side by side' : ''})`,
      );
    }
  } finally {
    await net.stop();
  }
  return lines;
}

const USAGE = `usage: node dist/bench/e2e-bench.js [hop|full] [--match NAME] [--scale X] [--cpu-prof DIR]
       node dist/bench/e2e-bench.js --compare OTHER_CHECKOUT [--together] [--rounds N] [--match NAME] [--scale X]

  hop|full        run only the sending hop or only the full path (default both)
  --match NAME    only the loads whose name contains NAME (e.g. 100KB.20_sessions)
  --scale X       multiply every load's message count by X (e.g. 0.5)
  --cpu-prof DIR  run the gateway processes with node --cpu-prof, profiles into DIR
  --compare DIR   A/B of the hop: this build against the build in another checkout DIR
  --together      with --compare: both gateways side by side at the same time
  --rounds N      with --compare: rounds per load (default 3)`;

// Prints the figures; `npm run bench` runs the same loads and writes bench/results/latest.json.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(process.argv.slice(2));
  } catch (err) {
    console.error(`e2e-bench: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    console.log(USAGE);
    process.exit(0);
  }
  const wrong = positionals.filter((p) => p !== 'hop' && p !== 'full');
  const number = (flag: 'scale' | 'rounds'): number | undefined => {
    const raw = values[flag];
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0) {
      console.error(`e2e-bench: --${flag} takes a positive number, not ${JSON.stringify(raw)}\n${USAGE}`);
      process.exit(2);
    }
    return n;
  };
  if (wrong.length > 0) {
    console.error(`e2e-bench: unknown part ${JSON.stringify(wrong[0])} (hop or full)\n${USAGE}`);
    process.exit(2);
  }
  const parts = positionals as ('hop' | 'full')[];
  const scale = number('scale');
  const rounds = number('rounds');
  const match = values.match;
  const profile = values['cpu-prof'];
  const other = values.compare;
  if (other !== undefined) {
    const lines = await compareHop(other, {
      ...(match !== undefined ? { match } : {}),
      ...(scale !== undefined ? { scale } : {}),
      ...(rounds !== undefined ? { rounds } : {}),
      together: values.together === true,
    });
    for (const line of lines) console.log(line);
    process.exit(0);
  }
  const result = await benchE2e({
    verbose: true,
    ...(parts.length ? { only: parts } : {}),
    ...(scale !== undefined ? { scale } : {}),
    ...(match !== undefined ? { match } : {}),
    ...(profile ? { cpuProfileDir: profile } : {}),
  });
  if ('skipped' in result) console.log(`e2e: skipped: ${result.skipped}`);
  else {
    for (const f of result) {
      const ref = f.reference === null ? '' : `  (reference ${f.reference.toFixed(2)}, ratio ${(f.value / f.reference).toFixed(3)})`;
      console.log(`${f.name.padEnd(48)} ${f.value.toFixed(2).padStart(10)} ${f.unit}${ref}${f.pass === null ? '' : f.pass ? '  ok' : '  MISSED'}`);
    }
  }
}

function parseCommandLine(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      match: { type: 'string' },
      scale: { type: 'string' },
      'cpu-prof': { type: 'string' },
      compare: { type: 'string' },
      together: { type: 'boolean' },
      rounds: { type: 'string' },
    },
  });
}

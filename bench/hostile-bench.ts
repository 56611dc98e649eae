import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { wrapMessage } from '../gateway/agent/wrap-message.js';
import { loadCredential } from '../gateway/agent/key-material.js';
import { EDGE_USER, gatewayConfigObject, makeCa, makeDomainCredential, writeToml } from '../test/helpers/direct-network.js';
import { closeSessions, openSession, percentile, startGatewayProcess, submit, type GatewayProcess } from './e2e-bench.js';

/**
 * The gateway under hostile load (issue 14), as a `hisp start --config` child process:
 *
 * - inbound latency under an AUTH flood (item 3): N signed and encrypted 10 KB messages from a peer
 *   HISP (a.test) over 4 sessions into gateway B's inbound port, each DATA → 250 timed by the
 *   client; first alone (the reference), then while 16 connections pipeline AUTH PLAIN with wrong
 *   passwords at the submission port and reconnect whenever they are cut off. Per-client and
 *   per-user lock-outs are off for this run: they would stop a flood from one address after 10
 *   tries, and a flood from many addresses (a botnet) meets only the per-connection cap and the
 *   bounded password checks, which is what is measured. The submission port has no certificate
 *   here, so AUTH goes in clear and the flood costs the gateway scrypt, not TLS handshakes.
 *   Target: p99 with the flood ≤ 2 × p99 without.
 * - memory while receiving 10 × 45 MB at once (item 6): ten sessions each send one 45 MB S/MIME
 *   message to B's inbound port in parallel. Peak RSS (VmHWM, reset through /proc/PID/clear_refs
 *   once the gateway is idle and warm) above the idle RSS: until the last 250 (target ≤ 150 MB),
 *   and until all ten are decrypted, verified and delivered (informative).
 *
 * Per-client rate limits are off (one synthetic peer sends everything from 127.0.0.1).
 */
export interface HostileFigure {
  name: string;
  value: number;
  unit: string;
  reference: number | null;
  target: string | null;
  pass: boolean | null;
}

const MB = 1024 * 1024;

async function setUp(dir: string): Promise<{ gateway: GatewayProcess; inboundPort: number; submissionPort: number; wrap: (inner: Buffer) => Buffer; maildir: string }> {
  const caA = await makeCa(dir, 'Bench Peer CA');
  const caB = await makeCa(dir, 'Bench Gateway CA');
  const a = await makeDomainCredential(dir, caA, 'a.test');
  const b = await makeDomainCredential(dir, caB, 'b.test');
  const [inboundPort, submissionPort] = await Promise.all([freePort(), freePort()]);
  const raw = await gatewayConfigObject(
    { domain: 'b.test', credential: b, anchors: [caA.certFile, caB.certFile], submissionPort, inboundPort, remotePorts: {}, dataDir: join(dir, 'data') },
    '127.0.0.1:9',
  );
  const submission = raw.submission as Record<string, unknown>;
  delete submission.tlsCert;
  delete submission.tlsKey;
  raw.submission = {
    ...submission,
    requireTls: false,
    maxClients: 200,
    perClient: { maxConnections: 100, messagesPerMinute: 0, bytesPerMinute: 0 },
    authLimits: { maxFailuresPerClient: 0, maxFailuresPerUser: 0 },
  };
  raw.inbound = { ...(raw.inbound as Record<string, unknown>), maxClients: 200, perClient: { maxConnections: 100, messagesPerMinute: 0, bytesPerMinute: 0 } };
  raw.log = { level: 'warn' };
  raw.queue = { workers: 20 };
  const configFile = join(dir, 'hisp.toml');
  writeToml(configFile, raw);
  const gateway = await startGatewayProcess('hostile-b', configFile, join(dir, 'b.log'));
  const signer = loadCredential(a.keyFile, a.certFile);
  const recipient = loadCredential(b.keyFile, b.certFile).certificate;
  return {
    gateway,
    inboundPort,
    submissionPort,
    wrap: (inner) => wrapMessage(inner, { signers: [signer], recipients: [recipient], messageIdDomain: 'hisp.a.test' }).message,
    maildir: join(dir, 'data', 'maildir', 'patient@b.test', 'new'),
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function inner(seq: number, bytes: number, tag: string): Buffer {
  const line = 'Clinical summary line of the patient record, for the benchmark only.\r\n';
  const head = `From: provider@a.test\r\nTo: patient@b.test\r\nSubject: ${tag} ${seq}\r\nMessage-ID: <${tag}-${seq}@a.test>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n`;
  return Buffer.from(head + line.repeat(Math.max(1, Math.ceil((bytes - head.length) / line.length))));
}

export function vm(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function delivered(maildir: string): number {
  try {
    return readdirSync(maildir).length;
  } catch {
    return 0;
  }
}

/** 16 connections that pipeline AUTH PLAIN with wrong passwords and reconnect when cut off. */
function authFlood(port: number, connections = 16): { stop: () => void; attempts: () => number } {
  let stopped = false;
  let attempts = 0;
  const sockets = new Set<net.Socket>();
  // A different guess every time, as a brute force sends (identical checks in flight share one scrypt).
  let guesses = 0;
  const wrong = (): string => Buffer.from(`\u0000${EDGE_USER}\u0000guess ${guesses++}`).toString('base64');
  const open = (): void => {
    if (stopped) return;
    const s = net.connect(port, '127.0.0.1');
    sockets.add(s);
    s.on('data', (d: Buffer) => {
      for (const line of d.toString('latin1').split('\r\n')) if (/^(535|454|421) /.test(line)) attempts++;
    });
    s.once('connect', () => s.write(`EHLO flood.test\r\n${Array.from({ length: 10 }, () => `AUTH PLAIN ${wrong()}\r\n`).join('')}`));
    s.on('error', () => undefined);
    s.once('close', () => {
      sockets.delete(s);
      setImmediate(open);
    });
  };
  for (let i = 0; i < connections; i++) open();
  return {
    stop: () => {
      stopped = true;
      for (const s of sockets) s.destroy();
    },
    attempts: () => attempts,
  };
}

export async function benchHostile(options: { n?: number; verbose?: boolean } = {}): Promise<HostileFigure[]> {
  const log = (line: string) => options.verbose && process.stderr.write(`hostile: ${line}\n`);
  const dir = mkdtempSync(join(tmpdir(), 'hisp-hostile-'));
  const figures: HostileFigure[] = [];
  const { gateway, inboundPort, submissionPort, wrap, maildir } = await setUp(dir);
  try {
    const n = options.n ?? 400;
    const messages = Array.from({ length: 2 * n + 40 }, (_, i) => wrap(inner(i, 10 * 1024, 'lat')));
    const sessions = await Promise.all(Array.from({ length: 4 }, () => openSession({ port: inboundPort, tls: false })));
    const send = async (from: number, count: number) => submit(sessions, count, (seq) => ({ from: 'provider@a.test', to: ['patient@b.test'], raw: messages[from + seq]! }));
    await send(0, 40); // warm-up
    await until('the warm-up delivered', () => delivered(maildir) >= 40, 120_000);
    const quiet = await send(40, n);
    await until('the quiet run delivered', () => delivered(maildir) >= 40 + n, 120_000);
    const flood = authFlood(submissionPort);
    await until('the flood under way', () => flood.attempts() >= 10, 30_000);
    const flooded = await send(40 + n, n);
    const attempts = flood.attempts();
    flood.stop();
    closeSessions(sessions);
    await until('the flooded run delivered', () => delivered(maildir) >= 40 + 2 * n, 120_000);
    const p99Quiet = percentile(quiet.submitMs, 0.99);
    const p99Flood = percentile(flooded.submitMs, 0.99);
    log(`inbound DATA→250 p50/p99: quiet ${percentile(quiet.submitMs, 0.5).toFixed(1)}/${p99Quiet.toFixed(1)} ms, flood ${percentile(flooded.submitMs, 0.5).toFixed(1)}/${p99Flood.toFixed(1)} ms (${attempts} failed AUTHs answered)`);
    figures.push({ name: 'hostile.inbound.latency_p99_under_auth_flood', value: p99Flood, unit: 'ms', reference: p99Quiet, target: 'ratio <= 2', pass: p99Flood / p99Quiet <= 2 });
    figures.push({ name: 'hostile.inbound.latency_p50_under_auth_flood', value: percentile(flooded.submitMs, 0.5), unit: 'ms', reference: percentile(quiet.submitMs, 0.5), target: null, pass: null });
    figures.push({ name: 'hostile.auth_flood.failed_auths_per_s', value: attempts / ((performance.now() - flooded.t0) / 1000), unit: '1/s', reference: null, target: null, pass: null });

    // ---- 10 × 45 MB at once
    const big = wrap(inner(0, 32 * MB, 'big'));
    const withoutId = big.subarray(big.indexOf('\r\n', big.indexOf('Message-ID:')) + 2);
    const prefix = big.subarray(0, big.indexOf('Message-ID:'));
    const bigs = Array.from({ length: 10 }, (_, i) => Buffer.concat([prefix, Buffer.from(`Message-ID: <big-${i}@a.test>\r\n`), withoutId]));
    log(`10 messages of ${(bigs[0]!.length / MB).toFixed(1)} MB`);
    const before = delivered(maildir);
    const idle = vm(gateway.pid, 'VmRSS');
    writeFileSync(`/proc/${gateway.pid}/clear_refs`, '5');
    const bigSessions = await Promise.all(Array.from({ length: 10 }, () => openSession({ port: inboundPort, tls: false })));
    await submit(bigSessions, 10, (seq) => ({ from: 'provider@a.test', to: ['patient@b.test'], raw: bigs[seq]! }));
    const receiving = vm(gateway.pid, 'VmHWM') - idle;
    closeSessions(bigSessions);
    await until('the large messages delivered', () => delivered(maildir) >= before + 10, 600_000);
    const processing = vm(gateway.pid, 'VmHWM') - idle;
    log(`idle RSS ${(idle / MB).toFixed(0)} MB; peak above idle while receiving ${(receiving / MB).toFixed(0)} MB, until delivered ${(processing / MB).toFixed(0)} MB`);
    figures.push({ name: 'hostile.inbound.receive_10x45MB.peak_rss_above_idle', value: receiving / MB, unit: 'MiB', reference: idle / MB, target: '<= 150', pass: receiving / MB <= 150 });
    figures.push({ name: 'hostile.inbound.deliver_10x45MB.peak_rss_above_idle', value: processing / MB, unit: 'MiB', reference: idle / MB, target: null, pass: null });
  } finally {
    await gateway.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return figures;
}

// `node dist/bench/hostile-bench.js`: this bench alone, its figures on stdout.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  mkdirSync(join(tmpdir()), { recursive: true });
  const figures = await benchHostile({ verbose: true });
  for (const f of figures) console.log(JSON.stringify(f));
}

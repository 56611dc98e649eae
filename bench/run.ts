import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { unwrapMessage } from '../gateway/agent/unwrap-message.js';
import { wrapMessage } from '../gateway/agent/wrap-message.js';
import { benchCredentials, makeMessage, pkiPath, REPO_ROOT } from './agent-workload.js';
import { benchApi } from './api-bench.js';
import { benchDiscovery } from './discovery-bench.js';
import { benchRender } from './documents-render-bench.js';
import { benchXdm } from './documents-xdm-bench.js';
import { benchAudit } from './audit-bench.js';
import { benchTransmit } from './transmit-bench.js';
import { benchE2e } from './e2e-bench.js';
import { writeFigures, type Figure } from './figure.js';
import { benchHostile } from './hostile-bench.js';
import { benchQueue } from './queue-bench.js';

/**
 * `npm run bench`: the agent's speed and memory, with references measured in the same run on the same
 * machine (openssl cms doing the same work, the RSA-2048 private-operation limit, the unavoidable
 * primitives of a message), printed as a table and written to bench/results/latest.json, one object
 * per figure, so that a regression is visible without reading prose.
 */

const machine = `${cpus()[0]?.model.trim() ?? 'cpu'} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, ${execFileSync('openssl', ['version']).toString().trim()}`;
const figures: Figure[] = [];
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);

function add(f: Omit<Figure, 'machine' | 'ratio' | 'pass'> & { ratio?: number | null; pass?: boolean | null }): void {
  const ratio = f.ratio !== undefined ? f.ratio : f.reference ? f.value / f.reference : null;
  figures.push({ ...f, ratio: ratio === null ? null : round(ratio, 3), pass: f.pass ?? null, machine, value: round(f.value, 3) });
}

function round(v: number, digits: number): number {
  const m = 10 ** digits;
  return Math.round(v * m) / m;
}

/** Runs fn repeatedly for about `seconds`; returns CPU ms per call and wall calls/s. */
function measure(fn: () => void, seconds: number, minRuns = 5): { cpuMs: number; wallPerSec: number; runs: number } {
  for (let i = 0; i < 3; i++) fn();
  gc();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let runs = 0;
  while (runs < minRuns || performance.now() - t0 < seconds * 1000) {
    fn();
    runs++;
  }
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  return { cpuMs: (cpu.user + cpu.system) / 1000 / runs, wallPerSec: (runs / wall) * 1000, runs };
}

/** Wall ms per run of an external command pipeline (spawn included, as an operator would run it). */
function timeCommand(run: () => void, runs: number): number {
  run();
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) run();
  return (performance.now() - t0) / runs;
}

const sizes = [
  { label: '10KB', bytes: 10 * 1024, seconds: 2, opensslRuns: 20 },
  { label: '100KB', bytes: 100 * 1024, seconds: 2, opensslRuns: 20 },
  { label: '10MB', bytes: 10 * 1024 * 1024, seconds: 4, opensslRuns: 3 },
];

const work = mkdtempSync(join(tmpdir(), 'hisp-bench-'));
try {
  const { signers, recipients, decrypt } = benchCredentials();

  // ---- machine limits measured here: RSA-2048 private operations (openssl speed and node)
  const speed = execFileSync('openssl', ['speed', '-mr', '-seconds', '2', 'rsa2048'], { stdio: ['ignore', 'pipe', 'ignore'] })
    .toString()
    .split('\n')
    .find((l) => l.startsWith('+F2:'));
  // OpenSSL 3 machine-readable form: +F2:<index>:<bits>:<sign/s>:<verify/s>
  const opensslSignPerSec = speed ? Number(speed.split(':')[3]) : NaN;
  const rsaKey = signers[0]!.key;
  const nodeRsa = measure(() => sign('sha256', Buffer.from('x'), rsaKey), 1, 50);
  add({ name: 'rsa2048.private_ops_per_s.node', value: 1000 / nodeRsa.cpuMs, unit: 'ops/s', reference: opensslSignPerSec, target: null });

  for (const size of sizes) {
    const msg = makeMessage(size.bytes);
    const msgFile = join(work, `msg-${size.label}.eml`);
    writeFileSync(msgFile, msg);
    const wrapped = wrapMessage(msg, { signers, recipients }).message;
    const wrappedFile = join(work, `wrapped-${size.label}.eml`);
    writeFileSync(wrappedFile, wrapped);

    // ---- the unavoidable work of one message, measured in node: one RSA private op, SHA-256 and
    // AES-256-CBC over the message, base64 over the envelope (the ceiling arithmetic).
    const aesKey = randomBytes(32);
    const iv = randomBytes(16);
    const prim =
      measure(() => createHash('sha256').update(msg).digest(), 0.5, 20).cpuMs +
      measure(() => {
        const c = createCipheriv('aes-256-cbc', aesKey, iv);
        c.update(msg);
        c.final();
      }, 0.5, 20).cpuMs +
      measure(() => msg.toString('base64'), 0.5, 20).cpuMs +
      nodeRsa.cpuMs;
    const ceiling = 1000 / prim;

    const w = measure(() => wrapMessage(msg, { signers, recipients }), size.seconds);
    const u = measure(() => unwrapMessage(wrapped, { credentials: decrypt }), size.seconds);

    // ---- openssl cms doing the same work (sign then encrypt; decrypt then verify)
    const certs = {
      signer: pkiPath('sender-rsa', 'cert.pem'),
      signKey: pkiPath('sender-rsa', 'key.pem'),
      chain: pkiPath('intermediate-ca', 'cert.pem'),
      recip: pkiPath('recipient-rsa', 'cert.pem'),
      recipKey: pkiPath('recipient-rsa', 'key.pem'),
      root: pkiPath('root-ca', 'cert.pem'),
    };
    const signedFile = join(work, `os-signed-${size.label}.eml`);
    const osWrapMs = timeCommand(() => {
      execFileSync('openssl', ['cms', '-sign', '-md', 'sha256', '-in', msgFile, '-signer', certs.signer, '-inkey', certs.signKey, '-certfile', certs.chain, '-out', signedFile]);
      execFileSync('openssl', ['cms', '-encrypt', '-aes256', '-recip', certs.recip, '-keyopt', 'rsa_padding_mode:oaep', '-in', signedFile, '-out', join(work, 'os-enc.eml')]);
    }, size.opensslRuns);
    const decFile = join(work, `os-dec-${size.label}.eml`);
    const osUnwrapMs = timeCommand(() => {
      execFileSync('openssl', ['cms', '-decrypt', '-in', wrappedFile, '-recip', certs.recip, '-inkey', certs.recipKey, '-out', decFile]);
      execFileSync('openssl', ['cms', '-verify', '-in', decFile, '-CAfile', certs.root, '-purpose', 'any', '-out', join(work, 'os-ver.eml')], { stdio: ['ignore', 'pipe', 'ignore'] });
    }, size.opensslRuns);

    const perCoreWrap = 1000 / w.cpuMs;
    const perCoreUnwrap = 1000 / u.cpuMs;
    const is100 = size.label === '100KB';
    add({ name: `agent.wrap.${size.label}.msgs_per_s_per_core`, value: perCoreWrap, unit: 'msg/s', reference: 1000 / osWrapMs, target: is100 ? '>= 1000' : null, pass: is100 ? perCoreWrap >= 1000 : null });
    add({ name: `agent.unwrap.${size.label}.msgs_per_s_per_core`, value: perCoreUnwrap, unit: 'msg/s', reference: 1000 / osUnwrapMs, target: is100 ? '>= 1000' : null, pass: is100 ? perCoreUnwrap >= 1000 : null });
    add({ name: `agent.wrap.${size.label}.cpu_ms_per_msg`, value: w.cpuMs, unit: 'ms', reference: prim, target: null });
    add({ name: `agent.unwrap.${size.label}.cpu_ms_per_msg`, value: u.cpuMs, unit: 'ms', reference: prim, target: null });
    add({ name: `agent.wrap.${size.label}.wall_msgs_per_s`, value: w.wallPerSec, unit: 'msg/s', reference: null, target: null });
    add({ name: `agent.unwrap.${size.label}.wall_msgs_per_s`, value: u.wallPerSec, unit: 'msg/s', reference: null, target: null });
    add({ name: `agent.wrap.${size.label}.share_of_ceiling`, value: perCoreWrap / ceiling, unit: 'fraction', reference: ceiling, ratio: null, target: is100 ? '>= 0.5' : null, pass: is100 ? perCoreWrap / ceiling >= 0.5 : null });
    add({ name: `agent.unwrap.${size.label}.share_of_ceiling`, value: perCoreUnwrap / ceiling, unit: 'fraction', reference: ceiling, ratio: null, target: is100 ? '>= 0.5' : null, pass: is100 ? perCoreUnwrap / ceiling >= 0.5 : null });

    if (size.label === '10MB') {
      // Peak RSS in fresh processes, so that nothing else of this run is counted.
      for (const mode of ['wrap', 'unwrap'] as const) {
        const out = execFileSync(process.execPath, ['--expose-gc', join(REPO_ROOT, 'dist', 'bench', 'memory-child.js'), mode, mode === 'wrap' ? msgFile : wrappedFile]).toString();
        const r = JSON.parse(out) as { aboveIdle: number };
        const mb = r.aboveIdle / 2 ** 20;
        const sizeMb = msg.length / 2 ** 20;
        add({ name: `agent.${mode}.10MB.peak_rss_above_idle`, value: mb, unit: 'MiB', reference: sizeMb, target: 'ratio < 4', pass: mb / sizeMb < 4 });
      }
    }
    gc();
  }
  // ---- the durable queue: enqueue with fsync, 1 and 20 producers sharing group commits (issue 5)
  for (const f of await benchQueue(join(work, 'queue'))) add({ name: f.name, value: f.value, unit: f.unit, reference: null, target: null });

  // ---- discovery and trust against the DCDT loopback servers (issue 4)
  const discovery = await benchDiscovery();
  if ('skipped' in discovery) console.log(`discovery: skipped: ${discovery.skipped}`);
  else for (const f of discovery) add({ ...f, reference: null, target: null });

  // ---- end to end: the sending hop into smtp-sink and the full A → B path with MDNs, as
  // `hisp start` processes, against a Postfix relay into smtp-sink with the same load (the reference)
  const e2e = await benchE2e({ verbose: true });
  if ('skipped' in e2e) console.log(`e2e: skipped: ${e2e.skipped}`);
  else for (const f of e2e) add(f);

  // ---- the HTTP API (issue 15): POST /v1/messages with a 100 KB C-CDA over 20 clients beside the
  // SMTP hop, and the peak RSS of a 25 MiB multipart upload
  const api = await benchApi({ verbose: true });
  if ('skipped' in api) console.log(`api: skipped: ${api.skipped}`);
  else for (const f of api) add(f);

  // ---- hostile load (issue 14): inbound latency under an AUTH flood, memory receiving 10 × 45 MB
  for (const f of await benchHostile({ verbose: true })) add(f);

  // ---- documents (issue 15): rendering a 1 MB C-CDA beside a bare xmldom parse of it
  figures.push(...(await benchRender(machine)));
  // ---- documents (issue 15): XDM pack and unpack of 10 MB, beside zlib on the same bytes
  for (const f of await benchXdm(machine)) add(f);
  // ---- Blue Button+ transmit (issue 16): records pushed (fan-out to 50, 2,000 patients) beside plain sends of the same messages
  const transmit = await benchTransmit({ verbose: true });
  if ('skipped' in transmit) console.log(`transmit: skipped: ${transmit.skipped}`);
  else for (const f of transmit) add(f);
  // ---- the audit chain (issue 16): verifying 200,000 entries beside SHA-256 alone over the same texts
  figures.push(...benchAudit(machine));
} finally {
  rmSync(work, { recursive: true, force: true });
}

const rows = figures.map((f) => [f.name, `${f.value} ${f.unit}`, f.reference === null ? '' : String(round(f.reference, 3)), f.ratio === null ? '' : String(f.ratio), f.target ?? '', f.pass === null ? '' : f.pass ? 'ok' : 'MISSED']);
const header = ['figure', 'value', 'reference', 'ratio', 'target', ''];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
console.log(`machine: ${machine}`);
console.log('references: openssl cms (sign+encrypt / decrypt+verify, one process pair per message, same files);');
console.log('            ceiling = 1 / (RSA-2048 private op + SHA-256 + AES-256-CBC + base64 of the message), measured in node');
console.log('            e2e.*: Postfix (relay instance, STARTTLS, queue fsynced) relaying the same messages into smtp-sink;');
console.log('            cpu_ms_per_msg: hisp gateway process vs all Postfix processes; load average now:', loadavg().map((x) => x.toFixed(2)).join(' '));
console.log(line(header));
for (const r of rows) console.log(line(r));
const dir = join(REPO_ROOT, 'bench', 'results');
// The figures of `npm run fuzz` (fuzz.*) are kept: that run is apart from this one.
const kept = writeFigures(join(dir, 'latest.json'), figures, (f) => f.name.startsWith('fuzz.'));
console.log(`written: ${join(dir, 'latest.json')} (${kept} fuzz figures kept)`);


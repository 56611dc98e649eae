import { execFileSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { REPO_ROOT } from './agent-workload.js';
import { writeFigures, type Figure } from './figure.js';
import { feed, Rng, type Failure, type SliceResult } from './fuzz-core.js';
import { FUZZ_TARGETS, SELF_TEST_TARGET, writeAgentSeeds } from './fuzz-targets.js';
import type { FuzzWorkerData } from './fuzz-worker.js';

/**
 * `npm run fuzz`: about 10⁶ inputs made by mutating valid seeds (and some random bytes) into every
 * parser of network bytes (bench/fuzz-targets.ts): MIME, BER/DER, CMS of the unwrap path, DNS
 * messages, CERT rdata, LDAP responses (the guard and ldapts; discovery over a socket), MDNs, DSNs
 * and SMTP command lines into smtp-server with hisp's listener options. Each input must end in a
 * result or a HispError. Each target runs in a worker thread watched from here: an input that makes
 * no progress for --watchdog-ms is a hang, a worker that dies is a crash, anything but a HispError
 * thrown is a failure (counted as a crash of that input); the slice then goes on after that input.
 * Inputs are made from the seed and their number only, so `--replay TARGET:INDEX` makes one again.
 * The counts (inputs, typed errors, crashes, hangs, seconds per target, and in all) are merged into
 * bench/results/latest.json, one object per figure as `npm run bench` writes them.
 */

const USAGE = `usage: node dist/bench/fuzz.js [--total N] [--only T1,T2] [--seed S] [--watchdog-ms MS] [--out FILE | --no-write]
       node dist/bench/fuzz.js --replay TARGET:INDEX [--seed S]
       node dist/bench/fuzz.js --self-test [--watchdog-ms MS] [--out FILE | --no-write]
       node dist/bench/fuzz.js --write-seeds   (the wrapped messages in test/fixtures/fuzz/)
targets: ${Object.keys(FUZZ_TARGETS).join(', ')}`;

interface TargetReport {
  name: string;
  inputs: number;
  typed: number;
  /** Inputs that threw something other than a HispError, or killed their worker. */
  crashes: number;
  hangs: number;
  seconds: number;
  failures: Failure[];
  failureKinds: Record<string, number>;
}

const { values: args } = parseArgs({
  options: {
    total: { type: 'string' },
    only: { type: 'string' },
    seed: { type: 'string', default: '20261207' },
    'watchdog-ms': { type: 'string', default: '60000' },
    out: { type: 'string' },
    'no-write': { type: 'boolean', default: false },
    'self-test': { type: 'boolean', default: false },
    replay: { type: 'string' },
    'write-seeds': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
if (args['write-seeds']) {
  for (const p of writeAgentSeeds()) console.log(`written: ${p}`);
  process.exit(0);
}
const seed = Number(args.seed);
const watchdogMs = Number(args['watchdog-ms']);

if (args.replay !== undefined) {
  const [name, index] = args.replay.split(':');
  const target = FUZZ_TARGETS[name ?? ''];
  if (target === undefined || index === undefined) throw new Error(USAGE);
  const runner = await target.setup();
  const input = runner.generate(new Rng(seed, Number(index)));
  console.log(`input ${name}:${index} (${input.length} octets): ${JSON.stringify(input.toString('latin1').slice(0, 2000))}`);
  console.log('outcome:', await feed(runner, input));
  await runner.close?.();
  process.exit(0);
}

/** Runs inputs [0, count) of `name` in workers, restarting after the input that hung or crashed. */
async function fuzzTarget(name: string, count: number): Promise<TargetReport> {
  const report: TargetReport = { name, inputs: 0, typed: 0, crashes: 0, hangs: 0, seconds: 0, failures: [], failureKinds: {} };
  const kind = (k: string, n = 1): void => {
    report.failureKinds[k] = (report.failureKinds[k] ?? 0) + n;
  };
  const started = performance.now();
  let from = 0;
  while (from < count) {
    const progress = new SharedArrayBuffer(12);
    const seen = new Int32Array(progress);
    const data: FuzzWorkerData = { target: name, seed, from, count: count - from, progress };
    const worker = new Worker(new URL('./fuzz-worker.js', import.meta.url), { workerData: data });
    const end = await new Promise<{ kind: 'done'; result: SliceResult } | { kind: 'crash' | 'hang'; error: string }>((resolve) => {
      let last = -1;
      let still = performance.now();
      const watch = setInterval(() => {
        const done = Atomics.load(seen, 0);
        if (Atomics.load(seen, 1) === 0 || done !== last) {
          last = done;
          still = performance.now();
        } else if (performance.now() - still > watchdogMs) {
          clearInterval(watch);
          resolve({ kind: 'hang', error: `no progress for ${watchdogMs} ms` });
          void worker.terminate();
        }
      }, Math.min(250, watchdogMs / 4));
      worker.once('message', (result: SliceResult) => {
        clearInterval(watch);
        resolve({ kind: 'done', result });
      });
      worker.once('error', (err: Error) => {
        clearInterval(watch);
        resolve({ kind: 'crash', error: `${err.name}: ${err.message}` });
      });
      worker.once('exit', (code) => {
        clearInterval(watch);
        resolve({ kind: 'crash', error: `worker exited with code ${code}` });
      });
    });
    if (end.kind === 'done') {
      const r = end.result;
      report.inputs += r.inputs;
      report.typed += r.typed;
      report.crashes += r.failureCount;
      report.failures.push(...r.failures);
      for (const [k, n] of Object.entries(r.failureKinds)) kind(k, n);
      await worker.terminate();
      break;
    }
    // The input being fed when it hung or died is input `from + done`: counted, kept, and skipped.
    const done = Atomics.load(seen, 0);
    if (Atomics.load(seen, 1) === 0) throw new Error(`${name}: the target could not be set up: ${end.error}`);
    const index = from + done;
    report.inputs += done + 1;
    report.typed += Atomics.load(seen, 2);
    if (end.kind === 'hang') report.hangs++;
    else report.crashes++;
    report.failures.push({ index, error: `${end.kind}: ${end.error}` });
    kind(`${end.kind}: ${end.error.replace(/\d+/g, '#')}`);
    await worker.terminate();
    from = index + 1;
  }
  report.seconds = (performance.now() - started) / 1000;
  return report;
}

// ------------------------------------------------------------------------------------------------

const selected = args['self-test'] ? ['self-test'] : (args.only?.split(',') ?? Object.keys(FUZZ_TARGETS));
for (const n of selected) if (n !== 'self-test' && FUZZ_TARGETS[n] === undefined) throw new Error(`unknown target ${n}\n${USAGE}`);
const defaults = selected.map((n) => (n === 'self-test' ? SELF_TEST_TARGET : FUZZ_TARGETS[n]!).inputs);
const defaultTotal = defaults.reduce((a, b) => a + b, 0);
const scale = args.total === undefined ? 1 : Number(args.total) / defaultTotal;

const reports: TargetReport[] = [];
for (const [i, name] of selected.entries()) {
  const count = Math.max(1, Math.ceil(defaults[i]! * scale));
  const r = await fuzzTarget(name, count);
  reports.push(r);
  console.log(`${name.padEnd(12)} ${String(r.inputs).padStart(8)} inputs  ${String(r.typed).padStart(8)} typed errors  ${r.crashes} crashes  ${r.hangs} hangs  ${r.seconds.toFixed(1)} s`);
  for (const [k, n] of Object.entries(r.failureKinds)) console.log(`  ${n} × ${k}`);
  for (const f of r.failures.slice(0, 3)) console.log(`  e.g. ${name}:${f.index} (--replay ${name}:${f.index})`);
}

const total = {
  inputs: reports.reduce((a, r) => a + r.inputs, 0),
  typed: reports.reduce((a, r) => a + r.typed, 0),
  crashes: reports.reduce((a, r) => a + r.crashes, 0),
  hangs: reports.reduce((a, r) => a + r.hangs, 0),
  seconds: reports.reduce((a, r) => a + r.seconds, 0),
};
console.log(`${'total'.padEnd(12)} ${String(total.inputs).padStart(8)} inputs  ${String(total.typed).padStart(8)} typed errors  ${total.crashes} crashes  ${total.hangs} hangs  ${total.seconds.toFixed(1)} s  (seed ${seed})`);

// ------------------------------------------------------------------------------------------------ latest.json

const machine = `${cpus()[0]?.model.trim() ?? 'cpu'} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, ${execFileSync('openssl', ['version']).toString().trim()}`;
const figure = (name: string, value: number, unit: string, target: string | null = null): Figure => ({
  name,
  value: Math.round(value * 1000) / 1000,
  unit,
  reference: null,
  target,
  ratio: null,
  pass: target === null ? null : target === '= 0' ? value === 0 : value >= Number(target.replace(/[^0-9]/g, '')),
  machine,
});
const figures: Figure[] = [];
for (const r of reports) {
  figures.push(
    figure(`fuzz.${r.name}.inputs`, r.inputs, 'inputs'),
    figure(`fuzz.${r.name}.typed_errors`, r.typed, 'inputs'),
    figure(`fuzz.${r.name}.crashes`, r.crashes, 'inputs', '= 0'),
    figure(`fuzz.${r.name}.hangs`, r.hangs, 'inputs', '= 0'),
    figure(`fuzz.${r.name}.seconds`, r.seconds, 's'),
  );
}
figures.push(
  figure('fuzz.total.inputs', total.inputs, 'inputs', args['self-test'] ? null : '>= 1000000'),
  figure('fuzz.total.typed_errors', total.typed, 'inputs'),
  figure('fuzz.total.crashes', total.crashes, 'inputs', '= 0'),
  figure('fuzz.total.hangs', total.hangs, 'inputs', '= 0'),
  figure('fuzz.total.seconds', total.seconds, 's'),
);

const out = args.out ?? (args['no-write'] || args['self-test'] ? undefined : join(REPO_ROOT, 'bench', 'results', 'latest.json'));
if (out !== undefined) {
  // Merged: the fuzz figures of an earlier run are replaced, every other figure is kept as it was.
  const kept = writeFigures(out, figures, (f) => !f.name.startsWith('fuzz.'));
  console.log(`written: ${out} (${figures.length} fuzz figures, ${kept} others kept)`);
}
process.exitCode = total.crashes + total.hangs === 0 ? 0 : 1;

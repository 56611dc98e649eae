import { readFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { startDirectNetwork } from '../test/helpers/direct-network.js';
import { startSmtpSink } from '../test/helpers/postfix.js';
import { REPO_ROOT } from './agent-workload.js';
import { paddedCcda, post, startApiGateway } from './api-bench.js';
import { E2eBench, e2eUnavailableReason, median, waitCount, type E2eFigure, type GatewayProcess } from './e2e-bench.js';
import { join } from 'node:path';

/**
 * Blue Button+ transmit's cost (issue 16, "Speed"): records pushed through `POST
 * /v1/patients/{ref}/records` against the plain `POST /v1/messages` of the same messages, in the
 * same run, each on a fresh gateway A relaying into smtp-sink (sink.test's certificate in knotd, as
 * bench/api-bench.ts):
 *
 * - fan-out: one patient whose authorizations name 50 destinations (patient0…49@sink.test, in three
 *   authorizations: one names at most 20); 20 records pushed one after the other (one client, as
 *   an EHR's trigger would) = 1,000 messages. Reference: the same 1,000 messages as plain sends
 *   over 20 concurrent clients (the most an EHR doing the fan-out itself could do).
 * - many patients: 2,000 patients with one destination each (authorized before the clock starts),
 *   one record each, pushed over 20 concurrent clients = 2,000 messages (the issue's 1,000, doubled
 *   for a steadier figure on a shared VM). Reference: 2,000 plain sends over 20 clients.
 *
 * Every message carries the same 20 KB C-CDA (the ETT ambulatory sample grown) with the BB+
 * sentence, `humanReadable: false` on both sides (the rendering costs the same either way and
 * would hide the difference). messages/s = messages / (first request → the last counted at
 * smtp-sink), after the authorizations and then a warm-up of 500 plain sends gone through. Target: transmit ≥ 0.9× plain
 * (authorizations, de-duplication and audit must cost little). Rounds: 3, fresh processes each;
 * medians, lowest and highest ratio beside.
 */
const SAMPLE = join(REPO_ROOT, '..', 'shared', 'vectors', 'ett', 'cda-samples', 'CCDA_Ambulatory.xml');
const CLIENTS = 20;
const WARM_UP = 500;
const FAN_OUT = { destinations: 50, records: 20 };
const PATIENTS = 2000;
const ROUNDS = 3;
const FROM = 'records@a.test';
const SENTENCE = 'This message was sent by Example Hospital at the request of the patient.';

interface Load {
  /** POSTs: path and JSON body, in order, over `clients` keep-alive connections. */
  requests: { path: string; body: Buffer }[];
  clients: number;
  /** Messages the requests make at smtp-sink. */
  messages: number;
}

/** Runs the requests (each client sends its next when its answer came), then waits for the messages at smtp-sink; ms from the first request. */
async function run(agent: Agent, port: number, key: string, load: Load, sinkCount: () => number, before: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: load.clients }, async () => {
      for (;;) {
        const r = load.requests[next++];
        if (!r) return;
        await post(agent, port, r.path, { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': r.body.length }, r.body);
      }
    }),
  );
  await waitCount('the messages at smtp-sink', sinkCount, before + load.messages);
  return performance.now() - t0;
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

function plainSends(ccda: Buffer, addresses: readonly string[], tag: string): { path: string; body: Buffer }[] {
  const content = ccda.toString('base64');
  return addresses.map((to, i) => ({
    path: '/v1/messages',
    body: json({ from: FROM, to: [to], subject: `Health information ${tag}.${i}`, text: SENTENCE, humanReadable: false, documents: [{ filename: 'record.xml', contentType: 'application/xml', kind: 'ccda', content }] }),
  }));
}

/** A distinct document per record (the same size): a comment numbers it, so no two have the same SHA-256. */
function numbered(ccda: Buffer, n: number): string {
  return Buffer.concat([ccda, Buffer.from(`<!-- record ${n} -->\r\n`)]).toString('base64');
}

async function authorize(agent: Agent, port: number, key: string, patientRef: string, destinations: readonly string[]): Promise<void> {
  const body = json({
    patient: { name: `Patient ${patientRef}` },
    from: FROM,
    dataHolder: { name: 'Example Hospital' },
    destinations: destinations.map((address) => ({ address, humanReadable: false })),
    frequency: 'on-update',
    grantedBy: { kind: 'patient' },
    method: 'portal',
    consent: { version: '2026-01', sha256: 'ab'.repeat(32) },
  });
  await post(agent, port, `/v1/patients/${patientRef}/authorizations`, { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': body.length }, body, 201);
}

const record = (content: string) => json({ document: { filename: 'record.xml', contentType: 'application/xml', kind: 'ccda', content }, trigger: 'new-result', madeAt: new Date().toISOString() });

interface RoundResult {
  fanOut: { transmit: number; plain: number };
  patients: { transmit: number; plain: number };
}

/** One round: a fresh gateway for each of the four measurements (warm-up first). */
async function round(bench: E2eBench, ccda: Buffer, log: (line: string) => void, cpuProfileDir?: string): Promise<RoundResult> {
  const measure = async (label: string, prepare: (agent: Agent, port: number, key: string) => Promise<Load>): Promise<number> => {
    const dir = bench.runDir(`transmit-${label}`);
    const sink = await startSmtpSink();
    const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
    let gateway: GatewayProcess | undefined;
    try {
      const started = await startApiGateway(bench, dir, sink, `a.test-${label}`, cpuProfileDir === undefined ? undefined : join(cpuProfileDir, label));
      gateway = started.gateway;
      const { port, key } = started;
      // The authorizations first, then the warm-up: what their writes leave to do (the WAL's
      // checkpoint) falls in the warm-up, not in the measured run.
      const load = await prepare(agent, port, key);
      await run(agent, port, key, { requests: plainSends(ccda, Array.from({ length: WARM_UP }, (_, i) => `warm${i}@sink.test`), 'w'), clients: CLIENTS, messages: WARM_UP }, () => sink.counters().messages, 0);
      const ms = await run(agent, port, key, load, () => sink.counters().messages, sink.counters().messages);
      const perSec = (load.messages / ms) * 1000;
      log(`${label}: ${load.messages} messages in ${ms.toFixed(0)} ms, ${perSec.toFixed(0)} msg/s (load ${loadavg()[0]!.toFixed(2)})`);
      return perSec;
    } finally {
      agent.destroy();
      await gateway?.stop();
      await sink.stop();
    }
  };
  const fanOutAddresses = Array.from({ length: FAN_OUT.destinations }, (_, i) => `patient${i}@sink.test`);
  const fanOutTransmit = await measure('fan-out', async (agent, port, key) => {
    // An authorization names at most 20 destinations: the patient's 50 are three authorizations.
    for (let i = 0; i < fanOutAddresses.length; i += 20) await authorize(agent, port, key, 'MRN-FAN', fanOutAddresses.slice(i, i + 20));
    return { requests: Array.from({ length: FAN_OUT.records }, (_, r) => ({ path: '/v1/patients/MRN-FAN/records', body: record(numbered(ccda, r)) })), clients: 1, messages: FAN_OUT.destinations * FAN_OUT.records };
  });
  const fanOutPlain = await measure('fan-out-plain', () =>
    Promise.resolve({ requests: Array.from({ length: FAN_OUT.records }, (_, r) => plainSends(ccda, fanOutAddresses, `r${r}`)).flat(), clients: CLIENTS, messages: FAN_OUT.destinations * FAN_OUT.records }),
  );
  const patientsTransmit = await measure('patients', async (agent, port, key) => {
    // Authorized before the clock starts, 20 at a time.
    const refs = Array.from({ length: PATIENTS }, (_, i) => `MRN-${i}`);
    for (let i = 0; i < refs.length; i += CLIENTS) await Promise.all(refs.slice(i, i + CLIENTS).map((ref, j) => authorize(agent, port, key, ref, [`patient${i + j}@sink.test`])));
    return { requests: refs.map((ref, i) => ({ path: `/v1/patients/${ref}/records`, body: record(numbered(ccda, i)) })), clients: CLIENTS, messages: PATIENTS };
  });
  const patientsPlain = await measure('patients-plain', () =>
    Promise.resolve({ requests: plainSends(ccda, Array.from({ length: PATIENTS }, (_, i) => `patient${i}@sink.test`), 'p'), clients: CLIENTS, messages: PATIENTS }),
  );
  return { fanOut: { transmit: fanOutTransmit, plain: fanOutPlain }, patients: { transmit: patientsTransmit, plain: patientsPlain } };
}

export async function benchTransmit(options: { rounds?: number; verbose?: boolean; cpuProfileDir?: string } = {}): Promise<E2eFigure[] | { skipped: string }> {
  const why = e2eUnavailableReason();
  if (why) return { skipped: why };
  const log = (line: string) => options.verbose && process.stderr.write(`transmit: ${line}\n`);
  const ccda = paddedCcda(readFileSync(SAMPLE, 'utf8'), 20 * 1024);
  const net = await startDirectNetwork(['a.test', 'sink.test']);
  const bench = new E2eBench(net, { verbose: options.verbose ?? false });
  const figures: E2eFigure[] = [];
  try {
    const rounds: RoundResult[] = [];
    for (let i = 0; i < (options.rounds ?? ROUNDS); i++) rounds.push(await round(bench, ccda, log, options.cpuProfileDir === undefined ? undefined : join(options.cpuProfileDir, `round${i + 1}`)));
    for (const [id, pick, perRecord] of [
      [`transmit.fan_out_${FAN_OUT.destinations}`, (r: RoundResult) => r.fanOut, FAN_OUT.destinations],
      [`transmit.patients_${PATIENTS}`, (r: RoundResult) => r.patients, 1],
    ] as const) {
      const transmit = median(rounds.map((r) => pick(r).transmit));
      const plain = median(rounds.map((r) => pick(r).plain));
      figures.push({ name: `${id}.msgs_per_s`, value: transmit, unit: 'msg/s', reference: plain, target: 'ratio >= 0.9', pass: transmit / plain >= 0.9 });
      figures.push({ name: `${id}.records_per_s`, value: transmit / perRecord, unit: 'records/s', reference: null, target: null, pass: null });
      if (rounds.length > 1) {
        const ratios = rounds.map((r) => pick(r).transmit / pick(r).plain);
        figures.push({ name: `${id}.ratio_lowest`, value: Math.min(...ratios), unit: 'ratio', reference: null, target: null, pass: null });
        figures.push({ name: `${id}.ratio_highest`, value: Math.max(...ratios), unit: 'ratio', reference: null, target: null, pass: null });
      }
    }
  } finally {
    await net.stop();
  }
  return figures;
}

// `node dist/bench/transmit-bench.js [--rounds N] [--cpu-prof DIR]`: this bench alone (the gateways
// profiled with node --cpu-prof, one folder per round and measurement); `npm run bench` runs it too.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { rounds: { type: 'string' }, 'cpu-prof': { type: 'string' } } });
  const result = await benchTransmit({ rounds: values.rounds === undefined ? undefined : Number(values.rounds), verbose: true, ...(values['cpu-prof'] !== undefined ? { cpuProfileDir: values['cpu-prof'] } : {}) });
  if ('skipped' in result) console.log(`transmit: skipped: ${result.skipped}`);
  else for (const f of result) console.log(`${f.name.padEnd(44)} ${f.value.toFixed(2).padStart(10)} ${f.unit}${f.reference === null ? '' : `  (plain ${f.reference.toFixed(2)}, ratio ${(f.value / f.reference).toFixed(3)})`}${f.target ? `  ${f.pass ? 'met' : 'MISSED'}` : ''}`);
}

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, createReadStream, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request, type IncomingMessage } from 'node:http';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DOMParser, XMLSerializer, type Element } from '@xmldom/xmldom';
import { composeMessage } from '../gateway/mime/message-composer.js';
import { startDirectNetwork } from '../test/helpers/direct-network.js';
import { startSmtpSink, type SmtpSink } from '../test/helpers/postfix.js';
import { REPO_ROOT } from './agent-workload.js';
import {
  cpuSeconds,
  E2eBench,
  e2eUnavailableReason,
  median,
  peakRss,
  peerCpu,
  peerCpuPerMsg,
  percentile,
  startGatewayProcess,
  STEADY_WARM_UP,
  waitCount,
  type E2eFigure,
  type GatewayProcess,
  type HopResult,
  type Load,
  type MessageMaker,
  type PeerCpu,
} from './e2e-bench.js';
import { vm } from './hostile-bench.js';

/**
 * The HTTP API's speed (issue 15, "Speed"), beside the SMTP submission hop in the same run, against
 * the same peers as bench/e2e-bench.ts (knotd publishing sink.test's certificate, smtp-sink standing
 * in for the remote HISP), gateway A as a `hisp start --config` child process:
 *
 * - hop: `POST /v1/messages` (JSON, the document in base64) with a 100 KB C-CDA (the ETT ambulatory
 *   sample grown, CRLF lines as the sample has them, so it goes 7bit) over 20 concurrent
 *   HTTP clients (keep-alive connections, each sending its next request when its 202 arrives) to
 *   gateway A, which composes the MIME message, signs and encrypts it to sink.test's certificate,
 *   queues it durably and relays it into smtp-sink: exactly the SMTP hop, with the API as the door.
 *   messages/s = N / (time from the first request until N more are counted at smtp-sink), after a
 *   warm-up of STEADY_WARM_UP messages gone all the way through (as the hop: a fresh Node process
 *   compiles its hot code for its first 10-15 s under load). Reference: the SMTP hop (100 KB, 20
 *   STARTTLS+AUTH sessions, the same warm-up and N) measured in the same run, fresh processes each;
 *   target: ratio >= 1.0 (the API must not be the slow door). Measured with `humanReadable: false`
 *   (the door itself: the target), and with the default (the C-CDA's rendering for people goes
 *   along as text/html, R-BB-6: informative, what the rendering costs; 1,000 messages after 1,000
 *   of warm-up, since it goes at a third of the speed). Beside them, informative: the same C-CDA
 *   with LF line ends (not 7bit data: it goes in base64, a message of 141 KB), and the SMTP hop
 *   carrying the very message the API composes (101 KB), which tells the door's own cost from
 *   the message's. p50/p99: request sent to 202
 *   received, at the client. CPU ms per message: utime + stime of the gateway process over the
 *   measured interval. Peak RSS: VmHWM of the gateway process at the end (its whole life).
 *   Rounds as the hop's: SMTP, SMTP with the API's message, API, API with LF line ends, API with rendering, fresh
 *   processes each; the figures are medians (peak RSS the highest), lowest and highest ratio beside.
 * - multipart: one 25 MiB document sent as multipart/form-data (streamed from disk by the client)
 *   to a fresh gateway, warm (a few small multipart sends relayed first) and idle: the peak RSS
 *   above its idle RSS (VmHWM reset through /proc/PID/clear_refs) until the 202 (target <= 100 MiB:
 *   files are streamed to disk, never whole in memory), and until it is relayed into smtp-sink
 *   (informative: signing and encrypting a message of that size).
 *
 * The API key is made with `hisp api-key create --config … > file` once the gateway has made its
 * data folder, with a rate of its own high enough not to limit the run (the rate limiter still
 * counts every request). The API is plain HTTP on loopback (what `[api]` allows without a
 * certificate), while the SMTP hop runs STARTTLS.
 */
export interface ApiBenchOptions {
  /** Multiplies N and the warm-up (a quick check: 0.1). */
  scale?: number;
  /** Rounds of the hop (SMTP, SMTP with the API's message, API, API with rendering); default 3. */
  rounds?: number;
  /** Only these parts. */
  only?: readonly ('hop' | 'multipart')[];
  /** Run the gateways with `node --cpu-prof`, profiles written here (one folder per run). */
  cpuProfileDir?: string;
  verbose?: boolean;
}

const SAMPLE = join(REPO_ROOT, '..', 'shared', 'vectors', 'ett', 'cda-samples', 'CCDA_Ambulatory.xml');
const CCDA_BYTES = 100 * 1024;
const CLIENTS = 20;
const N = 3000;
const ROUNDS = 3;
/**
 * The runs with the rendering go at a third of the speed: fewer messages (informative, no target),
 * the warm-up still about 25 s of load.
 */
const RENDERED = { n: 1000, warmUp: 1000 };
const MULTIPART_BYTES = 25 * 1024 * 1024;
const MiB = 1024 * 1024;
const FROM = 'provider@a.test';
const TO = 'patient@sink.test';
const TEXT = 'The continuity of care document of the visit is attached.';

/**
 * The ETT ambulatory sample grown to `size` octets and still a valid CDA: its structuredBody's
 * sections repeated one at a time while the next one fits, then an XML comment for the rest
 * (comments may stand between elements: XML 1.0 §2.5, and CDA's schema never sees them), in lines
 * as short as the sample's. With the sample's own line ends (CRLF, as every ETT sample has them;
 * the parser turns them into LF, XML 1.0 §2.11, and they are put back), or `eol` when given.
 */
export function paddedCcda(sample: string, size: number, eol: '\r\n' | '\n' = sample.includes('\r\n') ? '\r\n' : '\n'): Buffer {
  const doc = new DOMParser().parseFromString(sample, 'application/xml');
  const body = doc.getElementsByTagName('structuredBody')[0];
  if (!body) throw new Error('the sample has no structuredBody');
  const sections = Array.from(body.childNodes).filter((n) => n.nodeType === 1 && (n as Element).localName === 'component');
  if (sections.length === 0) throw new Error('the sample has no sections');
  const serializer = new XMLSerializer();
  const text = () => {
    const xml = serializer.serializeToString(doc);
    return eol === '\n' ? xml : xml.replace(/\r?\n/g, eol);
  };
  const bytes = () => Buffer.byteLength(text());
  // n octets of comment text once its line ends are eol: lines of the phrase, then a part of it.
  const comment = (n: number) => {
    const line = 'padding to the benchmark size';
    const full = Math.floor(n / (line.length + eol.length));
    const rest = n - full * (line.length + eol.length);
    return doc.createComment(` ${`${line}\n`.repeat(full)}${line.repeat(Math.ceil(rest / line.length) + 1).slice(0, rest)} `);
  };
  for (let i = 0; ; i++) {
    const copy = sections[i % sections.length]!.cloneNode(true);
    body.appendChild(copy);
    if (bytes() > size) {
      body.removeChild(copy);
      break;
    }
  }
  // `<!--  -->` around the text: 9 octets; the rest is text of the comment.
  const missing = size - bytes() - 9;
  if (missing > 0) body.appendChild(comment(missing));
  return Buffer.from(text());
}

/**
 * The message the API composes for a send of `ccda` without its rendering, as an EHR would submit
 * it over SMTP (the same composer, fields and document: the C-CDA as it is, 7bit), its
 * Subject and Message-ID numbered per message.
 */
async function composedSends(ccda: Buffer): Promise<MessageMaker> {
  const marker = 'SEQMARK';
  const chunks: Buffer[] = [];
  for await (const chunk of composeMessage({
    from: FROM,
    to: [TO],
    cc: [],
    subject: `Continuity of care document ${marker}`,
    text: TEXT,
    documents: [{ filename: 'ccda.xml', contentType: 'application/xml', kind: 'ccda', content: ccda }],
    messageId: `<apibench.${marker}@a.test>`,
    date: new Date(),
    finalDelivery: true,
  })) {
    chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  }
  const parts = Buffer.concat(chunks).toString('latin1').split(marker);
  if (parts.length !== 3) throw new Error('the composed message does not carry its marker twice');
  return (tag, seq) => Buffer.from(parts.join(`${tag}.${seq}`), 'latin1');
}

// ---------------------------------------------------------------------------------------------
// The HTTP clients

interface Posted {
  t0: number;
  /** ms from the request to its 202, sorted. */
  acceptedMs: number[];
}

function readAll(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.once('error', reject);
  });
}

/** One POST; resolves with the response body once the status was `expect`, rejects otherwise. */
export function post(agent: Agent, port: number, path: string, headers: Record<string, string | number>, body: Buffer | ((req: ReturnType<typeof request>) => void), expect = 202): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers }, (res) => {
      readAll(res).then((text) => (res.statusCode === expect ? resolve(text) : reject(new Error(`POST ${path}: ${res.statusCode}: ${text.slice(0, 500)}`))), reject);
    });
    req.once('error', reject);
    if (Buffer.isBuffer(body)) req.end(body);
    else body(req);
  });
}

/** The JSON body of a send, its Subject numbered: built from two fixed halves around the number. */
function jsonSends(ccda: Buffer, humanReadable: boolean | undefined): (tag: string, seq: number) => Buffer {
  const marker = '\u0000SEQ\u0000';
  const json = JSON.stringify({
    from: FROM,
    to: [TO],
    subject: `Continuity of care document ${marker}`,
    text: TEXT,
    documents: [{ filename: 'ccda.xml', contentType: 'application/xml', kind: 'ccda', content: ccda.toString('base64') }],
    ...(humanReadable === undefined ? {} : { humanReadable }),
  });
  const escaped = JSON.stringify(marker).slice(1, -1);
  const at = json.indexOf(escaped);
  const head = Buffer.from(json.slice(0, at));
  const tail = Buffer.from(json.slice(at + escaped.length));
  return (tag, seq) => Buffer.concat([head, Buffer.from(`${tag}.${seq}`), tail]);
}

/** Sends `n` requests over `clients` keep-alive connections, each sending its next one when its 202 arrives. */
async function postMany(agent: Agent, port: number, key: string, clients: number, n: number, body: (seq: number) => Buffer): Promise<Posted> {
  const acceptedMs: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (;;) {
        const seq = next++;
        if (seq >= n) return;
        const b = body(seq);
        const s = performance.now();
        await post(agent, port, '/v1/messages', { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': b.length }, b);
        acceptedMs.push(performance.now() - s);
      }
    }),
  );
  acceptedMs.sort((a, b) => a - b);
  return { t0, acceptedMs };
}

// ---------------------------------------------------------------------------------------------
// Gateways with the API

/** The API port a gateway process printed ("hisp: listening: submission N, inbound M, api P"). */
function apiPort(logFile: string): number {
  const m = /^hisp: listening: .*\bapi (\d+)/m.exec(readFileSync(logFile, 'utf8'));
  if (!m) throw new Error(`${logFile}: no API port printed`);
  return Number(m[1]);
}

/**
 * Gateway A with `[api] enabled` (plain HTTP on loopback, any free port), relaying sink.test into
 * `sink`; its key made with `hisp api-key create --config … > file` once the gateway has made its
 * data folder (the store is read at every request: no restart, docs/api.md "Keys").
 */
export async function startApiGateway(bench: E2eBench, dir: string, sink: SmtpSink, name: string, cpuProfileDir?: string): Promise<{ gateway: GatewayProcess; port: number; key: string }> {
  const config = await bench.gatewayConfig(dir, 'a.test', { 'sink.test': { route: '127.0.0.1', port: sink.port } }, undefined, { api: { enabled: true, host: '127.0.0.1', port: 0 } });
  const gateway = await startGatewayProcess(name, config, join(dir, `${name}.log`), cpuProfileDir);
  try {
    const keyFile = join(dir, 'ehr.key');
    const fd = openSync(keyFile, 'w', 0o600);
    try {
      execFileSync(
        process.execPath,
        [join(REPO_ROOT, 'bin', 'hisp.js'), 'api-key', 'create', '--config', config, '--name', 'bench-ehr', '--action', 'send', '--send-as', '@a.test', '--rate-per-minute', '1000000'],
        { stdio: ['ignore', fd, 'pipe'] },
      );
    } finally {
      closeSync(fd);
    }
    return { gateway, port: apiPort(gateway.logFile), key: readFileSync(keyFile, 'utf8').trim() };
  } catch (err) {
    await gateway.stop();
    throw err;
  }
}

interface ApiHopResult extends PeerCpu {
  perSec: number;
  cpuPerMsg: number;
  peakRssMiB: number;
  acceptedP50: number;
  acceptedP99: number;
}

/** The API hop once (fresh gateway and smtp-sink): warm-up through to smtp-sink, then N measured. */
async function apiHop(bench: E2eBench, load: Load, ccda: Buffer, humanReadable: boolean | undefined, cpuProfileDir?: string, label = humanReadable === false ? 'plain' : 'rendered'): Promise<ApiHopResult> {
  const dir = bench.runDir(`api-${label}`);
  const sink = await startSmtpSink();
  const agent = new Agent({ keepAlive: true, maxSockets: load.sessions });
  let gateway: GatewayProcess | undefined;
  try {
    const prof = cpuProfileDir ? join(cpuProfileDir, dir.slice(dir.lastIndexOf('/') + 1)) : undefined;
    if (prof) mkdirSync(prof, { recursive: true });
    const started = await startApiGateway(bench, dir, sink, 'a.test-api', prof);
    gateway = started.gateway;
    const { port, key } = started;
    const body = jsonSends(ccda, humanReadable);
    const warmUp = load.warmUp ?? STEADY_WARM_UP;
    await postMany(agent, port, key, load.sessions, warmUp, (seq) => body('w', seq));
    await waitCount('API warm-up at smtp-sink', () => sink.counters().messages, warmUp);
    const cpu0 = cpuSeconds(gateway.pid);
    const peers0 = peerCpu(sink);
    const posted = await postMany(agent, port, key, load.sessions, load.n, (seq) => body('m', seq));
    const end = await waitCount('API relay into smtp-sink', () => sink.counters().messages, warmUp + load.n);
    return {
      perSec: (load.n / (end - posted.t0)) * 1000,
      cpuPerMsg: (cpuSeconds(gateway.pid) - cpu0) / load.n,
      ...peerCpuPerMsg(peers0, sink, load.n),
      peakRssMiB: peakRss(gateway.pid) / MiB,
      acceptedP50: percentile(posted.acceptedMs, 0.5),
      acceptedP99: percentile(posted.acceptedMs, 0.99),
    };
  } finally {
    agent.destroy();
    await gateway?.stop();
    await sink.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// 25 MiB multipart

/** A multipart/form-data send (RFC 7578) of one file, streamed from disk. */
function postMultipart(agent: Agent, port: number, key: string, file: string, size: number, subject: string): Promise<string> {
  const boundary = `hisp-bench-${randomBytes(12).toString('hex')}`;
  const message = JSON.stringify({ from: FROM, to: [TO], subject, text: 'The imaging report is attached.', documents: [{ filename: 'report.bin', contentType: 'application/octet-stream', kind: 'other' }] });
  const head = Buffer.from(
    // The message field without a Content-Type (text/plain, RFC 7578 §4.4): @fastify/multipart
    // parses a field labelled application/json itself, and the route then refuses it as not JSON.
    `--${boundary}\r\nContent-Disposition: form-data; name="message"\r\n\r\n${message}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="document"; filename="report.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return post(agent, port, '/v1/messages', { authorization: `Bearer ${key}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': head.length + size + tail.length }, (req) => {
    req.write(head);
    const stream = createReadStream(file);
    stream.once('error', (err) => req.destroy(err));
    stream.once('end', () => req.end(tail));
    stream.pipe(req, { end: false });
  });
}

async function multipart25(bench: E2eBench, log: (line: string) => void): Promise<{ upload: number; relayed: number; idle: number }> {
  const dir = bench.runDir('api-multipart');
  const sink = await startSmtpSink();
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  let gateway: GatewayProcess | undefined;
  try {
    const small = join(dir, 'small.bin');
    writeFileSync(small, randomBytes(64 * 1024));
    const big = join(dir, 'big.bin');
    writeFileSync(big, randomBytes(MULTIPART_BYTES));
    const started = await startApiGateway(bench, dir, sink, 'a.test-multipart');
    gateway = started.gateway;
    const { port, key } = started;
    // Warm: the multipart path, composing, wrapping and relaying have all run once.
    const warm = 5;
    for (let i = 0; i < warm; i++) await postMultipart(agent, port, key, small, 64 * 1024, `warm-up ${i}`);
    await waitCount('multipart warm-up at smtp-sink', () => sink.counters().messages, warm);
    await new Promise((r) => setTimeout(r, 1000));
    const idle = vm(gateway.pid, 'VmRSS');
    // clear_refs 5 resets VmHWM to the current RSS (proc(5)).
    writeFileSync(`/proc/${gateway.pid}/clear_refs`, '5');
    await postMultipart(agent, port, key, big, MULTIPART_BYTES, 'a large document');
    const upload = vm(gateway.pid, 'VmHWM') - idle;
    await waitCount('the 25 MiB message at smtp-sink', () => sink.counters().messages, warm + 1);
    const relayed = vm(gateway.pid, 'VmHWM') - idle;
    log(`multipart 25 MiB: idle RSS ${(idle / MiB).toFixed(0)} MiB; above idle until the 202 ${(upload / MiB).toFixed(1)} MiB, until relayed ${(relayed / MiB).toFixed(1)} MiB`);
    return { upload, relayed, idle };
  } finally {
    agent.destroy();
    await gateway?.stop();
    await sink.stop();
  }
}

// ---------------------------------------------------------------------------------------------

export async function benchApi(options: ApiBenchOptions = {}): Promise<E2eFigure[] | { skipped: string }> {
  const why = e2eUnavailableReason();
  if (why) return { skipped: why };
  if (!existsSync(SAMPLE)) return { skipped: `${SAMPLE} absent (the ETT vectors)` };
  const log = (line: string) => options.verbose && process.stderr.write(`api: ${line}\n`);
  const scale = options.scale ?? 1;
  const load: Load = { size: '100KB', sessions: CLIENTS, n: Math.max(20, Math.round(N * scale)), warmUp: Math.max(20, Math.round(STEADY_WARM_UP * scale)) };
  const renderedLoad: Load = { ...load, n: Math.max(20, Math.round(RENDERED.n * scale)), warmUp: Math.max(20, Math.round(RENDERED.warmUp * scale)) };
  const only = new Set(options.only ?? ['hop', 'multipart']);
  const figures: E2eFigure[] = [];
  const fig = (name: string, value: number, unit: string, reference: number | null = null, target: string | null = null, pass: boolean | null = null) =>
    figures.push({ name, value, unit, reference, target, pass });

  const net = await startDirectNetwork(['a.test', 'sink.test']);
  const bench = new E2eBench(net, { verbose: options.verbose ?? false, ...(options.cpuProfileDir ? { cpuProfileDir: options.cpuProfileDir } : {}) });
  try {
    log(`load average at start: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    if (only.has('hop')) {
      const ccda = paddedCcda(readFileSync(SAMPLE, 'utf8'), CCDA_BYTES);
      const ccdaLf = paddedCcda(readFileSync(SAMPLE, 'utf8'), CCDA_BYTES, '\n');
      const composed = await composedSends(ccda);
      const runs: { smtp: HopResult; same: HopResult; plain: ApiHopResult; lf: ApiHopResult; rendered: ApiHopResult }[] = [];
      for (let round = 0; round < (options.rounds ?? ROUNDS); round++) {
        const smtp = await bench.hop(load);
        const same = await bench.hop(load, REPO_ROOT, composed);
        const plain = await apiHop(bench, load, ccda, false, options.cpuProfileDir);
        const lf = await apiHop(bench, load, ccdaLf, false, options.cpuProfileDir, 'lf');
        const rendered = await apiHop(bench, renderedLoad, ccda, undefined, options.cpuProfileDir);
        runs.push({ smtp, same, plain, lf, rendered });
        log(
          `round ${round + 1}: SMTP ${smtp.perSec.toFixed(0)} msg/s ${(smtp.cpuPerMsg * 1000).toFixed(2)} ms CPU/msg; ` +
            `SMTP of the API's message ${same.perSec.toFixed(0)} msg/s ${(same.cpuPerMsg * 1000).toFixed(2)} ms CPU/msg; ` +
            `API ${plain.perSec.toFixed(0)} msg/s ${(plain.cpuPerMsg * 1000).toFixed(2)} ms CPU/msg, 202 p50 ${plain.acceptedP50.toFixed(0)} ms p99 ${plain.acceptedP99.toFixed(0)} ms; ` +
            `API, LF line ends ${lf.perSec.toFixed(0)} msg/s ${(lf.cpuPerMsg * 1000).toFixed(2)} ms CPU/msg; ` +
            `API with rendering ${rendered.perSec.toFixed(0)} msg/s ${(rendered.cpuPerMsg * 1000).toFixed(2)} ms CPU/msg (load ${loadavg()[0]!.toFixed(2)})`,
        );
      }
      const m = <T>(pick: (r: (typeof runs)[number]) => T, f: (x: T) => number) => median(runs.map((r) => f(pick(r))));
      const smtpPerSec = m((r) => r.smtp, (x) => x.perSec);
      const smtpCpu = m((r) => r.smtp, (x) => x.cpuPerMsg) * 1000;
      const id = `api.hop.100KB.${CLIENTS}_clients`;
      for (const [prefix, pick, target] of [
        [id, (r: (typeof runs)[number]) => r.plain, true],
        [`${id}.lf_line_ends`, (r: (typeof runs)[number]) => r.lf, false],
        [`${id}.human_readable`, (r: (typeof runs)[number]) => r.rendered, false],
      ] as const) {
        const perSec = m(pick, (x) => x.perSec);
        fig(`${prefix}.msgs_per_s`, perSec, 'msg/s', smtpPerSec, target ? 'ratio >= 1.0' : null, target ? perSec / smtpPerSec >= 1 : null);
        if (runs.length > 1) {
          const ratios = runs.map((r) => pick(r).perSec / r.smtp.perSec);
          fig(`${prefix}.ratio_lowest`, Math.min(...ratios), 'ratio');
          fig(`${prefix}.ratio_highest`, Math.max(...ratios), 'ratio');
        }
        fig(`${prefix}.accepted_p50_ms`, m(pick, (x) => x.acceptedP50), 'ms', m((r) => r.smtp, (x) => x.submitP50));
        fig(`${prefix}.accepted_p99_ms`, m(pick, (x) => x.acceptedP99), 'ms', m((r) => r.smtp, (x) => x.submitP99));
        fig(`${prefix}.cpu_ms_per_msg`, m(pick, (x) => x.cpuPerMsg) * 1000, 'ms', smtpCpu);
        fig(`${prefix}.peak_rss`, Math.max(...runs.map((r) => pick(r).peakRssMiB)), 'MiB', Math.max(...runs.map((r) => r.smtp.peakRssMiB)));
        fig(`${prefix}.client_cpu_ms_per_msg`, m(pick, (x) => x.clientCpuPerMsg) * 1000, 'ms', m((r) => r.smtp, (x) => x.clientCpuPerMsg) * 1000);
        fig(`${prefix}.sink_cpu_ms_per_msg`, m(pick, (x) => x.sinkCpuPerMsg) * 1000, 'ms', m((r) => r.smtp, (x) => x.sinkCpuPerMsg) * 1000);
      }
      // The door alone: the API against SMTP carrying the very message the API composes (101 KB:
      // the C-CDA as it is, 7bit, beside the text), informative.
      const same = (f: (x: HopResult) => number) => m((r) => r.same, f);
      fig(`${id}.smtp_same_message.msgs_per_s`, same((x) => x.perSec), 'msg/s', smtpPerSec);
      fig(`${id}.smtp_same_message.cpu_ms_per_msg`, same((x) => x.cpuPerMsg) * 1000, 'ms', smtpCpu);
      fig(`${id}.msgs_per_s_vs_smtp_same_message`, m((r) => r.plain, (x) => x.perSec), 'msg/s', same((x) => x.perSec));
      fig(`${id}.cpu_ms_per_msg_vs_smtp_same_message`, m((r) => r.plain, (x) => x.cpuPerMsg) * 1000, 'ms', same((x) => x.cpuPerMsg) * 1000);
    }
    if (only.has('multipart')) {
      const r = await multipart25(bench, log);
      fig('api.multipart_25MB.peak_rss_above_idle', r.upload / MiB, 'MiB', r.idle / MiB, '<= 100', r.upload / MiB <= 100);
      fig('api.multipart_25MB.relayed.peak_rss_above_idle', r.relayed / MiB, 'MiB', r.idle / MiB);
    }
  } finally {
    await net.stop();
  }
  return figures;
}

const USAGE = `usage: node dist/bench/api-bench.js [hop|multipart] [--rounds N] [--scale X] [--cpu-prof DIR]

  hop|multipart   run only the API hop (beside the SMTP hop) or only the 25 MiB multipart upload
  --rounds N      rounds of the hop (SMTP, SMTP of the API's message, API, API with LF line ends, API with rendering), default ${ROUNDS}
  --scale X       multiply the hop's message counts by X (e.g. 0.2 for a quick look)
  --cpu-prof DIR  run the gateways with node --cpu-prof, profiles into DIR (one folder per run)`;

// `node dist/bench/api-bench.js`: this bench alone, its figures on stdout; `npm run bench` runs it too.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let values: { rounds?: string; scale?: string; 'cpu-prof'?: string; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: process.argv.slice(2),
      allowPositionals: true,
      strict: true,
      options: { help: { type: 'boolean', short: 'h' }, rounds: { type: 'string' }, scale: { type: 'string' }, 'cpu-prof': { type: 'string' } },
    }));
  } catch (err) {
    console.error(`api-bench: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (values.help === true) {
    console.log(USAGE);
    process.exit(0);
  }
  const number = (flag: 'rounds' | 'scale'): number | undefined => {
    const raw = values[flag];
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0 || (flag === 'rounds' && !Number.isInteger(n))) {
      console.error(`api-bench: --${flag} takes a positive number, not ${JSON.stringify(raw)}\n${USAGE}`);
      process.exit(2);
    }
    return n;
  };
  const wrong = positionals.find((p) => p !== 'hop' && p !== 'multipart');
  if (wrong !== undefined) {
    console.error(`api-bench: unknown part ${JSON.stringify(wrong)} (hop or multipart)\n${USAGE}`);
    process.exit(2);
  }
  const rounds = number('rounds');
  const scale = number('scale');
  const result = await benchApi({
    verbose: true,
    ...(positionals.length ? { only: positionals as ('hop' | 'multipart')[] } : {}),
    ...(rounds !== undefined ? { rounds } : {}),
    ...(scale !== undefined ? { scale } : {}),
    ...(values['cpu-prof'] ? { cpuProfileDir: values['cpu-prof'] } : {}),
  });
  if ('skipped' in result) console.log(`api: skipped: ${result.skipped}`);
  else {
    for (const f of result) {
      const ref = f.reference === null ? '' : `  (reference ${f.reference.toFixed(2)}, ratio ${(f.value / f.reference).toFixed(3)})`;
      console.log(`${f.name.padEnd(56)} ${f.value.toFixed(2).padStart(10)} ${f.unit}${ref}${f.pass === null ? '' : f.pass ? '  ok' : '  MISSED'}`);
    }
  }
  process.exit(0);
}

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { packXdm } from '../gateway/documents/xdm-pack.js';
import { unpackXdm } from '../gateway/documents/xdm-unpack.js';
import type { Figure } from './figure.js';

const MB = 1024 * 1024;
const TOTAL = 10 * MB;
const ROUNDS = 5;

/**
 * XDM packing and unpacking of 10 MB of documents (issue 15, "Speed"), MB/s, each beside a plain
 * zlib deflate (pack) or inflate (unpack) of the same documents in the same run: the ratio says what
 * the packaging costs above the compression nobody can skip (hashing, CRC, metadata, zip framing,
 * the caps, the file system). Four C-CDA-like XML documents of 2 MB and one 2 MB binary (a scanned
 * PDF does not compress), read from files as `hisp xdm pack` reads them; the zip goes to a file,
 * and unpacking reads it back, hashing each document and checking it against its metadata.
 * Figures are medians of five rounds; informative (the issue sets no target).
 */
export async function benchXdm(machine: string): Promise<Figure[]> {
  const work = mkdtempSync(join(tmpdir(), 'hisp-xdm-bench-'));
  try {
    const documents = workload();
    const paths = documents.map((d, i) => {
      const path = join(work, i === documents.length - 1 ? 'scan.pdf' : `ccda-${i}.xml`);
      writeFileSync(path, d);
      return path;
    });
    const zip = join(work, 'package.zip');
    const pack = async () => {
      rmSync(zip, { force: true });
      await packXdm({ documents: paths.map((path) => ({ path })), out: zip, patientId: '1^^^&2.16.840.1.113883.4.6&ISO' });
    };
    const unpack = async () => {
      const pkg = await unpackXdm(zip);
      if (pkg.documents.length !== documents.length || !pkg.documents.every((d) => d.hashMatches)) throw new Error('the bench package did not unpack whole');
    };
    const deflated: Buffer[] = [];
    const deflate = () => {
      deflated.length = 0;
      for (const d of documents) deflated.push(deflateRawSync(d, { level: 6 }));
    };
    const inflate = () => {
      for (const d of deflated) inflateRawSync(d);
    };

    const mbps = (ms: number) => TOTAL / MB / (ms / 1000);
    const packMs = await medianMs(pack);
    const deflateMs = await medianMs(deflate);
    const unpackMs = await medianMs(unpack);
    const inflateMs = await medianMs(inflate);
    const figure = (name: string, ms: number, referenceMs: number): Figure => ({
      name,
      value: round(mbps(ms)),
      unit: 'MB/s',
      reference: round(mbps(referenceMs)),
      ratio: round(mbps(ms) / mbps(referenceMs)),
      target: null,
      pass: null,
      machine,
    });
    return [figure('documents.xdm_pack_10MB.MBps', packMs, deflateMs), figure('documents.xdm_unpack_10MB.MBps', unpackMs, inflateMs)];
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * 10 MB of documents: four XML files of repeated C-CDA entries with varying values (they compress
 * about as real ones do) and one of pseudo-random octets.
 */
function workload(): Buffer[] {
  let seed = 0x2545f491;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const xml = (i: number): Buffer => {
    const parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3"><component><structuredBody>\n'];
    let size = parts[0]!.length;
    for (let n = 0; size < 2 * MB - 200; n++) {
      const v = next();
      const entry = `<entry typeCode="DRIV"><observation classCode="OBS" moodCode="EVN"><id root="2.16.840.1.113883.19.${i}" extension="${v.toString(16)}"/><code code="${2000 + (v % 8000)}-${v % 10}" codeSystem="2.16.840.1.113883.6.1" displayName="Result ${n}"/><effectiveTime value="2024${String(1 + (v % 12)).padStart(2, '0')}${String(1 + (v % 28)).padStart(2, '0')}"/><value xsi:type="PQ" value="${(v % 10000) / 100}" unit="mg/dL"/></observation></entry>\n`;
      parts.push(entry);
      size += entry.length;
    }
    parts.push('</structuredBody></component></ClinicalDocument>\n');
    return Buffer.from(parts.join('')).subarray(0, 2 * MB);
  };
  const binary = Buffer.alloc(2 * MB);
  for (let o = 0; o < binary.length; o += 4) binary.writeUInt32LE(next(), o);
  return [xml(1), xml(2), xml(3), xml(4), binary];
}

async function medianMs(run: () => unknown): Promise<number> {
  await run();
  const times: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

function round(v: number): number {
  return Math.round(v * 1000) / 1000;
}

// `node dist/bench/documents-xdm-bench.js` or `npx tsx bench/documents-xdm-bench.ts` prints the figures.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const machine = `${cpus()[0]?.model.trim() ?? 'cpu'} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`;
  for (const f of await benchXdm(machine)) console.log(`${f.name.padEnd(36)} ${String(f.value).padStart(9)} ${f.unit}  zlib ${f.reference} ${f.unit}  ratio ${f.ratio}`);
}

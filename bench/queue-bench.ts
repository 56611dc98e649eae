import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { SqliteQueue } from '../gateway/queue/sqlite-queue.js';
import { HispDatabase } from '../gateway/store/database.js';
import { MessageStore, type MessageEnvelope, type MessageStoreOptions } from '../gateway/store/message-store.js';

export interface QueueFigure {
  name: string;
  value: number;
  unit: string;
}

interface Run {
  perSec: number;
  /** Event-loop (main-thread) busy time per message: what the queue takes from SMTP and S/MIME work. */
  loopMsPerMsg: number;
  p99Ms: number;
}

const envelope: MessageEnvelope = {
  direction: 'outbound',
  mailFrom: 'doctor@hospital.example',
  recipients: ['patient@phr.example'],
  submittedBy: 'ehr',
  messageId: '<bench@hospital.example>',
};

function messageOf(bytes: number): Buffer {
  const line = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n';
  return Buffer.from(`Subject: bench\r\n\r\n${line.repeat(Math.ceil(bytes / line.length))}`.slice(0, bytes));
}

/** `producers` loops call `enqueue` back to back for about `seconds` (after a warm-up). */
async function drive(enqueue: () => Promise<unknown>, producers: number, seconds: number): Promise<Run> {
  for (let i = 0; i < 20; i++) await enqueue();
  const latencies: number[] = [];
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < end) {
      const s = performance.now();
      await enqueue();
      latencies.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: producers }, loop));
  const wall = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0);
  latencies.sort((a, b) => a - b);
  return {
    perSec: (latencies.length / wall) * 1000,
    loopMsPerMsg: elu.active / latencies.length,
    p99Ms: latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))] ?? 0,
  };
}

async function queueRun(dir: string, bytes: number, producers: number, seconds: number, storage: MessageStoreOptions = {}): Promise<Run> {
  const db = HispDatabase.open({ dataDir: dir });
  const messages = new MessageStore(db, storage);
  try {
    const queue = new SqliteQueue(db, { messages });
    const body = messageOf(bytes);
    return await drive(() => queue.enqueue(envelope, body), producers, seconds);
  } finally {
    await db.close();
    await messages.close();
  }
}

/** The storages a body of each size could have (message-store.ts): the default and the others, for reference. */
const INLINE: MessageStoreOptions = { inlineMaxBytes: Number.POSITIVE_INFINITY, spoolMaxBytes: Number.POSITIVE_INFINITY };
const FILE: MessageStoreOptions = { inlineMaxBytes: 0, spoolMaxBytes: 0 };

/** Lease + complete throughput of `workers` loops taking 10 deliveries at a time. */
async function leaseCompleteRun(dir: string, deliveries: number, workers: number): Promise<{ perSec: number; loopMsPerDelivery: number }> {
  const db = HispDatabase.open({ dataDir: dir });
  try {
    const queue = new SqliteQueue(db);
    const body = messageOf(1024);
    for (let i = 0; i < deliveries; i += 500) {
      await queue.enqueueMany(
        Array.from({ length: Math.min(500, deliveries - i) }, (_, j) => ({ envelope: { ...envelope, recipients: [`p${i + j}@phr${(i + j) % 50}.example`] }, body })),
      );
    }
    const elu0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    let done = 0;
    const worker = async (w: number): Promise<void> => {
      for (;;) {
        const leased = await queue.lease(10, `w${w}`, 60_000);
        if (leased.length === 0) return;
        await Promise.all(leased.map((d) => queue.complete(d, { code: 250, enhanced: '2.0.0', text: 'ok' })));
        done += leased.length;
      }
    };
    await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
    const wall = performance.now() - t0;
    return { perSec: (done / wall) * 1000, loopMsPerDelivery: performance.eventLoopUtilization(elu0).active / done };
  } finally {
    await db.close();
  }
}

/**
 * The queue's enqueue rate with fsync on (the body synced in the spool or as a file written with
 * O_DSYNC and its directory fsynced, then the row's WAL synced), for 1 producer and for 20
 * concurrent ones sharing group commits, at 10 KB and 100 KB (spooled bodies) and 1 MB (a file);
 * the main-thread time and p99 latency per enqueue (the time an SMTP client waits for its 250);
 * lease+complete throughput; and, for reference, the storages not chosen at each size
 * (`alt_inline`: a BLOB in the row, `alt_file`: a file of its own), which is why message-store.ts
 * puts the thresholds where they are. `dir` should be on the disk the data folder will use: its
 * fsync speed is what is measured.
 */
export async function benchQueue(dir: string, seconds = 1.5): Promise<QueueFigure[]> {
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(dir, 'queue-bench-'));
  const figures: QueueFigure[] = [];
  let n = 0;
  const fresh = () => join(work, `run${n++}`);
  const add = (prefix: string, label: string, who: string, r: Run) =>
    figures.push(
      { name: `queue.${prefix}enqueue_per_s.${label}.${who}`, value: r.perSec, unit: 'msg/s' },
      { name: `queue.${prefix}enqueue_loop_ms_per_msg.${label}.${who}`, value: r.loopMsPerMsg, unit: 'ms' },
      { name: `queue.${prefix}enqueue_p99_ms.${label}.${who}`, value: r.p99Ms, unit: 'ms' },
    );
  try {
    for (const [label, bytes, producerCounts] of [
      ['10KB', 10 * 1024, [1, 20]],
      ['100KB', 100 * 1024, [1, 20]],
      ['1MB', 1024 * 1024, [20]],
    ] as const) {
      for (const producers of producerCounts) {
        add('', label, producers === 1 ? '1_producer' : `${producers}_producers`, await queueRun(fresh(), bytes, producers, seconds));
      }
      add('alt_inline_', label, '20_producers', await queueRun(fresh(), bytes, 20, seconds, INLINE));
      if (bytes <= 128 * 1024) add('alt_file_', label, '20_producers', await queueRun(fresh(), bytes, 20, seconds, FILE));
    }
    const lc = await leaseCompleteRun(fresh(), 5000, 4);
    figures.push(
      { name: 'queue.lease_complete_per_s.4_workers', value: lc.perSec, unit: 'deliveries/s' },
      { name: 'queue.lease_complete_loop_ms_per_delivery', value: lc.loopMsPerDelivery, unit: 'ms' },
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return figures;
}

// `node dist/bench/queue-bench.js [DIR]` or `npx tsx bench/queue-bench.ts [DIR]` prints the figures.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'hisp-queue-bench-'));
  for (const f of await benchQueue(dir)) console.log(`${f.name.padEnd(52)} ${f.value.toFixed(f.unit === 'ms' ? 3 : 0).padStart(10)} ${f.unit}`);
  if (process.argv[2] === undefined) rmSync(dir, { recursive: true, force: true });
}

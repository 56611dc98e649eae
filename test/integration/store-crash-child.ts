/**
 * The process store-crash.test.ts kills with SIGKILL (run with `node --import tsx`):
 *
 *   enqueue DATA_DIR PRODUCERS  — PRODUCERS concurrent loops enqueue messages for ever; each prints
 *                                 `ACK <queueId> <seed> <recipients>` only after enqueue resolved
 *                                 (the moment the SMTP edge would answer 250).
 *   work DATA_DIR LEASE_MS      — leases deliveries, "sends" them, completes them; prints
 *                                 `LEASED <id> <attempt> <now> <leaseUntil>`, `SENT <id> <attempt>`,
 *                                 `COMPLETED <id> <attempt> <true|false>`; exits with `DONE` once no
 *                                 delivery is queued.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { SqliteQueue } from '../../gateway/queue/sqlite-queue.js';
import { HispDatabase } from '../../gateway/store/database.js';

/**
 * The body of a seed, derived from it so the test can check it intact: 6-20 KB (spooled), one
 * in eight 150-250 KB (stored as a file).
 */
export function crashBody(seed: string): Buffer {
  const h = parseInt(createHash('sha256').update(seed).digest('hex').slice(0, 6), 16);
  const size = h % 8 === 0 ? 150_000 + (h % 100_000) : 6144 + (h % 14336);
  const chunks: Buffer[] = [Buffer.from(`Subject: ${seed}\r\n\r\n`)];
  let block = createHash('sha256').update(seed).digest();
  let total = chunks[0]?.length ?? 0;
  while (total < size) {
    block = createHash('sha256').update(block).digest();
    const line = Buffer.from(`${block.toString('base64')}\r\n`);
    chunks.push(line);
    total += line.length;
  }
  return Buffer.concat(chunks);
}

export function crashRecipients(seed: string): string[] {
  const n = 1 + (parseInt(createHash('sha256').update(`r${seed}`).digest('hex').slice(0, 2), 16) % 3);
  return Array.from({ length: n }, (_, i) => `p${i}@phr${i % 2}.example`);
}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function enqueueForever(dataDir: string, producers: number): Promise<void> {
  const db = HispDatabase.open({ dataDir });
  const queue = new SqliteQueue(db);
  const run = `${process.pid}`;
  let counter = 0;
  const producer = async (): Promise<never> => {
    for (;;) {
      const seed = `${run}-${counter++}`;
      const recipients = crashRecipients(seed);
      const id = await queue.enqueue({ direction: 'outbound', mailFrom: 'doctor@hospital.example', recipients, messageId: `<${seed}@hospital.example>` }, crashBody(seed));
      out(`ACK ${id} ${seed} ${recipients.length}`);
    }
  };
  out('READY');
  await Promise.all(Array.from({ length: producers }, producer));
}

async function work(dataDir: string, leaseMs: number): Promise<void> {
  const db = HispDatabase.open({ dataDir });
  const queue = new SqliteQueue(db);
  const worker = `w${process.pid}`;
  const queued = db.sqlite.prepare("SELECT count(*) FROM deliveries WHERE state = 'queued'").pluck();
  out('READY');
  for (;;) {
    const leased = await queue.lease(5, worker, leaseMs);
    if (leased.length === 0) {
      if (queued.get() === 0) break;
      await sleep(20); // the rest is leased by a dead worker: wait for the leases to expire
      continue;
    }
    for (const d of leased) out(`LEASED ${d.id} ${d.attempt} ${Date.now()} ${d.leaseUntil.getTime()}`);
    // The relay: long enough that a kill often lands between the lease and the complete.
    await sleep(5 + Math.random() * 15);
    for (const d of leased) {
      await queue.body(d.queueId);
      out(`SENT ${d.id} ${d.attempt}`);
    }
    const results = await Promise.all(leased.map((d) => queue.complete(d, { code: 250, enhanced: '2.0.0', text: 'ok' })));
    leased.forEach((d, i) => out(`COMPLETED ${d.id} ${d.attempt} ${String(results[i])}`));
    // A worker unsure whether its complete landed repeats it: idempotent, no second transition.
    if (Math.random() < 0.3) await Promise.all(leased.map((d) => queue.complete(d, { code: 250, text: 'ok' })));
  }
  await db.close();
  out('DONE');
}

// Only as a program: the test imports crashBody from here.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [mode, dataDir, arg] = process.argv.slice(2);
  if (mode === 'enqueue' && dataDir !== undefined) await enqueueForever(dataDir, Number(arg ?? 20));
  else if (mode === 'work' && dataDir !== undefined) await work(dataDir, Number(arg ?? 1000));
  else {
    process.stderr.write('usage: store-crash-child.ts enqueue|work DATA_DIR [PRODUCERS|LEASE_MS]\n');
    process.exit(2);
  }
}

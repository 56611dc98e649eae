// Issue 14, item 5: the quarantine of a running gateway is bounded. Anyone may send to the inbound
// port; what is not a Direct message is quarantined (HISP_SMIME_NOT_ENCRYPTED), and with
// [quarantine] maxBytes the oldest entries go so that the total stays within it; entries past
// retentionDays go at start (and hourly). Each drop is logged; the disk reserve is written at start.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../gateway/config/load-config.js';
import { createLogger } from '../../gateway/core/logger.js';
import { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { HispDatabase, MessageStore, QuarantineStore } from '../../gateway/store/index.js';
import { DISK_RESERVE_FILE } from '../../gateway/store/disk-reserve.js';
import { ENTRY_OVERHEAD_BYTES } from '../../gateway/store/quarantine-store.js';
import { credentialPaths } from '../helpers/pki.js';
import { rawSmtp } from '../helpers/raw-smtp.js';

const DAY = 86_400_000;
const MiB = 1024 * 1024;
const MAX_BYTES = 1 * MiB;
const MESSAGE = 60 * 1024;

const work = mkdtempSync(join(tmpdir(), 'hisp-quarantine-bounds-'));
const dataDir = join(work, 'data');
const logs: Record<string, unknown>[] = [];
let gateway: HispGateway;
const seeded: string[] = [];

beforeAll(async () => {
  // Two entries quarantined 40 days ago by an earlier run.
  let clock = Date.now() - 40 * DAY;
  const db = HispDatabase.open({ dataDir });
  const messages = new MessageStore(db, { now: () => clock });
  const q = new QuarantineStore(db, messages, { now: () => clock });
  for (let i = 0; i < 2; i++) {
    seeded.push(await q.store({ direction: 'inbound', mailFrom: 'old@elsewhere.test', recipients: ['doc@sender.test'] }, Buffer.from(`Subject: old ${i}\r\n\r\nx\r\n`), 'HISP_SIG_INVALID', 'old'));
    clock += 1000;
  }
  await db.close();
  await messages.close();

  const q2 = JSON.stringify;
  const { config } = parseConfig(
    `dataDir = ${q2(dataDir)}
[submission]
enabled = false
[inbound]
host = "127.0.0.1"
port = 0
maxMessageBytes = ${MESSAGE + 4096}
[queue]
workers = 2
[quarantine]
retentionDays = 30
maxBytes = ${MAX_BYTES}
reserveBytes = 65536
[[domains]]
name = "sender.test"
catchAll = true
[[domains.credentials]]
key = ${q2(credentialPaths('sender-domain').key)}
cert = ${q2(credentialPaths('sender-domain').chain ?? '')}
`,
    { baseDir: work, env: {} },
  );
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  gateway = await HispGateway.start({ config, logger: createLogger({ level: 'info', destination }), pollIntervalMs: 100, closeTimeoutMs: 1000 });
});

afterAll(async () => {
  await gateway?.stop();
  rmSync(work, { recursive: true, force: true });
});

async function send(i: number): Promise<void> {
  const smtp = await rawSmtp(gateway.inboundPort!);
  try {
    expect(await smtp.read()).toMatch(/^220/);
    expect(await smtp.send('EHLO flood.test\r\n')).toMatch(/^250/);
    expect(await smtp.send('MAIL FROM:<anyone@flood.test>\r\n')).toMatch(/^250/);
    expect(await smtp.send('RCPT TO:<doc@sender.test>\r\n')).toMatch(/^250/);
    expect(await smtp.send('DATA\r\n')).toMatch(/^354/);
    const body = `${'x'.repeat(76)}\r\n`.repeat(Math.floor((MESSAGE - 200) / 78));
    expect(await smtp.send(`From: anyone@flood.test\r\nTo: doc@sender.test\r\nSubject: flood ${i}\r\nMessage-ID: <flood-${i}@flood.test>\r\n\r\n${body}.\r\n`)).toMatch(/^250/);
    await smtp.send('QUIT\r\n');
  } finally {
    smtp.close();
  }
}

describe('the quarantine of a running gateway', () => {
  it('at start: drops the entries past retentionDays (logged at info) and writes the disk reserve', () => {
    const q = gateway.ctx.quarantine;
    for (const id of seeded) expect(q.get(id)).toBeUndefined();
    const dropped = logs.filter((l) => l.msg === 'quarantine entry dropped: older than quarantine.retentionDays');
    expect(dropped.map((l) => l.queueId).sort()).toEqual([...seeded].sort());
    expect(dropped[0]).toMatchObject({ level: 30, component: 'quarantine', reasonCode: 'HISP_SIG_INVALID', mailFrom: 'old@elsewhere.test', cause: 'retention' });
    expect(statSync(join(dataDir, DISK_RESERVE_FILE)).size).toBe(65536);
  });

  it('a flood of messages quarantined from the inbound port stays within maxBytes, the oldest dropped first (logged at warn)', async () => {
    const n = 24; // 24 × (60 KiB + 4 KiB) ≈ 1.5 MiB: over the 1 MiB cap
    for (let i = 0; i < n; i++) await send(i);
    const q = gateway.ctx.quarantine;
    const deadline = Date.now() + 20_000;
    // Each accepted message ends quarantined or dropped from quarantine (and logged).
    while (q.usage().entries + q.drops(new Date(Date.now() - DAY)).cap.entries < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await q.settled();
    const usage = q.usage();
    const cap = q.drops(new Date(Date.now() - DAY)).cap;
    expect(usage.entries + cap.entries).toBe(n);
    expect(usage.charged).toBeLessThanOrEqual(MAX_BYTES);
    expect(cap.entries).toBeGreaterThan(0);
    expect(usage.entries).toBe(Math.floor(MAX_BYTES / (q.list({ limit: 1 })[0]!.message.size + ENTRY_OVERHEAD_BYTES)));
    expect(q.list({ limit: 100 }).every((e) => e.reasonCode === 'HISP_SMIME_NOT_ENCRYPTED')).toBe(true);
    // Oldest first: every entry dropped was quarantined no later than every entry kept.
    const warned = logs.filter((l) => l.msg === 'quarantine entry dropped: the quarantine is over quarantine.maxBytes (oldest first)');
    const keptSince = Math.min(...q.list({ limit: 100 }).map((e) => e.quarantinedAt.getTime()));
    expect(Math.max(...warned.map((l) => Date.parse(l.quarantinedAt as string)))).toBeLessThanOrEqual(keptSince);
    expect(warned).toHaveLength(cap.entries);
    expect(warned[0]).toMatchObject({ level: 40, cause: 'cap', reasonCode: 'HISP_SMIME_NOT_ENCRYPTED', mailFrom: 'anyone@flood.test', maxBytes: MAX_BYTES });
  });
});

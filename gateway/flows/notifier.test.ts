import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { createLogger } from '../core/logger.js';
import { RetrySchedule } from '../queue/retry-schedule.js';
import { SqliteQueue } from '../queue/sqlite-queue.js';
import { HispDatabase } from '../store/database.js';
import { TrackingStore } from '../store/tracking-store.js';
import type { GatewayContext } from './gateway-context.js';
import { Notifier } from './notifier.js';

const T0 = Date.UTC(2026, 11, 7, 12);
const MINUTE = 60_000;
let dir: string;
let db: HispDatabase;
let clock: number;
let queue: SqliteQueue;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-notifier-'));
  db = HispDatabase.open({ dataDir: dir });
  clock = T0;
  queue = new SqliteQueue(db, { now: () => clock });
});

afterEach(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A notifier over the real store; `body` replaces the queue's body reader (to make it fail). */
function notifier(body?: (queueId: string) => Promise<Buffer>): Notifier {
  const q = Object.create(queue) as SqliteQueue;
  if (body) q.body = body;
  const ctx = {
    config: { hostname: 'hisp.a.test', queue: { giveUpHours: 24 } },
    db,
    queue: q,
    tracking: new TrackingStore(db),
    schedule: new RetrySchedule({ retrySchedule: [1, 5], giveUpHours: 1, jitter: (ms) => ms }),
    logger: createLogger({ level: 'silent' }),
    now: () => clock,
    wake: () => undefined,
  };
  return new Notifier(ctx as unknown as GatewayContext);
}

/** An outbound message to one recipient whose delivery has failed: its DSN is due. */
async function failedDelivery(): Promise<string> {
  const queueId = await queue.enqueue(
    { direction: 'outbound', mailFrom: 'provider@a.test', recipients: ['patient@b.test'], messageId: '<m1@a.test>' },
    Buffer.from('From: provider@a.test\r\nTo: patient@b.test\r\nMessage-ID: <m1@a.test>\r\n\r\nbody\r\n'),
  );
  const [d] = await queue.lease(1, 'relay-1', MINUTE);
  await queue.fail(d!, { code: 550, enhanced: '5.1.1', text: 'user unknown' });
  return queueId;
}

describe('Notifier: a failure notice that cannot be queued (issue 14, item 1)', () => {
  it('a transient failure is tried again on the retry schedule, never at the next round', async () => {
    const queueId = await failedDelivery();
    let reads = 0;
    let broken = true;
    const n = notifier(async (id) => {
      reads++;
      if (broken) throw new HispError('HISP_IO', 'cannot read the body: EIO', { transient: true });
      return queue.body(id);
    });
    expect(await n.runOnce()).toBe(1);
    const after = (await queue.get(queueId))!.deliveries[0]!;
    expect(after).toMatchObject({ dsnQueuedAt: null, dsnAttempts: 1, dsnError: expect.stringContaining('EIO') as string });
    expect(after.dsnRetryAt?.getTime()).toBe(T0 + MINUTE);
    // Rounds before the retry time find nothing: no spinning on what keeps failing.
    for (let i = 0; i < 50; i++) expect(await n.runOnce()).toBe(0);
    expect(reads).toBe(1);
    clock = T0 + MINUTE;
    broken = false;
    expect(await n.runOnce()).toBe(1);
    expect((await queue.get(queueId))!.deliveries[0]!.dsnQueuedAt?.getTime()).toBe(T0 + MINUTE);
    expect(await n.runOnce()).toBe(0);
  });

  it('a permanent failure, or the retry schedule run out, is recorded once with its reason, for the operator', async () => {
    const queueId = await failedDelivery();
    let reads = 0;
    const n = notifier(() => {
      reads++;
      return Promise.reject(new HispError('HISP_CONFIG_INVALID', 'no such local domain'));
    });
    expect(await n.runOnce()).toBe(1);
    const d = (await queue.get(queueId))!.deliveries[0]!;
    expect(d).toMatchObject({ state: 'failed', dsnQueuedAt: null, dsnRetryAt: null, dsnError: 'HISP_CONFIG_INVALID: no such local domain' });
    for (let i = 0; i < 50; i++) expect(await n.runOnce()).toBe(0);
    clock += 24 * 60 * MINUTE;
    expect(await n.runOnce()).toBe(0);
    expect(reads).toBe(1);
    // Transient failures past the give-up time end the same way.
    const second = await failedDelivery();
    const m = notifier(() => Promise.reject(new HispError('HISP_IO', 'EIO', { transient: true })));
    clock += 2 * 60 * MINUTE; // past giveUpHours (1) since the delivery failed
    await m.runOnce();
    expect((await queue.get(second))!.deliveries[0]).toMatchObject({ dsnRetryAt: null, dsnError: expect.stringContaining('EIO') as string });
    expect(await m.runOnce()).toBe(0);
  });

  it('a header section that cannot be read still gives the sender a notice, without the original headers', async () => {
    const queueId = await failedDelivery();
    const n = notifier(() => Promise.resolve(Buffer.from('not a header section\r\nnor this\r\n\r\n')));
    expect(await n.runOnce()).toBe(1);
    expect((await queue.get(queueId))!.deliveries[0]!.dsnQueuedAt).not.toBeNull();
    const notices = await queue.list({ direction: 'inbound' });
    expect(notices).toHaveLength(1);
    const dsn = (await queue.body(notices[0]!.queueId)).toString('latin1');
    expect(dsn).toMatch(/Final-Recipient: rfc822; ?patient@b\.test/);
    expect(dsn).not.toContain('text/rfc822-headers');
  });
});

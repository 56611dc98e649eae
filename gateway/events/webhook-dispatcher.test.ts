import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../core/logger.js';
import { SqliteQueue } from '../queue/sqlite-queue.js';
import { HispDatabase } from '../store/database.js';
import { FetchAddressPolicy } from '../trust/fetch-address-policy.js';
import { EventOutbox, type HispEvent } from './event-outbox.js';
import { WEBHOOK_BACKOFF_MS, WebhookDispatcher } from './webhook-dispatcher.js';
import { startWebhookReceiver, type WebhookReceiver } from '../../test/helpers/webhook-receiver.js';

let dir: string;
let db: HispDatabase;
let clock: number;
let queue: SqliteQueue;
let outbox: EventOutbox;
let revoked = false;
const T0 = Date.UTC(2026, 11, 7, 12);

/** A subscriber verifying each request with the standardwebhooks library. */
let hooks: WebhookReceiver<HispEvent>;
let url = '';
const received = () => hooks.received;

beforeAll(async () => {
  hooks = await startWebhookReceiver<HispEvent>();
  url = hooks.url;
});
afterAll(() => hooks.close());

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-webhooks-'));
  db = HispDatabase.open({ dataDir: dir });
  clock = T0;
  queue = new SqliteQueue(db, { now: () => clock });
  outbox = new EventOutbox(db);
  hooks.received.length = 0;
  hooks.answer(200);
  revoked = false;
});

afterEach(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

function dispatcher(allow: string[] = ['127.0.0.1/32']): WebhookDispatcher {
  return new WebhookDispatcher(db, outbox, {
    scopeOf: (id) => (id === 'k1' && !revoked ? { sent: ['@hospital.example'], received: [] } : undefined),
    post: { policy: new FetchAddressPolicy(allow), timeoutMs: 5000 },
    logger: createLogger({ level: 'silent' }),
    now: () => clock,
  });
}

async function send(to: string): Promise<void> {
  // The real clock of the signature's time stamp must be within the verifier's tolerance: the
  // dispatcher signs with its own clock, so these tests keep it near the present.
  await queue.enqueue({ direction: 'outbound', mailFrom: 'doctor@hospital.example', recipients: [to], messageId: `<${to}>` }, Buffer.from('Subject: x\r\n\r\nx\r\n'));
}

describe('WebhookDispatcher', () => {
  it('posts the events of the key scope after its subscription, in order, signed per Standard Webhooks, each once', async () => {
    clock = Date.now();
    await send('before@phr.example');
    const d = dispatcher();
    hooks.secret(d.subscribe('k1', url).secret);
    expect(d.get('k1')?.url).toBe(url);
    await send('a@phr.example');
    await send('b@phr.example');
    await queue.enqueue({ direction: 'outbound', mailFrom: 'nurse@clinic.example', recipients: ['c@phr.example'] }, Buffer.from('x'));
    expect(await d.runOnce()).toBe(2);
    expect(received().map((r) => [r.event.type, r.event.data.recipient, r.verified])).toEqual([
      ['message.queued', 'a@phr.example', true],
      ['message.queued', 'b@phr.example', true],
    ]);
    expect(received()[0]?.headers['webhook-id']).toBe(received()[0]?.event.id);
    expect(await d.runOnce()).toBe(0);
    expect(received()).toHaveLength(2);
    expect(d.get('k1')).toMatchObject({ failures: 0, cursor: received()[1]?.event.cursor });
  });

  it('a failure waits its back-off, counted in rounds and requests, then delivers the same event (same id) again', async () => {
    clock = Date.now();
    const d = dispatcher();
    hooks.secret(d.subscribe('k1', url).secret);
    await send('a@phr.example');
    hooks.answer(503);
    expect(await d.runOnce()).toBe(0);
    expect(received()).toHaveLength(1);
    expect(d.get('k1')).toMatchObject({ failures: 1, lastError: 'HTTP 503' });
    for (let i = 0; i < 20; i++) await d.runOnce();
    expect(received()).toHaveLength(1);
    hooks.answer(200);
    clock += WEBHOOK_BACKOFF_MS[0]!;
    expect(await d.runOnce()).toBe(1);
    expect(received().map((r) => r.event.id)).toEqual([received()[0]!.event.id, received()[0]!.event.id]);
    expect(d.get('k1')).toMatchObject({ failures: 0, lastError: null });
  });

  it('a revoked key gets nothing; a URL to a loopback address is refused unless [fetch] allowAddresses lets it', async () => {
    clock = Date.now();
    const strict = dispatcher([]);
    hooks.secret(strict.subscribe('k1', url).secret);
    await send('a@phr.example');
    expect(await strict.runOnce()).toBe(0);
    expect(received()).toHaveLength(0);
    expect(strict.get('k1')?.lastError).toMatch(/127\.0\.0\.1, which is not an allowed address/);
    clock += WEBHOOK_BACKOFF_MS[0]!;
    revoked = true;
    expect(await dispatcher().runOnce()).toBe(0);
    expect(received()).toHaveLength(0);
    expect(() => strict.subscribe('k1', 'http://example.org/hook')).toThrow(/https/);
  });
});

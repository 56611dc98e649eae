import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hispRejection } from '../../test/helpers/hisp-error.js';
import { SqliteQueue } from '../queue/sqlite-queue.js';
import { HispDatabase } from '../store/database.js';
import { EventOutbox } from './event-outbox.js';
import { MessageTracker } from './message-tracker.js';

let dir: string;
let db: HispDatabase;
let clock: number;
let queue: SqliteQueue;
let tracker: MessageTracker;
const T0 = Date.UTC(2026, 11, 7, 12);
const body = Buffer.from('Subject: x\r\n\r\nhello\r\n');

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-tracker-'));
  db = HispDatabase.open({ dataDir: dir });
  clock = T0;
  queue = new SqliteQueue(db, { now: () => clock });
  tracker = new MessageTracker(db, queue, new EventOutbox(db));
});

afterEach(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

async function send(from: string, to: string[], meta: Record<string, unknown> = {}): Promise<string> {
  clock += 1000;
  return queue.enqueue({ direction: 'outbound', mailFrom: from, recipients: to, messageId: `<${clock}@h>`, meta }, body);
}

describe('MessageTracker', () => {
  it('shows a message of its scope with each recipient, and hides one outside it', async () => {
    const id = await send('doctor@hospital.example', ['p@phr.example'], { api: true, clientRef: 'order-7', subject: 'Summary' });
    const view = await tracker.get(id, ['@hospital.example']);
    expect(view).toMatchObject({ id, from: 'doctor@hospital.example', clientRef: 'order-7', subject: 'Summary', submittedVia: 'api', submittedAt: new Date(T0 + 1000).toISOString() });
    expect(view.recipients.map((r) => [r.address, r.state])).toEqual([['p@phr.example', 'queued']]);
    expect((await tracker.get(id, ['doctor@hospital.example'])).id).toBe(id);
    expect((await hispRejection(tracker.get(id, ['@clinic.example']))).code).toBe('HISP_NOT_FOUND');
    expect((await hispRejection(tracker.get('nope', ['@hospital.example']))).code).toBe('HISP_NOT_FOUND');
    const smtp = await send('doctor@hospital.example', ['q@phr.example'], { client: '10.0.0.1' });
    expect((await tracker.get(smtp, ['@hospital.example'])).submittedVia).toBe('smtp');
  });

  it('pages through the scope oldest first, since a time, and filters by the current state', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await send('doctor@hospital.example', [`p${i}@phr.example`]));
    await send('nurse@clinic.example', ['x@phr.example']);
    const first = await tracker.list({ scope: ['@hospital.example'], limit: 2 });
    expect(first.messages.map((m) => m.id)).toEqual(ids.slice(0, 2));
    const second = await tracker.list({ scope: ['@hospital.example'], limit: 2, cursor: first.nextCursor! });
    expect(second.messages.map((m) => m.id)).toEqual(ids.slice(2, 4));
    const third = await tracker.list({ scope: ['@hospital.example'], limit: 2, cursor: second.nextCursor! });
    expect(third).toEqual({ messages: [expect.objectContaining({ id: ids[4] })], nextCursor: null });
    expect((await tracker.list({ scope: ['@hospital.example'], limit: 10, since: new Date(T0 + 4000) })).messages.map((m) => m.id)).toEqual(ids.slice(3));

    const [d] = await queue.lease(1, 'w', 60_000);
    await queue.fail(d!, { code: 554, text: 'no', reason: 'untrusted' });
    const failed = await tracker.list({ scope: ['@hospital.example'], limit: 10, state: 'failed' });
    expect(failed.messages.map((m) => [m.id, m.recipients[0]?.reason])).toEqual([[ids[0], 'untrusted']]);
    await expect(tracker.list({ scope: ['@hospital.example'], limit: 2, cursor: 'garbage!' })).rejects.toMatchObject({ code: 'HISP_API_INVALID_REQUEST' });
  });
});

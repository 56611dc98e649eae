import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { HispDatabase } from './database.js';
import { MessageStore, type MessageEnvelope } from './message-store.js';
import { QuarantineStore } from './quarantine-store.js';

let dir: string;
let db: HispDatabase;
let clock: number;
let messages: MessageStore;
let quarantine: QuarantineStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-quarantine-'));
  db = HispDatabase.open({ dataDir: dir });
  clock = Date.UTC(2026, 0, 1);
  messages = new MessageStore(db, { now: () => clock });
  quarantine = new QuarantineStore(db, messages, { now: () => clock });
});

afterEach(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

const inbound: MessageEnvelope = { direction: 'inbound', mailFrom: 'hisp@sender.example', recipients: ['p@phr.example'], messageId: '<q1@sender.example>' };
const raw = Buffer.from('Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAx\r\n');

describe('QuarantineStore', () => {
  it('stores a raw inbound message with its reason in one commit; show() returns both', async () => {
    const id = await quarantine.store(inbound, raw, 'HISP_SIG_INVALID', 'no signature verifies');
    const shown = await quarantine.show(id);
    expect(shown?.raw).toEqual(raw);
    expect(shown?.entry).toMatchObject({
      id,
      reasonCode: 'HISP_SIG_INVALID',
      detail: 'no signature verifies',
      quarantinedAt: new Date(clock),
      message: { queueId: id, direction: 'inbound', mailFrom: 'hisp@sender.example', recipients: ['p@phr.example'], messageId: 'q1@sender.example', size: raw.length },
    });
  });

  it('quarantines a message already stored; again, the reason is replaced', async () => {
    const stored = await messages.put(inbound, raw);
    await quarantine.quarantine(stored.queueId, 'HISP_TRUST_NO_ANCHOR', 'first');
    await quarantine.quarantine(stored.queueId, 'HISP_TRUST_REVOKED', 'second');
    expect(quarantine.get(stored.queueId)).toMatchObject({ reasonCode: 'HISP_TRUST_REVOKED', detail: 'second' });
    expect(quarantine.list()).toHaveLength(1);
  });

  it('refuses to quarantine a message that is not stored', async () => {
    await expect(quarantine.quarantine('nosuchid', 'HISP_SIG_INVALID', 'x')).rejects.toSatisfy(
      (err) => err instanceof HispError && err.code === 'HISP_USAGE',
    );
  });

  it('lists newest first, with a limit and paging by time', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push(await quarantine.store(inbound, raw, 'HISP_CMS_DECRYPT_FAILED', `#${i}`));
      clock += 1000;
    }
    expect(quarantine.list().map((e) => e.detail)).toEqual(['#2', '#1', '#0']);
    expect(quarantine.list({ limit: 2 }).map((e) => e.id)).toEqual([ids[2], ids[1]]);
    expect(quarantine.list({ before: new Date(clock - 2000) }).map((e) => e.detail)).toEqual(['#0']);
  });

  it('delete() removes the entry, the message and its raw file', async () => {
    const id = await quarantine.store(inbound, raw, 'HISP_SIG_INVALID', 'x');
    const path = messages.bodyPath(id);
    expect(await quarantine.delete(id)).toBe(true);
    expect(quarantine.get(id)).toBeUndefined();
    expect(messages.get(id)).toBeUndefined();
    expect(existsSync(path)).toBe(false);
    expect(await quarantine.delete(id)).toBe(false);
    expect(await quarantine.show(id)).toBeUndefined();
  });

  it('delete() of an id that is a message but not quarantined deletes nothing', async () => {
    const stored = await messages.put(inbound, raw);
    expect(await quarantine.delete(stored.queueId)).toBe(false);
    expect(messages.get(stored.queueId)).toBeDefined();
  });
});

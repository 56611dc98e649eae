import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hispRejection } from '../../test/helpers/hisp-error.js';
import { ApiKeyStore, keyMay } from './api-key-store.js';
import { openDatabase, type HispDatabase } from './database.js';

let dir: string;
let db: HispDatabase;
let keys: ApiKeyStore;
const T0 = Date.UTC(2026, 0, 1);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hisp-keys-'));
  db = openDatabase({ dataDir: dir });
  keys = new ApiKeyStore(db);
});
afterEach(async () => {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('ApiKeyStore', () => {
  it('creates a key whose token authenticates, and stores only a digest of its secret', async () => {
    const { key, token } = await keys.create({ name: 'ehr', actions: ['send', 'status'], sendAs: ['EHR@Hospital.Example', '@clinic.example.'] }, T0);
    expect(token).toMatch(/^hisp_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(token.slice(5, 21)).toBe(key.id);
    expect(key).toMatchObject({ name: 'ehr', actions: ['send', 'status'], sendAs: ['EHR@hospital.example', '@clinic.example'], mailboxes: [], ratePerMinute: undefined });
    expect(keys.authenticate(token, T0)).toEqual({ ok: true, key: expect.objectContaining({ id: key.id }) as unknown });
    // Nothing of the secret in the database file's rows.
    const row = db.sqlite.prepare('SELECT * FROM api_keys').get() as Record<string, unknown>;
    expect(JSON.stringify(row)).not.toContain(token.slice(22));
    expect((row.secret_sha256 as Buffer).length).toBe(32);
  });

  it('refuses a malformed token, an unknown id, a wrong secret and a revoked key', async () => {
    const { key, token } = await keys.create({ name: 'ehr', actions: ['status'] }, T0);
    expect(keys.authenticate('Bearer x', T0)).toEqual({ ok: false, reason: 'malformed' });
    expect(keys.authenticate(`${token}x`, T0)).toEqual({ ok: false, reason: 'malformed' });
    expect(keys.authenticate(token.replace(key.id, '0123456789abcdef'), T0)).toEqual({ ok: false, reason: 'unknown' });
    const wrong = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
    expect(keys.authenticate(wrong, T0)).toEqual({ ok: false, reason: 'unknown' });
    const revoked = await keys.revoke(key.id, T0 + 1);
    expect(revoked.revokedAt).toEqual(new Date(T0 + 1));
    expect(keys.authenticate(token, T0 + 2)).toEqual({ ok: false, reason: 'revoked' });
    // A second revocation changes nothing; an unknown id is HISP_NOT_FOUND.
    expect((await keys.revoke(key.id, T0 + 5)).revokedAt).toEqual(new Date(T0 + 1));
    expect((await hispRejection(keys.revoke('nope', T0))).code).toBe('HISP_NOT_FOUND');
  });

  it('sees a revocation made through another connection at once (the CLI revokes while the gateway runs)', async () => {
    const { key, token } = await keys.create({ name: 'ehr', actions: ['status'] }, T0);
    const other = openDatabase({ dataDir: dir });
    try {
      await new ApiKeyStore(other).revoke(key.id, T0 + 1);
    } finally {
      await other.close();
    }
    expect(keys.authenticate(token, T0 + 2)).toEqual({ ok: false, reason: 'revoked' });
  });

  it('lists keys without secrets, revoked ones only when asked', async () => {
    const a = await keys.create({ name: 'a', actions: ['receive'], mailboxes: ['@phr.example'], ratePerMinute: 30 }, T0);
    const b = await keys.create({ name: 'b', actions: ['status'] }, T0 + 1);
    await keys.revoke(a.key.id, T0 + 2);
    expect(keys.list().map((k) => k.name)).toEqual(['b']);
    const all = keys.list({ includeRevoked: true });
    expect(all.map((k) => [k.name, k.revokedAt?.getTime()])).toEqual([
      ['a', T0 + 2],
      ['b', undefined],
    ]);
    expect(all[0]).toMatchObject({ ratePerMinute: 30, mailboxes: ['@phr.example'] });
    expect(JSON.stringify(all)).not.toContain(a.token.slice(22));
    expect(JSON.stringify(all)).not.toContain(b.token.slice(22));
  });

  it('records the last use at most once a minute', async () => {
    const { key, token } = await keys.create({ name: 'ehr', actions: ['status'] }, T0);
    keys.authenticate(token, T0 + 1000);
    await db.batch(() => undefined); // the touch is written by the next group commit
    expect(keys.get(key.id)?.lastUsedAt).toEqual(new Date(T0 + 1000));
    keys.authenticate(token, T0 + 30_000);
    await db.batch(() => undefined);
    expect(keys.get(key.id)?.lastUsedAt).toEqual(new Date(T0 + 1000));
    keys.authenticate(token, T0 + 61_000);
    await db.batch(() => undefined);
    expect(keys.get(key.id)?.lastUsedAt).toEqual(new Date(T0 + 61_000));
  });

  it('checks the new key: actions, the scopes they need, names and rates', async () => {
    const bad = [
      { name: '', actions: ['status'] },
      { name: 'a\u0007b', actions: ['status'] },
      { name: 'x', actions: [] },
      { name: 'x', actions: ['delete'] },
      { name: 'x', actions: ['send'] },
      { name: 'x', actions: ['validate'] },
      { name: 'x', actions: ['receive'] },
      { name: 'x', actions: ['send'], sendAs: ['hospital.example'] },
      { name: 'x', actions: ['receive'], mailboxes: ['@bad..example'] },
      { name: 'x', actions: ['status'], ratePerMinute: 0 },
      { name: 'x', actions: ['status'], ratePerMinute: 1.5 },
    ];
    for (const input of bad) expect((await hispRejection(keys.create(input, T0))).code, JSON.stringify(input)).toBe('HISP_USAGE');
    expect(keys.list({ includeRevoked: true })).toEqual([]);
  });

  it('a key that may send may validate; nothing else is implied', async () => {
    const { key: sender } = await keys.create({ name: 's', actions: ['send'], sendAs: ['@h.example'] }, T0);
    expect(keyMay(sender, 'send')).toBe(true);
    expect(keyMay(sender, 'validate')).toBe(true);
    expect(keyMay(sender, 'status')).toBe(false);
    const { key: validator } = await keys.create({ name: 'v', actions: ['validate'], sendAs: ['@h.example'] }, T0);
    expect(keyMay(validator, 'send')).toBe(false);
  });
});

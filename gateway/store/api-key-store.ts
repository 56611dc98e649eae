import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { normalizeScope } from '../core/address-scope.js';
import { HispError } from '../core/errors.js';
import type { HispDatabase } from './database.js';
import { AuditLog, operatorActor, type AuditActor } from '../audit/audit-log.js';

/**
 * What an API key may do (issue 15): `send` messages as its send-as addresses, read the `status` of
 * messages, `receive` from its mailboxes, `validate` recipients before sending (as one of its
 * send-as addresses or domains; a key that may `send` may also `validate`).
 */
/** audit: read the whole audit log of this hisp (GET /v1/audit), for compliance staff. */
export const API_ACTIONS = ['send', 'status', 'receive', 'validate', 'audit'] as const;
export type ApiAction = (typeof API_ACTIONS)[number];

/** Actions that come with another: a key that may send may check its recipients first. */
const IMPLIED: Readonly<Partial<Record<ApiAction, readonly ApiAction[]>>> = { send: ['validate'] };

/** An API key as stored: never its secret. */
export interface ApiKey {
  /** The public part of the key (`hisp_<id>_…`): logged, listed, revoked by. */
  readonly id: string;
  /** A name for people (`hisp api-key list`). */
  readonly name: string;
  readonly actions: readonly ApiAction[];
  /** Addresses (`a@domain`) and domains (`@domain`) it may send as (and validate recipients for). */
  readonly sendAs: readonly string[];
  /** Addresses and domains whose mailboxes it may read. */
  readonly mailboxes: readonly string[];
  /** Requests a minute; undefined: the configuration's `[api.rateLimit] perKeyPerMinute`. */
  readonly ratePerMinute: number | undefined;
  readonly createdAt: Date;
  readonly revokedAt: Date | undefined;
  /** When a request last authenticated with it (written at most once a minute). */
  readonly lastUsedAt: Date | undefined;
}

/** What `create` takes: checked and normalised there, for every door (CLI, embedded default, console). */
export interface NewApiKey {
  name: string;
  actions: readonly string[];
  sendAs?: readonly string[];
  mailboxes?: readonly string[];
  ratePerMinute?: number;
}

/** The outcome of presenting a key: the key, or why it is refused (all refusals are 401 alike). */
export type ApiKeyCheck = { ok: true; key: ApiKey } | { ok: false; reason: 'malformed' | 'unknown' | 'revoked' };

export interface ApiKeyStoreOptions {
  /** Where a failed write of last_used_at goes (it never fails a request). Default: nowhere. */
  onTouchFailure?: (err: unknown) => void;
}

/** `hisp_` + 16 hex digits (the id) + `_` + 43 base64url characters (32 random octets, the secret). */
const KEY_PATTERN = /^hisp_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
/** How often a key's last use is written at most (a write per request would cost a WAL sync each). */
const TOUCH_INTERVAL_MS = 60_000;
const MAX_NAME = 100;
const MAX_SCOPES = 100;
export const MAX_RATE_PER_MINUTE = 1_000_000;

interface Row {
  id: string;
  name: string;
  secret_sha256: Buffer;
  actions: string;
  send_as: string;
  mailboxes: string;
  rate_per_minute: number | null;
  created_at: number;
  revoked_at: number | null;
  last_used_at: number | null;
}

/**
 * The API keys (table api_keys, migration 9), used alike by `hisp api-key`, the embedded default
 * and the API server, which reads the store at every request: a revocation takes effect at the
 * next request, without a restart and without a cache to expire.
 *
 * A key is `hisp_<id>_<secret>`: the id is public (logs, lists, `revoke`); the secret is 32 random
 * octets, of which only the SHA-256 is stored and which is compared in constant time. A secret of
 * 256 random bits needs no slow hash: scrypt and its kin make guessing a low-entropy password
 * expensive, and nobody guesses 2^256; SHA-256 is one-way, so the stored digest does not give the
 * key. It takes a microsecond on the event loop, where scrypt would take libuv's thread pool, which
 * also syncs the store (issue 14, item 3), at every request.
 *
 * @example
 * const keys = new ApiKeyStore(db);
 * const { token } = await keys.create({ name: 'ehr', actions: ['send'], sendAs: ['@hospital.example'] }, Date.now());
 * keys.authenticate(token, Date.now()); // { ok: true, key }
 */
export class ApiKeyStore {
  private readonly byId;
  private readonly touched = new Map<string, number>();

  private readonly audit: AuditLog;
  constructor(
    private readonly db: HispDatabase,
    private readonly options: ApiKeyStoreOptions = {},
  ) {
    this.byId = db.sqlite.prepare<[string], Row>('SELECT * FROM api_keys WHERE id = ?');
    this.audit = new AuditLog(db.sqlite);
  }

  /**
   * Stores a new key (durably) and returns it with its token, the only time the token exists. Throws
   * HISP_USAGE. Audited (`api-key.created`, never the token) in the same commit, as done by `actor`
   * (the operator at the command line by default).
   */
  async create(input: NewApiKey, now: number, actor: AuditActor = operatorActor()): Promise<{ key: ApiKey; token: string }> {
    const checked = checkNewKey(input);
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const row: Row = {
      id,
      name: checked.name,
      secret_sha256: digest(secret),
      actions: JSON.stringify(checked.actions),
      send_as: JSON.stringify(checked.sendAs),
      mailboxes: JSON.stringify(checked.mailboxes),
      rate_per_minute: checked.ratePerMinute ?? null,
      created_at: now,
      revoked_at: null,
      last_used_at: null,
    };
    await this.db.batch(() => {
      this.db.sqlite
        .prepare(
          `INSERT INTO api_keys (id, name, secret_sha256, actions, send_as, mailboxes, rate_per_minute, created_at)
           VALUES (@id, @name, @secret_sha256, @actions, @send_as, @mailboxes, @rate_per_minute, @created_at)`,
        )
        .run(row);
      this.audit.append({
        actor,
        action: 'api-key.created',
        object: { kind: 'api-key', id },
        outcome: 'success',
        at: now,
        detail: { name: checked.name, actions: checked.actions, sendAs: checked.sendAs, mailboxes: checked.mailboxes, ratePerMinute: checked.ratePerMinute ?? null },
      });
    });
    return { key: toKey(row), token: `hisp_${id}_${secret}` };
  }

  /** Every key (revoked ones too with `includeRevoked`), oldest first. */
  list(options: { includeRevoked?: boolean } = {}): ApiKey[] {
    const rows = this.db.sqlite
      .prepare<[], Row>(`SELECT * FROM api_keys ${options.includeRevoked ? '' : 'WHERE revoked_at IS NULL'} ORDER BY created_at, id`)
      .all();
    return rows.map(toKey);
  }

  get(id: string): ApiKey | undefined {
    const row = this.byId.get(id);
    return row ? toKey(row) : undefined;
  }

  /** Revokes a key from now on (again: no change). Throws HISP_NOT_FOUND for an unknown id. Audited (`api-key.revoked`) in the same commit. */
  async revoke(id: string, now: number, actor: AuditActor = operatorActor()): Promise<ApiKey> {
    await this.db.batch(() => {
      const { changes } = this.db.sqlite.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now, id);
      if (changes > 0) this.audit.append({ actor, action: 'api-key.revoked', object: { kind: 'api-key', id }, outcome: 'success', at: now });
    });
    const key = this.get(id);
    if (!key) throw new HispError('HISP_NOT_FOUND', `no API key with the id ${JSON.stringify(id.slice(0, 40))} (hisp api-key list shows them)`);
    return key;
  }

  /**
   * The key a request presents (the token after `Bearer`), read from the store now. A known id
   * with another secret is `unknown`, as an unknown id is: the caller learns nothing of which ids exist.
   */
  authenticate(token: string, now: number): ApiKeyCheck {
    const m = KEY_PATTERN.exec(token);
    if (!m) return { ok: false, reason: 'malformed' };
    const row = this.byId.get(m[1]!);
    // Compared as digests of equal length: timingSafeEqual leaks nothing of where they differ.
    if (!row || !timingSafeEqual(row.secret_sha256, digest(m[2]!))) return { ok: false, reason: 'unknown' };
    if (row.revoked_at !== null) return { ok: false, reason: 'revoked' };
    this.touch(row, now);
    return { ok: true, key: toKey(row) };
  }

  /** Records the use of a key, at most once a minute per key, without making the request wait. */
  private touch(row: Row, now: number): void {
    const last = this.touched.get(row.id) ?? row.last_used_at ?? Number.NEGATIVE_INFINITY;
    if (now - last < TOUCH_INTERVAL_MS) return;
    this.touched.set(row.id, now);
    this.db
      .batch(() => this.db.sqlite.prepare('UPDATE api_keys SET last_used_at = ? WHERE id = ?').run(now, row.id))
      .catch((err: unknown) => this.options.onTouchFailure?.(err));
  }
}

/** True when `key` may do `action` (directly or as implied by another of its actions). */
export function keyMay(key: ApiKey, action: ApiAction): boolean {
  return key.actions.some((a) => a === action || (IMPLIED[a] ?? []).includes(action));
}

/** A key's identity and scopes as the API (`GET /v1/me`) and the CLI (`hisp api-key`) show them: never a secret. */
export function keyScopes(key: ApiKey): { id: string; name: string; actions: ApiAction[]; sendAs: string[]; mailboxes: string[] } {
  return { id: key.id, name: key.name, actions: [...key.actions], sendAs: [...key.sendAs], mailboxes: [...key.mailboxes] };
}

function digest(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

function toKey(row: Row): ApiKey {
  return {
    id: row.id,
    name: row.name,
    actions: JSON.parse(row.actions) as ApiAction[],
    sendAs: JSON.parse(row.send_as) as string[],
    mailboxes: JSON.parse(row.mailboxes) as string[],
    ratePerMinute: row.rate_per_minute ?? undefined,
    createdAt: new Date(row.created_at),
    revokedAt: row.revoked_at === null ? undefined : new Date(row.revoked_at),
    lastUsedAt: row.last_used_at === null ? undefined : new Date(row.last_used_at),
  };
}

/** The new key's fields, checked and normalised (addresses as DirectAddress prints them, domains lowercased). */
function checkNewKey(input: NewApiKey): { name: string; actions: ApiAction[]; sendAs: string[]; mailboxes: string[]; ratePerMinute?: number } {
  const name = input.name.trim();
  if (name === '' || name.length > MAX_NAME || /[\p{Cc}]/u.test(name)) throw new HispError('HISP_USAGE', `the name must be 1 to ${MAX_NAME} printable characters`);
  const actions: ApiAction[] = [];
  for (const a of input.actions) {
    if (!(API_ACTIONS as readonly string[]).includes(a)) throw new HispError('HISP_USAGE', `unknown action ${JSON.stringify(a.slice(0, 40))}: one of ${API_ACTIONS.join(', ')}`);
    if (!actions.includes(a as ApiAction)) actions.push(a as ApiAction);
  }
  if (actions.length === 0) throw new HispError('HISP_USAGE', `give at least one action (${API_ACTIONS.join(', ')})`);
  const sendAs = normaliseScopes(input.sendAs ?? [], 'send-as');
  const mailboxes = normaliseScopes(input.mailboxes ?? [], 'mailbox');
  if (sendAs.length === 0 && actions.some((a) => a === 'send' || a === 'validate')) {
    throw new HispError('HISP_USAGE', 'a key that may send or validate needs the addresses or @domains it may send as');
  }
  if (mailboxes.length === 0 && actions.includes('receive')) throw new HispError('HISP_USAGE', 'a key that may receive needs the mailboxes (addresses or @domains) it may read');
  const rate = input.ratePerMinute;
  if (rate !== undefined && (!Number.isSafeInteger(rate) || rate < 1 || rate > MAX_RATE_PER_MINUTE)) {
    throw new HispError('HISP_USAGE', `the rate must be a whole number of requests a minute from 1 to ${MAX_RATE_PER_MINUTE}`);
  }
  return { name, actions, sendAs, mailboxes, ...(rate !== undefined ? { ratePerMinute: rate } : {}) };
}

/** `a@domain` or `@domain`, each once; throws HISP_USAGE naming the bad one. */
function normaliseScopes(values: readonly string[], what: string): string[] {
  if (values.length > MAX_SCOPES) throw new HispError('HISP_USAGE', `at most ${MAX_SCOPES} ${what} scopes`);
  const out: string[] = [];
  for (const value of values) {
    const scope = normalizeScope(value);
    if (scope === undefined) throw new HispError('HISP_USAGE', `${what} ${JSON.stringify(value.trim().slice(0, 80))} is neither an address (a@domain) nor a domain (@domain)`);
    if (!out.some((s) => s.toLowerCase() === scope.toLowerCase())) out.push(scope);
  }
  return out;
}

import type { Command } from 'commander';
import { loadConfig } from '../config/load-config.js';
import { findDomain } from '../config/schema.js';
import { HispError } from '../core/errors.js';
import { API_ACTIONS, keyScopes, type ApiKey } from '../store/api-key-store.js';
import { collect } from './credential-options.js';
import { addDataOptions, withOperatorStores, writeJson, type DataFlags } from './data-options.js';
import { when } from './status-command.js';

interface CreateFlags extends DataFlags {
  name: string;
  action?: string[];
  sendAs?: string[];
  mailbox?: string[];
  ratePerMinute?: string;
}

interface ListFlags extends DataFlags {
  all?: boolean;
}

/**
 * The `--json` reports of `hisp api-key`: contracts scripts rely on (fields may be added, never
 * renamed). Times are ISO-8601 UTC; `ratePerMinute` null: the configuration's
 * `[api.rateLimit] perKeyPerMinute`.
 *
 * key:    { "id": "3f9c0a1b2c3d4e5f", "name": "ehr-prod",
 *           "actions": ["send", "status"],              send, status, receive, validate, audit
 *           "sendAs": ["@hospital.example"], "mailboxes": [],
 *           "ratePerMinute": 600 | null,
 *           "createdAt": "…", "revokedAt": "…" | null, "lastUsedAt": "…" | null }
 * create: { …key, "key": "hisp_3f9c0a1b2c3d4e5f_…" }   the only time the key is shown
 * list:   { "keys": [key, …] }                         oldest first; revoked ones with --all
 * revoke: { …key }                                     revokedAt set
 * errors: { "error": { "code": "HISP_NOT_FOUND", "reason": "…" } } (exit 1)
 */
export interface ApiKeyReport {
  id: string;
  name: string;
  actions: string[];
  sendAs: string[];
  mailboxes: string[];
  ratePerMinute: number | null;
  createdAt: string;
  revokedAt: string | null;
  lastUsedAt: string | null;
}

function report(key: ApiKey): ApiKeyReport {
  return {
    ...keyScopes(key),
    ratePerMinute: key.ratePerMinute ?? null,
    createdAt: key.createdAt.toISOString(),
    revokedAt: key.revokedAt?.toISOString() ?? null,
    lastUsedAt: key.lastUsedAt?.toISOString() ?? null,
  };
}

/** `--action send,status --action receive`: each value may list several. */
function actionsOf(values: readonly string[] | undefined): string[] {
  return (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
}

/**
 * With a configuration (`--config`, or $HISP_CONFIG without --data-dir), every scope must be in
 * one of its domains: a key for a domain the gateway does not serve could never be used.
 */
function checkScopesAgainstConfig(flags: CreateFlags): void {
  const file = flags.config ?? (flags.dataDir === undefined ? process.env.HISP_CONFIG || undefined : undefined);
  if (file === undefined) return;
  const config = loadConfig(file);
  for (const [option, values] of [['--send-as', flags.sendAs], ['--mailbox', flags.mailbox]] as const) {
    for (const v of values ?? []) {
      const domain = v.trim().slice(v.trim().lastIndexOf('@') + 1);
      if (!findDomain(config, domain)) throw new HispError('HISP_USAGE', `${option} ${v}: ${domain} is not a domain of the configuration (${config.domains.map((d) => d.name).join(', ')})`);
    }
  }
}

function readableKey(k: ApiKeyReport, now: number): string {
  const lines = [`${k.id}  ${k.name}${k.revokedAt ? `  REVOKED ${k.revokedAt}` : ''}`];
  lines.push(`  actions    ${k.actions.join(', ')}`);
  if (k.sendAs.length > 0) lines.push(`  send as    ${k.sendAs.join(', ')}`);
  if (k.mailboxes.length > 0) lines.push(`  mailboxes  ${k.mailboxes.join(', ')}`);
  lines.push(`  rate       ${k.ratePerMinute === null ? 'the configured default' : `${k.ratePerMinute}`} requests a minute`);
  lines.push(`  created    ${when(k.createdAt, now)}; last used ${k.lastUsedAt ? when(k.lastUsedAt, now) : 'never'}`);
  return `${lines.join('\n')}\n`;
}

export function registerApiKey(program: Command): void {
  const apiKey = program
    .command('api-key')
    .summary('create, list and revoke the keys of the HTTP API')
    .description(
      'Keys of the HTTP API (docs/api.md), each scoped to what it may do (send, status, receive, validate, audit), ' +
        'the addresses or @domains it may send as and the mailboxes it may read. A key is shown once, when ' +
        'created; the data folder keeps only a hash of it. A running gateway sees new and revoked keys at its ' +
        'next request.',
    );

  addDataOptions(
    apiKey
      .command('create')
      .summary('create a key and print it, once')
      .description(
        'Prints the key on stdout (everything else on stderr), so that `hisp api-key create … > ehr.key` keeps ' +
          'it in a file (created under umask 077 it is the owner\'s only). With --config, every scope must be in a ' +
          'domain of the configuration.',
      )
      .requiredOption('--name <name>', 'a name for people (hisp api-key list)')
      .option('--action <actions>', `what it may do: ${API_ACTIONS.join(', ')} (send includes validate); repeatable or comma-separated`, collect)
      .option('--send-as <address-or-@domain>', 'an address or @domain it may send as (and validate recipients for); repeatable', collect)
      .option('--mailbox <address-or-@domain>', 'an address or @domain whose mailbox it may read; repeatable', collect)
      .option('--rate-per-minute <n>', 'its own rate limit (default: [api.rateLimit] perKeyPerMinute)'),
  ).action(async (flags: CreateFlags) => {
    let rate: number | undefined;
    if (flags.ratePerMinute !== undefined) {
      rate = Number(flags.ratePerMinute);
      if (!/^\d+$/.test(flags.ratePerMinute)) throw new HispError('HISP_USAGE', `--rate-per-minute must be a whole number, not ${JSON.stringify(flags.ratePerMinute)}`);
    }
    checkScopesAgainstConfig(flags);
    await withOperatorStores(flags, async (stores) => {
      const { key, token } = await stores.apiKeys.create(
        { name: flags.name, actions: actionsOf(flags.action), sendAs: flags.sendAs ?? [], mailboxes: flags.mailbox ?? [], ...(rate !== undefined ? { ratePerMinute: rate } : {}) },
        Date.now(),
      );
      if (flags.json) {
        writeJson({ ...report(key), key: token });
        return;
      }
      process.stderr.write(`hisp: API key ${key.name} created (id ${key.id}); it is shown only this once:\n`);
      process.stdout.write(`${token}\n`);
    });
  });

  addDataOptions(
    apiKey
      .command('list')
      .summary('list the keys (never their secrets)')
      .description('One block per key: id, name, scopes, rate, when created and last used. --all lists revoked keys too.')
      .option('--all', 'revoked keys too'),
  ).action(async (flags: ListFlags) => {
    await withOperatorStores(flags, (stores) => {
      const keys = stores.apiKeys.list({ includeRevoked: flags.all === true }).map(report);
      if (flags.json) writeJson({ keys });
      else process.stdout.write(keys.length === 0 ? 'hisp: no API key (hisp api-key create)\n' : keys.map((k) => readableKey(k, Date.now())).join('\n'));
      return Promise.resolve();
    });
  });

  addDataOptions(
    apiKey
      .command('revoke')
      .argument('<id>', 'the key (its id in hisp api-key list)')
      .summary('revoke a key: refused from the next request on')
      .description('A running gateway refuses the key from its next request (401). Revoking a revoked key changes nothing. Exit 1 for an unknown id.'),
  ).action(async (id: string, flags: DataFlags) => {
    await withOperatorStores(flags, async (stores) => {
      const key = await stores.apiKeys.revoke(id, Date.now());
      if (flags.json) writeJson(report(key));
      else process.stdout.write(`hisp: API key ${key.id} (${key.name}) revoked at ${key.revokedAt?.toISOString() ?? ''}\n`);
    });
  });
}

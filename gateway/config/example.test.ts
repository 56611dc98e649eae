// config/hisp.example.toml must stay a valid configuration that documents every key with its
// default: loaded here with the test PKI written where the example expects its files.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { afterAll, describe, expect, it } from 'vitest';
import { credentialPaths, PKI_DIR } from '../../test/helpers/pki.js';
import { inspectConfig } from './load-config.js';
import { ADDRESS_PLACEHOLDER, type HispConfig } from './schema.js';

const repo = resolve(import.meta.dirname, '..', '..');
const exampleText = readFileSync(join(repo, 'config', 'hisp.example.toml'), 'utf8');

/** Each file the example names (relative to config/) and the test file put there. */
const FILES: Record<string, string> = {
  '../certs/smtp-tls.cert.pem': credentialPaths('recipient-rsa').cert,
  '../certs/smtp-tls.key.pem': credentialPaths('recipient-rsa').key,
  '../certs/direct.example.org/signing.key.pem': credentialPaths('sender-domain').key,
  '../certs/direct.example.org/signing.chain.pem': credentialPaths('sender-domain').chain!,
  '../certs/direct.example.org/encryption.key.pem': credentialPaths('recipient-domain').key,
  '../certs/direct.example.org/encryption.chain.pem': credentialPaths('recipient-domain').chain!,
  '../trust-anchors/community-root.pem': credentialPaths('root-ca').cert,
  '../trust-anchors/partner-hisp-ca.pem': credentialPaths('intermediate-ca').cert,
  '../trust-anchors/bundle-signer.pem': join(PKI_DIR, '..', 'trust', 'bundle-signer.cert.pem'),
  // Not from the PKI: a secret is just bytes.
  '../certs/direct.example.org/webhook-hmac.key': '',
};
const FILE_KEYS = new Set(['key', 'cert', 'tlsCert', 'tlsKey', 'signer', 'hmacSecretFile', 'incoming', 'outgoing', 'socket']);

/** Every value of a file key in the parsed example. */
function filesNamed(value: unknown, key = ''): string[] {
  if (Array.isArray(value)) return value.flatMap((v) => filesNamed(v, key));
  if (value !== null && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => filesNamed(v, k));
  return typeof value === 'string' && FILE_KEYS.has(key) ? [value] : [];
}

const work = mkdtempSync(join(tmpdir(), 'hisp-example-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const configFile = join(work, 'config', 'hisp.example.toml');
mkdirSync(dirname(configFile), { recursive: true });
writeFileSync(configFile, exampleText);
for (const [relative, source] of Object.entries(FILES)) {
  const target = resolve(dirname(configFile), relative);
  mkdirSync(dirname(target), { recursive: true });
  if (source === '') writeFileSync(target, 'an example webhook secret of more than 16 bytes\n');
  else copyFileSync(source, target);
}
const minimalFile = join(work, 'config', 'minimal.toml');
writeFileSync(
  minimalFile,
  `[submission]\nrequireTls = false\n[[domains]]\nname = "direct.example.org"\n[[domains.credentials]]\nkey = ${JSON.stringify(credentialPaths('sender-domain').key)}\ncert = ${JSON.stringify(credentialPaths('sender-domain').chain)}\n`,
);

/**
 * The tables (as TOML headers: `domains.credentials`, `remoteDomains."*"`) and the scalar key names
 * of a configuration.
 */
function shape(value: unknown, path = '', out = { tables: new Set<string>(), keys: new Set<string>() }): typeof out {
  const items: unknown[] = Array.isArray(value) ? value : [value];
  for (const item of items) {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) continue;
    for (const [k, v] of Object.entries(item)) {
      const child = path === '' ? k : `${path}.${/^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k)}`;
      const isTable = (x: unknown) => x !== null && typeof x === 'object' && !Array.isArray(x);
      if (isTable(v) || (Array.isArray(v) && v.some(isTable))) {
        // A table that holds only tables (remoteDomains) needs no header of its own.
        const holdsKeys = (Array.isArray(v) ? (v as unknown[]) : [v]).some((t) => Object.values(t as object).some((x: unknown) => !isTable(x) && !(Array.isArray(x) && x.some(isTable))));
        if (holdsKeys) out.tables.add(child);
        shape(v, child, out);
      } else {
        out.keys.add(k);
      }
    }
  }
  return out;
}

describe('config/hisp.example.toml', () => {
  const report = inspectConfig(configFile, {});
  const example = report.config;
  const defaults: HispConfig = inspectConfig(minimalFile, {}).config;

  it('names only files the test provides (add a new one to FILES)', () => {
    expect(new Set(filesNamed(parseToml(exampleText)))).toEqual(new Set(Object.keys(FILES)));
  });

  it('is valid, and is the worked example it claims to be', () => {
    const [domain] = example.domains;
    expect(example.domains).toHaveLength(1);
    expect(domain?.credentials.map((c) => c.use).sort()).toEqual(['decrypt', 'sign']);
    expect(domain?.anchors.incoming.length).toBeGreaterThan(0);
    expect(domain?.anchors.outgoing.length).toBeGreaterThan(0);
    expect(domain?.bundles).toHaveLength(1);
    expect(example.submission.users).toHaveLength(1);
    expect(domain?.addresses.map((a) => a.delivery.type)).toEqual(['maildir', 'webhook']);
    expect(example.submission.tlsCert).toBeDefined();
    // The only warnings: the test certificates are bound to the test domains, not direct.example.org.
    expect(report.warnings.every((w) => w.message.includes('is bound neither to direct.example.org'))).toBe(true);
  });

  it('mentions every table and every key of the configuration, optional ones included', () => {
    const { tables, keys } = shape(example);
    for (const optional of ['password', 'hmacSecret', 'hmacSecretFile', 'socket', 'host', 'port', 'path', 'tlsCert', 'tlsKey', 'signer']) keys.add(optional);
    const escape = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const missingTables = [...tables].filter((t) => !new RegExp(`^\\[\\[?${escape(t)}\\]\\]?\\s*$`, 'm').test(exampleText));
    const missingKeys = [...keys].filter((k) => !new RegExp(`(^|[\\s#])${k} = \\S`, 'm').test(exampleText));
    expect({ missingTables, missingKeys }).toEqual({ missingTables: [], missingKeys: [] });
    expect(tables).toContain('domains.addresses.delivery');
    expect(tables).toContain('remoteDomains."*"');
  });

  it('shows the defaults in the sections written with their defaults', () => {
    expect(example.log).toEqual(defaults.log);
    expect(example.dns).toEqual(defaults.dns);
    expect(example.inbound).toEqual(defaults.inbound);
    expect(example.api).toEqual(defaults.api);
    expect(example.queue).toEqual(defaults.queue);
    expect(example.dedupe).toEqual(defaults.dedupe);
    expect(example.quarantine).toEqual(defaults.quarantine);
    expect(example.remoteDomains['*']).toEqual(defaults.remoteDomains['*']);
    const strip = ({ tlsCert: _c, tlsKey: _k, users: _u, requireTls: _r, ...rest }: HispConfig['submission']) => rest;
    expect(strip(example.submission)).toEqual(strip(defaults.submission));
    expect(example.submission.requireTls).toBe(true);
    const [d, base] = [example.domains[0]!, defaults.domains[0]!];
    expect(d.policy).toEqual(base.policy);
    expect(d.mdn).toEqual(base.mdn);
    expect(d.relay).toEqual(base.relay);
    expect(d.catchAll).toBe(base.catchAll);
    expect(d.delivery).toEqual({ type: 'maildir', path: join(example.dataDir, 'maildir', ADDRESS_PLACEHOLDER) });
    expect(d.bundles[0]).toMatchObject({ refreshHours: 24, direction: 'both' });
    expect(d.credentials.every((c) => !c.retired)).toBe(true);
    const webhook = d.addresses[1]?.delivery;
    expect(webhook).toMatchObject({ retries: 5, timeoutMs: 10_000 });
  });
});

import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCertificates } from '../agent/key-material.js';
import { verifyPassword } from '../config/password-hash.js';
import { ApiKeyStore } from '../store/api-key-store.js';
import { openDatabase } from '../store/database.js';
import { DomainRegistry } from './domain-registry.js';
import { DEVELOPMENT_DOMAIN } from './development-domain.js';
import { DEVELOPMENT_API_KEY_NAME, DEVELOPMENT_USER, embeddedDefault, type EmbeddedDefault } from './embedded-default.js';

const dataDir = mkdtempSync(join(tmpdir(), 'hisp-embedded-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe('embeddedDefault', () => {
  let first: EmbeddedDefault;
  let second: EmbeddedDefault;

  beforeAll(async () => {
    first = await embeddedDefault(dataDir, { submission: 0, inbound: 0 }, {});
    second = await embeddedDefault(dataDir, { submission: 0, inbound: 0 }, {});
  }, 60_000);

  it('creates the development domain on the first call and reuses it on the second', () => {
    expect(first.domain.domain).toBe(DEVELOPMENT_DOMAIN);
    expect(first.domain.created).toBe(true);
    expect(second.domain.created).toBe(false);
    for (const f of [first.domain.anchor, first.domain.certificate, first.domain.key]) expect(existsSync(f), f).toBe(true);
    expect(second.domain.certificate).toBe(first.domain.certificate);
    const leaf = readCertificates(readFileSync(first.domain.certificate), first.domain.certificate)[0]!;
    expect(leaf.dnsNames).toEqual([DEVELOPMENT_DOMAIN]);
  });

  it('keeps the submission password in a 0600 file and reuses it (same password) on the second call', () => {
    expect(first.passwordFile).toBe(join(dataDir, 'private', 'submission-password'));
    expect(statSync(first.passwordFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(first.passwordFile, 'utf8').trim()).toBe(first.password);
    expect(first.password.length).toBeGreaterThanOrEqual(12);
    expect(second.password).toBe(first.password);
    expect(second.passwordFile).toBe(first.passwordFile);
  });

  it('has one submission user whose hash verifies that password (and not another)', async () => {
    const users = first.config.submission.users;
    expect(users.map((u) => u.username)).toEqual([DEVELOPMENT_USER]);
    expect(first.username).toBe(DEVELOPMENT_USER);
    expect(await verifyPassword(first.password, users[0]!.passwordHash)).toBe(true);
    expect(await verifyPassword(`${first.password}x`, users[0]!.passwordHash)).toBe(false);
    // The second call hashes the reused password: it verifies against the new hash too.
    expect(await verifyPassword(first.password, second.config.submission.users[0]!.passwordHash)).toBe(true);
    expect(users[0]!.mayUseAddresses).toEqual([`@${DEVELOPMENT_DOMAIN}`]);
  });

  it('submission: loopback, the requested port, STARTTLS required with the domain certificate', () => {
    const s = first.config.submission;
    expect(s).toMatchObject({ enabled: true, host: '127.0.0.1', port: 0, requireTls: true, tlsCert: first.domain.certificate, tlsKey: first.domain.key });
  });

  it('inbound: loopback, the requested port, STARTTLS offered with a TLS server certificate of its own (issue 14, item 8)', () => {
    expect(first.config.inbound).toMatchObject({ enabled: true, host: '127.0.0.1', port: 0, requireTls: false, tlsCert: first.domain.tlsCertificate, tlsKey: first.domain.tlsKey });
    const [leaf, ca] = readCertificates(readFileSync(first.domain.tlsCertificate), first.domain.tlsCertificate);
    expect(leaf!.dnsNames).toEqual(['localhost', DEVELOPMENT_DOMAIN]);
    expect(ca!.sha256).toBe(readCertificates(readFileSync(first.domain.anchor), first.domain.anchor)[0]!.sha256);
    expect(statSync(first.domain.tlsKey).mode & 0o777).toBe(0o600);
    expect(second.domain.tlsCertificate).toBe(first.domain.tlsCertificate);
  });

  it('API: loopback plain HTTP, the requested port, and a development key kept in a 0600 file, reused while valid', async () => {
    expect(first.config.api).toMatchObject({ enabled: true, host: '127.0.0.1', port: 5580 });
    expect(first.config.api.tlsCert).toBeUndefined();
    expect(first.apiKeyFile).toBe(join(dataDir, 'private', 'api-key'));
    expect(statSync(first.apiKeyFile).mode & 0o777).toBe(0o600);
    expect(second.apiKeyId).toBe(first.apiKeyId);
    const token = readFileSync(first.apiKeyFile, 'utf8').trim();
    const db = openDatabase({ dataDir });
    try {
      const keys = new ApiKeyStore(db);
      const check = keys.authenticate(token, Date.now());
      expect(check).toMatchObject({ ok: true, key: { id: first.apiKeyId, name: DEVELOPMENT_API_KEY_NAME, sendAs: [`@${DEVELOPMENT_DOMAIN}`], mailboxes: [`@${DEVELOPMENT_DOMAIN}`] } });
      expect(check.ok && [...check.key.actions].sort()).toEqual(['audit', 'receive', 'send', 'status', 'validate']);
      // Revoked by the operator: the next start makes a new one (the file always holds a working key).
      await keys.revoke(first.apiKeyId, Date.now());
    } finally {
      await db.close();
    }
    const third = await embeddedDefault(dataDir, { submission: 0, inbound: 0, api: 0 }, {});
    expect(third.apiKeyId).not.toBe(first.apiKeyId);
    expect(third.config.api.port).toBe(0);
    expect(readFileSync(first.apiKeyFile, 'utf8').trim()).not.toBe(token);
  });

  it('one catch-all domain with the development CA as incoming and outgoing anchor, data in the given folder', () => {
    expect(first.config.dataDir).toBe(dataDir);
    expect(first.config.domains).toHaveLength(1);
    const d = first.config.domains[0]!;
    expect(d.name).toBe(DEVELOPMENT_DOMAIN);
    expect(d.catchAll).toBe(true);
    expect(d.anchors.incoming).toEqual([first.domain.anchor]);
    expect(d.anchors.outgoing).toEqual([first.domain.anchor]);
    expect(d.credentials).toHaveLength(1);
    expect(d.credentials[0]).toMatchObject({ key: first.domain.key, cert: first.domain.certificate, use: 'both', retired: false });
    // Delivered to a Maildir per address under the data folder.
    expect(d.delivery).toEqual({ type: 'maildir', path: join(dataDir, 'maildir', '{address}') });
  });

  it('is a configuration the gateway can load: the domain signs, decrypts and trusts its own CA', () => {
    const r = DomainRegistry.load(first.config);
    expect(r.signers(DEVELOPMENT_DOMAIN)).toHaveLength(1);
    expect(r.decryptors(DEVELOPMENT_DOMAIN)).toHaveLength(1);
    expect(r.acceptance(`anyone@${DEVELOPMENT_DOMAIN}`)).toBe('accept');
    const anchor = readCertificates(readFileSync(first.domain.anchor), first.domain.anchor)[0]!;
    expect(r.anchorsFor(`patient@${DEVELOPMENT_DOMAIN}`, 'incoming').map((c) => c.sha256)).toEqual([anchor.sha256]);
    expect(r.anchorsFor(`patient@${DEVELOPMENT_DOMAIN}`, 'outgoing').map((c) => c.sha256)).toEqual([anchor.sha256]);
  });

  it('is frozen', () => {
    expect(Object.isFrozen(first.config)).toBe(true);
    expect(Object.isFrozen(first.config.submission.users)).toBe(true);
  });

  it('uses the default ports 5587, 5525 and 5580 when none are given, and ignores HISP_DATA_DIR', async () => {
    const d = await embeddedDefault(dataDir, {}, { HISP_DATA_DIR: join(dataDir, 'elsewhere') });
    expect(d.config.submission.port).toBe(5587);
    expect(d.config.inbound.port).toBe(5525);
    expect(d.config.api.port).toBe(5580);
    expect(d.config.dataDir).toBe(dataDir);
  });

  it('still honours HISP_LOG_LEVEL', async () => {
    const d = await embeddedDefault(dataDir, { submission: 0, inbound: 0 }, { HISP_LOG_LEVEL: 'debug' });
    expect(d.config.log.level).toBe('debug');
  });
});

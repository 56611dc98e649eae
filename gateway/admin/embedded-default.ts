import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildConfig } from '../config/load-config.js';
import { hashPassword } from '../config/password-hash.js';
import type { HispConfig } from '../config/schema.js';
import { API_ACTIONS, ApiKeyStore } from '../store/api-key-store.js';
import { openDatabase } from '../store/database.js';
import { HISP_MIGRATIONS } from '../store/schema.js';
import { ensureDevelopmentDomain, type DevelopmentDomainFiles } from './development-domain.js';

export interface EmbeddedDefault {
  config: HispConfig;
  domain: DevelopmentDomainFiles;
  /** The submission account of the development set-up. */
  username: string;
  password: string;
  /** Where the password is kept (mode 0600). */
  passwordFile: string;
  /** Where the development API key is kept (mode 0600), and its public id. */
  apiKeyFile: string;
  apiKeyId: string;
}

export const DEVELOPMENT_USER = 'dev';

/**
 * The configuration `hisp start` runs without --config: one development Direct domain
 * (direct.localhost, its CA as incoming and outgoing anchor, any address accepted and delivered to
 * a Maildir under the data folder), submission on 127.0.0.1:5587 with STARTTLS (the domain's
 * certificate) and one account `dev` whose random password is kept in the data folder, inbound on
 * 127.0.0.1:5525 with STARTTLS (a TLS server certificate of its own, from the development CA), and
 * the HTTP API on 127.0.0.1:5580 (plain HTTP: loopback) with an API key for the development domain
 * kept in the data folder like the password. Built through the same validation as a configuration file.
 */
export interface EmbeddedPorts {
  /** Default 5587. */
  submission?: number;
  /** Default 5525. */
  inbound?: number;
  /** Default 5580. */
  api?: number;
}

export async function embeddedDefault(dataDir: string, ports: EmbeddedPorts = {}, env: NodeJS.ProcessEnv = process.env): Promise<EmbeddedDefault> {
  const domain = await ensureDevelopmentDomain(dataDir);
  const passwordFile = join(dataDir, 'private', 'submission-password');
  let password: string;
  if (existsSync(passwordFile)) password = readFileSync(passwordFile, 'utf8').trim();
  else {
    password = randomBytes(12).toString('base64url');
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    chmodSync(passwordFile, 0o600);
  }
  const raw = {
    dataDir,
    submission: {
      host: '127.0.0.1',
      ...(ports.submission !== undefined ? { port: ports.submission } : {}),
      tlsCert: domain.certificate,
      tlsKey: domain.key,
      users: [{ username: DEVELOPMENT_USER, passwordHash: await hashPassword(password), mayUseAddresses: [`@${domain.domain}`] }],
    },
    // Peers relay with opportunistic STARTTLS (R-SMTP-3): the inbound port has a certificate of its own.
    inbound: { host: '127.0.0.1', ...(ports.inbound !== undefined ? { port: ports.inbound } : {}), tlsCert: domain.tlsCertificate, tlsKey: domain.tlsKey },
    // Plain HTTP on loopback, so that curl needs no CA (the key never leaves the machine).
    api: { enabled: true, host: '127.0.0.1', ...(ports.api !== undefined ? { port: ports.api } : {}) },
    domains: [
      {
        name: domain.domain,
        catchAll: true,
        credentials: [{ key: domain.key, cert: domain.certificate }],
        anchors: { incoming: [domain.anchor], outgoing: [domain.anchor] },
      },
    ],
  };
  // HISP_DATA_DIR is already folded into dataDir by the caller.
  const { HISP_DATA_DIR: _ignored, ...rest } = env;
  const { config } = buildConfig(raw, { baseDir: dataDir, env: rest });
  const apiKeyFile = join(dataDir, 'private', 'api-key');
  const apiKeyId = await ensureDevelopmentApiKey(dataDir, apiKeyFile, domain.domain);
  return { config, domain, username: DEVELOPMENT_USER, password, passwordFile, apiKeyFile, apiKeyId };
}

/** The name of the development domain's API key (`hisp api-key list`). */
export const DEVELOPMENT_API_KEY_NAME = 'development';

/**
 * The API key of the development domain: the one in `file` while the store still takes it; else
 * (first start, the file lost, the key revoked) a new one, every action on every address of the
 * domain, written to `file` (mode 0600). Returns its id.
 */
async function ensureDevelopmentApiKey(dataDir: string, file: string, domain: string): Promise<string> {
  const db = openDatabase({ dataDir, migrations: HISP_MIGRATIONS });
  try {
    const keys = new ApiKeyStore(db);
    if (existsSync(file)) {
      const token = readFileSync(file, 'utf8').trim();
      const check = keys.authenticate(token, Date.now());
      if (check.ok) return check.key.id;
    }
    const { key, token } = await keys.create({ name: DEVELOPMENT_API_KEY_NAME, actions: [...API_ACTIONS], sendAs: [`@${domain}`], mailboxes: [`@${domain}`] }, Date.now(), { kind: 'system', id: 'embedded-default' });
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
    return key.id;
  } finally {
    await db.close();
  }
}

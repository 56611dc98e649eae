import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildConfig } from '../config/load-config.js';
import { hashPassword } from '../config/password-hash.js';
import type { HispConfig } from '../config/schema.js';
import { ensureDevelopmentDomain, type DevelopmentDomainFiles } from './development-domain.js';

export interface EmbeddedDefault {
  config: HispConfig;
  domain: DevelopmentDomainFiles;
  /** The submission account of the development set-up. */
  username: string;
  password: string;
  /** Where the password is kept (mode 0600). */
  passwordFile: string;
}

export const DEVELOPMENT_USER = 'dev';

/**
 * The configuration `hisp start` runs without --config: one development Direct domain
 * (direct.localhost, its CA as incoming and outgoing anchor, any address accepted and delivered to
 * a Maildir under the data folder), submission on 127.0.0.1:5587 with STARTTLS (the domain's
 * certificate) and one account `dev` whose random password is kept in the data folder, inbound on
 * 127.0.0.1:5525 with STARTTLS (a TLS server certificate of its own, from the development CA). Built through the same validation as a configuration file.
 */
export interface EmbeddedPorts {
  /** Default 5587. */
  submission?: number;
  /** Default 5525. */
  inbound?: number;
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
  return { config, domain, username: DEVELOPMENT_USER, password, passwordFile };
}

import 'reflect-metadata';
import { createHash, webcrypto } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { HispError } from '../core/errors.js';

/**
 * The embedded default of a fresh machine: a development Direct domain with its own CA, so that
 * `hisp start` works with no configuration. Nothing here is meant for production trust: the CA key
 * sits next to the certificates (mode 0600) and the domain is under the reserved `.localhost` TLD
 * (RFC 6761 §6.3), which no real Direct peer will resolve.
 */

export const DEVELOPMENT_DOMAIN = 'direct.localhost';

export interface DevelopmentDomainFiles {
  dataDir: string;
  domain: string;
  /** The development CA: the trust anchor of the domain, incoming and outgoing. */
  anchor: string;
  /** Domain-bound certificate (dNSName = domain; digitalSignature + keyEncipherment) and its key. */
  certificate: string;
  key: string;
  /**
   * The TLS server certificate of the inbound port (localhost, 127.0.0.1 and the domain;
   * serverAuth), issued by the development CA, and its key: peers relay with opportunistic
   * STARTTLS (R-SMTP-3), and a port without a certificate refuses it (issue 14, item 8).
   */
  tlsCertificate: string;
  tlsKey: string;
  /** True when this call generated the files (false: they were already there). */
  created: boolean;
}

x509.cryptoProvider.set(webcrypto);

const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };

/**
 * Creates (once) the development CA and domain credential under `dataDir`; later calls reuse them.
 * Private keys are written with mode 0600, in a 0700 folder.
 */
export async function ensureDevelopmentDomain(dataDir: string): Promise<DevelopmentDomainFiles> {
  const dir = join(dataDir, 'domains', DEVELOPMENT_DOMAIN);
  const files = {
    dataDir,
    domain: DEVELOPMENT_DOMAIN,
    anchor: join(dataDir, 'anchors', 'development-ca.cert.pem'),
    certificate: join(dir, 'domain.cert.pem'),
    key: join(dir, 'domain.key.pem'),
    tlsCertificate: join(dir, 'tls.cert.pem'),
    tlsKey: join(dir, 'tls.key.pem'),
  };
  const caKeyFile = join(dataDir, 'private', 'development-ca.key.pem');
  if (existsSync(files.anchor) && existsSync(files.certificate) && existsSync(files.key)) {
    readFileSync(files.key); // unreadable key: fail now, not at first use
    // Folders made by an older hisp, whose certificates followed the umask (0644): owner-only now.
    for (const f of [files.anchor, files.certificate]) if ((statSync(f).mode & 0o077) !== 0) chmodSync(f, 0o600);
    // A data folder of an older hisp has no TLS certificate for the inbound port yet.
    if (!existsSync(files.tlsCertificate) || !existsSync(files.tlsKey)) {
      try {
        const ca = new x509.X509Certificate(readFileSync(files.anchor, 'utf8'));
        const caKey = await importPkcs8(readFileSync(caKeyFile, 'utf8'));
        await writeTlsCertificate(files, ca, caKey);
      } catch (cause) {
        throw new HispError('HISP_IO', `cannot create the inbound TLS certificate in ${dataDir}: ${(cause as Error).message}`, { cause });
      }
    }
    return { ...files, created: false };
  }
  try {
    for (const d of [dataDir, join(dataDir, 'anchors'), join(dataDir, 'private'), dir]) mkdirSync(d, { recursive: true, mode: 0o700 });
    const now = new Date();
    const notBefore = new Date(now.getTime() - 60_000);
    const caKeys = await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify']);
    const caName = `CN=hisp development CA (${DEVELOPMENT_DOMAIN}),O=hisp`;
    const ca = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: caName,
      notBefore,
      notAfter: new Date(now.getTime() + 10 * 365 * 86_400_000),
      keys: caKeys,
      signingAlgorithm: RSA,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
      ],
    });
    const keys = await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify']);
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${DEVELOPMENT_DOMAIN}`,
      issuer: ca.subject,
      notBefore,
      notAfter: new Date(now.getTime() + 2 * 365 * 86_400_000),
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: RSA,
      extensions: [
        new x509.BasicConstraintsExtension(false),
        // R-CRT-4: a dual-use Direct certificate, bound to the domain (R-CRT-1).
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: DEVELOPMENT_DOMAIN }]),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
      ],
    });
    writeSecret(caKeyFile, await pkcs8Pem(caKeys.privateKey));
    await writeTlsCertificate(files, ca, caKeys.privateKey);
    writeSecret(files.key, await pkcs8Pem(keys.privateKey));
    // Certificates are public, but the data folder is the gateway's alone (0600/0700 throughout).
    writeSecret(files.certificate, `${leaf.toString('pem')}\n${ca.toString('pem')}\n`);
    writeSecret(files.anchor, `${ca.toString('pem')}\n`);
  } catch (cause) {
    throw new HispError('HISP_IO', `cannot create the development domain in ${dataDir}: ${(cause as Error).message}`, { cause });
  }
  return { ...files, created: true };
}

/** The inbound port's TLS server certificate (RFC 5280 §4.2.1.12 serverAuth), issued by the development CA. */
async function writeTlsCertificate(files: { tlsCertificate: string; tlsKey: string }, ca: x509.X509Certificate, caKey: webcrypto.CryptoKey): Promise<void> {
  const now = new Date();
  const keys = await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'CN=localhost',
    issuer: ca.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 2 * 365 * 86_400_000),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: RSA,
    extensions: [
      new x509.BasicConstraintsExtension(false),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'localhost' },
        { type: 'dns', value: DEVELOPMENT_DOMAIN },
        { type: 'ip', value: '127.0.0.1' },
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  writeSecret(files.tlsKey, await pkcs8Pem(keys.privateKey));
  writeSecret(files.tlsCertificate, `${cert.toString('pem')}
${ca.toString('pem')}
`);
}

async function importPkcs8(pem: string): Promise<webcrypto.CryptoKey> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  return webcrypto.subtle.importKey('pkcs8', der, RSA, false, ['sign']);
}

function serial(): string {
  // 16 random octets, high bit clear (a positive INTEGER, RFC 5280 §4.1.2.2).
  const b = createHash('sha256').update(webcrypto.getRandomValues(new Uint8Array(32))).digest().subarray(0, 16);
  b[0]! &= 0x7f;
  return b.toString('hex');
}

async function pkcs8Pem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END PRIVATE KEY-----\n`;
}

function writeSecret(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600); // mode is ignored when the file already existed
}

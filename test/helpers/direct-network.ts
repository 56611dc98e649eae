/**
 * A Direct network on loopback for end-to-end tests: a test PKI (a trusted CA and an untrusted one,
 * one domain certificate per HISP domain), a real DNS server (knotd) publishing each domain's
 * certificate as a CERT record (RFC 4398, R-DIS-2) and its MX, and hisp gateway configurations that
 * point at it. Gateways run in-process (HispGateway) or as `hisp start --config` child processes.
 */
import 'reflect-metadata';
import { spawn, type ChildProcess } from 'node:child_process';
import { webcrypto } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import nodemailer from 'nodemailer';
import { stringify as toToml } from 'smol-toml';
import { buildConfig } from '../../gateway/config/load-config.js';
import type { HispConfig } from '../../gateway/config/schema.js';
import { hashPassword } from '../../gateway/config/password-hash.js';
import { createLogger } from '../../gateway/core/logger.js';
import { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { dnsQuery, dnsRcode, freeTcpUdpPort } from './dcdt-harness.js';
import { freePort } from './postfix.js';

x509.cryptoProvider.set(webcrypto);

const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };

export function knotAvailable(): boolean {
  return ['/usr/sbin/knotd', '/usr/bin/knotd'].some((p) => existsSync(p));
}

export interface TestCa {
  name: string;
  certPem: string;
  certFile: string;
  keys: webcrypto.CryptoKeyPair;
  cert: x509.X509Certificate;
}

export interface DomainCredential {
  domain: string;
  keyFile: string;
  certFile: string;
  /** DER of the leaf, for the CERT record. */
  der: Buffer;
}

async function pkcs8Pem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END PRIVATE KEY-----\n`;
}

let serialCounter = 1;
const serial = () => (0x100000 + serialCounter++).toString(16);

/** A root CA, or with `parent` an intermediate CA issued by it. */
export async function makeCa(dir: string, name: string, parent?: TestCa): Promise<TestCa> {
  const keys = (await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify']));
  const now = Date.now();
  const common = {
    serialNumber: serial(),
    notBefore: new Date(now - 86_400_000),
    notAfter: new Date(now + 365 * 86_400_000),
    signingAlgorithm: RSA,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ...(parent ? [await x509.AuthorityKeyIdentifierExtension.create(parent.keys.publicKey)] : []),
    ],
  };
  const cert = parent
    ? await x509.X509CertificateGenerator.create({ ...common, subject: `CN=${name},O=hisp e2e`, issuer: parent.cert.subject, publicKey: keys.publicKey, signingKey: parent.keys.privateKey })
    : await x509.X509CertificateGenerator.createSelfSigned({ ...common, name: `CN=${name},O=hisp e2e`, keys });
  const certPem = cert.toString('pem') + '\n';
  const certFile = path.join(dir, `${name.replace(/\W+/g, '-')}.cert.pem`);
  writeFileSync(certFile, certPem);
  return { name, certPem, certFile, keys, cert };
}

/**
 * A dual-use domain certificate (dNSName = domain, digitalSignature + keyEncipherment, R-CRT-1/4).
 * `options.extensions` are added (AIA, CRL distribution points…); `options.chain` false writes the
 * certificate file without the CA certificate (a signer whose intermediate is not in its messages).
 */
export async function makeDomainCredential(
  dir: string,
  ca: TestCa,
  domain: string,
  options: { extensions?: x509.Extension[]; chain?: boolean; name?: string } = {},
): Promise<DomainCredential> {
  const keys = (await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify']));
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${domain}`,
    issuer: ca.cert.subject,
    notBefore: new Date(now - 86_400_000),
    notAfter: new Date(now + 365 * 86_400_000),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: RSA,
    extensions: [
      new x509.BasicConstraintsExtension(false),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: domain }]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
      ...(options.extensions ?? []),
    ],
  });
  const keyFile = path.join(dir, `${options.name ?? domain}.key.pem`);
  const certFile = path.join(dir, `${options.name ?? domain}.cert.pem`);
  writeFileSync(keyFile, await pkcs8Pem(keys.privateKey), { mode: 0o600 });
  writeFileSync(certFile, cert.toString('pem') + '\n' + (options.chain === false ? '' : ca.certPem));
  return { domain, keyFile, certFile, der: Buffer.from(cert.rawData) };
}

export interface ZoneEntry {
  /** Owner name without the trailing dot, e.g. `b.test` or `mx.b.test`. */
  name: string;
  type: 'CERT' | 'MX' | 'A';
  data: string;
}

/** A CERT record's rdata for a PKIX certificate (RFC 4398 §2: type 1 PKIX, key tag 0, algorithm 0). */
export function certRecord(name: string, der: Buffer): ZoneEntry {
  return { name, type: 'CERT', data: `PKIX 0 0 ${der.toString('base64')}` };
}

export interface KnotServer {
  port: number;
  /** `127.0.0.1:PORT` for the gateway's dns.servers. */
  address: string;
  stop(): Promise<void>;
}

/** knotd serving one zone `test.` (every test domain lives under it), in the foreground, on a free port. */
export async function startKnot(dir: string, entries: readonly ZoneEntry[]): Promise<KnotServer> {
  const knotd = ['/usr/sbin/knotd', '/usr/bin/knotd'].find((p) => existsSync(p));
  if (!knotd) throw new Error('knotd not found: run scripts/install-test-peers.sh');
  const zoneDir = path.join(dir, 'knot');
  mkdirSync(zoneDir, { recursive: true });
  const zone = [
    '$ORIGIN test.',
    '$TTL 60',
    '@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60',
    '@ IN NS ns.test.',
    'ns IN A 127.0.0.1',
    ...entries.map((e) => `${e.name}. IN ${e.type} ${e.data}`),
    '',
  ].join('\n');
  writeFileSync(path.join(zoneDir, 'test.zone'), zone);
  for (let attempt = 1; ; attempt++) {
    const port = await freeTcpUdpPort();
    const conf = path.join(zoneDir, 'knot.conf');
    writeFileSync(
      conf,
      [
        'server:',
        `    rundir: "${zoneDir}"`,
        `    listen: 127.0.0.1@${port}`,
        '    udp-workers: 1',
        '    tcp-workers: 1',
        '    background-workers: 1',
        'database:',
        `    storage: "${zoneDir}"`,
        'log:',
        '  - target: stderr',
        '    any: warning',
        'zone:',
        '  - domain: test',
        `    storage: "${zoneDir}"`,
        '    file: "test.zone"',
        '    zonefile-sync: -1',
        '    zonefile-load: whole',
        '    journal-content: none',
        '',
      ].join('\n'),
    );
    const child = spawn(knotd, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const server = { host: '127.0.0.1', port };
    const deadline = Date.now() + 10_000;
    let ready = false;
    while (Date.now() < deadline && child.exitCode === null) {
      try {
        const r = await dnsQuery(server, 'test', 'SOA', { transport: 'udp', timeoutMs: 300 });
        if (dnsRcode(r.packet) === 0 && r.packet.answers?.[0]?.type === 'SOA') {
          ready = true;
          break;
        }
      } catch {
        // not yet
      }
      await new Promise((r) => setTimeout(r, 30));
    }
    if (ready) {
      return {
        port,
        address: `127.0.0.1:${port}`,
        stop: () => stopChild(child),
      };
    }
    await stopChild(child);
    if (attempt < 3 && /in use/i.test(stderr)) continue;
    throw new Error(`knotd did not start: ${stderr.slice(-2000)}`);
  }
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

export interface GatewaySpec {
  /** The gateway's own domain. */
  domain: string;
  credential: DomainCredential;
  /** Anchors (files) this domain trusts, both directions. */
  anchors: string[];
  submissionPort: number;
  inboundPort: number;
  /** Remote domains → the inbound port of their gateway (MX gives 127.0.0.1, port 25 otherwise). */
  remotePorts: Record<string, number>;
  dataDir: string;
  /** Extra top-level / per-domain settings merged into the configuration object. */
  domainExtra?: Record<string, unknown>;
  extra?: Record<string, unknown>;
}

export const EDGE_USER = 'ehr';
export const EDGE_PASSWORD = 'correct horse battery staple';

/** An edge system (EHR) submitting to a gateway's submission port: STARTTLS, then AUTH as EDGE_USER. */
export function edgeTransport(port: number | undefined) {
  return nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    requireTLS: true,
    auth: { user: EDGE_USER, pass: EDGE_PASSWORD },
    tls: { rejectUnauthorized: false },
  });
}

let cachedHash: string | undefined;
async function edgeHash(): Promise<string> {
  cachedHash ??= await hashPassword(EDGE_PASSWORD);
  return cachedHash;
}

/** The configuration object (the TOML document's shape) of one gateway. */
export async function gatewayConfigObject(spec: GatewaySpec, dnsAddress: string): Promise<Record<string, unknown>> {
  const remoteDomains: Record<string, unknown> = {};
  for (const [domain, port] of Object.entries(spec.remotePorts)) remoteDomains[domain] = { port };
  return {
    dataDir: spec.dataDir,
    hostname: `hisp.${spec.domain}`,
    log: { level: process.env.HISP_TEST_LOG_LEVEL ?? 'warn' },
    dns: { servers: [dnsAddress], timeoutMs: 1000, retries: 1 },
    submission: {
      host: '127.0.0.1',
      port: spec.submissionPort,
      tlsCert: spec.credential.certFile,
      tlsKey: spec.credential.keyFile,
      users: [{ username: EDGE_USER, passwordHash: await edgeHash(), mayUseAddresses: [`@${spec.domain}`] }],
    },
    // Every peer of the test network is 127.0.0.1: the per-client limits, meant for a network
    // where a peer HISP is one client among many, would count all of them as one.
    inbound: { host: '127.0.0.1', port: spec.inboundPort, maxClients: 200, perClient: { maxConnections: 100, messagesPerMinute: 0, bytesPerMinute: 0 } },
    remoteDomains,
    queue: { retrySchedule: [0.02], giveUpHours: 0.01, workers: 2 },
    domains: [
      {
        name: spec.domain,
        catchAll: true,
        credentials: [{ key: spec.credential.keyFile, cert: spec.credential.certFile }],
        anchors: { incoming: spec.anchors, outgoing: spec.anchors },
        ...(spec.domainExtra ?? {}),
      },
    ],
    ...(spec.extra ?? {}),
  };
}

export function toConfig(raw: Record<string, unknown>, baseDir: string): HispConfig {
  return buildConfig(raw, { baseDir, env: {} }).config;
}

export function writeToml(file: string, raw: Record<string, unknown>): void {
  writeFileSync(file, toToml(raw));
}

export async function startGateway(config: HispConfig): Promise<HispGateway> {
  return HispGateway.start({ config, logger: createLogger({ level: config.log.level }), pollIntervalMs: 100, closeTimeoutMs: 1000, jitter: (ms) => ms });
}

/** Raw messages in a Maildir's new/ folder, oldest first. */
export function maildirMessages(dir: string): Buffer[] {
  const newDir = path.join(dir, 'new');
  if (!existsSync(newDir)) return [];
  return readdirSync(newDir)
    .sort()
    .map((f) => readFileSync(path.join(newDir, f)));
}

export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface DirectNetwork {
  dir: string;
  trusted: TestCa;
  untrusted: TestCa;
  dns: KnotServer;
  credentials: Record<string, DomainCredential>;
  /** Free ports per domain: submission and inbound. */
  ports: Record<string, { submission: number; inbound: number }>;
  spec(domain: string, extra?: Partial<GatewaySpec>): GatewaySpec;
  stop(): Promise<void>;
}

/**
 * Builds the network: `trustedDomains` get certificates from the trusted CA, `untrustedDomains` from
 * a CA nobody anchors; every domain publishes a domain-bound CERT record and an MX to 127.0.0.1.
 */
export async function startDirectNetwork(trustedDomains: readonly string[], untrustedDomains: readonly string[] = []): Promise<DirectNetwork> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hisp-e2e-'));
  const trusted = await makeCa(dir, 'e2e trusted CA');
  const untrusted = await makeCa(dir, 'e2e untrusted CA');
  const credentials: Record<string, DomainCredential> = {};
  const entries: ZoneEntry[] = [];
  const ports: Record<string, { submission: number; inbound: number }> = {};
  for (const [domains, ca] of [
    [trustedDomains, trusted],
    [untrustedDomains, untrusted],
  ] as const) {
    for (const d of domains) {
      credentials[d] = await makeDomainCredential(dir, ca, d);
      entries.push(certRecord(d, credentials[d].der), { name: d, type: 'MX', data: `10 mx.${d}.` }, { name: `mx.${d}`, type: 'A', data: '127.0.0.1' });
      ports[d] = { submission: await freePort(), inbound: await freePort() };
    }
  }
  const dns = await startKnot(dir, entries);
  const all = [...trustedDomains, ...untrustedDomains];
  return {
    dir,
    trusted,
    untrusted,
    dns,
    credentials,
    ports,
    spec(domain, extra = {}) {
      const credential = credentials[domain];
      const p = ports[domain];
      if (!credential || !p) throw new Error(`unknown test domain ${domain}`);
      return {
        domain,
        credential,
        anchors: [trusted.certFile],
        submissionPort: p.submission,
        inboundPort: p.inbound,
        remotePorts: Object.fromEntries(all.filter((d) => d !== domain).map((d) => [d, ports[d]!.inbound])),
        dataDir: path.join(dir, `data-${domain}`),
        ...extra,
      };
    },
    async stop() {
      await dns.stop();
      if (!process.env.HISP_KEEP_E2E) rmSync(dir, { recursive: true, force: true });
    },
  };
}

// The DCDT discovery peers for end-to-end tests of certificate discovery (issue 4), as real servers
// on 127.0.0.1 started from a temporary folder: Knot DNS serving the dcdt.test zone (UDP and TCP, a
// free port), three OpenLDAP slapd (LDAP1/2/3 on 10389/11389/12389) and the PKI HTTP server (AIA and
// CRL, 10080). The material is test/fixtures/dcdt (see its README). The LDAP and HTTP ports are
// fixed: the zone's SRV records and the certificates' AIA/CRL URLs carry them. So one harness runs
// at a time on a machine: a lock in the temp folder makes a second one (another test file) wait.
//
// Use one harness per test file:
//   let h: DcdtHarness;
//   beforeAll(async () => { h = await startDcdtHarness(); }, DCDT_HARNESS_HOOK_TIMEOUT_MS);
//   afterAll(() => h?.stop());
import { errorCode, execFileText, isAlive, requireExecutable as findExecutable, WatchedChild } from './watched-child.js';
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as dnsPacket from 'dns-packet';

/** The repository root (this file is test/helpers/dcdt-harness.ts). */
const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The repository root, from test/helpers/ or, when the benchmark runs it compiled, dist/test/helpers/. */
const REPO_ROOT = path.resolve(HERE, path.basename(path.resolve(HERE, '../..')) === 'dist' ? '../../..' : '../..');

/** test/fixtures/dcdt: the zone, the LDIF, certificates, keys, CRLs, trust material, manifest. */
export const DCDT_FIXTURES_DIR = path.join(REPO_ROOT, 'test/fixtures/dcdt');

/** Ports baked into the SRV records and the certificates (checked against the manifest at start). */
export const DCDT_LDAP_PORTS = { ldap1: 10389, ldap2: 11389, ldap3: 12389 } as const;
export const DCDT_HTTP_PORT = 10080;

/**
 * A beforeAll timeout that covers waiting for another test file's harness to stop (the default
 * lock wait) plus the start itself.
 */
export const DCDT_HARNESS_HOOK_TIMEOUT_MS = 200_000;

export type DcdtLdapServer = keyof typeof DCDT_LDAP_PORTS;
export type DcdtLocation = 'DNS' | 'LDAP1' | 'LDAP2' | 'LDAP3';

/** One credential of a DCDT test case (manifest.json, snake_case as in the file). */
export interface DcdtCredential {
  testcase: number;
  name: string;
  role: 'TARGET' | 'TARGET_INVALID' | 'BACKGROUND' | 'BACKGROUND_INVALID';
  binding: 'ADDRESS' | 'DOMAIN';
  location: DcdtLocation;
  /** The Direct address (ADDRESS) or the domain (DOMAIN). */
  bound_to: string;
  expired: boolean;
  revoked: boolean;
  issuer: string;
  key_bits: number;
  serial: number;
  der_bytes: number;
}

export interface DcdtTestcase {
  /** D1 … D18 */
  id: string;
  name: string;
  direct_address: string;
  /** `encrypt-to:<credential name>` or `no-message`. */
  expected: string;
  credentials: DcdtCredential[];
}

export interface DcdtManifest {
  base_domain: string;
  generated_utc: string;
  /** Relative to the fixtures folder. */
  trust_anchor: string;
  ldap_servers: Record<'LDAP1' | 'LDAP2' | 'LDAP3', { host: string; port: number; suffix: string }>;
  http_pki: { base: string; paths: string[] };
  testcases: DcdtTestcase[];
  extras: Record<string, string>;
}

export interface DcdtHarnessOptions {
  /** Give up when the servers are not ready after this long (default 20 s). */
  startTimeoutMs?: number;
  /** How long to wait for another harness on this machine to stop (default 180 s). */
  lockTimeoutMs?: number;
  /** Leave the temporary folder (configs, logs, databases) after stop, for debugging. */
  keepTempDir?: boolean;
}

/** A search slapd logged (its `-d stats` log): which base, scope (0 base, 1 one, 2 sub), filter. */
export interface LdapSearchLogEntry {
  conn: number;
  base: string;
  scope: number;
  filter: string;
}

export interface DcdtHarness {
  /** The authoritative server for the zone (configure the resolver with exactly this). */
  dns: { host: '127.0.0.1'; port: number };
  /** slapd ports (always 10389, 11389, 12389). */
  ldapPorts: { ldap1: number; ldap2: number; ldap3: number };
  http: {
    port: number;
    /** `http://127.0.0.1:10080`; the certificates say `http://pki.dcdt.test:10080`. */
    baseUrl: string;
    /** The request targets received so far (`/dcdt.test_ca_root.crl`), in order. */
    requests: string[];
  };
  /** Absolute path of test/fixtures/dcdt. */
  fixtures: string;
  manifest: DcdtManifest;
  /** The temporary folder holding configs, databases and logs (`<name>.log`). */
  tempDir: string;
  /** Milliseconds the start took (after the lock). */
  startupMs: number;
  /** Milliseconds spent waiting for another harness on this machine to stop. */
  lockWaitMs: number;
  /** Searches a slapd received since the start (the readiness probe excluded) or clearLogs(). */
  ldapSearches(server: DcdtLdapServer): LdapSearchLogEntry[];
  /** Connections a slapd accepted since the start (the readiness probe excluded) or clearLogs(). */
  ldapConnections(server: DcdtLdapServer): number;
  /** Forgets the HTTP requests and LDAP searches seen so far. */
  clearLogs(): void;
  /** Stops every server and removes the temporary folder. Idempotent. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/** Reads and lightly checks test/fixtures/dcdt/manifest.json. */
export function loadDcdtManifest(fixtures = DCDT_FIXTURES_DIR): DcdtManifest {
  const m = JSON.parse(readFileSync(path.join(fixtures, 'manifest.json'), 'utf8')) as DcdtManifest;
  if (typeof m.base_domain !== 'string' || !Array.isArray(m.testcases) || !Array.isArray(m.http_pki?.paths)) {
    throw new Error(`${fixtures}/manifest.json does not look like the DCDT manifest`);
  }
  return m;
}

/** One resource record of a master file line, as far as the harness needs it. */
export interface ZoneRecord {
  owner: string;
  type: string;
  rdata: string[];
  /** The text after `;` (the zone names the credential of each CERT record there). */
  comment: string;
}

/**
 * The records of a simple master file (one record a line, no multi-line parentheses except on one
 * line, every owner written out, as dcdt.test.zone is). Owners come back fully qualified without
 * the final dot.
 */
export function parseZone(text: string): ZoneRecord[] {
  let origin = '';
  const records: ZoneRecord[] = [];
  for (const line of text.split('\n')) {
    const semi = line.indexOf(';');
    const body = (semi >= 0 ? line.slice(0, semi) : line).trim();
    const comment = semi >= 0 ? line.slice(semi + 1).trim() : '';
    if (body === '') continue;
    const tokens = body.split(/\s+/);
    if (tokens[0] === '$ORIGIN') {
      origin = (tokens[1] ?? '').replace(/\.$/, '');
      continue;
    }
    if (tokens[0]?.startsWith('$')) continue;
    let i = 1;
    if (/^\d+$/.test(tokens[i] ?? '')) i++;
    if (tokens[i] === 'IN') i++;
    if (/^\d+$/.test(tokens[i] ?? '')) i++;
    const rawOwner = tokens[0] ?? '';
    const owner =
      rawOwner === '@' ? origin : rawOwner.endsWith('.') ? rawOwner.slice(0, -1) : `${rawOwner}.${origin}`;
    records.push({ owner: owner.toLowerCase(), type: (tokens[i] ?? '').toUpperCase(), rdata: tokens.slice(i + 1), comment });
  }
  return records;
}

/**
 * Refuses a zone that would send traffic off this machine (an A/AAAA record not on loopback) or
 * whose SRV records name LDAP ports other than the harness's.
 */
export function checkZoneStaysOnLoopback(records: readonly ZoneRecord[]): void {
  const ldapPorts = new Set<string>(Object.values(DCDT_LDAP_PORTS).map(String));
  for (const r of records) {
    if (r.type === 'A' && !(r.rdata[0] ?? '').startsWith('127.')) {
      throw new Error(`zone: ${r.owner} A ${r.rdata.join(' ')} is not a loopback address`);
    }
    if (r.type === 'AAAA' && r.rdata[0] !== '::1') {
      throw new Error(`zone: ${r.owner} AAAA ${r.rdata.join(' ')} is not a loopback address`);
    }
    if (r.type === 'SRV' && !ldapPorts.has(r.rdata[2] ?? '')) {
      throw new Error(`zone: ${r.owner} SRV ${r.rdata.join(' ')} names a port the harness does not serve`);
    }
  }
}

/** Checks that the manifest's endpoints are the ports the harness binds. */
function checkManifestPorts(m: DcdtManifest): void {
  const want: Record<string, number> = {
    LDAP1: DCDT_LDAP_PORTS.ldap1,
    LDAP2: DCDT_LDAP_PORTS.ldap2,
    LDAP3: DCDT_LDAP_PORTS.ldap3,
  };
  for (const [name, port] of Object.entries(want)) {
    const got = m.ldap_servers[name as 'LDAP1']?.port;
    if (got !== port) throw new Error(`manifest: ${name} is on port ${String(got)}, the harness serves ${port}`);
  }
  if (new URL(m.http_pki.base).port !== String(DCDT_HTTP_PORT)) {
    throw new Error(`manifest: http_pki.base ${m.http_pki.base} is not on port ${DCDT_HTTP_PORT}`);
  }
}

/** `/NAME.cer` → certs/NAME.cer, `/NAME.crl` → crl/NAME.crl. */
function pkiFile(fixtures: string, urlPath: string): string {
  const m = /^\/([A-Za-z0-9._-]+)\.(cer|crl)$/.exec(urlPath);
  if (!m) throw new Error(`manifest: cannot map the PKI path ${urlPath} to a fixture`);
  return path.join(fixtures, m[2] === 'cer' ? 'certs' : 'crl', `${m[1] ?? ''}.${m[2] ?? ''}`);
}

// ---------------------------------------------------------------------------------------------
// Small tools

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));



function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Fails with a clear message when something on 127.0.0.1 already listens on `port`. */
function assertPortFree(port: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', (e) => {
      reject(
        errorCode(e) === 'EADDRINUSE'
          ? new Error(
              `port ${port} on 127.0.0.1 (${what}) is already in use; the DCDT SRV records and certificates ` +
                `hard-code it, so stop whatever listens there (ss -ltnp 'sport = :${port}')`,
            )
          : e,
      );
    });
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve()));
  });
}

/** A port free on 127.0.0.1 for both TCP and UDP (at the time of asking). */
export async function freeTcpUdpPort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const server = net.createServer();
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
        const a = server.address();
        resolve(typeof a === 'object' && a !== null ? a.port : 0);
      });
    });
    const udp = dgram.createSocket('udp4');
    const udpOk = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(port, '127.0.0.1', () => resolve(true));
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (udpOk) await new Promise<void>((resolve) => udp.close(() => resolve()));
    if (udpOk && port !== 0) return port;
  }
  throw new Error('no free TCP+UDP port on 127.0.0.1');
}

// ---------------------------------------------------------------------------------------------
// DNS and LDAP clients (used for readiness; exported for tests)

export interface DnsEndpoint {
  host: string;
  port: number;
}

export interface DnsReply {
  /** The response message as received (for TCP, without the two length bytes). */
  raw: Buffer;
  packet: dnsPacket.DecodedPacket;
}

export interface DnsQueryOptions {
  transport: 'udp' | 'tcp';
  /** Add an OPT record advertising this UDP payload size (none by default: a 512-byte limit). */
  ednsUdpSize?: number;
  timeoutMs?: number;
}

/** The RCODE of a response (0 NOERROR, 3 NXDOMAIN, …; the low 4 bits of the flags). */
export function dnsRcode(packet: dnsPacket.Packet): number {
  return (packet.flags ?? 0) & 0x0f;
}

/** Sends one DNS query (no recursion desired) and returns the matching response. */
export function dnsQuery(
  server: DnsEndpoint,
  name: string,
  type: dnsPacket.RecordType,
  options: DnsQueryOptions,
): Promise<DnsReply> {
  const id = randomInt(0, 0x10000);
  const query: dnsPacket.Packet = {
    type: 'query',
    id,
    flags: 0,
    questions: [{ type, name, class: 'IN' }],
    additionals: options.ednsUdpSize
      ? [{ type: 'OPT', name: '.', udpPayloadSize: options.ednsUdpSize, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }]
      : [],
  };
  const timeoutMs = options.timeoutMs ?? 2000;
  return new Promise<DnsReply>((resolve, reject) => {
    const fail = (e: Error): void => {
      clearTimeout(timer);
      cleanup();
      reject(e);
    };
    const done = (raw: Buffer): void => {
      clearTimeout(timer);
      cleanup();
      try {
        resolve({ raw, packet: dnsPacket.decode(raw) });
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    };
    let cleanup = (): void => {};
    const timer = setTimeout(
      () => fail(new Error(`DNS ${options.transport} query ${name} ${type} to ${server.host}:${server.port} timed out`)),
      timeoutMs,
    );
    if (options.transport === 'udp') {
      const socket = dgram.createSocket('udp4');
      cleanup = () => socket.close();
      socket.on('error', fail);
      socket.on('message', (msg) => {
        if (msg.length >= 2 && msg.readUInt16BE(0) === id) done(msg);
      });
      // Connected, so that an ICMP port unreachable fails at once (ECONNREFUSED), not by timeout.
      socket.connect(server.port, server.host, () => socket.send(dnsPacket.encode(query)));
    } else {
      const socket = net.connect(server.port, server.host);
      cleanup = () => socket.destroy();
      let buf = Buffer.alloc(0);
      socket.on('error', fail);
      socket.on('connect', () => socket.write(dnsPacket.streamEncode(query)));
      socket.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      });
    }
  });
}

/**
 * `ldapsearch -x -LLL -o ldif-wrap=no -H ldap://127.0.0.1:PORT ARGS…` (anonymous simple bind).
 * Returns its exit code and LDIF output.
 */
export async function ldapSearch(port: number, args: readonly string[]): Promise<{ code: number; ldif: string; stderr: string }> {
  const bin = findExecutable('ldapsearch');
  const r = await execFileText(bin, ['-x', '-LLL', '-o', 'ldif-wrap=no', '-o', 'nettimeout=5', '-H', `ldap://127.0.0.1:${port}`, ...args]);
  return { code: r.code, ldif: r.out, stderr: r.err };
}

// ---------------------------------------------------------------------------------------------
// Daemons

/** A daemon of the harness: knotd or slapd under the watchdog shell (test/helpers/watched-child.ts). */
type Daemon = WatchedChild;

function failure(daemon: Daemon): Error {
  return new Error(`${daemon.name} exited (${String(daemon.exitCode)}); last lines of ${daemon.logFile ?? ''}:\n${tail(daemon.logFile ?? '')}`);
}

/** Polls `check` until it resolves true; fails early when the daemon exits. */
async function waitUntil(daemon: Daemon, deadline: number, what: string, check: () => Promise<boolean>): Promise<void> {
  let last: unknown;
  for (;;) {
    if (!daemon.running) throw failure(daemon);
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const why = last instanceof Error ? ` (${last.message})` : '';
      throw new Error(`${what} not ready in time${why}; last lines of ${daemon.logFile ?? ''}:\n${tail(daemon.logFile ?? '')}`);
    }
    await sleep(25);
  }
}

// ---------------------------------------------------------------------------------------------
// One harness at a time on the machine (the fixed ports), cleanup at exit

const LOCK_DIR = path.join(tmpdir(), 'hisp-dcdt-harness.lock');
const TEMP_PREFIX = 'hisp-dcdt-';

interface Running {
  daemons: Daemon[];
  server: http.Server | undefined;
  dir: string;
  keepTempDir: boolean;
}

const running = new Set<Running>();
let exitHookInstalled = false;

function lockOwner(): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path.join(LOCK_DIR, 'pid'), 'utf8'), 10);
    return Number.isFinite(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

function releaseLock(): void {
  if (lockOwner() === process.pid) rmSync(LOCK_DIR, { recursive: true, force: true });
}

async function acquireLock(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      writeFileSync(path.join(LOCK_DIR, 'pid'), String(process.pid));
      return;
    } catch (e) {
      if (errorCode(e) !== 'EEXIST') throw e;
    }
    const owner = lockOwner();
    if (owner === process.pid) {
      if (running.size > 0) {
        throw new Error('this process already runs a DCDT harness: start one per test file and share it');
      }
      rmSync(LOCK_DIR, { recursive: true, force: true }); // left by a start of ours that failed
      continue;
    }
    let age: number;
    try {
      age = Date.now() - statSync(LOCK_DIR).mtimeMs;
    } catch {
      continue; // released meanwhile
    }
    const stale = owner === undefined ? age > 10_000 : !isAlive(owner);
    if (stale && lockOwner() === owner) {
      rmSync(LOCK_DIR, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `another DCDT harness (pid ${String(owner)}, lock ${LOCK_DIR}) still holds ports 10080/10389/11389/12389 ` +
          `after ${timeoutMs} ms`,
      );
    }
    await sleep(200);
  }
}

/** Removes temporary folders of harnesses whose process died without cleaning up. */
function removeStaleTempDirs(): void {
  let entries: string[];
  try {
    entries = readdirSync(tmpdir());
  } catch {
    return;
  }
  for (const name of entries) {
    const m = new RegExp(`^${TEMP_PREFIX}(\\d+)-`).exec(name);
    if (m && Number(m[1]) !== process.pid && !isAlive(Number(m[1]))) {
      rmSync(path.join(tmpdir(), name), { recursive: true, force: true });
    }
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const r of running) {
      for (const d of r.daemons) d.killNow();
      r.server?.closeAllConnections();
      if (!r.keepTempDir) rmSync(r.dir, { recursive: true, force: true });
    }
    if (running.size > 0) releaseLock();
    running.clear();
  });
}

// ---------------------------------------------------------------------------------------------
// The servers

function knotConfig(dir: string, port: number, domain: string, zoneFile: string): string {
  return [
    'server:',
    `    rundir: "${dir}"`,
    `    listen: 127.0.0.1@${port}`,
    '    udp-workers: 1',
    '    tcp-workers: 1',
    '    background-workers: 1',
    'database:',
    `    storage: "${dir}"`,
    'log:',
    '  - target: stderr',
    '    any: info',
    'zone:',
    `  - domain: ${domain}`,
    `    storage: "${dir}"`,
    `    file: "${zoneFile}"`,
    '    zonefile-sync: -1',
    '    zonefile-load: whole',
    '    journal-content: none',
    '',
  ].join('\n');
}

async function startKnot(
  dir: string,
  fixtures: string,
  domain: string,
  deadline: number,
  daemons: Daemon[],
): Promise<number> {
  const knotd = findExecutable('knotd');
  const zoneFile = `${domain}.zone`;
  writeFileSync(path.join(dir, zoneFile), readFileSync(path.join(fixtures, 'dns', zoneFile)));
  for (let attempt = 1; ; attempt++) {
    const port = await freeTcpUdpPort();
    const conf = path.join(dir, 'knot.conf');
    writeFileSync(conf, knotConfig(dir, port, domain, zoneFile));
    const logFile = path.join(dir, `dns-${attempt}.log`);
    const daemon = new WatchedChild('knotd', knotd, ['-c', conf], { logFile });
    daemons.push(daemon);
    try {
      const server = { host: '127.0.0.1', port };
      await waitUntil(daemon, deadline, `knotd on 127.0.0.1:${port}`, async () => {
        for (const transport of ['udp', 'tcp'] as const) {
          const r = await dnsQuery(server, domain, 'SOA', { transport, timeoutMs: 500 });
          if (!r.packet.flag_aa || dnsRcode(r.packet) !== 0 || r.packet.answers?.[0]?.type !== 'SOA') return false;
        }
        return true;
      });
      return port;
    } catch (e) {
      await daemon.stop();
      // Lost a race for the port: try another one.
      if (attempt < 3 && /address already in use/i.test(tail(logFile))) continue;
      throw e;
    }
  }
}

function slapdConfig(dir: string, suffix: string): string {
  return [
    'include /etc/ldap/schema/core.schema',
    'include /etc/ldap/schema/cosine.schema',
    'include /etc/ldap/schema/inetorgperson.schema',
    `pidfile ${dir}/slapd.pid`,
    `argsfile ${dir}/slapd.args`,
    'modulepath /usr/lib/ldap',
    'moduleload back_mdb',
    'access to * by * read',
    'database mdb',
    'maxsize 16777216',
    `suffix "${suffix}"`,
    `directory ${dir}/db`,
    '',
  ].join('\n');
}

/** slapadd 2.5 rejects `version: 1` followed by a blank line (RFC 2849 allows it): drop the line. */
function ldifForSlapadd(text: string): string {
  return text.replace(/^version:[ \t]*1[ \t]*\r?\n(?:[ \t]*\r?\n)*/, '');
}

async function startSlapd(
  name: DcdtLdapServer,
  root: string,
  fixtures: string,
  suffix: string,
  deadline: number,
  daemons: Daemon[],
): Promise<Daemon> {
  const slapd = findExecutable('slapd');
  const slapadd = findExecutable('slapadd');
  const port = DCDT_LDAP_PORTS[name];
  const dir = path.join(root, name);
  mkdirSync(path.join(dir, 'db'), { recursive: true });
  const conf = path.join(dir, 'slapd.conf');
  writeFileSync(conf, slapdConfig(dir, suffix));
  const ldif = path.join(dir, `${name}.ldif`);
  writeFileSync(ldif, ldifForSlapadd(readFileSync(path.join(fixtures, 'ldap', `${name}.ldif`), 'utf8')));
  const added = await execFileText(slapadd, ['-q', '-f', conf, '-l', ldif], 30_000);
  if (added.code !== 0) throw new Error(`slapadd ${name}.ldif exited ${added.code}:\n${added.err}${added.out}`);
  const logFile = path.join(root, `${name}.log`);
  // -d stats: stay in the foreground and log connections and searches (ldapSearches() reads them).
  const daemon = new WatchedChild(`slapd ${name}`, slapd, ['-d', 'stats', '-f', conf, '-h', `ldap://127.0.0.1:${port}/`], { logFile });
  daemons.push(daemon);
  await waitUntil(daemon, deadline, `slapd ${name} on 127.0.0.1:${port}`, async () => {
    const connected = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (!connected) return false;
    const r = await ldapSearch(port, ['-b', '', '-s', 'base', 'namingContexts']);
    return r.code === 0 && new RegExp(`^namingContexts: ${suffix}$`, 'mi').test(r.ldif);
  });
  return daemon;
}

function startHttp(fixtures: string, manifest: DcdtManifest, requests: string[]): Promise<http.Server> {
  const bodies = new Map<string, Buffer>();
  for (const p of manifest.http_pki.paths) bodies.set(p, readFileSync(pkiFile(fixtures, p)));
  const server = http.createServer((req, res) => {
    const target = req.url ?? '/';
    requests.push(target);
    const body = bodies.get(target.split('?')[0] ?? '');
    if (body === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(body === undefined ? 404 : 405, { 'content-type': 'text/plain' });
      res.end(body === undefined ? 'not found\n' : 'method not allowed\n');
      return;
    }
    res.writeHead(200, {
      'content-type': target.endsWith('.crl') ? 'application/pkix-crl' : 'application/pkix-cert',
      'content-length': body.length,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  server.keepAliveTimeout = 1000;
  return new Promise((resolve, reject) => {
    server.once('error', (e) => {
      reject(
        errorCode(e) === 'EADDRINUSE'
          ? new Error(`port ${DCDT_HTTP_PORT} on 127.0.0.1 (PKI HTTP) is already in use; the certificates' AIA/CRL URLs hard-code it`)
          : e,
      );
    });
    server.listen({ port: DCDT_HTTP_PORT, host: '127.0.0.1', exclusive: true }, () => {
      server.unref();
      resolve(server);
    });
  });
}

function parseSlapdLog(logFile: string): { searches: LdapSearchLogEntry[]; accepts: number[]; maxConn: number } {
  let text = '';
  try {
    text = readFileSync(logFile, 'utf8');
  } catch {
    // no log yet
  }
  const searches: LdapSearchLogEntry[] = [];
  const accepts: number[] = [];
  let maxConn = 0;
  for (const line of text.split('\n')) {
    const conn = /\bconn=(\d+)\b/.exec(line);
    if (!conn) continue;
    const n = Number(conn[1]);
    maxConn = Math.max(maxConn, n);
    if (/ fd=\d+ ACCEPT from /.test(line)) accepts.push(n);
    const s = / op=\d+ SRCH base="(.*)" scope=(\d) deref=\d+ filter="(.*)"$/.exec(line);
    if (s) searches.push({ conn: n, base: s[1] ?? '', scope: Number(s[2]), filter: s[3] ?? '' });
  }
  return { searches, accepts, maxConn };
}

// ---------------------------------------------------------------------------------------------

/**
 * Starts Knot DNS (a free port), slapd LDAP1/2/3 (10389/11389/12389) and the PKI HTTP server
 * (10080) on 127.0.0.1, each ready when this resolves (DNS answers SOA over UDP and TCP, every
 * slapd answers an anonymous rootDSE search with namingContexts ou=dcdt).
 */
export async function startDcdtHarness(options: DcdtHarnessOptions = {}): Promise<DcdtHarness> {
  const fixtures = DCDT_FIXTURES_DIR;
  if (!existsSync(path.join(fixtures, 'manifest.json'))) throw new Error(`${fixtures}/manifest.json is missing`);
  const manifest = loadDcdtManifest(fixtures);
  checkManifestPorts(manifest);
  const domain = manifest.base_domain;
  checkZoneStaysOnLoopback(parseZone(readFileSync(path.join(fixtures, 'dns', `${domain}.zone`), 'utf8')));
  const suffix = manifest.ldap_servers.LDAP1.suffix;
  // Before taking the lock: fail at once, not after a wait, when a peer is not installed.
  for (const bin of ['knotd', 'slapd', 'slapadd', 'ldapsearch']) findExecutable(bin);

  installExitHook();
  const asked = performance.now();
  await acquireLock(options.lockTimeoutMs ?? 180_000);
  const began = performance.now();
  removeStaleTempDirs();
  const dir = mkdtempSync(path.join(tmpdir(), `${TEMP_PREFIX}${process.pid}-`));
  const record: Running = { daemons: [], server: undefined, dir, keepTempDir: options.keepTempDir ?? false };
  running.add(record);
  const requests: string[] = [];
  let stopped = false;

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const server = record.server;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    await Promise.all(record.daemons.map((d) => d.stop()));
    if (!record.keepTempDir) rmSync(dir, { recursive: true, force: true });
    running.delete(record);
    releaseLock();
  };

  try {
    for (const [name, port] of Object.entries(DCDT_LDAP_PORTS)) await assertPortFree(port, `slapd ${name}`);
    await assertPortFree(DCDT_HTTP_PORT, 'PKI HTTP');
    const deadline = Date.now() + (options.startTimeoutMs ?? 20_000);
    // allSettled, not all: on a failure every start has finished before stop() cleans up.
    let dnsPort = 0;
    const results = await Promise.allSettled([
      startKnot(dir, fixtures, domain, deadline, record.daemons).then((port) => {
        dnsPort = port;
      }),
      startHttp(fixtures, manifest, requests).then((server) => {
        record.server = server;
      }),
      ...(Object.keys(DCDT_LDAP_PORTS) as DcdtLdapServer[]).map((name) =>
        startSlapd(name, dir, fixtures, suffix, deadline, record.daemons),
      ),
    ]);
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failures.length > 0) {
      throw failures.length === 1 ? failures[0] : new AggregateError(failures, failures.map(String).join('\n'));
    }

    const baseline: Record<DcdtLdapServer, number> = { ldap1: 0, ldap2: 0, ldap3: 0 };
    const logOf = (name: DcdtLdapServer): string => path.join(dir, `${name}.log`);
    const clearLdap = (): void => {
      for (const name of Object.keys(baseline) as DcdtLdapServer[]) baseline[name] = parseSlapdLog(logOf(name)).maxConn;
    };
    clearLdap();

    return {
      dns: { host: '127.0.0.1', port: dnsPort },
      ldapPorts: { ...DCDT_LDAP_PORTS },
      http: { port: DCDT_HTTP_PORT, baseUrl: `http://127.0.0.1:${DCDT_HTTP_PORT}`, requests },
      fixtures,
      manifest,
      tempDir: dir,
      startupMs: Math.round(performance.now() - began),
      lockWaitMs: Math.round(began - asked),
      ldapSearches: (name) => parseSlapdLog(logOf(name)).searches.filter((s) => s.conn > baseline[name]),
      ldapConnections: (name) => parseSlapdLog(logOf(name)).accepts.filter((c) => c > baseline[name]).length,
      clearLogs: () => {
        requests.length = 0;
        clearLdap();
      },
      stop,
    };
  } catch (e) {
    await stop(); // whatever started goes (the temporary folder stays with keepTempDir)
    throw e;
  }
}

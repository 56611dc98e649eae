import { availableParallelism } from 'node:os';
import { execFileSync } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { afterAll, describe, expect, it } from 'vitest';
import { credentialPaths, type CredentialName } from '../../test/helpers/pki.js';
import { hispError } from '../../test/helpers/hisp-error.js';
import type { HispError } from '../core/errors.js';
import { resolvePolicy } from '../policy/cert-policy.js';
import { buildConfig, inspectConfig, loadConfig, parseConfig } from './load-config.js';
import { formatConfig, REDACTED } from './print-config.js';
import { addressFolderName, deliveryFor, remoteDomainSettings, type HispConfig } from './schema.js';

const work = mkdtempSync(join(tmpdir(), 'hisp-config-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const pem = (name: CredentialName) => credentialPaths(name);
const q = (s: string) => JSON.stringify(s);
const NO_ENV = {} as NodeJS.ProcessEnv;

/** The smallest valid configuration: one domain with one credential (sign + decrypt), no TLS on submission. */
function minimal(extraDomain = '', extraTop = ''): string {
  return `${extraTop}
[submission]
requireTls = false

[[domains]]
name = "sender.test"
${extraDomain}
[[domains.credentials]]
key = ${q(pem('sender-domain').key)}
cert = ${q(pem('sender-domain').chain!)}
`;
}

let counter = 0;
/** Writes `text` as a configuration file in a fresh folder and returns its path. */
function writeConfig(text: string, name = 'hisp.toml'): string {
  const dir = join(work, `c${++counter}`);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

function load(text: string, env: NodeJS.ProcessEnv = NO_ENV): HispConfig {
  return loadConfig(writeConfig(text), env);
}

/** The HISP_CONFIG_INVALID error of `text`, and its {path, message} list. */
function errorsOf(text: string, env: NodeJS.ProcessEnv = NO_ENV): { err: HispError; errors: { path: string; message: string }[] } {
  const err = hispError(() => load(text, env));
  expect(err.code).toBe('HISP_CONFIG_INVALID');
  return { err, errors: (err.details?.errors ?? []) as { path: string; message: string }[] };
}

function expectError(text: string, path: string, message: RegExp | string): HispError {
  const { err, errors } = errorsOf(text);
  const hit = errors.find((e) => e.path === path);
  expect(hit, `no error at ${path}; got ${JSON.stringify(errors)}`).toBeDefined();
  if (typeof message === 'string') expect(hit?.message).toContain(message);
  else expect(hit?.message).toMatch(message);
  // The message of the HispError carries the same line.
  expect(err.message).toContain(`${path}: ${hit?.message ?? ''}`);
  return err;
}

describe('loadConfig: a valid configuration', () => {
  it('loads the minimal configuration and applies every default', () => {
    const file = writeConfig(minimal());
    const dir = join(file, '..');
    const c = loadConfig(file, NO_ENV);
    expect(c.dataDir).toBe(join(dir, 'hisp-data'));
    expect(c.log).toEqual({ level: 'info' });
    expect(c.dns).toEqual({ servers: [], timeoutMs: 3000, retries: 2 });
    // No fetch to a non-global address unless listed (issue 14 item 4).
    expect(c.fetch).toEqual({ allowAddresses: [], maxFetchesPerMessage: 16, maxBytesPerMessage: 32 * 1024 * 1024, timeoutPerMessageMs: 30_000 });
    expect(c.submission).toEqual({
      enabled: true,
      host: '127.0.0.1',
      port: 5587,
      requireTls: false,
      maxMessageBytes: 25 * 1024 * 1024,
      commandTimeoutMs: 300_000,
      dataTimeoutMs: 600_000,
      maxClients: 100,
      perClient: { maxConnections: 50, messagesPerMinute: 0, bytesPerMinute: 0 },
      users: [],
      authLimits: { maxFailuresPerConnection: 3, maxFailuresPerClient: 10, maxFailuresPerUser: 30, windowMinutes: 15, lockoutMinutes: 15, concurrentChecks: 1, rememberSuccessMinutes: 10 },
    });
    expect(c.inbound).toEqual({
      enabled: true,
      host: '0.0.0.0',
      port: 5525,
      requireTls: false,
      maxMessageBytes: 50 * 1024 * 1024,
      commandTimeoutMs: 300_000,
      dataTimeoutMs: 600_000,
      maxClients: 100,
      perClient: { maxConnections: 20, messagesPerMinute: 600, bytesPerMinute: 1024 ** 3 },
    });
    expect(c.api).toEqual({ enabled: false, host: '127.0.0.1', port: 5580, bodyLimitBytes: 1024 * 1024, rateLimit: { perKeyPerMinute: 600, perClientPerMinute: 60 } });
    expect(c.queue).toEqual({ retrySchedule: [1, 5, 15, 30, 60, 120, 240], giveUpHours: 24, workers: 20, wrapThreads: availableParallelism() > 1 ? 1 : 0, largeMessageMemoryBytes: 64 * 1024 * 1024 });
    expect(c.dedupe).toEqual({ windowHours: 72 });
    expect(c.quarantine).toEqual({ retentionDays: 30, maxBytes: 2 * 1024 ** 3, reserveBytes: 32 * 1024 * 1024 });
    expect(c.remoteDomains).toEqual({ '*': { cipher: 'aes256-cbc', keyTransport: 'rsa-oaep-sha1', tlsRequired: false, port: 25 } });

    expect(c.domains).toHaveLength(1);
    const d = c.domains[0]!;
    expect(d.name).toBe('sender.test');
    expect(d.credentials).toEqual([{ key: pem('sender-domain').key, cert: pem('sender-domain').chain, use: 'both', retired: false }]);
    expect(d.anchors).toEqual({ incoming: [], outgoing: [] });
    expect(d.bundles).toEqual([]);
    expect(d.mdn).toEqual({ requestFinalDelivery: true, processedTimeoutMinutes: 60, dispatchedTimeoutMinutes: 60, forwardPositive: 'processed' });
    expect(d.relay).toEqual({ tlsRequired: false });
    expect(d.delivery).toEqual({ type: 'maildir', path: join(dir, 'hisp-data', 'maildir', '{address}') });
    expect(d.catchAll).toBe(false);
    expect(d.addresses).toEqual([]);
    // The default policy is the built-in one, written with algorithm names.
    expect(d.policy).toMatchObject({ minRsaBits: 2048, allowSha1: false, revocation: 'soft-fail', requiredKeyUsage: { signing: [], encryption: [] }, blueButtonPlus: { enabled: false, requireDnssec: false } });
    expect(d.policy.allowedSignatureAlgorithms).toContain('sha256WithRSAEncryption');
    expect(resolvePolicy(d.policy)).toEqual(resolvePolicy());
  });

  it('warns (without failing) about what will not work: no users, no anchors, certificates not bound to the domain', () => {
    const report = inspectConfig(writeConfig(minimal().replace('name = "sender.test"', 'name = "other.test"')), NO_ENV);
    const warnings = report.warnings.map((w) => `${w.path}: ${w.message}`);
    expect(warnings).toEqual(
      expect.arrayContaining([
        expect.stringContaining('submission.users: no submission account'),
        expect.stringContaining('domains[0].anchors.incoming: no incoming anchor'),
        expect.stringContaining('domains[0].anchors.outgoing: no outgoing anchor'),
        expect.stringContaining('domains[0].credentials[0].cert: CN=sender.test is bound neither to other.test'),
      ]),
    );
  });

  it('resolves relative paths against the folder of the configuration file, not the working directory', () => {
    const dir = join(work, 'relative');
    mkdirSync(join(dir, 'keys'), { recursive: true });
    mkdirSync(join(dir, 'anchors'), { recursive: true });
    writeFileSync(join(dir, 'keys', 'd.key.pem'), readFileSync(pem('sender-domain').key));
    writeFileSync(join(dir, 'keys', 'd.chain.pem'), readFileSync(pem('sender-domain').chain!));
    writeFileSync(join(dir, 'anchors', 'root.pem'), readFileSync(pem('root-ca').cert));
    writeFileSync(
      join(dir, 'hisp.toml'),
      `dataDir = "var/data"
[submission]
requireTls = false
[[domains]]
name = "sender.test"
[[domains.credentials]]
key = "keys/d.key.pem"
cert = "./keys/d.chain.pem"
[domains.anchors]
incoming = ["anchors/root.pem"]
[domains.delivery]
type = "maildir"
path = "mail/{address}"
[[domains.addresses]]
address = "Doc@Sender.Test"
`,
    );
    const cwd = process.cwd();
    try {
      process.chdir(work); // a different folder: the paths must not depend on it
      const c = loadConfig(join('relative', 'hisp.toml'), NO_ENV);
      expect(c.dataDir).toBe(join(dir, 'var', 'data'));
      expect(c.domains[0]!.credentials[0]).toMatchObject({ key: join(dir, 'keys', 'd.key.pem'), cert: join(dir, 'keys', 'd.chain.pem') });
      expect(c.domains[0]!.anchors.incoming).toEqual([join(dir, 'anchors', 'root.pem')]);
      expect(c.domains[0]!.addresses[0]).toEqual({ address: 'Doc@sender.test', delivery: { type: 'maildir', path: join(dir, 'mail', 'doc@sender.test') } });
    } finally {
      process.chdir(cwd);
    }
  });

  it('lets HISP_DATA_DIR override dataDir (relative to the working directory) and HISP_LOG_LEVEL override log.level', () => {
    const text = minimal('', 'dataDir = "/from/file"\n[log]\nlevel = "warn"\n');
    expect(load(text).dataDir).toBe('/from/file');
    expect(load(text).log.level).toBe('warn');
    expect(load(text, { HISP_DATA_DIR: '/from/env', HISP_LOG_LEVEL: 'debug' })).toMatchObject({ dataDir: '/from/env', log: { level: 'debug' } });
    expect(load(text, { HISP_DATA_DIR: 'rel' }).dataDir).toBe(join(process.cwd(), 'rel'));
    const bad = hispError(() => load(text, { HISP_LOG_LEVEL: 'loud' }));
    expect(bad.message).toContain('env HISP_LOG_LEVEL: expected one of');
  });

  it('takes the file from HISP_CONFIG when no path is given, and refuses to guess when neither is', () => {
    const file = writeConfig(minimal());
    expect(loadConfig(undefined, { HISP_CONFIG: file }).domains[0]!.name).toBe('sender.test');
    expect(hispError(() => loadConfig(undefined, NO_ENV)).code).toBe('HISP_USAGE');
  });

  it('returns a deep-frozen configuration: a mutation throws', () => {
    const c = load(minimal());
    expect(Object.isFrozen(c)).toBe(true);
    expect(() => {
      (c as { dataDir: string }).dataDir = '/elsewhere';
    }).toThrow(TypeError);
    expect(() => {
      (c.domains[0]!.policy as { minRsaBits: number }).minRsaBits = 1024;
    }).toThrow(TypeError);
    expect(() => (c.queue.retrySchedule as number[]).push(1)).toThrow(TypeError);
    expect(() => {
      (c.remoteDomains as Record<string, unknown>)['evil.test'] = {};
    }).toThrow(TypeError);
  });

  it('reads every kind of section: users, bundles, remote domains, each delivery type, policy, mdn', () => {
    const c = load(
      minimal(
        `catchAll = true
[domains.anchors]
incoming = [${q(pem('root-ca').cert)}]
outgoing = [${q(pem('root-ca').certDer)}]
[[domains.bundles]]
url = "https://bundles.example.net/b.p7m"
signer = ${q(pem('intermediate-ca').cert)}
direction = "incoming"
[domains.policy]
minRsaBits = 3072
allowedSignatureAlgorithms = ["sha256WithRSAEncryption", "1.2.840.10045.4.3.2"]
revocation = "hard-fail"
[domains.policy.requiredKeyUsage]
signing = ["digitalSignature"]
[domains.mdn]
forwardPositive = "dispatched"
[domains.delivery]
type = "lmtp"
socket = "/run/dovecot/lmtp"
[[domains.addresses]]
address = "a@sender.test"
delivery = { type = "smtp", host = "mail.internal" }
[[domains.addresses]]
address = "b@sender.test"
delivery = { type = "webhook", url = "http://127.0.0.1:8080/in", hmacSecret = "0123456789abcdef0123" }
[[domains.addresses]]
address = "c@sender.test"
`,
        `[[submission.users]]
username = "ehr"
passwordHash = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
mayUseAddresses = ["a@Sender.test", "@SENDER.test"]
[remoteDomains."*"]
cipher = "aes128-gcm"
[remoteDomains."Partner.Example"]
keyTransport = "rsa-oaep-sha256"
route = "192.0.2.7"
port = 2525
`,
      ),
    );
    expect(c.submission.users).toEqual([
      {
        username: 'ehr',
        passwordHash: 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
        mayUseAddresses: ['a@sender.test', '@sender.test'],
      },
    ]);
    // An entry other than "*" takes what it does not say from "*".
    expect(c.remoteDomains).toEqual({
      '*': { cipher: 'aes128-gcm', keyTransport: 'rsa-oaep-sha1', tlsRequired: false, port: 25 },
      'partner.example': { cipher: 'aes128-gcm', keyTransport: 'rsa-oaep-sha256', tlsRequired: false, port: 2525, route: '192.0.2.7' },
    });
    expect(remoteDomainSettings(c, 'PARTNER.example.').keyTransport).toBe('rsa-oaep-sha256');
    expect(remoteDomainSettings(c, 'unknown.example')).toEqual(c.remoteDomains['*']);
    const d = c.domains[0]!;
    expect(d.bundles).toEqual([{ url: 'https://bundles.example.net/b.p7m', signer: pem('intermediate-ca').cert, refreshHours: 24, direction: 'incoming', patient: false }]);
    expect(d.policy).toMatchObject({ minRsaBits: 3072, revocation: 'hard-fail', requiredKeyUsage: { signing: ['digitalSignature'], encryption: [] } });
    expect(resolvePolicy(d.policy).allowedSignatureAlgorithms).toEqual(['1.2.840.113549.1.1.11', '1.2.840.10045.4.3.2']);
    expect(d.addresses.map((a) => a.delivery)).toEqual([
      { type: 'smtp', host: 'mail.internal', port: 25 },
      { type: 'webhook', url: 'http://127.0.0.1:8080/in', hmacSecret: '0123456789abcdef0123', retries: 5, timeoutMs: 10_000 },
      { type: 'lmtp', host: '127.0.0.1', port: 24, socket: '/run/dovecot/lmtp' },
    ]);
    expect(deliveryFor(c, 'A@SENDER.TEST')).toEqual(d.addresses[0]!.delivery);
    expect(deliveryFor(c, 'unlisted@sender.test')).toEqual(d.delivery); // catchAll
    expect(deliveryFor(c, 'x@elsewhere.test')).toBeUndefined();
  });

  it('never lets an address climb out of the maildir root', () => {
    expect(addressFolderName('Patient@Direct.Example.org')).toBe('patient@direct.example.org');
    expect(addressFolderName('../../etc@d.test')).toBe('%2E.%2F..%2Fetc@d.test');
    expect(addressFolderName('a/b\u00e9@d')).toBe('a%2Fb%C3%A9@d');
    const c = load(minimal('catchAll = true'));
    const delivery = deliveryFor(c, '../x@sender.test');
    expect(delivery).toMatchObject({ type: 'maildir' });
    expect(delivery?.type === 'maildir' && delivery.path.endsWith('/maildir/%2E.%2Fx@sender.test')).toBe(true);
  });

  it('accepts an encrypted key with its password and a PKCS#12 file without a certificate file', () => {
    const dir = join(work, 'p12');
    mkdirSync(dir, { recursive: true });
    const encrypted = createPrivateKey(readFileSync(pem('sender-domain').key)).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'k3y-pa55' });
    writeFileSync(join(dir, 'enc.key.pem'), encrypted);
    const p12 = join(dir, 'domain.p12');
    execFileSync('openssl', ['pkcs12', '-export', '-inkey', pem('sender-domain').key, '-in', pem('sender-domain').chain!, '-passout', 'pass:p12-pa55', '-out', p12]);
    const c = load(`[submission]
requireTls = false
[[domains]]
name = "sender.test"
[[domains.credentials]]
key = ${q(join(dir, 'enc.key.pem'))}
cert = ${q(pem('sender-domain').chain!)}
password = "k3y-pa55"
use = "sign"
[[domains.credentials]]
key = ${q(p12)}
password = "p12-pa55"
use = "decrypt"
`);
    expect(c.domains[0]!.credentials.map((x) => x.use)).toEqual(['sign', 'decrypt']);
    // A wrong password is an error at the key, and the error never shows a password.
    const err = expectError(
      `[submission]
requireTls = false
[[domains]]
name = "sender.test"
[[domains.credentials]]
key = ${q(join(dir, 'enc.key.pem'))}
cert = ${q(pem('sender-domain').chain!)}
password = "wrong-pa55"
`,
      'domains[0].credentials[0].key',
      'wrong password',
    );
    expect(err.message).not.toContain('wrong-pa55');
    expect(JSON.stringify(err.details)).not.toContain('wrong-pa55');
  });
});

describe('loadConfig: every class of error names its key path', () => {
  it('a missing or unreadable file is HISP_IO, not a configuration error', () => {
    expect(hispError(() => loadConfig(join(work, 'nope.toml'), NO_ENV)).code).toBe('HISP_IO');
    expect(hispError(() => loadConfig(work, NO_ENV)).code).toBe('HISP_IO');
  });

  it('a TOML syntax error gives the line and column, and never quotes the line (it may hold a secret)', () => {
    const err = hispError(() => load('dataDir = "x"\npassword = "s3cret\n'));
    expect(err.code).toBe('HISP_CONFIG_INVALID');
    expect(err.message).toMatch(/TOML syntax error at line 2, column \d+/);
    expect(err.message).not.toContain('s3cret');
  });

  it('wrong types', () => {
    expectError(minimal('', 'dataDir = 5\n'), 'dataDir', 'expected a string, got an integer');
    expectError(minimal('', '[dns]\ntimeoutMs = "3000"\n'), 'dns.timeoutMs', 'expected an integer, got a string');
    expectError(minimal('', 'dns = 3\n'), 'dns', 'expected a table, got an integer');
    expectError(minimal('', '[api]\nenabled = "yes"\n'), 'api.enabled', 'expected true or false, got a string');
    expectError(minimal('', '[queue]\nworkers = 2.5\n'), 'queue.workers', 'expected an integer, got 2.5');
    expectError(minimal('', '[dns]\nservers = "127.0.0.1:53"\n'), 'dns.servers', 'expected an array of strings');
    expectError(minimal().replace('[[domains]]\nname = "sender.test"', 'domains = 1\n[x]\nname = "sender.test"'), 'domains', 'expected an array of tables');
  });

  it('ranges and ports', () => {
    expectError(minimal('', '[inbound]\nport = 65536\n'), 'inbound.port', 'must be from 0 to 65535 (got 65536)');
    expectError(minimal('', '[submission]\nport = -1\n').replace('[submission]\nrequireTls', '[x]\nrequireTls'), 'submission.port', 'must be from 0 to 65535');
    expectError(minimal('', '[queue]\ngiveUpHours = 0\n'), 'queue.giveUpHours', 'must be from 0.001 to 720');
    expectError(minimal('', '[queue]\nretrySchedule = [5, 1]\n'), 'queue.retrySchedule[1]', 'intervals must not decrease');
    expectError(minimal('', '[queue]\nretrySchedule = []\n'), 'queue.retrySchedule', 'at least one interval');
    expectError(minimal('[domains.policy]\nminRsaBits = 512'), 'domains[0].policy.minRsaBits', 'must be from 1024 to 16384 (got 512)');
    expectError(minimal('[domains.mdn]\nprocessedTimeoutMinutes = 0'), 'domains[0].mdn.processedTimeoutMinutes', 'must be from 0.01');
    // Issue 14: one client may never take every connection; the AUTH limits have sane ranges.
    expectError(minimal('', '[inbound]\nmaxClients = 10\n[inbound.perClient]\nmaxConnections = 10\n'), 'inbound.perClient.maxConnections', 'must be below maxClients (10)');
    expectError(minimal('', '[inbound.perClient]\nmessagesPerMinute = -1\n'), 'inbound.perClient.messagesPerMinute', 'must be from 0');
    expectError(minimal('', '[submission.authLimits]\nconcurrentChecks = 0\n').replace('[submission]\nrequireTls', '[submission]\nrequireTls'), 'submission.authLimits.concurrentChecks', 'must be from 1 to 64');
  });

  it('quarantine bounds: ranges, and a cap that holds the largest inbound message', () => {
    const q = (keys: string, inbound = '') => minimal('', `${inbound}[quarantine]\n${keys}\n`);
    expect(loadConfig(writeConfig(q('retentionDays = 7\nmaxBytes = 104857600\nreserveBytes = 0', '[inbound]\nmaxMessageBytes = 10485760\n')), NO_ENV).quarantine).toEqual({
      retentionDays: 7,
      maxBytes: 100 * 1024 * 1024,
      reserveBytes: 0,
    });
    expectError(q('retentionDays = 0'), 'quarantine.retentionDays', 'must be from 0.01 to 36500');
    expectError(q('maxBytes = 1000'), 'quarantine.maxBytes', 'must be from 1048576');
    expectError(q('maxBytes = 1.5e7'), 'quarantine.maxBytes', 'must be at least inbound.maxMessageBytes (52428800)');
    expectError(q('reserveBytes = -1'), 'quarantine.reserveBytes', 'must be from 0 to 1073741824');
    expectError(q('retention = 30'), 'quarantine.retention', 'unknown key');
  });

  it('enum values show the allowed ones and the typo', () => {
    expectError(minimal('', '[remoteDomains."*"]\ncipher = "aes-256-cbc"\n'), 'remoteDomains."*".cipher', 'expected one of "aes128-cbc", "aes256-cbc", "aes128-gcm", "aes256-gcm", got "aes-256-cbc"');
    expectError(minimal('', '[remoteDomains."x.example"]\nkeyTransport = "oaep"\n'), 'remoteDomains."x.example".keyTransport', 'got "oaep"');
    expectError(minimal('', '[log]\nlevel = "verbose"\n'), 'log.level', 'expected one of "trace"');
    expectError(minimal('[domains.policy]\nrevocation = "strict"'), 'domains[0].policy.revocation', '"soft-fail", "hard-fail", "off"');
    expectError(minimal('[domains.policy]\nallowedSignatureAlgorithms = ["sha256WithRSAEncryption", "1.2.840.113549.1.1.4"]'), 'domains[0].policy.allowedSignatureAlgorithms[1]', 'md5WithRSAEncryption is never allowed');
    expectError(minimal('[domains.policy.requiredKeyUsage]\nsigning = ["signing"]'), 'domains[0].policy.requiredKeyUsage.signing[0]', 'unknown key usage "signing"');
    expectError(minimal('[domains.mdn]\nforwardPositive = "all"'), 'domains[0].mdn.forwardPositive', 'got "all"');
    expectError(minimal('[[domains.addresses]]\naddress = "a@sender.test"\ndelivery = { type = "fax" }'), 'domains[0].addresses[0].delivery.type', 'got "fax"');
  });

  it('unknown keys are errors, with a suggestion for a typo', () => {
    expectError(minimal('', 'dataDri = "x"\n'), 'dataDri', 'unknown key (did you mean "dataDir"?)');
    expectError(minimal('', '[submision]\nport = 1\n'), 'submision', 'did you mean "submission"?');
    expectError(minimal('[[domains.credential]]\nkey = "x"'), 'domains[0].credential', 'did you mean "credentials"?');
    expectError(minimal('[domains.mdn]\nrequestFinalDeliveries = true'), 'domains[0].mdn.requestFinalDeliveries', 'did you mean "requestFinalDelivery"?');
    // A key of another delivery type is unknown for this one.
    expectError(minimal('[[domains.addresses]]\naddress = "a@sender.test"\ndelivery = { type = "maildir", url = "https://x" }'), 'domains[0].addresses[0].delivery.url', 'unknown key');
  });

  it('missing required keys and files that do not exist', () => {
    expectError(minimal().replace('name = "sender.test"\n', ''), 'domains[0].name', 'missing (required)');
    expectError(minimal('', 'dataDir = "d"\n').replace(/\[\[domains\]\][\s\S]*$/, ''), 'domains', 'at least one local domain');
    expectError(minimal('[[domains.credentials]]\nkey = "missing.key.pem"\ncert = "missing.cert.pem"'), 'domains[0].credentials[0].key', /^file not found: \/.*missing\.key\.pem$/);
    expectError(minimal('[[domains.credentials]]\nkey = "missing.key.pem"\ncert = "missing.cert.pem"'), 'domains[0].credentials[0].cert', 'file not found:');
    expectError(minimal(`[domains.anchors]\nincoming = ["nope.pem"]`), 'domains[0].anchors.incoming[0]', 'file not found:');
    expectError(minimal(`[[domains.credentials]]\nkey = ${q(pem('sender-rsa').key)}`), 'domains[0].credentials[0].cert', 'missing: required unless key is a PKCS#12 file');
    expectError(minimal('', '[submission]\nrequireTls = true\n').replace('[submission]\nrequireTls = false\n', ''), 'submission.tlsCert', 'requireTls = true needs tlsCert and tlsKey');
    expectError(minimal('', `[inbound]\ntlsCert = ${q(pem('recipient-rsa').cert)}\n`), 'inbound.tlsKey', 'tlsCert and tlsKey go together');
    expectError(minimal('[[domains.bundles]]\ndirection = "incoming"'), 'domains[0].bundles[0].url', 'missing (required)');
    expectError(minimal('[[domains.addresses]]\naddress = "a@sender.test"\ndelivery = { type = "webhook", url = "https://x.example/h" }'), 'domains[0].addresses[0].delivery.hmacSecretFile', 'missing');
  });

  it('keys, certificates and anchors must be what they claim to be', () => {
    const err = expectError(minimal(`[[domains.credentials]]\nkey = ${q(pem('sender-rsa').key)}\ncert = ${q(pem('recipient-rsa').cert)}`), 'domains[0].credentials[0]', 'does not belong to the certificate');
    expect(err.message).toContain('HISP_KEY_MISMATCH');
    expectError(minimal(`[[domains.credentials]]\nkey = ${q(pem('sender-rsa').key)}\ncert = ${q(pem('sender-rsa').key)}`), 'domains[0].credentials[0].cert', 'HISP_KEY_UNREADABLE');
    expectError(minimal(`[domains.anchors]\noutgoing = [${q(pem('root-ca').key)}]`), 'domains[0].anchors.outgoing[0]', 'HISP_KEY_UNREADABLE');
    expectError(minimal(`[[domains.credentials]]\nkey = ${q(pem('sender-ec256').key)}\ncert = ${q(pem('sender-ec256').chain!)}\nuse = "both"`), 'domains[0].credentials[0].key', 'EC keys cannot decrypt');
    expectError(minimal(`[[domains.credentials]]\nkey = ${q(pem('sender-keyenc-only').key)}\ncert = ${q(pem('sender-keyenc-only').chain!)}\nuse = "sign"`), 'domains[0].credentials[0].cert', 'lacks the digitalSignature key usage');
    expectError(minimal().replace('key = ', 'use = "sign"\nkey = '), 'domains[0].credentials', 'no active decryption credential');
    expectError(minimal().replace('key = ', 'retired = true\nkey = '), 'domains[0].credentials', 'no active signing credential');
    expectError(minimal(`[[domains.bundles]]\nurl = "https://b.example/x"\nsigner = ${q(pem('root-ca').key)}`), 'domains[0].bundles[0].signer', 'HISP_KEY_UNREADABLE');
    expectError(minimal('[[domains.bundles]]\nurl = "http://b.example/x"'), 'domains[0].bundles[0].url', 'only https:');
  });

  it('duplicates: domains, addresses, users, remote domains, listener ports', () => {
    const second = `[[domains]]\nname = "SENDER.test."\n[[domains.credentials]]\nkey = ${q(pem('sender-domain').key)}\ncert = ${q(pem('sender-domain').chain!)}\n`;
    expectError(minimal() + second, 'domains[1].name', 'duplicate domain "sender.test" (already at domains[0].name)');
    expectError(minimal('[[domains.addresses]]\naddress = "a@sender.test"\n[[domains.addresses]]\naddress = "A@Sender.Test"'), 'domains[0].addresses[1].address', 'duplicate address');
    const hash = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
    const user = (name: string) => `[[submission.users]]\nusername = "${name}"\npasswordHash = "${hash}"\nmayUseAddresses = ["@sender.test"]\n`;
    expectError(minimal('', user('ehr') + user('EHR')), 'submission.users[1].username', 'duplicate username');
    expectError(minimal('', '[remoteDomains."a.example"]\n[remoteDomains."A.example"]\n'), 'remoteDomains."A.example"', 'duplicate remote domain');
    expectError(minimal('', '[inbound]\nport = 5587\n'), 'inbound.port', 'already used by the submission listener');
    expectError(minimal('', '[api]\nenabled = true\nport = 5525\nhost = "127.0.0.1"\n'), 'api.port', 'already used by the inbound listener (0.0.0.0:5525)');
  });

  it('[api]: plain HTTP on loopback only, HTTPS with a certificate and key that go together, bounded limits', () => {
    for (const host of ['127.0.0.1', '127.8.9.10', '::1', 'localhost']) {
      expect(load(minimal('', `[api]\nenabled = true\nhost = "${host}"\n`)).api).toMatchObject({ enabled: true, host });
    }
    expectError(minimal('', '[api]\nenabled = true\nhost = "0.0.0.0"\n'), 'api.host', '0.0.0.0 is not a loopback address: plain HTTP');
    expectError(minimal('', '[api]\nenabled = true\nhost = "10.1.2.3"\n'), 'api.host', 'give tlsCert and tlsKey for HTTPS');
    // Off, a public host without TLS is no risk: nothing listens.
    expect(load(minimal('', '[api]\nhost = "0.0.0.0"\n')).api.enabled).toBe(false);
    const tls = `tlsCert = ${q(pem('recipient-rsa').cert)}\ntlsKey = ${q(pem('recipient-rsa').key)}\n`;
    expect(load(minimal('', `[api]\nenabled = true\nhost = "0.0.0.0"\n${tls}`)).api).toMatchObject({ host: '0.0.0.0', tlsCert: pem('recipient-rsa').cert, tlsKey: pem('recipient-rsa').key });
    expectError(minimal('', `[api]\nenabled = true\ntlsCert = ${q(pem('recipient-rsa').cert)}\n`), 'api.tlsKey', 'tlsCert and tlsKey go together');
    expectError(minimal('', `[api]\ntlsCert = ${q(pem('recipient-rsa').cert)}\ntlsKey = ${q(pem('sender-rsa').key)}\n`), 'api', 'HISP_KEY_MISMATCH');
    expectError(minimal('', '[api]\nbodyLimitBytes = 10\n'), 'api.bodyLimitBytes', 'must be from 1024 to');
    expectError(minimal('', '[api.rateLimit]\nperKeyPerMinute = 0\n'), 'api.rateLimit.perKeyPerMinute', 'must be from 1 to');
    expectError(minimal('', '[api.rateLimit]\nperClient = 5\n'), 'api.rateLimit.perClient', 'unknown key');
    expect(load(minimal('', '[api]\nbodyLimitBytes = 4096\n[api.rateLimit]\nperKeyPerMinute = 5\nperClientPerMinute = 2\n')).api).toMatchObject({
      bodyLimitBytes: 4096,
      rateLimit: { perKeyPerMinute: 5, perClientPerMinute: 2 },
    });
  });

  it('cross-references: addresses of their domain, users of local addresses, secrets and URLs', () => {
    expectError(minimal('[[domains.addresses]]\naddress = "a@other.test"'), 'domains[0].addresses[0].address', 'is not an address of the domain sender.test');
    const user = (uses: string) => `[[submission.users]]\nusername = "ehr"\npasswordHash = "not-a-hash"\nmayUseAddresses = ${uses}\n`;
    const err = expectError(minimal('', user('["@other.test"]')), 'submission.users[0].mayUseAddresses[0]', 'other.test is not a local domain');
    expect(err.message).toContain('submission.users[0].passwordHash: not a password hash');
    expect(err.message).not.toContain('not-a-hash');
    expectError(minimal('', user('["nobody@sender.test"]')), 'submission.users[0].mayUseAddresses[0]', 'is not an address of sender.test');
    expectError(minimal('', user('[]')), 'submission.users[0].mayUseAddresses', 'at least one');
    expectError(minimal('[[domains.addresses]]\naddress = "a@sender.test"\ndelivery = { type = "webhook", url = "http://hooks.example/x", hmacSecret = "0123456789abcdef" }'), 'domains[0].addresses[0].delivery.url', 'http: only to a loopback host');
    const short = expectError(minimal('[[domains.addresses]]\naddress = "a@sender.test"\ndelivery = { type = "webhook", url = "https://hooks.example/x", hmacSecret = "tiny-secret" }'), 'domains[0].addresses[0].delivery.hmacSecret', 'too short');
    expect(short.message).not.toContain('tiny-secret');
    // An API mailbox needs the API that reads it (issue 15).
    expectError(minimal('[[domains.addresses]]\naddress = "a@sender.test"\ndelivery = { type = "api" }'), 'domains[0].addresses[0].delivery.type', 'needs the HTTP API');
    expect(load(minimal('[[domains.addresses]]\naddress = "a@sender.test"\ndelivery = { type = "api" }', '[api]\nenabled = true\n')).domains[0]?.addresses[0]?.delivery).toEqual({ type: 'api' });
    expectError(minimal('[[domains.addresses]]\naddress = "a@sender.test"\ndelivery = { type = "webhook", url = "https://hooks.example/x", hmacSecret = "0123456789abcdef", hmacSecretFile = "s" }'), 'domains[0].addresses[0].delivery.hmacSecret', 'not both');
    expectError(minimal('', '[dns]\nservers = ["dns.example:53"]\n'), 'dns.servers[0]', 'must be an IP address');
    expectError(minimal('', '[fetch]\nallowAddresses = ["10.0.0.0/8", "crl.example"]\n'), 'fetch.allowAddresses[1]', 'is not an IP address or CIDR range');
    expectError(minimal('', '[fetch]\nallowAddresses = ["10.0.0.0/40"]\n'), 'fetch.allowAddresses[0]', 'prefix length must be 0 to 32');
    expectError(minimal('', '[fetch]\nmaxFetchesPerMessage = 0\n'), 'fetch.maxFetchesPerMessage', 'must be from 1 to 1000 (got 0)');
    expectError(minimal('', '[fetch]\nallowLoopback = true\n'), 'fetch.allowLoopback', 'unknown key');
  });

  it('[fetch] takes CIDR ranges and single addresses to allow, and the per-message budget', () => {
    const c = loadConfig(
      writeConfig(minimal('', '[fetch]\nallowAddresses = ["127.0.0.1/32", "10.20.0.0/16", "fd00::/8", "::1"]\nmaxFetchesPerMessage = 4\nmaxBytesPerMessage = 65536\ntimeoutPerMessageMs = 5000\n')),
      NO_ENV,
    );
    expect(c.fetch).toEqual({ allowAddresses: ['127.0.0.1/32', '10.20.0.0/16', 'fd00::/8', '::1'], maxFetchesPerMessage: 4, maxBytesPerMessage: 65536, timeoutPerMessageMs: 5000 });
  });

  it('reports every error at once, one per line, in the message and in details.errors', () => {
    const { err, errors } = errorsOf(
      minimal(
        '[[domains.credentials]]\nkey = "gone.pem"\ncert = "gone.crt"\n[domains.policy]\nminRsaBits = 1',
        'dataDri = "x"\n[dns]\nretries = -1\n[queue]\nworkers = 0\n',
      ),
    );
    expect(errors.map((e) => e.path).sort()).toEqual(
      ['dataDri', 'dns.retries', 'queue.workers', 'domains[0].credentials[0].key', 'domains[0].credentials[0].cert', 'domains[0].policy.minRsaBits'].sort(),
    );
    const lines = err.message.split('\n');
    expect(lines[0]).toMatch(/^the configuration \/.*hisp\.toml is invalid \(6 errors\):$/);
    expect(lines).toHaveLength(7);
    expect(err.details).toMatchObject({ file: expect.stringMatching(/hisp\.toml$/) as unknown });
  });
});

describe('configuration objects and printing', () => {
  it('buildConfig and parseConfig work without a file (relative paths against baseDir)', () => {
    const raw = parseToml(minimal().replace(pem('sender-domain').key, 'sender-domain.key.pem').replace(pem('sender-domain').chain!, 'sender-domain.chain.pem'));
    const { config } = buildConfig(raw, { baseDir: join(pem('root-ca').cert, '..'), env: NO_ENV });
    expect(config.domains[0]!.credentials[0]!.key).toBe(pem('sender-domain').key);
    expect(parseConfig(minimal(), { env: NO_ENV }).config.domains[0]!.name).toBe('sender.test');
    expect(hispError(() => buildConfig('not a table', { env: NO_ENV })).message).toContain('expected a table');
  });

  it('prints the effective configuration as TOML or JSON, secrets redacted, and the print loads again to the same configuration', () => {
    const text = minimal(
      `[[domains.addresses]]\naddress = "a@sender.test"\ndelivery = { type = "webhook", url = "https://h.example/x", hmacSecret = "super-secret-hmac-key" }`,
      `[[submission.users]]\nusername = "ehr"\npasswordHash = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="\nmayUseAddresses = ["@sender.test"]\n`,
    );
    const c = load(text);
    const toml = formatConfig(c, 'toml');
    const json = formatConfig(c, 'json');
    for (const out of [toml, json]) {
      expect(out).not.toContain('super-secret-hmac-key');
      expect(out).not.toContain('AAAAAAAAAAAAAAAAAAAAAA==');
      expect(out).toContain(REDACTED);
    }
    expect(parseToml(toml)).toEqual(JSON.parse(json));
    // Without secrets, what print shows is a configuration that loads to the very same values.
    const plain = load(minimal());
    const again = parseConfig(formatConfig(plain, 'toml'), { env: NO_ENV }).config;
    expect(again).toEqual(plain);
  });
});

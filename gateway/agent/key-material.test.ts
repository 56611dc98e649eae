import { execFileSync, spawnSync } from 'node:child_process';
import {
  constants,
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  privateDecrypt,
  publicEncrypt,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Certificate } from '../core/certificate.js';
import { HispError } from '../core/errors.js';
import {
  isPkcs12,
  keyMatchesCertificate,
  loadCredential,
  loadCredentials,
  pairCredential,
  readCertificates,
  readPkcs12,
  readPrivateKey,
  type PrivateCredential,
} from './key-material.js';
import { hispError } from '../../test/helpers/hisp-error.js';
import { missingExecutable, requirePeer, skipOrFail } from '../../test/helpers/require-peer.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const vectors = path.resolve(repoRoot, '../shared/vectors');
// openssl and the interop vectors: with CI=true a missing one fails the run (test/helpers/require-peer.ts).
const vectorsGate = requirePeer(existsSync(vectors) ? undefined : `the interop vectors are not found at ${vectors}`);
const opensslGate = requirePeer(missingExecutable('openssl'));

const vec = (rel: string): string => path.join(vectors, rel);

function openssl(args: string[], input?: string): Buffer {
  return execFileSync('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'], ...(input === undefined ? {} : { input }) });
}


function sha256(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

/** The certificates `openssl pkcs12 -legacy -nokeys` finds, as SHA-256 of their DER. */
function opensslCertHashes(file: string, password: string): string[] {
  const pem = openssl(['pkcs12', '-legacy', '-nokeys', '-in', file, '-passin', `pass:${password}`]).toString('latin1');
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map((m) =>
    sha256(Buffer.from(m[1] ?? '', 'base64')),
  );
}

/** The private keys `openssl pkcs12 -legacy -nocerts -nodes` finds. */
function opensslKeys(file: string, password: string): KeyObject[] {
  const pem = openssl(['pkcs12', '-legacy', '-nocerts', '-nodes', '-in', file, '-passin', `pass:${password}`]).toString(
    'latin1',
  );
  return [...pem.matchAll(/-----BEGIN PRIVATE KEY-----[\s\S]*?-----END PRIVATE KEY-----/g)].map((m) =>
    createPrivateKey(m[0]),
  );
}

/** Signs with the key and verifies with the certificate; for RSA also an OAEP encrypt/decrypt round trip. */
function expectWorkingCredential(cred: PrivateCredential): void {
  const data = Buffer.from('hisp key-material round trip');
  const signature = sign('sha256', data, cred.key);
  expect(verify('sha256', data, cred.certificate.publicKey, signature)).toBe(true);
  expect(verify('sha256', Buffer.from('other data'), cred.certificate.publicKey, signature)).toBe(false);
  if (cred.key.asymmetricKeyType === 'rsa') {
    const oaep = { padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' };
    const ciphertext = publicEncrypt({ key: cred.certificate.publicKey, ...oaep }, data);
    expect(privateDecrypt({ key: cred.key, ...oaep }, ciphertext)).toEqual(data);
  }
}

function expectNoSecrets(err: HispError, secrets: readonly string[]): void {
  const text = `${err.message} ${JSON.stringify(err.details ?? {})} ${JSON.stringify(err.toJSON())}`;
  for (const secret of secrets) if (secret.length > 0) expect(text).not.toContain(secret);
  expect(err.cause).toBeUndefined();
}

// -----------------------------------------------------------------------------------------------
// Material generated here with node:crypto and OpenSSL

interface Generated {
  dir: string;
  rsa: { key: KeyObject; certPem: Buffer; certDer: Buffer };
  ec: { key: KeyObject; certPem: Buffer; certDer: Buffer };
  root: { certPem: Buffer };
  inter: { certPem: Buffer };
  leaf: { key: KeyObject; certPem: Buffer };
  file: (name: string) => string;
}

let gen: Generated | undefined;

function g(): Generated {
  if (gen === undefined) throw new Error('generated material missing');
  return gen;
}

function writeKey(dir: string, name: string, key: KeyObject): string {
  const file = path.join(dir, name);
  writeFileSync(file, key.export({ type: 'pkcs8', format: 'pem' }));
  return file;
}

function selfSigned(dir: string, name: string, key: KeyObject, subject: string): Buffer {
  const keyFile = writeKey(dir, `${name}.key`, key);
  const certFile = path.join(dir, `${name}.pem`);
  openssl(['req', '-x509', '-new', '-key', keyFile, '-subj', subject, '-days', '30', '-sha256', '-out', certFile]);
  return readFileSync(certFile);
}

function issued(dir: string, name: string, key: KeyObject, subject: string, ca: string, ext: string): Buffer {
  const keyFile = writeKey(dir, `${name}.key`, key);
  const csr = path.join(dir, `${name}.csr`);
  const extFile = path.join(dir, `${name}.ext`);
  const certFile = path.join(dir, `${name}.pem`);
  writeFileSync(extFile, `${ext}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n`);
  openssl(['req', '-new', '-key', keyFile, '-subj', subject, '-out', csr]);
  openssl([
    'x509', '-req', '-in', csr, '-CA', path.join(dir, `${ca}.pem`), '-CAkey', path.join(dir, `${ca}.key`),
    '-set_serial', String(Date.now()), '-days', '30', '-sha256', '-extfile', extFile, '-out', certFile,
  ]);
  return readFileSync(certFile);
}

/** `openssl pkcs12 -export` (modern OpenSSL 3 defaults unless extra args such as -legacy are given). */
function exportPfx(name: string, keyName: string, certName: string, password: string, extra: string[] = [], certfile?: string): string {
  const d = g().dir;
  const out = path.join(d, name);
  openssl([
    'pkcs12', '-export', '-inkey', path.join(d, `${keyName}.key`), '-in', path.join(d, `${certName}.pem`),
    ...(certfile === undefined ? [] : ['-certfile', path.join(d, certfile)]),
    '-passout', `pass:${password}`, '-out', out, ...extra,
  ]);
  return out;
}

/** What `openssl pkcs12 -info` says about the algorithms of a PFX (it writes that to stderr). */
function pfxInfo(file: string, password: string): string {
  const r = spawnSync('openssl', ['pkcs12', '-legacy', '-info', '-nokeys', '-noout', '-in', file, '-passin', `pass:${password}`], {
    encoding: 'latin1',
  });
  return `${r.stdout}${r.stderr}`;
}

describe.skipIf(opensslGate.skip)(opensslGate.title('generated keys and PKCS#12'), () => {
  beforeAll(() => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hisp-key-material-'));
    const rsaKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const ecKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const rootKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const interKey = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
    const leafKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    gen = {
      dir,
      rsa: { key: rsaKey, certPem: Buffer.alloc(0), certDer: Buffer.alloc(0) },
      ec: { key: ecKey, certPem: Buffer.alloc(0), certDer: Buffer.alloc(0) },
      root: { certPem: Buffer.alloc(0) },
      inter: { certPem: Buffer.alloc(0) },
      leaf: { key: leafKey, certPem: Buffer.alloc(0) },
      file: (name) => path.join(dir, name),
    };
    const rsaPem = selfSigned(dir, 'rsa', rsaKey, '/CN=rsa.example/emailAddress=rsa@example.org');
    const ecPem = selfSigned(dir, 'ec', ecKey, '/CN=ec.example');
    gen.rsa.certPem = rsaPem;
    gen.rsa.certDer = openssl(['x509', '-in', path.join(dir, 'rsa.pem'), '-outform', 'DER']);
    gen.ec.certPem = ecPem;
    gen.ec.certDer = openssl(['x509', '-in', path.join(dir, 'ec.pem'), '-outform', 'DER']);
    gen.root.certPem = selfSigned(dir, 'root', rootKey, '/CN=Test Root CA');
    gen.inter.certPem = issued(dir, 'inter', interKey, '/CN=Test Intermediate CA', 'root', 'basicConstraints=critical,CA:TRUE');
    gen.leaf.certPem = issued(dir, 'leaf', leafKey, '/CN=leaf.example', 'inter', 'basicConstraints=CA:FALSE');
    // Chain file in the "wrong" order (root first) plus an unrelated certificate.
    writeFileSync(path.join(dir, 'chain-unordered.pem'), Buffer.concat([gen.root.certPem, gen.ec.certPem, gen.inter.certPem]));
  });

  afterAll(() => {
    if (gen !== undefined) rmSync(gen.dir, { recursive: true, force: true });
  });

  describe('readPrivateKey', () => {
    const forms = (key: KeyObject): [string, Buffer][] => {
      const rsa = key.asymmetricKeyType === 'rsa';
      const classic = rsa ? ('pkcs1' as const) : ('sec1' as const);
      return [
        [`${classic} PEM`, key.export({ type: classic, format: 'pem' }) as Buffer],
        [`${classic} DER`, key.export({ type: classic, format: 'der' })],
        ['PKCS#8 PEM', Buffer.from(key.export({ type: 'pkcs8', format: 'pem' }))],
        ['PKCS#8 DER', key.export({ type: 'pkcs8', format: 'der' })],
      ].map(([name, data]) => [name as string, Buffer.from(data as Buffer | string)]);
    };

    for (const kind of ['rsa', 'ec'] as const) {
      it(`reads ${kind.toUpperCase()} keys as PKCS#1/SEC1 and PKCS#8, in PEM and DER, to the same key`, () => {
        const { key } = g()[kind];
        const expected = key.export({ type: 'pkcs8', format: 'der' });
        for (const [name, data] of forms(key)) {
          const read = readPrivateKey(data, { source: name });
          expect(read.type, name).toBe('private');
          expect(read.asymmetricKeyType, name).toBe(kind);
          expect(read.export({ type: 'pkcs8', format: 'der' }).equals(expected), name).toBe(true);
        }
      });

      it(`reads an encrypted PKCS#8 ${kind.toUpperCase()} key (PEM and DER) with its password`, () => {
        const { key } = g()[kind];
        const password = 'pässwörd 1';
        const pem = Buffer.from(key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: password }));
        const der = key.export({ type: 'pkcs8', format: 'der', cipher: 'aes-256-cbc', passphrase: password });
        expect(pem.toString()).toContain('ENCRYPTED PRIVATE KEY');
        for (const data of [pem, der]) {
          const read = readPrivateKey(data, { password });
          expect(read.export({ type: 'pkcs8', format: 'der' })).toEqual(key.export({ type: 'pkcs8', format: 'der' }));
        }
      });
    }

    it('reads an OpenSSL-style encrypted PKCS#1 PEM (Proc-Type/DEK-Info headers) with its password', () => {
      const { key } = g().rsa;
      const pem = Buffer.from(key.export({ type: 'pkcs1', format: 'pem', cipher: 'aes-128-cbc', passphrase: 'pw' }));
      expect(pem.toString()).toContain('Proc-Type: 4,ENCRYPTED');
      expect(readPrivateKey(pem, { password: 'pw' }).export({ type: 'pkcs1', format: 'der' })).toEqual(
        key.export({ type: 'pkcs1', format: 'der' }),
      );
      const err = hispError(() => readPrivateKey(pem, { source: 'legacy.pem' }));
      expect(err.code).toBe('HISP_KEY_UNREADABLE');
      expect(err.message).toMatch(/legacy\.pem.*needs a password/);
    });

    it('reads an encrypted PKCS#8 that uses the legacy PKCS#12 RC2-40 PBE (which Node alone cannot open)', (ctx) => {
      const { key } = g().rsa;
      const keyFile = g().file('rsa.key');
      let der: Buffer;
      try {
        der = openssl([
          'pkcs8', '-topk8', '-in', keyFile, '-v1', 'PBE-SHA1-RC2-40', '-passout', 'pass:rc2pw', '-outform', 'DER',
          '-provider', 'legacy', '-provider', 'default',
        ]);
      } catch {
        return skipOrFail(ctx, 'this OpenSSL has no legacy provider (Debian: openssl with libssl3, ossl-modules/legacy.so)');
      }
      expect(() => createPrivateKey({ key: der, format: 'der', type: 'pkcs8', passphrase: 'rc2pw' })).toThrow();
      const read = readPrivateKey(der, { password: 'rc2pw' });
      expect(read.export({ type: 'pkcs1', format: 'der' })).toEqual(key.export({ type: 'pkcs1', format: 'der' }));
      const err = hispError(() => readPrivateKey(der, { password: 'not-rc2pw', source: 'rc2.der' }));
      expect(err.message).toBe('rc2.der: wrong password or corrupt private key');
    });

    it('finds the key block in a PEM that also holds certificates and other text', () => {
      const { key, certPem } = g().ec;
      const pem = Buffer.concat([
        Buffer.from('Bag Attributes\n    friendlyName: ec\n'),
        certPem,
        Buffer.from('-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n'),
        Buffer.from(key.export({ type: 'sec1', format: 'pem' })),
      ]);
      expect(keyMatchesCertificate(readPrivateKey(pem), readCertificates(pem)[0] as Certificate)).toBe(true);
    });

    it('refuses an encrypted key without a password and with a wrong one, naming the source but no secret', () => {
      const { key } = g().rsa;
      const password = 'correct horse battery staple';
      const pem = Buffer.from(key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: password }));
      const missing = hispError(() => readPrivateKey(pem, { source: 'enc.pem' }));
      expect(missing.code).toBe('HISP_KEY_UNREADABLE');
      expect(missing.message).toBe('enc.pem: the private key is encrypted and needs a password');
      const wrong = hispError(() => readPrivateKey(pem, { password: 'Tr0ub4dor&3', source: 'enc.pem' }));
      expect(wrong.code).toBe('HISP_KEY_UNREADABLE');
      expect(wrong.message).toBe('enc.pem: wrong password or corrupt private key');
      expectNoSecrets(wrong, ['Tr0ub4dor&3', password, pem.toString('latin1').slice(40, 100)]);
    });

    it('refuses garbage, certificates and PKCS#12 given as a key', () => {
      for (const [data, pattern] of [
        [Buffer.from('hello world'), /not a PEM or DER private key/],
        [Buffer.alloc(0), /empty/],
        [g().rsa.certPem, /no PRIVATE KEY/],
        [g().rsa.certDer, /not a PEM or DER private key/],
        [readFileSync(exportPfx('as-key.p12', 'rsa', 'rsa', 'x')), /PKCS#12/],
      ] as const) {
        const err = hispError(() => readPrivateKey(data, { source: 'the-key-file' }));
        expect(err.code).toBe('HISP_KEY_UNREADABLE');
        expect(err.message).toMatch(/^the-key-file: /);
        expect(err.message).toMatch(pattern);
      }
    });
  });

  describe('readCertificates', () => {
    it('reads PEM with several CERTIFICATE blocks and surrounding text, keeping the exact DER', () => {
      const pem = Buffer.concat([Buffer.from('subject=/CN=x\n'), g().leaf.certPem, Buffer.from('junk\n'), g().inter.certPem]);
      const certs = readCertificates(pem, 'bundle.pem');
      expect(certs.map((c) => c.subject)).toEqual(['CN=leaf.example', 'CN=Test Intermediate CA']);
      expect(readCertificates(g().rsa.certPem)[0]?.der).toEqual(g().rsa.certDer);
    });

    it('reads one DER certificate and several concatenated DER certificates', () => {
      expect(readCertificates(g().rsa.certDer)).toHaveLength(1);
      const two = readCertificates(Buffer.concat([g().rsa.certDer, g().ec.certDer]));
      expect(two.map((c) => c.der)).toEqual([g().rsa.certDer, g().ec.certDer]);
    });

    it('refuses garbage, keys, bad base64 and trailing junk with HISP_KEY_UNREADABLE naming the source', () => {
      const cases: [Buffer, RegExp][] = [
        [Buffer.from('garbage'), /not a PEM or DER certificate/],
        [Buffer.alloc(0), /empty/],
        [Buffer.from(g().rsa.key.export({ type: 'pkcs8', format: 'pem' })), /no CERTIFICATE block/],
        [Buffer.from('-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n'), /bad base64/],
        [Buffer.concat([g().rsa.certDer, Buffer.from([0x01, 0x02])]), /not a PEM or DER certificate/],
        [g().rsa.key.export({ type: 'pkcs1', format: 'der' }), /not a valid X\.509 certificate/],
      ];
      for (const [data, pattern] of cases) {
        const err = hispError(() => readCertificates(data, 'certs.pem'));
        expect(err.code).toBe('HISP_KEY_UNREADABLE');
        expect(err.message).toMatch(/^certs\.pem: /);
        expect(err.message).toMatch(pattern);
      }
    });
  });

  describe('isPkcs12', () => {
    it('trusts a .p12/.pfx extension and otherwise sniffs the PFX structure', () => {
      const pfx = readFileSync(exportPfx('sniff.bin', 'rsa', 'rsa', 'pw'));
      const legacy = readFileSync(exportPfx('sniff-legacy.bin', 'rsa', 'rsa', 'pw', ['-legacy']));
      expect(isPkcs12(pfx)).toBe(true);
      expect(isPkcs12(legacy, 'credential.bin')).toBe(true);
      expect(isPkcs12(Buffer.alloc(0), 'KEY.PFX')).toBe(true);
      expect(isPkcs12(Buffer.alloc(0), 'dir/key.p12')).toBe(true);
      const key = g().rsa.key;
      expect(isPkcs12(key.export({ type: 'pkcs8', format: 'der' }))).toBe(false);
      expect(isPkcs12(key.export({ type: 'pkcs1', format: 'der' }), 'key.der')).toBe(false);
      expect(isPkcs12(g().ec.key.export({ type: 'sec1', format: 'der' }))).toBe(false);
      expect(isPkcs12(Buffer.from(key.export({ type: 'pkcs8', format: 'pem' })), 'key.pem')).toBe(false);
      expect(isPkcs12(g().rsa.certDer)).toBe(false);
      expect(isPkcs12(Buffer.from([0x30]))).toBe(false);
    });
  });

  describe('readPkcs12 with files made by OpenSSL 3', () => {
    const variants: { name: string; extra: string[]; info: RegExp }[] = [
      { name: 'modern defaults (PBES2 AES-256-CBC, hmacWithSHA256, SHA-256 MAC)', extra: [], info: /PBES2, PBKDF2, AES-256-CBC.*hmacWithSHA256/ },
      { name: '-legacy (RC2-40 certificates, 3DES key, SHA-1 MAC)', extra: ['-legacy'], info: /pbeWithSHA1And40BitRC2-CBC/ },
      { name: '3DES for both bags', extra: ['-certpbe', 'PBE-SHA1-3DES', '-keypbe', 'PBE-SHA1-3DES', '-macalg', 'sha1'], info: /pbeWithSHA1And3-KeyTripleDES-CBC/ },
      { name: 'AES-128 with SHA-512 MAC', extra: ['-certpbe', 'AES-128-CBC', '-keypbe', 'AES-128-CBC', '-macalg', 'sha512'], info: /AES-128-CBC/ },
      { name: 'unencrypted bags (-keypbe NONE -certpbe NONE)', extra: ['-keypbe', 'NONE', '-certpbe', 'NONE'], info: /Key bag|Certificate bag/ },
      { name: 'no MAC (-nomac)', extra: ['-nomac'], info: /MAC is absent/ },
    ];

    for (const kind of ['rsa', 'ec'] as const) {
      for (const v of variants) {
        it(`opens a ${kind.toUpperCase()} PFX: ${v.name}`, () => {
          const password = 'Sécret-42';
          const file = exportPfx(`${kind}-${v.extra.join('')}.p12`, kind, kind, password, v.extra);
          expect(pfxInfo(file, password)).toMatch(v.info);
          const creds = readPkcs12(readFileSync(file), password, file);
          expect(creds).toHaveLength(1);
          const cred = creds[0] as PrivateCredential;
          expect(cred.key.asymmetricKeyType).toBe(kind);
          expect(cred.key.export({ type: 'pkcs8', format: 'der' })).toEqual(g()[kind].key.export({ type: 'pkcs8', format: 'der' }));
          expect(cred.certificate.der).toEqual(g()[kind].certDer);
          expect(cred.chain).toEqual([]);
          expectWorkingCredential(cred);
        });
      }
    }

    it('opens modern and legacy PFX with the empty password', () => {
      for (const extra of [[], ['-legacy']]) {
        const file = exportPfx(`empty${extra.join('')}.p12`, 'ec', 'ec', '', extra);
        const [cred] = readPkcs12(readFileSync(file), '', file);
        expect(cred?.certificate.der).toEqual(g().ec.certDer);
        const err = hispError(() => readPkcs12(readFileSync(file), 'x', file));
        expect(err.message).toBe(`${file}: wrong password or corrupt PKCS#12`);
      }
    });

    it('builds the chain leaf-issuer-first from the other certificates, ignoring unrelated ones', () => {
      for (const extra of [[], ['-legacy']]) {
        const file = exportPfx(`chain${extra.join('')}.p12`, 'leaf', 'leaf', 'pw', extra, 'chain-unordered.pem');
        const [cred, more] = readPkcs12(readFileSync(file), 'pw', file);
        expect(more).toBeUndefined();
        expect(cred?.certificate.subject).toBe('CN=leaf.example');
        expect(cred?.chain.map((c) => c.subject)).toEqual(['CN=Test Intermediate CA', 'CN=Test Root CA']);
        expectWorkingCredential(cred as PrivateCredential);
      }
    });

    it('rejects a wrong password with a typed error that carries neither the password nor key bytes', () => {
      for (const extra of [[], ['-legacy']]) {
        const file = exportPfx(`wrong${extra.join('')}.p12`, 'rsa', 'rsa', 'right-password', extra);
        const err = hispError(() => readPkcs12(readFileSync(file), 'WRONG-password', 'alice.p12'));
        expect(err.code).toBe('HISP_KEY_UNREADABLE');
        expect(err.message).toBe('alice.p12: wrong password or corrupt PKCS#12');
        const keyB64 = g().rsa.key.export({ type: 'pkcs8', format: 'der' }).toString('base64');
        expectNoSecrets(err, ['WRONG-password', 'right-password', keyB64.slice(100, 140)]);
      }
    });

    it('rejects truncated, bit-flipped and garbage PFX input with HISP_KEY_UNREADABLE', () => {
      const good = readFileSync(exportPfx('damaged.p12', 'rsa', 'rsa', 'pw'));
      const flipped = Buffer.from(good);
      const middle = Math.floor(good.length / 2);
      flipped[middle] = (good[middle] ?? 0) ^ 0x01;
      for (const bad of [good.subarray(0, good.length - 30), good.subarray(0, 40), flipped, Buffer.from('not a pfx'), Buffer.alloc(0)]) {
        const err = hispError(() => readPkcs12(bad, 'pw', 'damaged.p12'));
        expect(err.code).toBe('HISP_KEY_UNREADABLE');
        expect(err.message).toMatch(/^damaged\.p12: /);
      }
    });
  });

  describe('pairing and loading', () => {
    it('pairs a key with its certificate and chain, and refuses a foreign key with HISP_KEY_MISMATCH', () => {
      const certs = readCertificates(Buffer.concat([g().leaf.certPem, g().inter.certPem, g().root.certPem]));
      const cred = pairCredential(g().leaf.key, certs);
      expect(cred.chain.map((c) => c.subject)).toEqual(['CN=Test Intermediate CA', 'CN=Test Root CA']);
      expectWorkingCredential(cred);
      expect(keyMatchesCertificate(g().leaf.key, certs[0] as Certificate)).toBe(true);
      expect(keyMatchesCertificate(g().rsa.key, certs[0] as Certificate)).toBe(false);
      expect(keyMatchesCertificate(g().ec.key, certs[0] as Certificate)).toBe(false);
      expect(hispError(() => pairCredential(g().rsa.key, certs)).code).toBe('HISP_KEY_MISMATCH');
      expect(hispError(() => pairCredential(g().ec.key, readCertificates(g().rsa.certPem))).code).toBe('HISP_KEY_MISMATCH');
      expect(hispError(() => pairCredential(g().rsa.key, [])).code).toBe('HISP_USAGE');
    });

    it('loads a key file with a certificate file (PEM, DER, encrypted) and a PFX without one', () => {
      const d = g().dir;
      writeFileSync(path.join(d, 'ec.sec1.der'), g().ec.key.export({ type: 'sec1', format: 'der' }));
      writeFileSync(path.join(d, 'ec.der'), g().ec.certDer);
      expectWorkingCredential(loadCredential(path.join(d, 'ec.sec1.der'), path.join(d, 'ec.der')));
      writeFileSync(
        path.join(d, 'leaf.enc.pem'),
        g().leaf.key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-128-cbc', passphrase: 'k' }),
      );
      writeFileSync(path.join(d, 'leaf-chain.pem'), Buffer.concat([g().leaf.certPem, g().inter.certPem]));
      const cred = loadCredential(path.join(d, 'leaf.enc.pem'), path.join(d, 'leaf-chain.pem'), 'k');
      expect(cred.chain.map((c) => c.subject)).toEqual(['CN=Test Intermediate CA']);
      const pfx = exportPfx('load.pfx', 'leaf', 'leaf', 'pw', [], 'chain-unordered.pem');
      const fromPfx = loadCredential(pfx, undefined, 'pw');
      expect(fromPfx.certificate.subject).toBe('CN=leaf.example');
      expect(fromPfx.chain).toHaveLength(2);
      expect(loadCredentials(pfx, path.join(d, 'leaf.pem'), 'pw')).toHaveLength(1);
    });

    it('reports mismatches, missing certificates and unreadable files with their own codes', () => {
      const d = g().dir;
      expect(hispError(() => loadCredential(path.join(d, 'rsa.key'), path.join(d, 'ec.pem'))).code).toBe('HISP_KEY_MISMATCH');
      expect(hispError(() => loadCredential(path.join(d, 'rsa.key'), undefined)).code).toBe('HISP_USAGE');
      const io = hispError(() => loadCredential(path.join(d, 'does-not-exist.key'), path.join(d, 'rsa.pem')));
      expect(io.code).toBe('HISP_IO');
      expect(io.message).toContain('does-not-exist.key');
      expect(hispError(() => loadCredential(path.join(d, 'rsa.key'), path.join(d, 'nope.pem'))).code).toBe('HISP_IO');
      const pfx = exportPfx('pick.p12', 'rsa', 'rsa', 'pw');
      expect(hispError(() => loadCredential(pfx, path.join(d, 'ec.pem'), 'pw')).code).toBe('HISP_KEY_MISMATCH');
    });
  });

  describe('robustness (property tests)', () => {
    const kinds = ['cert', 'key', 'pfx'] as const;
    const readers: Record<(typeof kinds)[number], (b: Buffer) => unknown> = {
      cert: (b) => readCertificates(b, 'fuzz'),
      key: (b) => readPrivateKey(b, { source: 'fuzz', password: 'pw' }),
      pfx: (b) => readPkcs12(b, 'pw', 'fuzz'),
    };

    /** Either returns or throws a HispError, within a time bound. */
    function onlyHispErrors(read: (b: Buffer) => unknown, data: Buffer): void {
      const started = performance.now();
      try {
        read(data);
      } catch (err) {
        if (!(err instanceof HispError)) throw new Error(`non-HispError thrown: ${String(err)}`, { cause: err });
        expect(err.code === 'HISP_KEY_UNREADABLE' || err.code === 'HISP_KEY_MISMATCH').toBe(true);
      }
      expect(performance.now() - started).toBeLessThan(5_000);
    }

    it('random bytes only ever produce HispError from every reader', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 3000 }), fc.constantFrom(...kinds), (bytes, kind) => {
          onlyHispErrors(readers[kind], Buffer.from(bytes));
        }),
        { numRuns: 1000 },
      );
    });

    it('random mutations and truncations of valid PFX, PEM and DER inputs only ever produce HispError', () => {
      const seeds: Buffer[] = [
        readFileSync(exportPfx('fuzz-modern.p12', 'leaf', 'leaf', 'pw', [], 'chain-unordered.pem')),
        readFileSync(exportPfx('fuzz-legacy.p12', 'ec', 'ec', 'pw', ['-legacy'])),
        // Without a MAC, mutations get past the integrity check into the bags.
        readFileSync(exportPfx('fuzz-plain.p12', 'rsa', 'rsa', 'pw', ['-keypbe', 'NONE', '-certpbe', 'NONE', '-nomac'])),
        readFileSync(exportPfx('fuzz-nomac.p12', 'ec', 'ec', 'pw', ['-nomac', '-certpbe', 'AES-128-CBC', '-iter', '1'])),
        Buffer.concat([g().leaf.certPem, g().inter.certPem]),
        g().rsa.certDer,
        Buffer.from(g().ec.key.export({ type: 'sec1', format: 'pem' })),
        Buffer.from(g().rsa.key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-128-cbc', passphrase: 'pw' })),
        g().rsa.key.export({ type: 'pkcs1', format: 'der' }),
      ];
      if (!vectorsGate.skip) seeds.push(readFileSync(vec('dotnet-ri/keys/redmond.pfx')));
      const mutation = fc.record({
        seed: fc.nat({ max: seeds.length - 1 }),
        edits: fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 8 }),
        cut: fc.option(fc.nat(), { nil: undefined }),
        kind: fc.constantFrom(...kinds),
      });
      fc.assert(
        fc.property(mutation, ({ seed, edits, cut, kind }) => {
          const original = seeds[seed] as Buffer;
          let data = Buffer.from(original);
          for (const { at, value } of edits) data[at % data.length] = value;
          if (cut !== undefined) data = data.subarray(0, cut % (data.length + 1));
          onlyHispErrors(readers[kind], data);
        }),
        { numRuns: 1500 },
      );
    });
  });
});

// -----------------------------------------------------------------------------------------------
// Real vectors of the Java RI, the .NET RI, ETT and DCDT

const PFX_VECTORS: { file: string; password: string; count: number }[] = [
  { file: 'java-ri/keys/altNameOnly.p12', password: '', count: 1 },
  { file: 'java-ri/keys/digSigOnly.p12', password: '', count: 1 },
  { file: 'java-ri/keys/dualUse.p12', password: '', count: 1 },
  { file: 'java-ri/keys/keyEncOnly.p12', password: '', count: 1 },
  { file: 'java-ri/keys/test.email.com.p12', password: '', count: 1 },
  { file: 'java-ri/keys/user1.p12', password: '', count: 1 },
  { file: 'java-ri/keys/gm2552encrypted.p12', password: '1kingpuff', count: 1 },
  { file: 'dotnet-ri/keys/dev.singleuse.lab.encipherment.pfx', password: 'passw0rd!', count: 1 },
  { file: 'dotnet-ri/keys/dev.singleuse.lab.sign.pfx', password: 'passw0rd!', count: 1 },
  { file: 'dotnet-ri/keys/fha-crossover.DirectInt.lab_dualUse.pfx', password: 'passw0rd!', count: 1 },
  { file: 'dotnet-ri/keys/kryptiq.DirectCi.lab.pfx', password: 'Passw0rd!', count: 1 },
  { file: 'dotnet-ri/keys/nhind_umamalga1_vm1.pfx', password: 'passw0rd!', count: 2 },
  { file: 'dotnet-ri/keys/redmond.pfx', password: 'passw0rd!', count: 1 },
  { file: 'ett/certs/test-signing/testCert.p12', password: '', count: 1 },
  { file: 'ett/certs/xdr-tls/goodKeystore_goodKeystore.p12', password: 'changeit', count: 1 },
];

describe.skipIf(vectorsGate.skip)(
  vectorsGate.title('real PKCS#12 and key vectors'),
  () => {
    for (const { file, password, count } of PFX_VECTORS) {
      it(`opens ${file} (${count} credential${count > 1 ? 's' : ''}) with working keys and untouched certificate DER`, () => {
        const creds = readPkcs12(readFileSync(vec(file)), password, file);
        expect(creds).toHaveLength(count);
        for (const cred of creds) {
          expect(keyMatchesCertificate(cred.key, cred.certificate)).toBe(true);
          expectWorkingCredential(cred);
        }
        if (!opensslGate.skip) {
          const hashes = opensslCertHashes(vec(file), password);
          for (const cred of creds) expect(hashes).toContain(cred.certificate.sha256);
          const keys = opensslKeys(vec(file), password).map((k) => k.export({ type: 'pkcs1', format: 'der' }).toString('hex'));
          for (const cred of creds) expect(keys).toContain(cred.key.export({ type: 'pkcs1', format: 'der' }).toString('hex'));
        }
      });
    }

    it('opens the Java RI files only with the empty password (encoded as no bytes), not with another one', () => {
      const bytes = readFileSync(vec('java-ri/keys/user1.p12'));
      const [cred] = readPkcs12(bytes, '', 'user1.p12');
      expect(cred?.certificate.rfc822Names.concat(cred.certificate.subjectEmailAddresses)).toContain('user1@cerner.com');
      const err = hispError(() => readPkcs12(bytes, 'passw0rd!', 'user1.p12'));
      expect(err.message).toBe('user1.p12: wrong password or corrupt PKCS#12');
      expectNoSecrets(err, ['passw0rd!']);
    });

    it('needs the exact password: kryptiq opens with Passw0rd! but not passw0rd!; gm2552encrypted not with the empty one', () => {
      expect(hispError(() => readPkcs12(readFileSync(vec('dotnet-ri/keys/kryptiq.DirectCi.lab.pfx')), 'passw0rd!')).code).toBe(
        'HISP_KEY_UNREADABLE',
      );
      expect(hispError(() => readPkcs12(readFileSync(vec('java-ri/keys/gm2552encrypted.p12')), '', 'gm.p12')).message).toBe(
        'gm.p12: wrong password or corrupt PKCS#12',
      );
    });

    it('gives both keys of the multi-key nhind PFX and lets a certificate file pick one', () => {
      const pfx = vec('dotnet-ri/keys/nhind_umamalga1_vm1.pfx');
      const creds = loadCredentials(pfx, undefined, 'passw0rd!');
      const addresses = creds.map((c) => c.certificate.subjectEmailAddresses[0]);
      expect(addresses).toEqual(['biff@nhind.hsgincubator.com', 'nancy@nhind.hsgincubator.com']);
      expect(loadCredential(pfx, undefined, 'passw0rd!').certificate.subjectEmailAddresses).toEqual(['biff@nhind.hsgincubator.com']);
      const dir = mkdtempSync(path.join(tmpdir(), 'hisp-key-material-nancy-'));
      try {
        const nancy = creds[1] as PrivateCredential;
        const certFile = path.join(dir, 'nancy.pem');
        writeFileSync(certFile, nancy.certificate.toPem());
        const picked = loadCredential(pfx, certFile, 'passw0rd!');
        expect(picked.certificate.der).toEqual(nancy.certificate.der);
        expect(picked.key.export({ type: 'pkcs8', format: 'der' })).toEqual(nancy.key.export({ type: 'pkcs8', format: 'der' }));
        expect(keyMatchesCertificate(creds[0]?.key as KeyObject, nancy.certificate)).toBe(false);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('reads the ETT test signing PFX as a self-signed RSA-1024 credential with an empty chain', () => {
      const cred = loadCredential(vec('ett/certs/test-signing/testCert.p12'), undefined, '');
      expect(cred.key.asymmetricKeyDetails?.modulusLength).toBe(1024);
      expect(cred.certificate.isSelfIssued).toBe(true);
      expect(cred.chain).toEqual([]);
      expect(cred.certificate.der).toEqual(readCertificates(readFileSync(vec('ett/certs/test-signing/testCert.der')))[0]?.der);
      expect(loadCredential(vec('ett/certs/test-signing/testCert.p12'), vec('ett/certs/test-signing/testCert.pem'), '').certificate.sha256).toBe(
        cred.certificate.sha256,
      );
    });

    for (const [keyFile, certFile] of [
      ['java-ri/keys/ryanKey.der', 'java-ri/keys/ryan.der'],
      ['java-ri/keys/gm2552Key.der', 'java-ri/keys/gm2552.der'],
      ['java-ri/keys/externUser1key.der', 'java-ri/keys/externUser1.der'],
      ['dcdt/upstream/legacy-dcdt-2.x/testDecryptMail_key.der', 'dcdt/upstream/legacy-dcdt-2.x/testDecryptMail_cert.der'],
    ] as const) {
      it(`loads the DER key ${path.basename(keyFile)} with ${path.basename(certFile)}`, () => {
        const cred = loadCredential(vec(keyFile), vec(certFile));
        expect(cred.certificate.der).toEqual(readFileSync(vec(certFile)));
        expectWorkingCredential(cred);
      });
    }

    it('refuses the ryan key with the gm2552 certificate (HISP_KEY_MISMATCH)', () => {
      const err = hispError(() => loadCredential(vec('java-ri/keys/ryanKey.der'), vec('java-ri/keys/gm2552.der')));
      expect(err.code).toBe('HISP_KEY_MISMATCH');
    });

    it('reads PEM (.NET) and DER anchors as certificates', () => {
      expect(readCertificates(readFileSync(vec('dotnet-ri/certs/redmond.cer')))).toHaveLength(1);
      expect(readCertificates(readFileSync(vec('dotnet-ri/certs/anchors/kryptiq.lab.cer')))[0]?.isSelfIssued).toBe(true);
    });

    it('sniffs every vector PFX as PKCS#12 without its file name', () => {
      for (const { file } of PFX_VECTORS) expect(isPkcs12(readFileSync(vec(file))), file).toBe(true);
      expect(isPkcs12(readFileSync(vec('java-ri/keys/ryanKey.der')))).toBe(false);
    });
  },
);

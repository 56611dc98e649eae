// Interop with `openssl cms` on this machine, both directions, every algorithm hisp claims:
//  - hisp → OpenSSL: what hisp wraps (library and CLI), `openssl cms -decrypt` opens for every
//    recipient and `openssl cms -verify` verifies to the test root, the verified content being
//    `Content-Type: message/rfc822` + the original message; `openssl cms -cmsout -print` shows the
//    structures we claim (key transport parameters, AuthEnvelopedData for GCM, signed attributes
//    including CMSAlgorithmProtection, micalg).
//  - OpenSSL → hisp: messages signed and encrypted by `openssl cms` the way another HISP would
//    (wrapped or not, detached or opaque, one or two signers, -keyid, OAEP, AES-GCM, AES-192-CBC)
//    unwrap through processIncoming and through `hisp unwrap --json`.
import type { UnwrapReport } from '../../gateway/cli/unwrap-command.js';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CipherName, DigestName, KeyTransportName, SendCipher, SigningDigest } from '../../gateway/agent/algorithms.js';
import type { RecipientIdentifierForm } from '../../gateway/agent/create-envelope.js';
import { loadCredential, readCertificates, type PrivateCredential } from '../../gateway/agent/key-material.js';
import { wrapMessage, wrapMessageAsync } from '../../gateway/agent/wrap-message.js';
import type { Certificate } from '../../gateway/core/certificate.js';
import { isHispError } from '../../gateway/core/errors.js';
import { processIncoming, type IncomingResult } from '../../gateway/flows/process-incoming.js';
import { ensureBuilt, hispCli, makeTempDir, opensslOk, openssl, opensslVersion, type TempDir } from '../helpers/openssl.js';
import { credentialPaths, PKI_DIR, type LeafName } from '../helpers/pki.js';

// ------------------------------------------------------------------------------------------------
// Fixtures

interface ManifestEntry {
  subject: string;
  sha256: string;
}
const MANIFEST = JSON.parse(readFileSync(path.join(PKI_DIR, 'manifest.json'), 'utf8')) as Record<string, ManifestEntry>;
function manifest(name: string): ManifestEntry {
  const entry = MANIFEST[name];
  if (!entry) throw new Error(`no manifest entry ${name}`);
  return entry;
}

const ROOT = credentialPaths('root-ca').cert;
const INTERMEDIATE = credentialPaths('intermediate-ca').cert;

/** An RFC 5322 message with CRLF line ends, Date and Message-ID (so that wrapping adds nothing). */
const MESSAGE = Buffer.from(
  [
    'From: Sender <sender@sender.test>',
    'To: Patient <patient@recipient.test>',
    'Subject: OpenSSL interop',
    'Date: Tue, 02 Jan 2024 10:00:00 +0000',
    'Message-ID: <openssl-interop@sender.test>',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    'Hello from the OpenSSL interop test.',
    '.',
    'A line with = and -- and a tab\tinside.',
    '',
  ].join('\r\n'),
);
/** 8-bit (UTF-8) header and body, trailing white space, a line starting "From ", empty lines at the end. */
const MESSAGE_8BIT_CRLF = Buffer.from(
  [
    'From: sender@sender.test',
    'To: patient@recipient.test',
    'Subject: h\u00e9llo',
    'Date: Tue, 02 Jan 2024 10:00:00 +0000',
    'Message-ID: <openssl-interop-8bit@sender.test>',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    'Gr\u00fc\u00dfe  ',
    'trailing tab\t',
    'From the start of a line',
    '',
    '',
  ].join('\r\n'),
  'utf8',
);
/** What RFC 5751 §3.1 wrapping signs: the message as a message/rfc822 entity. */
const WRAPPED = Buffer.concat([Buffer.from('Content-Type: message/rfc822\r\n\r\n'), MESSAGE]);
const SIGNING_TIME = new Date('2030-06-01T12:00:00Z');
const SIGNING_TIME_PRINTED = 'UTCTIME:Jun  1 12:00:00 2030 GMT';

const credentialCache = new Map<LeafName, PrivateCredential>();
/** Key with leaf + chain (chain.pem holds the leaf then intermediate-ca). */
function credential(name: LeafName): PrivateCredential {
  let c = credentialCache.get(name);
  if (!c) {
    const p = credentialPaths(name);
    c = loadCredential(p.key, p.chain);
    credentialCache.set(name, c);
  }
  return c;
}
function certificate(name: LeafName): Certificate {
  const [cert] = readCertificates(readFileSync(credentialPaths(name).cert), name);
  if (!cert) throw new Error(`no certificate ${name}`);
  return cert;
}
function anchors(): Certificate[] {
  return readCertificates(readFileSync(ROOT), 'root-ca');
}

// ------------------------------------------------------------------------------------------------
// Algorithm names: hisp ↔ openssl print/CLI

const CIPHER_PRINT: Record<CipherName, { name: string; oid: string; openssl: string }> = {
  'aes128-cbc': { name: 'aes-128-cbc', oid: '2.16.840.1.101.3.4.1.2', openssl: '-aes-128-cbc' },
  'aes192-cbc': { name: 'aes-192-cbc', oid: '2.16.840.1.101.3.4.1.22', openssl: '-aes-192-cbc' },
  'aes256-cbc': { name: 'aes-256-cbc', oid: '2.16.840.1.101.3.4.1.42', openssl: '-aes-256-cbc' },
  'aes128-gcm': { name: 'aes-128-gcm', oid: '2.16.840.1.101.3.4.1.6', openssl: '-aes-128-gcm' },
  'aes192-gcm': { name: 'aes-192-gcm', oid: '2.16.840.1.101.3.4.1.26', openssl: '-aes-192-gcm' },
  'aes256-gcm': { name: 'aes-256-gcm', oid: '2.16.840.1.101.3.4.1.46', openssl: '-aes-256-gcm' },
};

/** `-keyopt`s that follow a `-recip` for each key transport (OpenSSL's default is PKCS#1 v1.5). */
const KEYOPTS: Record<KeyTransportName, string[]> = {
  'rsa-pkcs1': [],
  'rsa-oaep-sha1': ['-keyopt', 'rsa_padding_mode:oaep'],
  'rsa-oaep-sha256': ['-keyopt', 'rsa_padding_mode:oaep', '-keyopt', 'rsa_oaep_md:sha256'],
};

const SIGNATURE_PRINT: Record<'rsa' | 'ec', Record<SigningDigest, { name: string; oid: string }>> = {
  rsa: {
    sha256: { name: 'sha256WithRSAEncryption', oid: '1.2.840.113549.1.1.11' },
    sha384: { name: 'sha384WithRSAEncryption', oid: '1.2.840.113549.1.1.12' },
    sha512: { name: 'sha512WithRSAEncryption', oid: '1.2.840.113549.1.1.13' },
  },
  ec: {
    sha256: { name: 'ecdsa-with-SHA256', oid: '1.2.840.10045.4.3.2' },
    sha384: { name: 'ecdsa-with-SHA384', oid: '1.2.840.10045.4.3.3' },
    sha512: { name: 'ecdsa-with-SHA512', oid: '1.2.840.10045.4.3.4' },
  },
};
const DIGEST_OID: Record<SigningDigest, string> = {
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
};

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function headerSection(entity: Buffer): string {
  const end = entity.indexOf('\r\n\r\n');
  expect(end, 'entity has a CRLF CRLF header end').toBeGreaterThan(0);
  return entity.subarray(0, end).toString('latin1');
}

/** Header section of what the openssl CLI writes: its own MIME headers end lines with bare LF. */
function opensslHeaderSection(entity: Buffer): string {
  const text = entity.toString('latin1');
  const m = /\r?\n\r?\n/.exec(text);
  expect(m, 'entity has a header end').not.toBeNull();
  return text.slice(0, m!.index);
}

// ------------------------------------------------------------------------------------------------
// hisp → OpenSSL checks

interface WrapCase {
  signers: LeafName[];
  digest: SigningDigest;
  cipher: SendCipher;
  keyTransport: KeyTransportName;
  rid: RecipientIdentifierForm;
  recipients: LeafName[];
}

/** A WrapCase row: signers, digest, cipher, key transport, recipient identifier, recipients. */
function wc(
  signers: LeafName[],
  digest: SigningDigest,
  cipher: SendCipher,
  keyTransport: KeyTransportName,
  rid: 'isn' | 'ski',
  recipients: LeafName[],
): WrapCase {
  const form: RecipientIdentifierForm = rid === 'ski' ? 'subjectKeyIdentifier' : 'issuerAndSerialNumber';
  return { signers, digest, cipher, keyTransport, rid: form, recipients };
}

function describeWrap(c: WrapCase): string {
  return `${c.signers.join('+')} ${c.digest}, ${c.cipher}, ${c.keyTransport}, ${c.rid === 'subjectKeyIdentifier' ? 'ski' : 'issuer-serial'} → ${c.recipients.join('+')}`;
}

/** Checks the envelope as `openssl cms -cmsout -print` shows it. */
function checkEnvelopePrint(print: string, c: WrapCase): void {
  const gcm = c.cipher.endsWith('gcm');
  const ski = c.rid === 'subjectKeyIdentifier';
  if (gcm) {
    expect(print).toMatch(/contentType: id-smime-ct-authEnvelopedData \(1\.2\.840\.113549\.1\.9\.16\.1\.23\)/);
    expect(print).toMatch(/d\.authEnvelopedData: *\n\s+version: 0\n/);
  } else {
    expect(print).toMatch(/contentType: pkcs7-envelopedData \(1\.2\.840\.113549\.1\.7\.3\)/);
    expect(print).toMatch(new RegExp(`d\\.envelopedData: *\\n\\s+version: ${ski ? 2 : 0}\\n`));
  }
  const ktris = print.split('d.ktri:').slice(1).map((b) => b.slice(0, b.indexOf('encryptedKey:')));
  expect(ktris).toHaveLength(c.recipients.length);
  const serials = new Set<string>();
  for (const ktri of ktris) {
    expect(ktri).toMatch(new RegExp(`^\\s*\\n\\s+version: ${ski ? 2 : 0}\\n`));
    expect(ktri).toContain(ski ? 'd.subjectKeyIdentifier:' : 'd.issuerAndSerialNumber:');
    expect(ktri).not.toContain(ski ? 'd.issuerAndSerialNumber:' : 'd.subjectKeyIdentifier:');
    const serial = /serialNumber: (\d+)/.exec(ktri)?.[1];
    if (serial) serials.add(serial);
    switch (c.keyTransport) {
      case 'rsa-pkcs1':
        expect(ktri).toMatch(/algorithm: rsaEncryption \(1\.2\.840\.113549\.1\.1\.1\)\s*\n\s*parameter: NULL/);
        break;
      case 'rsa-oaep-sha1':
        // RFC 4055 §4.1: all defaults → an empty RSAES-OAEP-params SEQUENCE.
        expect(ktri).toMatch(/algorithm: rsaesOaep \(1\.2\.840\.113549\.1\.1\.7\)\s*\n\s*parameter: SEQUENCE:/);
        expect(ktri).toMatch(/0:d=0\s+hl=2 l=\s*0 cons: SEQUENCE/);
        break;
      case 'rsa-oaep-sha256':
        expect(ktri).toMatch(/algorithm: rsaesOaep \(1\.2\.840\.113549\.1\.1\.7\)\s*\n\s*parameter: SEQUENCE:/);
        // hashFunc [0] sha256, maskGenFunc [1] mgf1(sha256), no pSourceFunc.
        expect(ktri).toMatch(/cont \[ 0 \]\s*\n.*SEQUENCE\s*\n.*OBJECT\s+:sha256\s*\n.*cont \[ 1 \]\s*\n.*SEQUENCE\s*\n.*OBJECT\s+:mgf1\s*\n.*SEQUENCE\s*\n.*OBJECT\s+:sha256/);
        expect(ktri).not.toContain('cont [ 2 ]');
        break;
    }
  }
  if (!ski) {
    const expected = c.recipients.map((r) => BigInt(`0x${certificate(r).serialHex}`).toString());
    expect([...serials].sort()).toEqual([...expected].sort());
  }
  const cipher = CIPHER_PRINT[c.cipher];
  expect(print).toMatch(
    new RegExp(`${gcm ? 'authEncryptedContentInfo' : 'encryptedContentInfo'}: *\\n\\s+contentType: pkcs7-data[^\\n]*\\n\\s+contentEncryptionAlgorithm: *\\n\\s+algorithm: ${cipher.name} \\(${escapeRe(cipher.oid)}\\)`),
  );
  if (gcm) {
    // GCMParameters: a 12-octet nonce and aes-ICVlen 16 (RFC 5084 §3.2); a MAC; no authAttrs.
    expect(print).toMatch(/OCTET STRING\s+\[HEX DUMP\]:[0-9A-F]{24}\s*\n.*INTEGER\s+:10\s*\n/);
    expect(print).toMatch(/authAttrs:\s*\n\s*<ABSENT>/);
    expect(print).toMatch(/\n\s+mac: *\n\s+0000 - /);
  } else {
    expect(print).toMatch(/parameter: OCTET STRING:\s*\n\s+0000 - /);
  }
}

/** Checks the detached SignedData as `openssl cms -cmsout -print` shows it. */
function checkSignedPrint(print: string, c: WrapCase, signingTime: string | undefined): void {
  expect(print).toMatch(/contentType: pkcs7-signedData \(1\.2\.840\.113549\.1\.7\.2\)/);
  expect(print).toMatch(/d\.signedData: *\n\s+version: 1\n/);
  expect(print).toMatch(/eContentType: pkcs7-data \(1\.2\.840\.113549\.1\.7\.1\)\s*\n\s+eContent: <ABSENT>/);
  // certificates: every signer with its chain, each once.
  const chainCerts = new Set(
    c.signers.flatMap((s) => readCertificates(readFileSync(credentialPaths(s).chain!), s).map((x) => x.sha256)),
  );
  const [before, signerInfos = ''] = print.split(/\n\s+signerInfos:\s*\n/);
  expect((before?.match(/d\.certificate:/g) ?? []).length).toBe(chainCerts.size);

  const blocks = signerInfos.split('d.issuerAndSerialNumber:').slice(1);
  expect(blocks).toHaveLength(c.signers.length);
  const seen = new Set<LeafName>();
  for (const block of blocks) {
    const serial = /serialNumber: (\d+)/.exec(block)?.[1];
    const signer = c.signers.find((s) => BigInt(`0x${certificate(s).serialHex}`).toString() === serial);
    expect(signer, `signer with serial ${serial ?? '?'} is one of ${c.signers.join(', ')}`).toBeDefined();
    seen.add(signer!);
    const kind = certificate(signer!).publicKey.asymmetricKeyType === 'ec' ? 'ec' : 'rsa';
    const sig = SIGNATURE_PRINT[kind][c.digest];
    expect(block).toMatch(new RegExp(`digestAlgorithm: *\\n\\s+algorithm: ${c.digest} \\(${escapeRe(DIGEST_OID[c.digest])}\\)`));
    expect(block).toMatch(/object: contentType \(1\.2\.840\.113549\.1\.9\.3\)\s*\n\s+set:\s*\n\s+OBJECT:pkcs7-data/);
    expect(block).toMatch(/object: signingTime \(1\.2\.840\.113549\.1\.9\.5\)\s*\n\s+set:\s*\n\s+UTCTIME:/);
    if (signingTime) expect(block).toContain(signingTime);
    expect(block).toMatch(/object: messageDigest \(1\.2\.840\.113549\.1\.9\.4\)\s*\n\s+set:\s*\n\s+OCTET STRING:/);
    // RFC 6211 CMSAlgorithmProtection: digestAlgorithm and [1] signatureAlgorithm, matching the SignerInfo.
    expect(block).toMatch(
      new RegExp(
        `\\(1\\.2\\.840\\.113549\\.1\\.9\\.52\\)\\s*\\n\\s+set:\\s*\\n\\s+SEQUENCE:\\s*\\n.*SEQUENCE\\s*\\n.*SEQUENCE\\s*\\n.*OBJECT\\s+:${c.digest}\\s*\\n.*cont \\[ 1 \\]\\s*\\n.*OBJECT\\s+:${sig.name}\\s*\\n`,
      ),
    );
    expect(block).toMatch(new RegExp(`signatureAlgorithm: *\\n\\s+algorithm: ${sig.name} \\(${escapeRe(sig.oid)}\\)`));
  }
  expect(seen.size).toBe(c.signers.length);
}

const MICALG: Record<SigningDigest, string> = { sha256: 'sha-256', sha384: 'sha-384', sha512: 'sha-512' };

/**
 * Opens a hisp-wrapped message with OpenSSL: structure of the envelope, decryption by every
 * recipient (identical plaintext), micalg, `openssl cms -verify` to the root (the intermediate must
 * come from the signature itself), and the signed structure.
 */
function checkWithOpenssl(
  tmp: TempDir,
  wrappedFile: string,
  c: WrapCase,
  signingTime: string | undefined,
  expectedContent: Buffer = WRAPPED,
): void {
  const wrapped = readFileSync(wrappedFile);
  const outer = headerSection(wrapped);
  const gcm = c.cipher.endsWith('gcm');
  expect(outer).toMatch(
    new RegExp(`^Content-Type: application/pkcs7-mime; smime-type=${gcm ? 'authEnveloped-data' : 'enveloped-data'}; name=smime\\.p7m$`, 'm'),
  );
  checkEnvelopePrint(opensslOk(['cms', '-cmsout', '-print', '-noout', '-in', wrappedFile]).toString('latin1'), c);

  const decryptedFiles = c.recipients.map((r, i) => {
    const p = credentialPaths(r);
    const out = path.join(tmp.dir, `${path.basename(wrappedFile)}.dec${i}`);
    opensslOk(['cms', '-decrypt', '-recip', p.cert, '-inkey', p.key, '-in', wrappedFile, '-out', out]);
    return out;
  });
  const decrypted = readFileSync(decryptedFiles[0]!);
  for (const f of decryptedFiles.slice(1)) expect(readFileSync(f).equals(decrypted), `${f} equals the first plaintext`).toBe(true);

  const inner = headerSection(decrypted);
  expect(inner).toMatch(/^Content-Type: multipart\/signed;/);
  expect(inner).toContain('protocol="application/pkcs7-signature"');
  expect(inner).toMatch(new RegExp(`micalg=${MICALG[c.digest]}(;|\\s|$)`));

  const verifiedFile = `${decryptedFiles[0]!}.verified`;
  const v = openssl(['cms', '-verify', '-CAfile', ROOT, '-purpose', 'any', '-in', decryptedFiles[0]!, '-out', verifiedFile]);
  expect(v.stderr).toContain('Verification successful');
  expect(v.status).toBe(0);
  const verified = readFileSync(verifiedFile);
  expect(verified.toString('latin1')).toBe(expectedContent.toString('latin1'));

  checkSignedPrint(opensslOk(['cms', '-cmsout', '-print', '-noout', '-in', decryptedFiles[0]!]).toString('latin1'), c, signingTime);
}

// ------------------------------------------------------------------------------------------------
// OpenSSL → hisp helpers

type Form = 'wrapped-detached' | 'unwrapped-detached' | 'wrapped-opaque' | 'unwrapped-opaque';

interface OpensslSign {
  signers: LeafName[];
  md: SigningDigest;
  form: Form;
  /** Signer identified by subjectKeyIdentifier (`-keyid`). */
  keyid?: boolean;
  stream?: boolean;
}

interface OpensslEncrypt {
  cipher: CipherName;
  keyTransport: KeyTransportName;
  keyid: boolean;
  recipients: LeafName[];
  stream?: boolean;
  /** `-crlfeol`: OpenSSL's own MIME headers end in CRLF too, as an MTA would deliver them. */
  crlfeol?: boolean;
}

let fileCounter = 0;

/** `openssl cms -sign` as another HISP would: -certfile intermediate, S/MIME output. */
function opensslSign(tmp: TempDir, content: Buffer, s: OpensslSign): string {
  const n = ++fileCounter;
  const input = tmp.file(`content${n}.eml`);
  const out = tmp.file(`signed${n}.eml`);
  writeFileSync(input, content);
  opensslOk([
    'cms',
    '-sign',
    '-md',
    s.md,
    ...s.signers.flatMap((name) => ['-signer', credentialPaths(name).cert, '-inkey', credentialPaths(name).key]),
    '-certfile',
    INTERMEDIATE,
    ...(s.form.endsWith('opaque') ? ['-nodetach'] : []),
    ...(s.keyid ? ['-keyid'] : []),
    ...(s.stream ? ['-stream'] : []),
    '-in',
    input,
    '-out',
    out,
  ]);
  return out;
}

/** `openssl cms -encrypt` of a signed entity to the recipients, with outer From/To/Subject. */
function opensslEncrypt(tmp: TempDir, signedFile: string, e: OpensslEncrypt): string {
  const out = tmp.file(`enveloped${++fileCounter}.eml`);
  opensslOk([
    'cms',
    '-encrypt',
    CIPHER_PRINT[e.cipher].openssl,
    ...(e.keyid ? ['-keyid'] : []),
    ...(e.stream ? ['-stream'] : []),
    ...(e.crlfeol ? ['-crlfeol'] : []),
    ...e.recipients.flatMap((r) => ['-recip', credentialPaths(r).cert, ...KEYOPTS[e.keyTransport]]),
    '-from',
    'sender@sender.test',
    '-to',
    'patient@recipient.test',
    '-subject',
    'OpenSSL interop',
    '-in',
    signedFile,
    '-out',
    out,
  ]);
  // OpenSSL itself must have written what we think it wrote.
  const outer = opensslHeaderSection(readFileSync(out));
  expect(outer).toMatch(
    new RegExp(`smime-type=${e.cipher.endsWith('gcm') ? 'authEnveloped-data' : 'enveloped-data'}`),
  );
  return out;
}

function signedContentFor(form: Form): Buffer {
  return form.startsWith('wrapped') ? WRAPPED : MESSAGE;
}

function unwrapWithHisp(file: string, recipient: LeafName): Promise<IncomingResult> {
  return processIncoming(readFileSync(file), { credentials: [credential(recipient)], anchors: anchors() });
}

interface Expected {
  signers: LeafName[];
  digest: DigestName;
  cipher: CipherName;
  keyTransport: KeyTransportName;
  recipient: LeafName;
  wrapped: boolean;
  binding?: 'address' | 'domain';
}

function checkIncoming(result: IncomingResult, e: Expected, message: Buffer): void {
  const u = result.unwrapped;
  expect(u.cipher).toBe(e.cipher);
  expect(u.keyTransport).toBe(e.keyTransport);
  expect(u.digest).toBe(e.digest);
  expect(u.wrapped).toBe(e.wrapped);
  expect(u.recipient.certificate.sha256).toBe(manifest(e.recipient).sha256);
  expect(u.message.toString('latin1')).toBe(message.toString('latin1'));
  expect(u.warnings.filter((w) => /micalg|multipart/.test(w))).toEqual([]);
  expect(u.signers.map((s) => ({ verified: s.verified, digest: s.digest }))).toEqual(
    e.signers.map(() => ({ verified: true, digest: e.digest })),
  );
  expect(result.rejected).toEqual([]);
  expect(result.sender.toString()).toBe('sender@sender.test');
  const accepted = result.accepted.map((a) => ({ subject: a.certificate.subject, sha256: a.certificate.sha256, binding: a.binding }));
  const expected = e.signers.map((s) => ({ ...pick(manifest(s)), binding: e.binding ?? 'address' }));
  expect(sortBySha(accepted)).toEqual(sortBySha(expected));
  for (const a of result.accepted) expect(a.anchor.sha256).toBe(manifest('root-ca').sha256);
}

const pick = (m: ManifestEntry) => ({ subject: m.subject, sha256: m.sha256 });
const sortBySha = <T extends { sha256: string }>(xs: T[]): T[] => [...xs].sort((a, b) => a.sha256.localeCompare(b.sha256));


// ------------------------------------------------------------------------------------------------

const SEND_CIPHERS: SendCipher[] = ['aes128-cbc', 'aes256-cbc', 'aes128-gcm', 'aes256-gcm'];
const RECEIVE_CIPHERS: CipherName[] = ['aes128-cbc', 'aes192-cbc', 'aes256-cbc', 'aes128-gcm', 'aes192-gcm', 'aes256-gcm'];
const KEY_TRANSPORTS: KeyTransportName[] = ['rsa-oaep-sha1', 'rsa-oaep-sha256', 'rsa-pkcs1'];
const RIDS = ['isn', 'ski'] as const;

let tmp: TempDir;

beforeAll(() => {
  const version = opensslVersion();
  // The issue is about `openssl cms` on this machine: no OpenSSL 3 is a failure, not a skip.
  expect(version, 'openssl must be installed').toMatch(/^OpenSSL 3\./);
  tmp = makeTempDir('hisp-openssl-interop-');
});

afterAll(() => {
  tmp?.cleanup();
});

/** The wrap options of a case, at the fixed signing time. */
function wrapOptionsOf(c: WrapCase): Parameters<typeof wrapMessage>[1] {
  return {
    signers: c.signers.map(credential),
    recipients: c.recipients.map(certificate),
    digest: c.digest,
    cipher: c.cipher,
    keyTransport: c.keyTransport,
    recipientIdentifier: c.rid,
    signingTime: SIGNING_TIME,
  };
}

describe('hisp → OpenSSL (library wrapMessage)', () => {
  // Every cipher × key transport × recipient identifier, each to two recipients that must both open it.
  const envelopeCases: WrapCase[] = SEND_CIPHERS.flatMap((cipher) =>
    KEY_TRANSPORTS.flatMap((kt) => RIDS.map((rid) => wc(['sender-rsa'], 'sha256', cipher, kt, rid, ['recipient-rsa', 'recipient2-rsa']))),
  );
  // Every signature algorithm, one and two signers.
  const signatureCases: WrapCase[] = [
    wc(['sender-rsa'], 'sha256', 'aes256-cbc', 'rsa-oaep-sha1', 'isn', ['recipient-rsa']),
    wc(['sender-rsa'], 'sha384', 'aes256-gcm', 'rsa-oaep-sha256', 'isn', ['recipient-rsa']),
    wc(['sender-rsa'], 'sha512', 'aes128-cbc', 'rsa-pkcs1', 'ski', ['recipient-rsa']),
    wc(['sender-ec256'], 'sha256', 'aes128-gcm', 'rsa-oaep-sha1', 'ski', ['recipient-rsa']),
    wc(['sender-ec384'], 'sha384', 'aes256-gcm', 'rsa-oaep-sha256', 'isn', ['recipient-rsa']),
    wc(['sender-rsa', 'sender-ec256'], 'sha256', 'aes256-cbc', 'rsa-oaep-sha1', 'isn', ['recipient-rsa', 'recipient2-rsa']),
    wc(['sender-ec384', 'sender-rsa'], 'sha384', 'aes128-gcm', 'rsa-oaep-sha256', 'ski', ['recipient-rsa']),
    // RSA-3072 recipient, domain-bound signer.
    wc(['sender-domain'], 'sha256', 'aes256-gcm', 'rsa-oaep-sha256', 'ski', ['recipient-domain']),
  ];

  it.each([...envelopeCases, ...signatureCases].map((c) => [describeWrap(c), c] as const))('%s', (_name, c) => {
    const result = wrapMessage(MESSAGE, wrapOptionsOf(c));
    expect(result.notes).toEqual([]);
    // What the relay relies on to skip its transparency scan (vouchTransparent): after the header
    // section, only base64 lines of at most 76 characters, each ending in CRLF.
    expect(result.message.subarray(result.headerLength - 4, result.headerLength).toString('latin1')).toBe('\r\n\r\n');
    expect(/^(?:[A-Za-z0-9+/=]{1,76}\r\n)+$/.test(result.message.subarray(result.headerLength).toString('latin1'))).toBe(true);
    const file = tmp.file(`hisp-lib-${++fileCounter}.eml`);
    writeFileSync(file, result.message);
    checkWithOpenssl(tmp, file, c, SIGNING_TIME_PRINTED);
  });

  // The relay wraps with wrapMessageAsync (signatures made in libuv's thread pool): OpenSSL opens it alike.
  it.each([signatureCases[0]!, signatureCases[5]!, signatureCases[3]!].map((c) => [describeWrap(c), c] as const))('wrapMessageAsync: %s', async (_name, c) => {
    const result = await wrapMessageAsync(MESSAGE, wrapOptionsOf(c));
    const file = tmp.file(`hisp-lib-async-${++fileCounter}.eml`);
    writeFileSync(file, result.message);
    checkWithOpenssl(tmp, file, c, SIGNING_TIME_PRINTED);
  });

  it('OpenSSL refuses what hisp wraps when the key is not a recipient, and a tampered signed part', () => {
    const file = tmp.file(`hisp-lib-neg-${++fileCounter}.eml`);
    writeFileSync(file, wrapMessage(MESSAGE, { signers: [credential('sender-rsa')], recipients: [certificate('recipient-rsa')] }).message);
    const other = credentialPaths('recipient2-rsa');
    const refused = openssl(['cms', '-decrypt', '-recip', other.cert, '-inkey', other.key, '-in', file, '-out', `${file}.x`]);
    expect(refused.status).not.toBe(0);

    const mine = credentialPaths('recipient-rsa');
    const dec = `${file}.dec`;
    opensslOk(['cms', '-decrypt', '-recip', mine.cert, '-inkey', mine.key, '-in', file, '-out', dec]);
    const tampered = readFileSync(dec).toString('latin1').replace('Hello from', 'Hallo from');
    writeFileSync(`${dec}.t`, tampered, 'latin1');
    const v = openssl(['cms', '-verify', '-CAfile', ROOT, '-purpose', 'any', '-in', `${dec}.t`, '-out', `${dec}.v`]);
    expect(v.status).not.toBe(0);
    expect(v.stderr).toMatch(/digest failure|verification failure/i);
  });
});

describe('8-bit content, LF input', () => {
  const c: WrapCase = wc(['sender-ec256'], 'sha256', 'aes128-gcm', 'rsa-oaep-sha256', 'ski', ['recipient-rsa']);
  const wrapped8 = Buffer.concat([Buffer.from('Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'), MESSAGE_8BIT_CRLF]);

  it('hisp → OpenSSL: LF input is signed as CRLF, the 8-bit message/rfc822 is labelled 8bit and verifies', () => {
    const lf = Buffer.from(MESSAGE_8BIT_CRLF.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
    const result = wrapMessage(lf, wrapOptionsOf(c));
    const file = tmp.file(`hisp-8bit-${++fileCounter}.eml`);
    writeFileSync(file, result.message);
    checkWithOpenssl(tmp, file, c, SIGNING_TIME_PRINTED, wrapped8);
  });

  it('OpenSSL → hisp: an 8-bit wrapped message comes back byte for byte', async () => {
    const signed = opensslSign(tmp, wrapped8, { signers: ['sender-rsa'], md: 'sha256', form: 'wrapped-detached' });
    const file = opensslEncrypt(tmp, signed, { cipher: 'aes256-cbc', keyTransport: 'rsa-oaep-sha1', keyid: false, recipients: ['recipient-rsa'] });
    checkIncoming(
      await unwrapWithHisp(file, 'recipient-rsa'),
      { signers: ['sender-rsa'], digest: 'sha256', cipher: 'aes256-cbc', keyTransport: 'rsa-oaep-sha1', recipient: 'recipient-rsa', wrapped: true },
      MESSAGE_8BIT_CRLF,
    );
  });
});

describe('hisp → OpenSSL (CLI hisp wrap)', () => {
  beforeAll(() => {
    ensureBuilt();
  }, 120_000);

  interface CliWrapCase extends WrapCase {
    /** Leave --digest/--cipher/--key-transport/--recipient-id off (the defaults must be these). */
    defaults?: boolean;
  }
  const cases: CliWrapCase[] = [
    { ...wc(['sender-rsa'], 'sha256', 'aes256-cbc', 'rsa-oaep-sha1', 'isn', ['recipient-rsa']), defaults: true },
    wc(['sender-ec384'], 'sha384', 'aes256-gcm', 'rsa-oaep-sha256', 'ski', ['recipient-rsa', 'recipient2-rsa']),
    wc(['sender-rsa'], 'sha512', 'aes128-cbc', 'rsa-pkcs1', 'isn', ['recipient-domain']),
    wc(['sender-rsa', 'sender-ec256'], 'sha256', 'aes128-gcm', 'rsa-oaep-sha1', 'ski', ['recipient-rsa', 'recipient2-rsa']),
  ];

  it.each(cases.map((c) => [`${c.defaults ? 'defaults: ' : ''}${describeWrap(c)}`, c] as const))('%s', (_name, c) => {
    const input = tmp.file(`cli-in-${++fileCounter}.eml`);
    const out = tmp.file(`cli-out-${fileCounter}.eml`);
    writeFileSync(input, MESSAGE);
    const args = [
      'wrap',
      ...c.signers.flatMap((s) => ['--sign-key', credentialPaths(s).key, '--sign-cert', credentialPaths(s).chain!]),
      ...c.recipients.flatMap((r) => ['--encrypt-cert', credentialPaths(r).cert]),
      ...(c.defaults
        ? []
        : [
            '--digest',
            c.digest,
            '--cipher',
            c.cipher,
            '--key-transport',
            c.keyTransport,
            '--recipient-id',
            c.rid === 'subjectKeyIdentifier' ? 'ski' : 'issuer-serial',
          ]),
      '--in',
      input,
      '--out',
      out,
    ];
    const r = hispCli(args);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.length).toBe(0);
    checkWithOpenssl(tmp, out, c, undefined);
  });
});

describe('OpenSSL → hisp (library processIncoming)', () => {
  // One OpenSSL signature (wrapped, detached, RSA SHA-384 with -certfile intermediate) for the
  // whole envelope matrix; every envelope goes to two recipients and each must open it.
  let signedOnce: string;
  beforeAll(() => {
    signedOnce = opensslSign(tmp, WRAPPED, { signers: ['sender-rsa'], md: 'sha384', form: 'wrapped-detached' });
  });

  const envelopeCases: OpensslEncrypt[] = RECEIVE_CIPHERS.flatMap((cipher) =>
    KEY_TRANSPORTS.flatMap((keyTransport) =>
      [false, true].map((keyid) => ({ cipher, keyTransport, keyid, recipients: ['recipient-rsa', 'recipient2-rsa'] as LeafName[] })),
    ),
  );

  it.each(envelopeCases.map((e) => [`${e.cipher}, ${e.keyTransport}${e.keyid ? ', -keyid' : ''}`, e] as const))(
    'envelope %s, two recipients',
    async (_name, e) => {
      const file = opensslEncrypt(tmp, signedOnce, e);
      for (const recipient of e.recipients) {
        checkIncoming(
          await unwrapWithHisp(file, recipient),
          { signers: ['sender-rsa'], digest: 'sha384', cipher: e.cipher, keyTransport: e.keyTransport, recipient, wrapped: true },
          MESSAGE,
        );
      }
    },
  );

  const signerSets: { signers: LeafName[]; md: SigningDigest; keyid?: boolean; binding?: 'domain' }[] = [
    { signers: ['sender-rsa'], md: 'sha256' },
    { signers: ['sender-rsa'], md: 'sha384' },
    { signers: ['sender-rsa'], md: 'sha512' },
    { signers: ['sender-ec256'], md: 'sha256' },
    { signers: ['sender-ec384'], md: 'sha384' },
    { signers: ['sender-rsa', 'sender-ec384'], md: 'sha384' },
    { signers: ['sender-ec256'], md: 'sha256', keyid: true },
    { signers: ['sender-domain'], md: 'sha256', binding: 'domain' },
  ];
  const forms: Form[] = ['wrapped-detached', 'unwrapped-detached', 'wrapped-opaque', 'unwrapped-opaque'];
  const signatureCases = signerSets.flatMap((s, i) =>
    forms.map((form, j) => ({
      ...s,
      form,
      // Rotate the envelope so that each signature form meets several ciphers and key transports.
      cipher: RECEIVE_CIPHERS[(i + j) % RECEIVE_CIPHERS.length]!,
      keyTransport: KEY_TRANSPORTS[(i + 2 * j) % KEY_TRANSPORTS.length]!,
    })),
  );

  it.each(
    signatureCases.map(
      (c) => [`${c.signers.join('+')} ${c.md}${c.keyid ? ' -keyid' : ''}, ${c.form}, in ${c.cipher}/${c.keyTransport}`, c] as const,
    ),
  )('signature %s', async (_name, c) => {
    const signed = opensslSign(tmp, signedContentFor(c.form), c);
    const head = opensslHeaderSection(readFileSync(signed));
    if (c.form.endsWith('opaque')) expect(head).toMatch(/application\/(x-)?pkcs7-mime; smime-type=signed-data/);
    else expect(head).toMatch(/multipart\/signed/);
    const file = opensslEncrypt(tmp, signed, { cipher: c.cipher, keyTransport: c.keyTransport, keyid: false, recipients: ['recipient-rsa'] });
    checkIncoming(
      await unwrapWithHisp(file, 'recipient-rsa'),
      {
        signers: c.signers,
        digest: c.md,
        cipher: c.cipher,
        keyTransport: c.keyTransport,
        recipient: 'recipient-rsa',
        wrapped: c.form.startsWith('wrapped'),
        ...(c.binding ? { binding: c.binding } : {}),
      },
      // Unwrapped: the signed entity is the whole message, so its own header fields win over the
      // outer (unsigned) ones and the result is the message again.
      MESSAGE,
    );
  });

  it.each([
    ['detached', 'aes256-gcm', 'wrapped-detached'],
    ['opaque', 'aes128-cbc', 'wrapped-opaque'],
  ] as const)('BER streaming (-stream) signature and envelope: %s, %s', async (_name, cipher, form) => {
    const signed = opensslSign(tmp, WRAPPED, { signers: ['sender-ec384'], md: 'sha384', form, stream: true });
    const file = opensslEncrypt(tmp, signed, { cipher, keyTransport: 'rsa-oaep-sha256', keyid: true, recipients: ['recipient-rsa'], stream: true });
    // -stream really produced indefinite-length BER (0x80 length octet right after the outer SEQUENCE).
    const der = Buffer.from(headerSplitBody(readFileSync(file)), 'base64');
    expect(der[1]).toBe(0x80);
    checkIncoming(
      await unwrapWithHisp(file, 'recipient-rsa'),
      { signers: ['sender-ec384'], digest: 'sha384', cipher, keyTransport: 'rsa-oaep-sha256', recipient: 'recipient-rsa', wrapped: true },
      MESSAGE,
    );
  });

  it('unwrapped body-only signature: the outer From/To/Subject describe the message', async () => {
    const entity = Buffer.from('Content-Type: text/plain; charset=us-ascii\r\n\r\nOnly the body is signed.\r\n');
    const signed = opensslSign(tmp, entity, { signers: ['sender-rsa'], md: 'sha256', form: 'unwrapped-detached' });
    const file = opensslEncrypt(tmp, signed, { cipher: 'aes128-gcm', keyTransport: 'rsa-oaep-sha1', keyid: false, recipients: ['recipient-rsa'] });
    const result = await unwrapWithHisp(file, 'recipient-rsa');
    const text = result.unwrapped.message.toString('latin1');
    expect(result.unwrapped.wrapped).toBe(false);
    expect(result.accepted.map((a) => a.certificate.sha256)).toEqual([manifest('sender-rsa').sha256]);
    const [head, body] = [headerSection(result.unwrapped.message), text.slice(text.indexOf('\r\n\r\n') + 4)];
    expect(head.split('\r\n').sort()).toEqual(
      [
        'From: sender@sender.test',
        'To: patient@recipient.test',
        'Subject: OpenSSL interop',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=us-ascii',
      ].sort(),
    );
    expect(body).toBe('Only the body is signed.\r\n');
  });

  it('refuses an OpenSSL message whose signer does not chain to the anchor', async () => {
    const signed = opensslSign(tmp, WRAPPED, { signers: ['sender-untrusted'], md: 'sha256', form: 'wrapped-detached' });
    const file = opensslEncrypt(tmp, signed, { cipher: 'aes256-cbc', keyTransport: 'rsa-oaep-sha1', keyid: false, recipients: ['recipient-rsa'] });
    let error: unknown;
    try {
      await unwrapWithHisp(file, 'recipient-rsa');
    } catch (e) {
      error = e;
    }
    expect(isHispError(error)).toBe(true);
    expect((error as { code: string }).code).toBe('HISP_TRUST_NO_ANCHOR');
  });

  it('accepts two OpenSSL signers of which only one is trusted, and reports the other', async () => {
    const signed = opensslSign(tmp, WRAPPED, { signers: ['sender-untrusted', 'sender-ec256'], md: 'sha256', form: 'wrapped-detached' });
    const file = opensslEncrypt(tmp, signed, { cipher: 'aes128-gcm', keyTransport: 'rsa-oaep-sha256', keyid: true, recipients: ['recipient-rsa'] });
    const result = await unwrapWithHisp(file, 'recipient-rsa');
    expect(result.unwrapped.signers.map((s) => s.verified)).toEqual([true, true]);
    expect(result.accepted.map((a) => a.certificate.sha256)).toEqual([manifest('sender-ec256').sha256]);
    expect(result.rejected.map((r) => ({ sha256: r.certificate?.sha256, code: r.code }))).toEqual([
      { sha256: manifest('sender-untrusted').sha256, code: 'HISP_TRUST_NO_ANCHOR' },
    ]);
    expect(result.unwrapped.message.equals(MESSAGE)).toBe(true);
  });

  // Other ways an OpenSSL-based peer produces S/MIME: PKCS#7 through `openssl smime` (x-pkcs7 media
  // types, rsaEncryption key transport), and `openssl cms -noattr` (a SignerInfo without signed attributes).
  it.each([
    ['openssl smime, detached', ['smime', '-sign'], ['smime', '-encrypt', '-aes256'], 'aes256-cbc'],
    ['openssl smime, opaque', ['smime', '-sign', '-nodetach'], ['smime', '-encrypt', '-aes128'], 'aes128-cbc'],
    ['openssl cms -noattr', ['cms', '-sign', '-noattr'], ['cms', '-encrypt', '-aes-256-gcm'], 'aes256-gcm'],
  ] as const)('%s', async (_name, sign, encrypt, cipher) => {
    const input = tmp.file(`other-in-${++fileCounter}.eml`);
    const signed = `${input}.signed`;
    const file = `${input}.enveloped`;
    writeFileSync(input, WRAPPED);
    const signer = credentialPaths('sender-rsa');
    opensslOk([...sign, '-md', 'sha256', '-signer', signer.cert, '-inkey', signer.key, '-certfile', INTERMEDIATE, '-in', input, '-out', signed]);
    const recip = credentialPaths('recipient-rsa').cert;
    // `openssl smime -encrypt` takes the recipient certificates as trailing operands.
    opensslOk(
      encrypt[0] === 'smime'
        ? [...encrypt, '-in', signed, '-out', file, recip]
        : [...encrypt, '-recip', recip, '-in', signed, '-out', file],
    );
    if (encrypt[0] === 'smime') expect(opensslHeaderSection(readFileSync(file))).toContain('application/x-pkcs7-mime');
    checkIncoming(
      await unwrapWithHisp(file, 'recipient-rsa'),
      { signers: ['sender-rsa'], digest: 'sha256', cipher, keyTransport: 'rsa-pkcs1', recipient: 'recipient-rsa', wrapped: true },
      MESSAGE,
    );
  });
});

/** Base64 body of a single-part MIME entity. */
function headerSplitBody(entity: Buffer): string {
  const text = entity.toString('latin1');
  return text.slice(opensslHeaderSection(entity).length).replace(/\s+/g, '');
}

describe('OpenSSL → hisp (CLI hisp unwrap --json)', () => {
  beforeAll(() => {
    ensureBuilt();
  }, 120_000);

  interface CliCase {
    sign: OpensslSign;
    encrypt: OpensslEncrypt;
    /** Who runs hisp unwrap. */
    recipient: LeafName;
    binding?: 'domain';
  }
  const cases: CliCase[] = [
    {
      sign: { signers: ['sender-rsa'], md: 'sha384', form: 'wrapped-detached' },
      encrypt: { cipher: 'aes256-gcm', keyTransport: 'rsa-oaep-sha256', keyid: true, recipients: ['recipient-rsa'], crlfeol: true },
      recipient: 'recipient-rsa',
    },
    {
      sign: { signers: ['sender-ec256'], md: 'sha256', form: 'unwrapped-detached' },
      encrypt: { cipher: 'aes192-cbc', keyTransport: 'rsa-pkcs1', keyid: false, recipients: ['recipient-rsa', 'recipient2-rsa'] },
      recipient: 'recipient2-rsa',
    },
    {
      sign: { signers: ['sender-ec384'], md: 'sha384', form: 'wrapped-opaque' },
      encrypt: { cipher: 'aes128-cbc', keyTransport: 'rsa-oaep-sha1', keyid: true, recipients: ['recipient-rsa'] },
      recipient: 'recipient-rsa',
    },
    {
      sign: { signers: ['sender-rsa', 'sender-ec384'], md: 'sha512', form: 'wrapped-detached' },
      encrypt: { cipher: 'aes128-gcm', keyTransport: 'rsa-oaep-sha1', keyid: false, recipients: ['recipient-rsa'] },
      recipient: 'recipient-rsa',
    },
    {
      sign: { signers: ['sender-domain'], md: 'sha256', form: 'wrapped-detached' },
      encrypt: { cipher: 'aes256-cbc', keyTransport: 'rsa-oaep-sha256', keyid: false, recipients: ['recipient-domain'] },
      recipient: 'recipient-domain',
      binding: 'domain',
    },
  ];

  it.each(
    cases.map(
      (c) =>
        [
          `${c.sign.signers.join('+')} ${c.sign.md} ${c.sign.form}, ${c.encrypt.cipher}/${c.encrypt.keyTransport}${c.encrypt.keyid ? ' -keyid' : ''} → ${c.recipient}`,
          c,
        ] as const,
    ),
  )('%s', (_name, c) => {
    const signed = opensslSign(tmp, signedContentFor(c.sign.form), c.sign);
    const file = opensslEncrypt(tmp, signed, c.encrypt);
    const out = `${file}.out`;
    const p = credentialPaths(c.recipient);
    const r = hispCli(['unwrap', '--decrypt-key', p.key, '--decrypt-cert', p.cert, '--anchor', ROOT, '--json', '--in', file, '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.length).toBe(0);
    const report = JSON.parse(r.stderr) as UnwrapReport;
    expect(sortBySha(report.signers)).toEqual(
      sortBySha(c.sign.signers.map((s) => ({ ...pick(manifest(s)), binding: c.binding ?? 'address' }))),
    );
    expect(report.signers[0]!.subject).toBe(manifest(c.sign.signers[0]!).subject);
    expect(report).toMatchObject({
      digest: c.sign.md,
      cipher: c.encrypt.cipher,
      keyTransport: c.encrypt.keyTransport,
      wrapped: c.sign.form.startsWith('wrapped'),
      sender: 'sender@sender.test',
      recipient: pick(manifest(c.recipient)),
      rejected: [],
    });
    expect(readFileSync(out).toString('latin1')).toBe(MESSAGE.toString('latin1'));
  });

  it('exits 1 with a JSON reason when the message is not for our key', () => {
    const signed = opensslSign(tmp, WRAPPED, { signers: ['sender-rsa'], md: 'sha256', form: 'wrapped-detached' });
    const file = opensslEncrypt(tmp, signed, { cipher: 'aes256-gcm', keyTransport: 'rsa-oaep-sha1', keyid: true, recipients: ['recipient-rsa'] });
    const p = credentialPaths('recipient2-rsa');
    const out = `${file}.out`;
    const r = hispCli(['unwrap', '--decrypt-key', p.key, '--decrypt-cert', p.cert, '--anchor', ROOT, '--json', '--in', file, '--out', out]);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stderr)).toMatchObject({ code: 'HISP_CMS_NOT_FOR_RECIPIENT' });
    expect(() => readFileSync(out)).toThrow();
  });
});

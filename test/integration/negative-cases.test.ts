// Negative cases of the receive path (issue "negative cases"): every defective Direct message is
// refused with one exact HispError code, by the library (processIncoming) and by the CLI
// (`hisp unwrap --json --out FILE`: exit 1, no output file, stderr is exactly {"code","reason"}).
//
// Messages are made with the library's own pieces (wrapMessage, signDetached, createEnvelope) and
// with the openssl CLI (SHA-1/MD5 digests, 3DES/RC2, signed-only and encrypted-only messages), then
// damaged at exact, computed positions so that every outcome is deterministic.
import { constants, privateDecrypt, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Certificate } from '../../gateway/core/certificate.js';
import { HispError, type HispErrorCode } from '../../gateway/core/errors.js';
import { loadCredential, readCertificates, type PrivateCredential } from '../../gateway/agent/key-material.js';
import { createEnvelope } from '../../gateway/agent/create-envelope.js';
import { pkcs1v15Unpad, unwrapContentKey, wrapContentKey } from '../../gateway/agent/key-transport.js';
import { openEnvelope, type DecryptionCredential } from '../../gateway/agent/open-envelope.js';
import { signDetached } from '../../gateway/agent/sign-detached.js';
import { wrapMessage, type WrapOptions } from '../../gateway/agent/wrap-message.js';
import { processIncoming, type IncomingResult } from '../../gateway/flows/process-incoming.js';
import { credentialPaths, type LeafName } from '../helpers/pki.js';
import { ensureBuilt, hispCli, makeTempDir, opensslOk, type TempDir } from '../helpers/openssl.js';

// ------------------------------------------------------------------------------------------------
// Fixtures

/** Validation time: inside every default validity (2025–2049), after sender-expired's (2015–2016). */
const AT = new Date('2030-01-01T00:00:00Z');
const SIGNING_TIME = new Date('2029-12-31T12:00:00Z');

/** A line of the signed body that the "flip inside the signed content" case aims at. */
const MARKER = 'The quick brown fox jumps over the lazy dog. '.repeat(8).trimEnd();

const INNER = Buffer.from(
  [
    'From: sender@sender.test',
    'To: patient@recipient.test',
    'Subject: negative cases',
    'Date: Tue, 01 Jan 2030 00:00:00 +0000',
    'Message-ID: <negative-cases@sender.test>',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    'Hello patient,',
    MARKER,
    'Regards',
    '',
  ].join('\r\n'),
  'latin1',
);

/** Outer header fields put in front of openssl's S/MIME output (it writes MIME headers only). */
const OUTER_HEADERS = Buffer.from(
  'From: sender@sender.test\r\nTo: patient@recipient.test\r\nSubject: negative cases\r\n' +
    'Date: Tue, 01 Jan 2030 00:00:00 +0000\r\nMessage-ID: <negative-cases@sender.test>\r\n',
  'latin1',
);

const ROOT_CA = credentialPaths('root-ca').cert;
const INTERMEDIATE_CA = credentialPaths('intermediate-ca').cert;
const RECIPIENT = credentialPaths('recipient-rsa');

let tmp: TempDir;
let anchors: Certificate[];
let recipient: PrivateCredential;
let recipientDecrypt: DecryptionCredential;
let recipient2Cert: Certificate;
/** A different RSA-2048 private key (recipient2-rsa's), for the wrong-key cases. */
let otherKey: KeyObject;
const signers = new Map<LeafName, PrivateCredential>();

function signer(name: LeafName): PrivateCredential {
  let c = signers.get(name);
  if (!c) {
    const p = credentialPaths(name);
    c = loadCredential(p.key, p.chain);
    signers.set(name, c);
  }
  return c;
}

beforeAll(() => {
  ensureBuilt();
  tmp = makeTempDir('hisp-negative-');
  anchors = readCertificates(readFileSync(ROOT_CA), ROOT_CA);
  recipient = loadCredential(RECIPIENT.key, RECIPIENT.cert);
  recipientDecrypt = { key: recipient.key, certificate: recipient.certificate };
  const r2 = loadCredential(credentialPaths('recipient2-rsa').key, credentialPaths('recipient2-rsa').cert);
  recipient2Cert = r2.certificate;
  otherKey = r2.key;
}, 120_000);

afterAll(() => tmp?.cleanup());

// ------------------------------------------------------------------------------------------------
// Building messages

function wrap(name: LeafName, options: Partial<WrapOptions> = {}): Buffer {
  return wrapMessage(INNER, {
    signers: [signer(name)],
    recipients: [recipient.certificate],
    signingTime: SIGNING_TIME,
    ...options,
  }).message;
}

interface OuterParts {
  /** The outer header section, blank line included. */
  head: Buffer;
  /** The decoded CMS ContentInfo of the body. */
  der: Buffer;
}

function splitOuter(message: Buffer): OuterParts {
  const end = message.indexOf('\r\n\r\n');
  expect(end).toBeGreaterThan(0);
  return {
    head: message.subarray(0, end + 4),
    der: Buffer.from(message.subarray(end + 4).toString('latin1'), 'base64'),
  };
}

function base64Lines(der: Buffer): Buffer {
  return Buffer.from(`${der.toString('base64').replace(/.{76}/g, '$&\r\n').replace(/\r\n$/, '')}\r\n`, 'latin1');
}

function joinOuter(head: Buffer, der: Buffer): Buffer {
  return Buffer.concat([head, base64Lines(der)]);
}

/** The message with its CMS body replaced by `edit(der)` (the outer headers are kept). */
function withDer(message: Buffer, edit: (der: Buffer) => Buffer): Buffer {
  const { head, der } = splitOuter(message);
  return joinOuter(head, edit(Buffer.from(der)));
}

/** An outer application/pkcs7-mime message around an envelope made by createEnvelope. */
function envelopeMessage(der: Buffer, smimeType = 'enveloped-data'): Buffer {
  return joinOuter(
    Buffer.concat([
      OUTER_HEADERS,
      Buffer.from(
        `MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=${smimeType}; name=smime.p7m\r\n` +
          'Content-Transfer-Encoding: base64\r\n\r\n',
        'latin1',
      ),
    ]),
    der,
  );
}

/** `openssl cms -sign` (S/MIME output, CRLF). Detached multipart/signed unless `opaque`. */
function opensslSign(content: Buffer, name: LeafName, md: string, opaque = false): Buffer {
  const p = credentialPaths(name);
  return opensslOk(
    [
      'cms', '-sign', '-binary', '-crlfeol', '-md', md, '-signer', p.cert, '-inkey', p.key,
      '-certfile', INTERMEDIATE_CA, ...(opaque ? ['-nodetach'] : []),
    ],
    content,
  );
}

/** `openssl cms -encrypt` (S/MIME output, CRLF) to recipient-rsa, with the outer headers added. */
function opensslEncrypt(content: Buffer, cipherArgs: readonly string[], recipientCert = RECIPIENT.cert): Buffer {
  const out = opensslOk(['cms', '-encrypt', '-binary', '-crlfeol', ...cipherArgs, recipientCert], content);
  return Buffer.concat([OUTER_HEADERS, out]);
}

// ------------------------------------------------------------------------------------------------
// A tiny DER walker (definite lengths: the envelopes changed here are hisp's own DER)

interface Tlv {
  tag: number;
  start: number;
  contentStart: number;
  end: number;
}

function readTlv(b: Buffer, offset: number): Tlv {
  const tag = b[offset]!;
  let p = offset + 1;
  let len = b[p++]!;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[p++]!;
  }
  return { tag, start: offset, contentStart: p, end: p + len };
}

function kids(b: Buffer, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let p = t.contentStart; p < t.end; ) {
    const c = readTlv(b, p);
    out.push(c);
    p = c.end;
  }
  return out;
}

interface EnvelopeLayout {
  /** encryptedKey OCTET STRING of the (first) KeyTransRecipientInfo. */
  encryptedKey: Tlv;
  /** The AES-CBC IV OCTET STRING, or the GCMParameters nonce OCTET STRING. */
  ivOrNonce: Tlv;
  /** encryptedContent [0] IMPLICIT (primitive). */
  ciphertext: Tlv;
  /** AuthEnvelopedData mac (GCM tag) OCTET STRING. */
  mac: Tlv | undefined;
}

function envelopeLayout(der: Buffer): EnvelopeLayout {
  const ci = readTlv(der, 0);
  const [, wrapped] = kids(der, ci);
  const [env] = kids(der, wrapped!);
  const fields = kids(der, env!);
  const [ri] = kids(der, fields[1]!);
  const encryptedKey = kids(der, ri!)[3]!;
  const eci = kids(der, fields[2]!);
  const params = kids(der, eci[1]!)[1]!;
  const ivOrNonce = params.tag === 0x04 ? params : kids(der, params)[0]!;
  const ciphertext = eci[2]!;
  expect(ciphertext.tag).toBe(0x80);
  return { encryptedKey, ivOrNonce, ciphertext, mac: fields[3] };
}

function content(b: Buffer, t: Tlv): Buffer {
  return b.subarray(t.contentStart, t.end);
}

// ------------------------------------------------------------------------------------------------
// Assertions: library and CLI

interface RunOptions {
  allowSha1?: boolean;
  credentials?: readonly DecryptionCredential[];
}

/** processIncoming as the CLI runs it (recipient-rsa's key, anchor root-ca, at AT). */
function receive(raw: Buffer, options: RunOptions = {}): Promise<IncomingResult> {
  return processIncoming(raw, {
    credentials: options.credentials ?? [recipientDecrypt],
    anchors,
    at: AT,
    allowSha1: options.allowSha1 ?? false,
  });
}

async function libraryError(raw: Buffer, options: RunOptions = {}): Promise<HispError> {
  try {
    await receive(raw, options);
  } catch (err) {
    if (!(err instanceof HispError)) throw err;
    return err;
  }
  throw new Error('expected a HispError, the message was accepted');
}

let cliCount = 0;

interface CliFailure {
  code: string;
  reason: string;
}

/** `hisp unwrap --json --out FILE`: must exit 1, leave no FILE, print only {"code","reason"}. */
function cliFailure(raw: Buffer, extraArgs: readonly string[] = [], exitCode = 1): CliFailure {
  const n = ++cliCount;
  const input = tmp.file(`in-${n}.eml`);
  const out = tmp.file(`out-${n}.eml`);
  writeFileSync(input, raw);
  const r = hispCli([
    'unwrap', '--in', input, '--out', out, '--json', '--at', AT.toISOString(), '--anchor', ROOT_CA,
    '--decrypt-key', RECIPIENT.key, '--decrypt-cert', RECIPIENT.cert, ...extraArgs,
  ]);
  expect(r.status, r.stderr).toBe(exitCode);
  expect(existsSync(out)).toBe(false);
  expect(r.stdout.length).toBe(0);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  const report = JSON.parse(lines[0]!) as Record<string, unknown>;
  expect(Object.keys(report).sort()).toEqual(['code', 'reason']);
  expect(typeof report.code).toBe('string');
  expect(typeof report.reason).toBe('string');
  expect(report.reason).not.toBe('');
  return report as unknown as CliFailure;
}

/** `hisp unwrap` accepting the message: exit 0 and FILE written. */
function cliSuccess(raw: Buffer, extraArgs: readonly string[] = []): Buffer {
  const n = ++cliCount;
  const input = tmp.file(`in-${n}.eml`);
  const out = tmp.file(`out-${n}.eml`);
  writeFileSync(input, raw);
  const r = hispCli([
    'unwrap', '--in', input, '--out', out, '--json', '--at', AT.toISOString(), '--anchor', ROOT_CA,
    '--decrypt-key', RECIPIENT.key, '--decrypt-cert', RECIPIENT.cert, ...extraArgs,
  ]);
  expect(r.status, r.stderr).toBe(0);
  expect(existsSync(out)).toBe(true);
  return r.stdout;
}

/** The library and the CLI both refuse `raw` with `code`, with the same reason. */
async function expectRefused(raw: Buffer, code: HispErrorCode, options: RunOptions = {}): Promise<HispError> {
  const e = await libraryError(raw, options);
  expect({ code: e.code, reason: e.message }).toMatchObject({ code });
  const cli = cliFailure(raw, options.allowSha1 ? ['--allow-sha1'] : []);
  expect(cli).toEqual({ code, reason: e.message });
  return e;
}

// ------------------------------------------------------------------------------------------------

describe('control: the undamaged message is accepted', () => {
  it('sender-rsa, wrapped, AES-256-CBC (library and CLI)', async () => {
    const raw = wrap('sender-rsa');
    const result = await receive(raw);
    expect(result.accepted).toHaveLength(1);
    expect(result.unwrapped.message.includes(MARKER)).toBe(true);
    cliSuccess(raw);
  });

  it('sender-rsa, AES-256-GCM with RSA PKCS#1 v1.5 key transport (the form the padding cases damage)', async () => {
    const raw = wrap('sender-rsa', { cipher: 'aes256-gcm', keyTransport: 'rsa-pkcs1' });
    expect((await receive(raw)).accepted).toHaveLength(1);
    cliSuccess(raw);
  });
});

describe('damaged ciphertext', () => {
  it('AES-CBC: the octet that carries the last block\'s padding flipped → HISP_CMS_DECRYPT_FAILED', async () => {
    // In CBC, P[n] = D(C[n]) xor C[n-1]: flipping bit 7 of the last octet of the penultimate
    // ciphertext block flips bit 7 of the last plaintext octet, the PKCS#7 pad length (1..16), which
    // becomes 129..144: the padding check fails whatever the key, deterministically. (Flipping an
    // octet of the last block itself randomizes the whole last block, whose padding then happens to
    // be valid about once in 256 runs: not a deterministic test.)
    const raw = withDer(wrap('sender-rsa'), (der) => {
      const { ciphertext } = envelopeLayout(der);
      const n = ciphertext.end - ciphertext.contentStart;
      expect(n % 16).toBe(0);
      expect(n).toBeGreaterThanOrEqual(32);
      der[ciphertext.end - 17]! ^= 0x80;
      return der;
    });
    const e = await expectRefused(raw, 'HISP_CMS_DECRYPT_FAILED');
    expect(e.message).toBe('the message could not be decrypted with our key');
  });

  it('AES-CBC: the middle octet of the ciphertext flipped → HISP_MIME_MALFORMED (it lands in the base64 signature)', async () => {
    // The flip garbles the whole plaintext block it sits in (16 random octets) and flips the same
    // bit one block later; the padding stays valid, so decryption "succeeds". Where the garbage lands
    // is fixed by the message layout: wrapMessage's signed entity is ~3.8 KB, of which the base64
    // smime.p7s (two certificates and a SignerInfo) is the second half, so the middle of the
    // ciphertext is always inside the signature part's base64 text. 16 random octets are not base64
    // (all would have to be among the ~71 base64/whitespace octets: p ≈ 1e-9), so the transfer
    // encoding of the signature part is what broke: HISP_MIME_MALFORMED, as for a broken enveloped
    // body (unwrap-message.ts: "say bad base64 rather than bad CMS when the transfer encoding is what
    // broke"), before any signature check.
    const original = wrap('sender-rsa');
    const { der } = splitOuter(original);
    const plain = openEnvelope(der, [recipientDecrypt]).content;
    const sigStart = plain.indexOf('filename=smime.p7s\r\n\r\n') + 'filename=smime.p7s\r\n\r\n'.length;
    const sigEnd = plain.lastIndexOf('\r\n--');
    const raw = withDer(original, (d) => {
      const { ciphertext } = envelopeLayout(d);
      const mid = Math.floor((ciphertext.end - ciphertext.contentStart) / 2);
      const block = mid - (mid % 16);
      // Precondition of the explanation above: the garbled block and the flipped octet are base64.
      expect(block).toBeGreaterThan(sigStart);
      expect(mid + 16).toBeLessThan(sigEnd);
      d[ciphertext.contentStart + mid]! ^= 0x01;
      return d;
    });
    const e = await expectRefused(raw, 'HISP_MIME_MALFORMED');
    expect(e.message).toMatch(/not valid base64/);
  });

  it('AES-CBC: an octet inside the signed body flipped → HISP_SIG_INVALID', async () => {
    // Same mechanism, aimed at the MARKER line of the signed message/rfc822 part: the structure is
    // intact, the signed octets are not, so the messageDigest no longer matches.
    const original = wrap('sender-rsa');
    const plain = openEnvelope(splitOuter(original).der, [recipientDecrypt]).content;
    const at = plain.indexOf(MARKER);
    expect(at).toBeGreaterThan(0);
    const block = Math.ceil(at / 16); // first whole plaintext block inside MARKER
    expect((block + 2) * 16).toBeLessThan(at + MARKER.length); // it and the next one are MARKER text
    const raw = withDer(original, (d) => {
      d[envelopeLayout(d).ciphertext.contentStart + block * 16 + 5]! ^= 0x01;
      return d;
    });
    const e = await expectRefused(raw, 'HISP_SIG_INVALID');
    expect(e.message).toMatch(/altered content/);
  });

  it('AES-CBC: an IV octet flipped ("Content-Type" becomes "Content-Uype") → HISP_SMIME_NOT_SIGNED', async () => {
    // The IV only xors into the first plaintext block, exactly: no garbage, a precise edit of the
    // decrypted entity's first header name. Without a Content-Type the entity is text/plain.
    const original = wrap('sender-rsa');
    const plain = openEnvelope(splitOuter(original).der, [recipientDecrypt]).content;
    expect(plain.subarray(0, 13).toString('latin1')).toBe('Content-Type:');
    const raw = withDer(original, (d) => {
      d[envelopeLayout(d).ivOrNonce.contentStart + 8]! ^= 0x01; // 'T' (0x54) → 'U' (0x55)
      return d;
    });
    const e = await expectRefused(raw, 'HISP_SMIME_NOT_SIGNED');
    expect(e.message).toMatch(/text\/plain, not signed/);
  });

  it('AES-GCM: a flipped tag octet → HISP_CMS_DECRYPT_FAILED', async () => {
    const raw = withDer(wrap('sender-rsa', { cipher: 'aes256-gcm' }), (d) => {
      const { mac } = envelopeLayout(d);
      expect(mac?.end).toBe(d.length);
      expect(mac!.end - mac!.contentStart).toBe(16);
      d[mac!.contentStart + 7]! ^= 0x01;
      return d;
    });
    await expectRefused(raw, 'HISP_CMS_DECRYPT_FAILED');
  });

  it('AES-GCM: the middle ciphertext octet flipped → HISP_CMS_DECRYPT_FAILED (the tag catches it)', async () => {
    const raw = withDer(wrap('sender-rsa', { cipher: 'aes128-gcm' }), (d) => {
      const { ciphertext } = envelopeLayout(d);
      d[ciphertext.contentStart + Math.floor((ciphertext.end - ciphertext.contentStart) / 2)]! ^= 0x01;
      return d;
    });
    await expectRefused(raw, 'HISP_CMS_DECRYPT_FAILED');
  });
});

describe('altered signed content', () => {
  it('decrypt, edit the signed message, re-encrypt (createEnvelope) → HISP_SIG_INVALID', async () => {
    const original = wrap('sender-rsa');
    const plain = openEnvelope(splitOuter(original).der, [recipientDecrypt]).content;
    const at = plain.indexOf('Hello patient');
    expect(at).toBeGreaterThan(0);
    const edited = Buffer.from(plain);
    edited.write('Jello', at, 'latin1'); // same length: only the octets change
    const der = createEnvelope(edited, [recipient.certificate], { cipher: 'aes256-cbc', keyTransport: 'rsa-oaep-sha1' });
    const e = await expectRefused(envelopeMessage(der), 'HISP_SIG_INVALID');
    expect(e.message).toMatch(/altered content/);
  });

  it('decrypt, append a line to the signed message, re-encrypt → HISP_SIG_INVALID', async () => {
    const original = wrap('sender-rsa');
    const plain = openEnvelope(splitOuter(original).der, [recipientDecrypt]).content.toString('latin1');
    const edited = plain.replace('Regards\r\n', 'Regards\r\nP.S. send the records to mallory@evil.test\r\n');
    expect(edited).not.toBe(plain);
    const der = createEnvelope(Buffer.from(edited, 'latin1'), [recipient.certificate], {
      cipher: 'aes128-gcm',
      keyTransport: 'rsa-oaep-sha256',
    });
    await expectRefused(envelopeMessage(der), 'HISP_SIG_INVALID');
  });

  it('signDetached over one content, sent with another (createEnvelope) → HISP_SIG_INVALID', async () => {
    const part = (body: Buffer) => Buffer.concat([Buffer.from('Content-Type: message/rfc822\r\n\r\n'), body]);
    const signedPart = part(INNER);
    const sentPart = part(Buffer.from(INNER.toString('latin1').replace('Hello', 'Hullo'), 'latin1'));
    const s = signer('sender-rsa');
    const signature = signDetached(signedPart, [s], 'sha256', SIGNING_TIME);
    const b = 'negative-cases-boundary';
    const entity = Buffer.concat([
      Buffer.from(
        `Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="${b}"\r\n\r\n--${b}\r\n`,
      ),
      sentPart,
      Buffer.from(
        `\r\n--${b}\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\n`,
      ),
      base64Lines(signature),
      Buffer.from(`--${b}--\r\n`),
    ]);
    const der = createEnvelope(entity, [recipient.certificate], { cipher: 'aes256-cbc', keyTransport: 'rsa-oaep-sha1' });
    await expectRefused(envelopeMessage(der), 'HISP_SIG_INVALID');
    // …and the same entity with the content that was signed is accepted: the refusal is the edit.
    const good = Buffer.from(entity.toString('latin1').replace('Hullo', 'Hello'), 'latin1');
    const goodDer = createEnvelope(good, [recipient.certificate], { cipher: 'aes256-cbc', keyTransport: 'rsa-oaep-sha1' });
    expect((await receive(envelopeMessage(goodDer))).accepted).toHaveLength(1);
  });
});

describe('signer trust', () => {
  it('sender-untrusted (chains to untrusted-root-ca, anchor root-ca) → HISP_TRUST_NO_ANCHOR', async () => {
    await expectRefused(wrap('sender-untrusted'), 'HISP_TRUST_NO_ANCHOR');
  });

  it('sender-expired → HISP_TRUST_EXPIRED', async () => {
    const e = await expectRefused(wrap('sender-expired'), 'HISP_TRUST_EXPIRED');
    expect(e.message).toMatch(/the certificate CN=sender@sender.test is not valid at 2030-01-01/);
  });

  it('sender-sha1 (certificate signed with sha1WithRSAEncryption) → HISP_TRUST_WEAK_SIGNATURE', async () => {
    await expectRefused(wrap('sender-sha1'), 'HISP_TRUST_WEAK_SIGNATURE');
  });

  it('sender-sha1 with the legacy SHA-1 switch → accepted (library and CLI --allow-sha1)', async () => {
    const raw = wrap('sender-sha1');
    expect((await receive(raw, { allowSha1: true })).accepted).toHaveLength(1);
    cliSuccess(raw, ['--allow-sha1']);
  });

  it('sender-other-address (bound to someone@elsewhere.test) → HISP_TRUST_BINDING_MISMATCH', async () => {
    const e = await expectRefused(wrap('sender-other-address'), 'HISP_TRUST_BINDING_MISMATCH');
    expect(e.message).toMatch(/someone@elsewhere\.test/);
  });

  it('sender-no-san (address only in the subject emailAddress) → HISP_TRUST_BINDING_MISMATCH', async () => {
    const e = await expectRefused(wrap('sender-no-san'), 'HISP_TRUST_BINDING_MISMATCH');
    expect(e.message).toMatch(/no subjectAltName/);
  });

  it('sender-rsa1024 → HISP_TRUST_WEAK_KEY', async () => {
    await expectRefused(wrap('sender-rsa1024'), 'HISP_TRUST_WEAK_KEY');
  });

  it('sender-keyenc-only (keyUsage keyEncipherment only) → HISP_TRUST_KEY_USAGE', async () => {
    await expectRefused(wrap('sender-keyenc-only'), 'HISP_TRUST_KEY_USAGE');
  });

  it('sender-by-leaf (issued by the CA:FALSE leaf sender-domain) → HISP_TRUST_BASIC_CONSTRAINTS', async () => {
    const e = await expectRefused(wrap('sender-by-leaf'), 'HISP_TRUST_BASIC_CONSTRAINTS');
    expect(e.message).toMatch(/is not a CA/);
  });
});

describe('digest algorithms of the SignerInfo (openssl cms -sign -md …)', () => {
  const wrapped = (body: Buffer) => Buffer.concat([Buffer.from('Content-Type: message/rfc822\r\n\r\n'), body]);

  it('SHA-1 without the switch → HISP_CMS_WEAK_ALGORITHM; with allowSha1 / --allow-sha1 → accepted', async () => {
    const raw = opensslEncrypt(opensslSign(wrapped(INNER), 'sender-rsa', 'sha1'), ['-aes256']);
    const e = await expectRefused(raw, 'HISP_CMS_WEAK_ALGORITHM');
    expect(e.message).toMatch(/SHA-1/);
    const ok = await receive(raw, { allowSha1: true });
    expect(ok.accepted).toHaveLength(1);
    expect(ok.unwrapped.digest).toBe('sha1');
    cliSuccess(raw, ['--allow-sha1']);
  });

  it('MD5 → HISP_CMS_WEAK_ALGORITHM, with and without the SHA-1 switch', async () => {
    const raw = opensslEncrypt(opensslSign(wrapped(INNER), 'sender-rsa', 'md5'), ['-aes256']);
    const e = await expectRefused(raw, 'HISP_CMS_WEAK_ALGORITHM');
    expect(e.message).toMatch(/MD5/);
    const e2 = await expectRefused(raw, 'HISP_CMS_WEAK_ALGORITHM', { allowSha1: true });
    expect(e2.message).toMatch(/MD5/);
  });

  it('control: openssl SHA-256 signature (same path) → accepted', async () => {
    const raw = opensslEncrypt(opensslSign(wrapped(INNER), 'sender-rsa', 'sha256'), ['-aes256']);
    expect((await receive(raw)).accepted).toHaveLength(1);
  });
});

describe('not encrypted / not signed / not for us', () => {
  it('multipart/signed sent as is (openssl cms -sign) → HISP_SMIME_NOT_ENCRYPTED', async () => {
    const raw = Buffer.concat([OUTER_HEADERS, opensslSign(INNER, 'sender-rsa', 'sha256')]);
    expect(raw.includes('multipart/signed')).toBe(true);
    const e = await expectRefused(raw, 'HISP_SMIME_NOT_ENCRYPTED');
    expect(e.message).toMatch(/signed but not encrypted/);
  });

  it('application/pkcs7-mime; smime-type=signed-data (openssl cms -sign -nodetach) → HISP_SMIME_NOT_ENCRYPTED', async () => {
    const raw = Buffer.concat([OUTER_HEADERS, opensslSign(INNER, 'sender-rsa', 'sha256', true)]);
    expect(raw.includes('smime-type=signed-data')).toBe(true);
    await expectRefused(raw, 'HISP_SMIME_NOT_ENCRYPTED');
  });

  it('a SignedData labelled smime-type=enveloped-data → HISP_SMIME_NOT_ENCRYPTED (decided on the CMS content type)', async () => {
    const opaque = opensslSign(INNER, 'sender-rsa', 'sha256', true);
    const der = Buffer.from(opaque.subarray(opaque.indexOf('\r\n\r\n') + 4).toString('latin1'), 'base64');
    const e = await expectRefused(envelopeMessage(der, 'enveloped-data'), 'HISP_SMIME_NOT_ENCRYPTED');
    expect(e.message).toMatch(/signed but not encrypted/);
  });

  it('encrypted but not signed (openssl cms -encrypt of a plain message) → HISP_SMIME_NOT_SIGNED', async () => {
    const e = await expectRefused(opensslEncrypt(INNER, ['-aes256']), 'HISP_SMIME_NOT_SIGNED');
    expect(e.message).toMatch(/text\/plain, not signed/);
  });

  it('encrypted to recipient2-rsa only → HISP_CMS_NOT_FOR_RECIPIENT', async () => {
    const raw = wrap('sender-rsa', { recipients: [recipient2Cert] });
    const e = await expectRefused(raw, 'HISP_CMS_NOT_FOR_RECIPIENT');
    expect(e.message).toMatch(/1 recipient\(s\)/);
  });
});

describe('refused content encryption (openssl cms -encrypt)', () => {
  // The signed entity is real, so nothing but the cipher can be the reason.
  let signedEntity: Buffer;
  beforeAll(() => {
    signedEntity = opensslSign(INNER, 'sender-rsa', 'sha256');
  });

  it('3DES (-des3) → HISP_CMS_WEAK_ALGORITHM', async () => {
    const e = await expectRefused(opensslEncrypt(signedEntity, ['-des3']), 'HISP_CMS_WEAK_ALGORITHM');
    expect(e.message).toMatch(/3DES/);
  });

  it('RC2 (-rc2, legacy provider) → HISP_CMS_WEAK_ALGORITHM', async () => {
    const raw = opensslEncrypt(signedEntity, ['-provider', 'legacy', '-provider', 'default', '-rc2']);
    const e = await expectRefused(raw, 'HISP_CMS_WEAK_ALGORITHM');
    expect(e.message).toMatch(/RC2/);
  });

  it('control: the same entity with -aes256 → accepted', async () => {
    expect((await receive(opensslEncrypt(signedEntity, ['-aes256']))).accepted).toHaveLength(1);
  });
});

// ------------------------------------------------------------------------------------------------
// Bad PKCS#1 v1.5 padding and wrong key

/** Raw RSA (no padding) with the recipient's keys: the encoded message of an encryptedKey and back. */
function rawDecrypt(key: KeyObject, block: Buffer): Buffer {
  return privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, block);
}
function rawEncrypt(publicKey: KeyObject, em: Buffer): Buffer {
  return publicEncrypt({ key: publicKey, padding: constants.RSA_NO_PADDING }, em);
}

type PaddingDefect = 'first octet' | 'block type' | 'zero in PS' | 'no separator' | 'short PS' | 'CEK of another length';

/**
 * The encoded message EM = 00 02 PS 00 CEK of a real encryptedKey, damaged one way. The CEK stays in
 * the block, so an unpadder that ignored the defect would decrypt the message.
 */
function damage(em: Buffer, cekLength: number, defect: PaddingDefect): Buffer {
  const k = em.length;
  const sep = k - cekLength - 1;
  expect(em[0]).toBe(0);
  expect(em[1]).toBe(2);
  expect(em[sep]).toBe(0);
  const d = Buffer.from(em);
  switch (defect) {
    case 'first octet':
      d[0] = 0x01;
      break;
    case 'block type':
      d[1] = 0x01;
      break;
    case 'zero in PS':
      d[sep - 20] = 0x00;
      break;
    case 'no separator':
      d[sep] = 0x5a;
      break;
    case 'short PS': {
      // 00 02 PS(7) 00 M: a valid v1.5 block only for an unpadder that forgets the 8-octet minimum
      const s = Buffer.alloc(k, 0x5a);
      s[0] = 0;
      s[1] = 2;
      s[9] = 0;
      return s;
    }
    case 'CEK of another length':
      // Well-formed padding around a 31-octet message: valid PKCS#1, wrong key length for AES-256.
      d[sep] = 0x5a;
      d[sep + 1] = 0x00;
      break;
  }
  return d;
}

const DEFECTS: PaddingDefect[] = ['first octet', 'block type', 'zero in PS', 'no separator', 'short PS', 'CEK of another length'];

/** A wrapped message (AES-256, PKCS#1 v1.5 key transport) whose encryptedKey carries a damaged EM. */
function badPaddingMessage(cipher: 'aes256-gcm' | 'aes256-cbc', defect: PaddingDefect): Buffer {
  return withDer(wrap('sender-rsa', { cipher, keyTransport: 'rsa-pkcs1' }), (der) => {
    const { encryptedKey } = envelopeLayout(der);
    const ek = content(der, encryptedKey);
    expect(ek.length).toBe(256);
    const bad = rawEncrypt(recipient.certificate.publicKey, damage(rawDecrypt(recipient.key, ek), 32, defect));
    expect(bad.length).toBe(256);
    bad.copy(der, encryptedKey.contentStart);
    return der;
  });
}

const wrongKeyCredential = (): DecryptionCredential[] => [{ key: otherKey, certificate: recipient.certificate }];

describe('bad PKCS#1 v1.5 padding and a wrong key (AuthEnvelopedData: the failure is deterministic)', () => {
  it.each(DEFECTS)('encryptedKey with bad padding (%s) → HISP_CMS_DECRYPT_FAILED', async (defect) => {
    const e = await expectRefused(badPaddingMessage('aes256-gcm', defect), 'HISP_CMS_DECRYPT_FAILED');
    expect(e.message).toBe('the message could not be decrypted with our key');
  });

  it('wrong key: recipient-rsa certificate paired with recipient2-rsa\'s private key → HISP_CMS_DECRYPT_FAILED', async () => {
    for (const keyTransport of ['rsa-pkcs1', 'rsa-oaep-sha1', 'rsa-oaep-sha256'] as const) {
      const raw = wrap('sender-rsa', { cipher: 'aes256-gcm', keyTransport });
      expect((await libraryError(raw, { credentials: wrongKeyCredential() })).code).toBe('HISP_CMS_DECRYPT_FAILED');
    }
  });

  it('wrong key through the CLI: the key/certificate pair is refused before decryption → HISP_KEY_MISMATCH', () => {
    // The CLI cannot express "this certificate with that key": pairCredentials checks the pair.
    const raw = wrap('sender-rsa', { cipher: 'aes256-gcm', keyTransport: 'rsa-pkcs1' });
    const n = ++cliCount;
    const input = tmp.file(`in-${n}.eml`);
    const out = tmp.file(`out-${n}.eml`);
    writeFileSync(input, raw);
    const r = hispCli([
      'unwrap', '--in', input, '--out', out, '--json', '--at', AT.toISOString(), '--anchor', ROOT_CA,
      '--decrypt-key', credentialPaths('recipient2-rsa').key, '--decrypt-cert', RECIPIENT.cert,
    ]);
    expect(r.status).toBe(1);
    expect(existsSync(out)).toBe(false);
    const report = JSON.parse(r.stderr.trim()) as Record<string, unknown>;
    expect(Object.keys(report).sort()).toEqual(['code', 'reason']);
    expect(report.code).toBe('HISP_KEY_MISMATCH');
  });

  it('bad padding and a wrong key end in the identical error object (code, message, details, cause)', async () => {
    const badPadding = await libraryError(badPaddingMessage('aes256-gcm', 'block type'));
    const wrongKey = await libraryError(wrap('sender-rsa', { cipher: 'aes256-gcm', keyTransport: 'rsa-pkcs1' }), {
      credentials: wrongKeyCredential(),
    });
    const shape = (e: HispError) => ({
      name: e.name,
      code: e.code,
      message: e.message,
      transient: e.transient,
      details: e.details,
      cause: e.cause,
      json: JSON.stringify(e),
    });
    expect(shape(badPadding)).toEqual(shape(wrongKey));
    expect(shape(badPadding)).toMatchObject({ code: 'HISP_CMS_DECRYPT_FAILED', details: undefined, cause: undefined });
  });
});

describe('bad PKCS#1 v1.5 padding and a wrong key with AES-CBC (EnvelopedData)', () => {
  // With CBC nothing authenticates the content: the random fallback key of RFC 3218 §2.3.2 decrypts
  // to random octets whose PKCS#7 padding is valid about once in 256 tries (last octet 01, …), and
  // then the garbage fails later, as MIME. Both cases draw from the same distribution (no oracle),
  // but the code is DECRYPT_FAILED only with probability ≈ 255/256, so it is asserted statistically.
  const ALLOWED: HispErrorCode[] = ['HISP_CMS_DECRYPT_FAILED', 'HISP_MIME_MALFORMED', 'HISP_SMIME_NOT_SIGNED'];
  const RUNS = 64;

  it.each(['block type', 'zero in PS'] as const)('bad padding (%s): DECRYPT_FAILED in ≥ 60 of 64 attempts, never anything else than garbage MIME', async (defect) => {
    const raw = badPaddingMessage('aes256-cbc', defect);
    const codes = await Promise.all(Array.from({ length: RUNS }, async () => (await libraryError(raw)).code));
    for (const c of codes) expect(ALLOWED).toContain(c);
    expect(codes.filter((c) => c === 'HISP_CMS_DECRYPT_FAILED').length).toBeGreaterThanOrEqual(RUNS - 4);
    // CLI: the exact code, allowing for the 1/256 case twice in a row (p ≈ 1.5e-5).
    const cli = [cliFailure(raw)];
    while (cli.at(-1)!.code !== 'HISP_CMS_DECRYPT_FAILED' && cli.length < 3) cli.push(cliFailure(raw));
    for (const c of cli) expect(ALLOWED).toContain(c.code);
    expect(cli.at(-1)).toEqual({ code: 'HISP_CMS_DECRYPT_FAILED', reason: 'the message could not be decrypted with our key' });
  });

  it('wrong key: DECRYPT_FAILED in ≥ 60 of 64 attempts, never anything else than garbage MIME', async () => {
    const raw = wrap('sender-rsa', { keyTransport: 'rsa-pkcs1' });
    const codes = await Promise.all(Array.from({ length: RUNS }, async () => (await libraryError(raw, { credentials: wrongKeyCredential() })).code));
    for (const c of codes) expect(ALLOWED).toContain(c);
    expect(codes.filter((c) => c === 'HISP_CMS_DECRYPT_FAILED').length).toBeGreaterThanOrEqual(RUNS - 4);
  });
});

describe('bad padding and a wrong key take the same path in key-transport.ts', () => {
  const CEK = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
  let goodEk: Buffer;
  let badEk: Buffer;
  const none = Buffer.alloc(0);

  beforeAll(() => {
    goodEk = wrapContentKey(recipient.certificate.publicKey, 'rsa-pkcs1', CEK);
    badEk = rawEncrypt(recipient.certificate.publicKey, damage(rawDecrypt(recipient.key, goodEk), 32, 'block type'));
  });

  it('control: the right key and good padding yield the CEK, the same every time', () => {
    expect(unwrapContentKey(recipient.key, 'rsa-pkcs1', none, goodEk, 32)).toEqual(CEK);
    expect(unwrapContentKey(recipient.key, 'rsa-pkcs1', none, goodEk, 32)).toEqual(CEK);
  });

  it('bad padding: a key of the expected length, never the CEK, a fresh random one per call', () => {
    const a = unwrapContentKey(recipient.key, 'rsa-pkcs1', none, badEk, 32);
    const b = unwrapContentKey(recipient.key, 'rsa-pkcs1', none, badEk, 32);
    expect(a).toHaveLength(32);
    expect(b).toHaveLength(32);
    expect(a).not.toEqual(CEK);
    expect(a).not.toEqual(b);
  });

  it('wrong key: a key of the expected length, never the CEK, a fresh random one per call', () => {
    const a = unwrapContentKey(otherKey, 'rsa-pkcs1', none, goodEk, 32);
    const b = unwrapContentKey(otherKey, 'rsa-pkcs1', none, goodEk, 32);
    expect(a).toHaveLength(32);
    expect(b).toHaveLength(32);
    expect(a).not.toEqual(CEK);
    expect(a).not.toEqual(b);
  });

  it('pkcs1v15Unpad returns exactly the fallback for the bad-padding EM and for the wrong-key EM', () => {
    const fallback = randomBytes(32);
    const badEm = rawDecrypt(recipient.key, badEk);
    const wrongEm = rawDecrypt(otherKey, goodEk);
    expect(pkcs1v15Unpad(badEm, 32, fallback)).toEqual(fallback);
    expect(pkcs1v15Unpad(wrongEm, 32, fallback)).toEqual(fallback);
    expect(pkcs1v15Unpad(rawDecrypt(recipient.key, goodEk), 32, fallback)).toEqual(CEK);
  });

  it('never throws and never returns another length, whatever the encryptedKey', () => {
    const inputs: Buffer[] = [
      badEk,
      goodEk,
      Buffer.alloc(0),
      Buffer.alloc(1, 7),
      goodEk.subarray(1), // one octet short
      Buffer.concat([goodEk, Buffer.from([0])]), // one octet long
      Buffer.alloc(256, 0xff), // not below the modulus
      Buffer.alloc(256), // zero
      randomBytes(256),
      randomBytes(512),
    ];
    for (const keyLength of [16, 24, 32]) {
      for (const key of [recipient.key, otherKey]) {
        for (const name of ['rsa-pkcs1', 'rsa-oaep-sha1', 'rsa-oaep-sha256'] as const) {
          for (const ek of inputs) {
            const out = unwrapContentKey(key, name, none, ek, keyLength);
            expect(out).toHaveLength(keyLength);
          }
        }
      }
    }
    // A valid PKCS#1 block around a 32-octet key, asked for 16 octets: the fallback, not a slice.
    const k16 = unwrapContentKey(recipient.key, 'rsa-pkcs1', none, goodEk, 16);
    expect(k16).toHaveLength(16);
    expect(CEK.includes(k16)).toBe(false);
  });
});

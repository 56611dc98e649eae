// Property tests of every parser that sees bytes from the network: random bytes and random
// mutations (bit flips, truncations, insertions, deletions) of valid inputs go into MimeEntity.parse,
// splitMultipart, decodeBase64, openEnvelope, verifySignature, unwrapMessage and readCertificates.
// The only acceptable failure is a HispError (which the CLI and the SMTP edge turn into a clean
// refusal); a TypeError, RangeError or an OpenSSL error escaping is a bug, and so is a hang.
//
// The fast-check seed is fixed (override with FC_SEED=…) so that a failure reproduces; every
// counterexample found so far is also kept below as a fixed example.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { Certificate } from '../../gateway/core/certificate.js';
import { HispError } from '../../gateway/core/errors.js';
import { createEnvelope } from '../../gateway/agent/create-envelope.js';
import { loadCredential, readCertificates, type PrivateCredential } from '../../gateway/agent/key-material.js';
import { decodeBase64 as decodeBase64Impl, MimeEntity, splitMultipart } from '../../gateway/mime/mime-entity.js';
import { openEnvelope, type DecryptionCredential } from '../../gateway/agent/open-envelope.js';
import { signDetached } from '../../gateway/agent/sign-detached.js';
import { unwrapMessage } from '../../gateway/agent/unwrap-message.js';
import { verifySignature } from '../../gateway/agent/verify-signature.js';
import { wrapMessage } from '../../gateway/agent/wrap-message.js';
import { processIncoming } from '../../gateway/flows/process-incoming.js';
import { credentialPaths } from '../helpers/pki.js';
import { opensslOk } from '../helpers/openssl.js';
import { NASTY_BER, applyMutation, mutationArbitrary, onlyHispError } from '../helpers/mutations.js';

/** decodeBase64, ignoring the `what` label the tests pass (the function no longer takes one). */
const decodeBase64 = (body: Buffer, _what?: string): Buffer => decodeBase64Impl(body);

const SEED = Number(process.env.FC_SEED ?? 20261125);
const RUNS = 250;
/** Generous bound for one parser call on inputs of a few KB: catches hangs and blow-ups, not speed. */
const MAX_MS_PER_CALL = 3000;

const params = (numRuns = RUNS): fc.Parameters<unknown> => ({ seed: SEED, numRuns, endOnFailure: true });

/** Runs fn; anything thrown must be a HispError, and the call must end in reasonable time. */
/** The same for an async call: it resolves, or rejects with a HispError, within the time limit. */
async function onlyHispErrorAsync(fn: () => Promise<unknown>): Promise<void> {
  const started = performance.now();
  try {
    await fn();
  } catch (err) {
    if (!(err instanceof HispError)) throw err;
  }
  expect(performance.now() - started).toBeLessThan(MAX_MS_PER_CALL);
}


// ------------------------------------------------------------------------------------------------
// Mutations

const mutationArb = mutationArbitrary(NASTY_BER);

/** 1–4 mutations of `seed`, or (in a tenth of the cases) a mutation confined to [from, to). */
function mutationsOf(seed: () => Buffer): fc.Arbitrary<Buffer> {
  return fc.array(mutationArb, { minLength: 1, maxLength: 4 }).map((ms) => ms.reduce(applyMutation, seed()));
}

/** Mutations of the octets in [from, to) of `seed` only (e.g. one certificate inside a SignedData). */
function mutationsWithin(seed: () => Buffer, range: () => [number, number]): fc.Arbitrary<Buffer> {
  return fc.array(mutationArb, { minLength: 1, maxLength: 3 }).map((ms) => {
    const s = seed();
    const [from, to] = range();
    const middle = ms.reduce(applyMutation, Buffer.from(s.subarray(from, to)));
    return Buffer.concat([s.subarray(0, from), middle, s.subarray(to)]);
  });
}

// ------------------------------------------------------------------------------------------------
// Deliberately nasty inputs

function repeat(chunk: number[], times: number): Buffer {
  return Buffer.from(Array.from({ length: times }, () => chunk).flat());
}

/** A definite-length SEQUENCE nested `depth` times around NULL. */
function nestedDefinite(depth: number, tag = 0x30): Buffer {
  let inner = Buffer.from([0x05, 0x00]);
  for (let i = 0; i < depth; i++) {
    const len = inner.length;
    const lenOctets = len < 0x80 ? [len] : len < 0x100 ? [0x81, len] : len < 0x10000 ? [0x82, len >> 8, len & 0xff] : [0x83, len >> 16, (len >> 8) & 0xff, len & 0xff];
    inner = Buffer.concat([Buffer.from([tag, ...lenOctets]), inner]);
  }
  return inner;
}

const NASTY_DER: [string, Buffer][] = [
  ['empty', Buffer.alloc(0)],
  ['one zero octet', Buffer.from([0])],
  ['100 000 nested indefinite SEQUENCEs, no end-of-contents', repeat([0x30, 0x80], 100_000)],
  ['100 000 nested indefinite [0], no end-of-contents', repeat([0xa0, 0x80], 100_000)],
  ['indefinite SEQUENCE of 50 000 NULLs, no end-of-contents', Buffer.concat([Buffer.from([0x30, 0x80]), repeat([0x05, 0x00], 50_000)])],
  ['10 000 nested definite SEQUENCEs', nestedDefinite(10_000)],
  ['5 000 nested definite constructed OCTET STRINGs', nestedDefinite(5_000, 0x24)],
  ['SEQUENCE with a 4 GB length', Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x06, 0x00])],
  ['SEQUENCE with a 2^64 length', Buffer.from([0x30, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
  ['length of length 127', Buffer.from([0x30, 0xff, 0x00])],
  ['high tag number, 5 octets', Buffer.from([0x1f, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00])],
  ['primitive with indefinite length', Buffer.from([0x04, 0x80, 0x00, 0x00])],
  ['ContentInfo with a huge OID arc', Buffer.concat([Buffer.from([0x30, 0x0e, 0x06, 0x0c]), Buffer.alloc(11, 0xff), Buffer.from([0x7f])])],
  ['ContentInfo with empty OID', Buffer.from([0x30, 0x02, 0x06, 0x00])],
  [
    'EnvelopedData ContentInfo whose [0] is indefinite and unterminated',
    Buffer.concat([Buffer.from('3080060b2a864886f70d0109100117a080', 'hex'), repeat([0x30, 0x80], 1000)]),
  ],
  [
    'SignedData ContentInfo, [0] with a 2^31 length',
    Buffer.from('3080 06092a864886f70d010702 a0 84 7f ff ff ff 30 00'.replace(/ /g, ''), 'hex'),
  ],
];

const NASTY_MIME: [string, Buffer][] = [
  ['100 000 header lines', Buffer.from('X-A: b\r\n'.repeat(100_000))],
  ['one 2 MB folded header', Buffer.from(`Subject: a${'\r\n b'.repeat(500_000)}\r\n\r\n`)],
  ['2 MB of LF', Buffer.alloc(2_000_000, 0x0a)],
  ['2 MB of CR', Buffer.alloc(2_000_000, 0x0d)],
  ['2 MB of colons', Buffer.alloc(2_000_000, 0x3a)],
  ['a 1 MB Content-Type value', Buffer.from(`Content-Type: multipart/signed; ${'a=b; '.repeat(200_000)}boundary=x\r\n\r\n`)],
  ['a 1 MB quoted parameter, unterminated', Buffer.from(`Content-Type: multipart/signed; boundary="${'x'.repeat(1_000_000)}\r\n\r\n`)],
  ['RFC 2231 with 10 000 continuations', Buffer.from(`Content-Type: a/b; ${Array.from({ length: 10_000 }, (_, i) => `n*${i}*=%41`).join('; ')}\r\n\r\n`)],
  ['pkcs7-mime with 1 MB of base64 garbage', Buffer.concat([Buffer.from('Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n'), Buffer.alloc(1_000_000, 0x41)])],
];

// ------------------------------------------------------------------------------------------------
// Valid seeds

const P = (name: Parameters<typeof credentialPaths>[0]) => credentialPaths(name);
const INNER = Buffer.from(
  'From: sender@sender.test\r\nTo: patient@recipient.test\r\nSubject: fuzz\r\nDate: Tue, 01 Jan 2030 00:00:00 +0000\r\n' +
    'Message-ID: <fuzz@sender.test>\r\n\r\nHello.\r\n',
);
const AT = new Date('2030-01-01T00:00:00Z');
/** Fixed, so that the SignedData seeds (RSA PKCS#1 v1.5 signatures) are the same octets every run. */
const SIGNING_TIME = new Date('2029-12-31T12:00:00Z');

let sender: PrivateCredential;
let recipient: PrivateCredential;
let credentials: DecryptionCredential[];
let anchors: Certificate[];
const seeds = {} as {
  messageCbc: Buffer;
  messageGcm: Buffer;
  envelopeCbc: Buffer;
  envelopeGcm: Buffer;
  envelopeOpensslBer: Buffer;
  signedEntity: Buffer;
  signedContent: Buffer;
  signature: Buffer;
  signatureOpaqueBer: Buffer;
  /** [start, end) of the signer certificate inside `signature`. */
  signerCertRange: [number, number];
  multipartBody: Buffer;
  boundary: string;
  base64: Buffer;
  certPem: Buffer;
  chainPem: Buffer;
  certDer: Buffer;
};

function outerDer(message: Buffer): Buffer {
  const at = message.indexOf('\r\n\r\n');
  return Buffer.from(message.subarray(at + 4).toString('latin1'), 'base64');
}

beforeAll(() => {
  sender = loadCredential(P('sender-rsa').key, P('sender-rsa').chain);
  recipient = loadCredential(P('recipient-rsa').key, P('recipient-rsa').cert);
  credentials = [{ key: recipient.key, certificate: recipient.certificate }];
  anchors = readCertificates(readFileSync(P('root-ca').cert));

  seeds.messageCbc = wrapMessage(INNER, { signers: [sender], recipients: [recipient.certificate], signingTime: SIGNING_TIME }).message;
  seeds.messageGcm = wrapMessage(INNER, {
    signers: [sender],
    signingTime: SIGNING_TIME,
    recipients: [recipient.certificate],
    cipher: 'aes128-gcm',
    keyTransport: 'rsa-pkcs1',
    recipientIdentifier: 'subjectKeyIdentifier',
  }).message;
  seeds.envelopeCbc = outerDer(seeds.messageCbc);
  seeds.envelopeGcm = outerDer(seeds.messageGcm);
  seeds.signedEntity = openEnvelope(seeds.envelopeCbc, credentials).content;
  const ct = MimeEntity.parse(seeds.signedEntity).contentType();
  seeds.boundary = ct.params.boundary!;
  seeds.multipartBody = MimeEntity.parse(seeds.signedEntity).body;
  const [content, sigPart] = splitMultipart(seeds.multipartBody, seeds.boundary);
  seeds.signedContent = content!;
  seeds.base64 = MimeEntity.parse(sigPart!).body;
  seeds.signature = decodeBase64(seeds.base64, 'signature');
  const certAt = seeds.signature.indexOf(sender.certificate.der);
  expect(certAt).toBeGreaterThan(0);
  seeds.signerCertRange = [certAt, certAt + sender.certificate.der.length];
  // BER with indefinite lengths and constructed OCTET STRINGs, as openssl -stream writes them.
  seeds.envelopeOpensslBer = opensslOk(
    ['cms', '-encrypt', '-binary', '-stream', '-outform', 'DER', '-aes256', P('recipient-rsa').cert],
    seeds.signedEntity,
  );
  seeds.signatureOpaqueBer = opensslOk(
    ['cms', '-sign', '-binary', '-nodetach', '-stream', '-outform', 'DER', '-signer', P('sender-rsa').cert, '-inkey', P('sender-rsa').key],
    INNER,
  );
  seeds.certPem = readFileSync(P('sender-rsa').cert);
  seeds.chainPem = readFileSync(P('sender-rsa').chain!);
  seeds.certDer = readFileSync(P('sender-rsa').certDer);

  // The seeds themselves are fine.
  expect(unwrapMessage(seeds.messageCbc, { credentials }).signers[0]!.verified).toBe(true);
  expect(unwrapMessage(seeds.messageGcm, { credentials }).signers[0]!.verified).toBe(true);
  expect(openEnvelope(seeds.envelopeOpensslBer, credentials).content).toEqual(seeds.signedEntity);
  expect(verifySignature(seeds.signatureOpaqueBer, undefined, { allowSha1: false }).signers[0]!.verified).toBe(true);
}, 60_000);

// ------------------------------------------------------------------------------------------------

describe('MIME parsers', () => {
  it('MimeEntity.parse (+ header, contentType) on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
        onlyHispError(() => {
          const e = MimeEntity.parse(Buffer.from(bytes));
          e.header('content-type');
          e.contentType();
        });
      }),
      params(),
    );
  });

  it('MimeEntity.parse on header-like random text', () => {
    const headerish = fc
      .array(fc.constantFrom('Content-Type', ':', ' ', '\t', '\r\n', '\n', '\r', ';', '=', '"', '*', "'", '%', 'a', 'boundary', 'From ', '\\', '(', ')', '\xff'), {
        maxLength: 120,
      })
      .map((xs) => Buffer.from(xs.join(''), 'latin1'));
    fc.assert(
      fc.property(headerish, (bytes) => {
        onlyHispError(() => {
          const e = MimeEntity.parse(bytes);
          for (const h of e.headers) e.header(h.name);
          e.contentType();
        });
      }),
      params(),
    );
  });

  it('MimeEntity.parse on mutations of the signed entity', () => {
    fc.assert(
      fc.property(mutationsOf(() => seeds.signedEntity), (bytes) => {
        onlyHispError(() => MimeEntity.parse(bytes).contentType());
      }),
      params(),
    );
  });

  it('splitMultipart on mutations of a multipart/signed body, with random boundaries too', () => {
    fc.assert(
      fc.property(
        mutationsOf(() => seeds.multipartBody),
        fc.oneof(fc.constant('__seed__'), fc.string({ maxLength: 210 }), fc.constantFrom('', '-', '--', '\r\n', '\u00ff\u0100')),
        (body, boundary) => {
          onlyHispError(() => splitMultipart(body, boundary === '__seed__' ? seeds.boundary : boundary));
        },
      ),
      params(),
    );
  });

  it('splitMultipart on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1024 }), fc.string({ minLength: 1, maxLength: 5 }), (bytes, boundary) => {
        onlyHispError(() => splitMultipart(Buffer.from(bytes), boundary));
      }),
      params(),
    );
  });

  it('decodeBase64 on random bytes and on mutations of a base64 body', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 1024 }).map((x) => Buffer.from(x)), mutationsOf(() => seeds.base64)), (bytes) => {
        onlyHispError(() => decodeBase64(bytes, 'fuzz'));
      }),
      params(),
    );
  });

  it.each(NASTY_MIME)('nasty MIME: %s', (_name, bytes) => {
    onlyHispError(() => {
      const e = MimeEntity.parse(bytes);
      e.contentType();
    });
    onlyHispError(() => unwrapMessage(bytes, { credentials }));
    onlyHispError(() => splitMultipart(bytes, 'x'));
  });
});

// ------------------------------------------------------------------------------------------------

describe('CMS parsers', () => {
  it('openEnvelope on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1024 }), (bytes) => {
        onlyHispError(() => openEnvelope(Buffer.from(bytes), credentials));
      }),
      params(),
    );
  });

  it('openEnvelope on mutations of EnvelopedData (CBC), AuthEnvelopedData (GCM) and openssl BER', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('envelopeCbc', 'envelopeGcm', 'envelopeOpensslBer' as const),
        fc.array(mutationArb, { minLength: 1, maxLength: 4 }),
        (which, ms) => {
          const bytes = ms.reduce(applyMutation, seeds[which]);
          onlyHispError(() => openEnvelope(bytes, credentials));
        },
      ),
      params(),
    );
  });

  it('verifySignature on random bytes (detached and opaque)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1024 }), fc.boolean(), (bytes, detached) => {
        onlyHispError(() => verifySignature(Buffer.from(bytes), detached ? seeds.signedContent : undefined, { allowSha1: false }));
      }),
      params(),
    );
  });

  it('verifySignature on mutations of a detached SignedData and of an opaque BER SignedData', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), fc.boolean(), (opaque, ms, allowSha1) => {
        const bytes = ms.reduce(applyMutation, opaque ? seeds.signatureOpaqueBer : seeds.signature);
        onlyHispError(() => verifySignature(bytes, opaque ? undefined : seeds.signedContent, { allowSha1 }));
      }),
      params(),
    );
  });

  it('verifySignature on mutations confined to the signer certificate inside the SignedData', () => {
    fc.assert(
      fc.property(
        mutationsWithin(
          () => seeds.signature,
          () => seeds.signerCertRange,
        ),
        (bytes) => {
          onlyHispError(() => verifySignature(bytes, seeds.signedContent, { allowSha1: false }));
        },
      ),
      params(),
    );
  });

  it.each(NASTY_DER)('nasty BER: %s', (_name, bytes) => {
    onlyHispError(() => openEnvelope(bytes, credentials));
    onlyHispError(() => verifySignature(bytes, seeds.signedContent, { allowSha1: false }));
    onlyHispError(() => verifySignature(bytes, undefined, { allowSha1: false }));
    onlyHispError(() => readCertificates(bytes));
  });
});

// ------------------------------------------------------------------------------------------------

describe('unwrapMessage', () => {
  it('on mutations of the whole message (CBC and GCM)', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (gcm, ms) => {
        const bytes = ms.reduce(applyMutation, gcm ? seeds.messageGcm : seeds.messageCbc);
        onlyHispError(() => unwrapMessage(bytes, { credentials }));
      }),
      params(),
    );
  });

  it('integrity: one bit flipped anywhere in the message → refused, or exactly the signed message delivered', () => {
    // CBC is malleable and some octets are not covered by the signature (outer headers, transfer
    // encoding whitespace, the multipart/signed and smime.p7s MIME headers, CMS version numbers), so
    // some flips are accepted; none may change what is delivered.
    const delivered = {
      cbc: unwrapMessage(seeds.messageCbc, { credentials }).message,
      gcm: unwrapMessage(seeds.messageGcm, { credentials }).message,
    };
    expect(delivered.cbc).toEqual(INNER);
    fc.assert(
      fc.property(fc.boolean(), fc.nat(), fc.integer({ min: 0, max: 7 }), (gcm, pos, bit) => {
        const x = Buffer.from(gcm ? seeds.messageGcm : seeds.messageCbc);
        x[pos % x.length]! ^= 1 << bit;
        let result;
        try {
          result = unwrapMessage(x, { credentials });
        } catch (err) {
          if (err instanceof HispError) return;
          throw err;
        }
        expect(result.message.equals(gcm ? delivered.gcm : delivered.cbc)).toBe(true);
        expect(result.signers.some((si) => si.verified)).toBe(true);
      }),
      params(400),
    );
  });

  it('on mutations of the CMS envelope, re-encoded in base64', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (gcm, ms) => {
        const der = ms.reduce(applyMutation, gcm ? seeds.envelopeGcm : seeds.envelopeCbc);
        const message = Buffer.concat([
          Buffer.from('From: sender@sender.test\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n'),
          Buffer.from(der.toString('base64').replace(/.{76}/g, '$&\r\n')),
        ]);
        onlyHispError(() => unwrapMessage(message, { credentials }));
      }),
      params(),
    );
  });

  it('on mutations of the decrypted signed entity, re-encrypted (reaches verifySignature and the MIME checks)', async () => {
    await fc.assert(
      fc.asyncProperty(mutationsOf(() => seeds.signedEntity), fc.boolean(), async (entity, allowSha1) => {
        const der = createEnvelope(entity, [recipient.certificate], { cipher: 'aes128-cbc', keyTransport: 'rsa-oaep-sha1' });
        const message = Buffer.concat([
          Buffer.from('From: sender@sender.test\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\n'),
          Buffer.from(der.toString('base64')),
        ]);
        onlyHispError(() => unwrapMessage(message, { credentials, allowSha1 }));
        await onlyHispErrorAsync(() => processIncoming(message, { credentials, anchors, at: AT }));
      }),
      params(200),
    );
  });
});

// ------------------------------------------------------------------------------------------------

describe('readCertificates', () => {
  it('on random bytes, with and without a PEM header', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1024 }), fc.boolean(), (bytes, pem) => {
        const input = pem
          ? Buffer.concat([Buffer.from('-----BEGIN CERTIFICATE-----\n'), Buffer.from(bytes), Buffer.from('\n-----END CERTIFICATE-----\n')])
          : Buffer.from(bytes);
        onlyHispError(() => readCertificates(input, 'fuzz'));
      }),
      params(),
    );
  });

  it('on mutations of a PEM certificate, a PEM chain and a DER certificate', () => {
    fc.assert(
      fc.property(fc.constantFrom('certPem', 'chainPem', 'certDer' as const), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (which, ms) => {
        const bytes = ms.reduce(applyMutation, seeds[which]);
        onlyHispError(() => readCertificates(bytes, 'fuzz'));
      }),
      params(),
    );
  });

  it('on a PEM block holding base64 of each nasty BER input', () => {
    for (const [, der] of NASTY_DER.filter(([, d]) => d.length < 300_000)) {
      const pem = Buffer.from(`-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`);
      onlyHispError(() => readCertificates(pem, 'nasty'));
    }
  });
});

// ------------------------------------------------------------------------------------------------
// Fixed counterexamples (bugs): a certificate whose SubjectPublicKeyInfo Node cannot decode.
//
// X509Certificate parses such a certificate, but its .publicKey getter throws a plain Error
// (ERR_OSSL_EVP_DECODE_ERROR). Certificate.fromDer accepts it, so it can travel in a SignedData.

/** A DER certificate with the rsaEncryption OID of its SPKI changed to 1.2.840.113549.1.1.2. */
function withBrokenSpki(der: Buffer): Buffer {
  const rsaEncryption = Buffer.from('06092a864886f70d010101', 'hex');
  const at = der.indexOf(rsaEncryption);
  expect(at).toBeGreaterThan(0);
  expect(der.indexOf(rsaEncryption, at + 1)).toBe(-1);
  const patched = Buffer.from(der);
  patched[at + rsaEncryption.length - 1] = 0x02;
  return patched;
}

/** A Direct message around a given detached signature (what wrapMessage does, with the signature supplied). */
function messageWithSignature(signature: Buffer): Buffer {
  const b = 'b0undary';
  const entity = Buffer.concat([
    Buffer.from(`Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="${b}"\r\n\r\n--${b}\r\n`),
    seeds.signedContent,
    Buffer.from(`\r\n--${b}\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n`),
    Buffer.from(`${signature.toString('base64')}\r\n--${b}--\r\n`),
  ]);
  const envelope = createEnvelope(entity, [recipient.certificate], { cipher: 'aes256-cbc', keyTransport: 'rsa-oaep-sha1' });
  return Buffer.from(
    'From: sender@sender.test\r\nTo: patient@recipient.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n' +
      'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n' +
      `Content-Transfer-Encoding: base64\r\n\r\n${envelope.toString('base64')}\r\n`,
  );
}

describe('fixed counterexamples', () => {
  it('a certificate whose public key Node cannot decode is refused when parsed, with a typed error', () => {
    // X509Certificate parses it and throws only when .publicKey is read (ERR_OSSL_EVP_DECODE_ERROR).
    const e = (() => {
      try {
        Certificate.fromDer(withBrokenSpki(sender.certificate.der));
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(HispError);
    expect((e as HispError).code).toBe('HISP_KEY_UNREADABLE');
  });

  it('verifySignature: the signer certificate inside the SignedData cannot be decoded → only a HispError', () => {
    const sig = Buffer.from(seeds.signature);
    const [from, to] = seeds.signerCertRange;
    withBrokenSpki(sig.subarray(from, to)).copy(sig, from);
    const result = verifySignature(sig, seeds.signedContent, { allowSha1: false });
    expect(result.signers[0]).toMatchObject({ verified: false, certificate: undefined });
    expect(result.signers[0]!.error?.code).toBe('HISP_SIG_NO_SIGNER_CERT');
  });

  it('verifySignature: the counterexample fast-check found (seed 20261125): octet 238 set to 133, octet 1353 bit 5 flipped', () => {
    // Octet 238 lies in the rsaEncryption OID (06 09 2a 86 48 86 f7 0d 01 01 01 at 232) of the signer
    // certificate's SubjectPublicKeyInfo (0xf7 → 0x85): the certificate still parses, its key does
    // not. (The flip at 1353 is inside the intermediate-ca copy, harmless on its own.)
    const [from, to] = seeds.signerCertRange;
    expect(238).toBeGreaterThan(from);
    expect(238).toBeLessThan(to);
    expect(seeds.signature.subarray(232, 243).toString('hex')).toBe('06092a864886f70d010101');
    const bytes = Buffer.from(seeds.signature);
    bytes[1353]! ^= 1 << 5;
    bytes[238] = 133;
    onlyHispError(() => verifySignature(bytes, seeds.signedContent, { allowSha1: true }));
  });

  it('processIncoming: an undecodable certificate among those of the SignedData does not stop the message', async () => {
    // The sender adds the root too, and that copy is damaged so that its key cannot be decoded: the
    // junk certificate is skipped and the path is built through the real intermediate to the anchor.
    const root = anchors[0]!;
    const sig = signDetached(seeds.signedContent, [{ ...sender, chain: [...sender.chain, root] }], 'sha256', SIGNING_TIME);
    const at = sig.indexOf(root.der);
    expect(at).toBeGreaterThan(0);
    withBrokenSpki(root.der).copy(sig, at);
    const result = await processIncoming(messageWithSignature(sig), { credentials, anchors, at: AT });
    expect(result.unwrapped.certificates.map((c) => c.sha256)).not.toContain(root.sha256);
    expect(result.accepted).toHaveLength(1);
    expect(result.accepted[0]!.anchor.sha256).toBe(root.sha256);
  });

  it('sanity: random bytes appended after a valid envelope are refused or ignored, never a crash', () => {
    onlyHispError(() => openEnvelope(Buffer.concat([seeds.envelopeCbc, randomBytes(10)]), credentials));
  });
});

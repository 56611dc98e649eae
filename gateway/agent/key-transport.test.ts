// Unit tests of RSA key transport: PKCS#1 v1.5 unpadding (RFC 8017 §7.2.2) and the forms of
// RSAES-OAEP-params (RFC 4055 §4.1) that parseKeyTransportAlgorithm reads or refuses.
import { constants, generateKeyPairSync, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { OID } from './algorithms.js';
import { decodeBer, readAlgorithm } from './asn1.js';
import { encode } from './der.js';
import {
  keyTransportAlgorithm,
  parseKeyTransportAlgorithm,
  pkcs1v15Unpad,
  unwrapContentKey,
  wrapContentKey,
} from './key-transport.js';
import { hispError } from '../../test/helpers/hisp-error.js';


// ------------------------------------------------------------------------------------------------
// pkcs1v15Unpad

const K = 256; // RSA-2048
const L = 32; // AES-256 key

/** 00 02 PS 00 M with a non-zero PS of k - |M| - 3 octets. */
function encoded(m: Buffer, k = K, psByte?: number): Buffer {
  const em = Buffer.alloc(k);
  em[0] = 0x00;
  em[1] = 0x02;
  const psEnd = k - m.length - 1;
  for (let i = 2; i < psEnd; i++) em[i] = psByte ?? 1 + ((i * 37) % 255); // never zero
  em[psEnd] = 0x00;
  m.copy(em, psEnd + 1);
  return em;
}

const M = Buffer.from('a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0', 'hex');
const FALLBACK = Buffer.alloc(L, 0xee);

describe('pkcs1v15Unpad', () => {
  it('good padding yields M', () => {
    expect(M).toHaveLength(L);
    expect(pkcs1v15Unpad(encoded(M), L, FALLBACK)).toEqual(M);
  });

  it('good padding with the minimum PS of 8 octets yields M', () => {
    const em = encoded(M, L + 11);
    expect(pkcs1v15Unpad(em, L, FALLBACK)).toEqual(M);
  });

  it('M with zero octets (a CEK may contain 00) is returned whole', () => {
    const m = Buffer.alloc(L);
    m[5] = 0x07;
    expect(pkcs1v15Unpad(encoded(m), L, FALLBACK)).toEqual(m);
  });

  it('returns a new buffer, not a view into EM', () => {
    const em = encoded(M);
    const out = pkcs1v15Unpad(em, L, FALLBACK);
    em.fill(0);
    expect(out).toEqual(M);
  });

  it.each([0x01, 0x02, 0x80, 0xff])('first octet %i instead of 00 → fallback', (b) => {
    const em = encoded(M);
    em[0] = b;
    expect(pkcs1v15Unpad(em, L, FALLBACK)).toEqual(FALLBACK);
  });

  it.each([0x00, 0x01, 0x03, 0x82, 0xff])('block type %i instead of 02 → fallback', (b) => {
    const em = encoded(M);
    em[1] = b;
    expect(pkcs1v15Unpad(em, L, FALLBACK)).toEqual(FALLBACK);
  });

  it.each([2, 3, 9, 100, K - L - 2])('a zero octet in PS (at %i) → fallback', (at) => {
    const em = encoded(M);
    em[at] = 0x00;
    expect(pkcs1v15Unpad(em, L, FALLBACK)).toEqual(FALLBACK);
  });

  it('missing separator (the octet before M is not 00) → fallback', () => {
    const em = encoded(M);
    em[K - L - 1] = 0x01;
    expect(pkcs1v15Unpad(em, L, FALLBACK)).toEqual(FALLBACK);
  });

  it.each([0, 1, 7])('short PS (%i octets, fewer than 8) → fallback', (ps) => {
    // A block 00 02 PS 00 M that a lax unpadder would accept, with |PS| < 8 (RFC 8017 §7.2.2 step 3).
    const em = encoded(M, L + 3 + ps);
    expect(em[2 + ps]).toBe(0);
    expect(pkcs1v15Unpad(em, L, FALLBACK)).toEqual(FALLBACK);
  });

  it('short PS within a full-size block (separator early, M longer than L) → fallback', () => {
    // 00 02 PS(5) 00 then k-8 octets: valid only for an unpadder that searches for the first 00.
    const em = Buffer.alloc(K, 0x5a);
    em[0] = 0;
    em[1] = 2;
    em[7] = 0;
    expect(pkcs1v15Unpad(em, L, FALLBACK)).toEqual(FALLBACK);
    expect(pkcs1v15Unpad(em, K - 8, Buffer.alloc(K - 8, 0xee))).toEqual(Buffer.alloc(K - 8, 0xee));
  });

  it.each([16, 24, 31, 33, 48])('wrong length: valid padding around a %i-octet message, 32 expected → fallback', (n) => {
    const m = Buffer.alloc(n, 0x5a); // no zero octet, so no accidental separator
    expect(pkcs1v15Unpad(encoded(m), L, FALLBACK)).toEqual(FALLBACK);
  });

  it('EM shorter than the key plus 11 octets, or empty → fallback', () => {
    expect(pkcs1v15Unpad(Buffer.alloc(0), L, FALLBACK)).toEqual(FALLBACK);
    expect(pkcs1v15Unpad(Buffer.alloc(L), L, FALLBACK)).toEqual(FALLBACK);
    expect(pkcs1v15Unpad(encoded(M).subarray(0, L + 10), L, FALLBACK)).toEqual(FALLBACK);
  });

  it('all-zero EM (what raw RSA failure maps to) → fallback', () => {
    expect(pkcs1v15Unpad(Buffer.alloc(K), L, FALLBACK)).toEqual(FALLBACK);
  });

  it('property: any good block yields M; any single defect yields the fallback, always of length L', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 64, max: 512 }),
        fc.uint8Array({ minLength: L, maxLength: L }),
        fc.uint8Array({ minLength: L, maxLength: L }),
        fc.integer({ min: 1, max: 255 }),
        fc.constantFrom('none', 'first', 'type', 'ps-zero', 'separator'),
        fc.nat(),
        (k, mBytes, fb, psByte, defect, where) => {
          const m = Buffer.from(mBytes);
          const fallback = Buffer.from(fb);
          const em = encoded(m, k, psByte);
          const psEnd = k - L - 1;
          switch (defect) {
            case 'first':
              em[0] = 1 + (where % 255);
              break;
            case 'type':
              em[1] = (2 + 1 + (where % 255)) & 0xff;
              break;
            case 'ps-zero':
              em[2 + (where % (psEnd - 2))] = 0;
              break;
            case 'separator':
              em[psEnd] = 1 + (where % 255);
              break;
          }
          const out = pkcs1v15Unpad(em, L, fallback);
          expect(out).toHaveLength(L);
          expect(out).toEqual(defect === 'none' ? m : fallback);
        },
      ),
      { numRuns: 500 },
    );
  });
});

// ------------------------------------------------------------------------------------------------
// parseKeyTransportAlgorithm

const asnOid = (value: string) => new asn1js.ObjectIdentifier({ value });
const explicit = (tagNumber: number, inner: asn1js.AsnType) =>
  new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber }, value: [inner] });
const algId = (oid: string, params?: asn1js.AsnType) =>
  new asn1js.Sequence({ value: params ? [asnOid(oid), params] : [asnOid(oid)] });
const NULL = () => new asn1js.Null();

/** hashFunc [0], maskGenFunc [1] (MGF1 with `mgfHash`), pSourceFunc [2] as given. */
function oaepParams(fields: { hash?: asn1js.AsnType; mgfHash?: asn1js.AsnType; pSource?: asn1js.AsnType }): asn1js.Sequence {
  const value: asn1js.AsnType[] = [];
  if (fields.hash) value.push(explicit(0, fields.hash));
  if (fields.mgfHash) value.push(explicit(1, algId(OID.mgf1, fields.mgfHash)));
  if (fields.pSource) value.push(explicit(2, fields.pSource));
  return new asn1js.Sequence({ value });
}

/** Encodes with asn1js, decodes with hisp's reader, parses: the path a RecipientInfo takes. */
function parse(alg: asn1js.Sequence): ReturnType<typeof parseKeyTransportAlgorithm> {
  const der = Buffer.from(alg.toBER(false));
  return parseKeyTransportAlgorithm(readAlgorithm(decodeBer(der, 'keyEncryptionAlgorithm'), 'keyEncryptionAlgorithm'));
}

describe('parseKeyTransportAlgorithm', () => {
  const sha1 = OID.sha1;
  const sha256 = OID.sha256;
  const empty = Buffer.alloc(0);

  it('rsaEncryption with NULL or absent parameters → rsa-pkcs1', () => {
    expect(parse(algId(OID.rsaEncryption, NULL()))).toEqual({ name: 'rsa-pkcs1', label: empty });
    expect(parse(algId(OID.rsaEncryption))).toEqual({ name: 'rsa-pkcs1', label: empty });
  });

  it('OAEP with parameters absent → SHA-1 defaults', () => {
    expect(parse(algId(OID.rsaesOaep))).toEqual({ name: 'rsa-oaep-sha1', label: empty });
  });

  it('OAEP with NULL parameters → SHA-1 defaults', () => {
    expect(parse(algId(OID.rsaesOaep, NULL()))).toEqual({ name: 'rsa-oaep-sha1', label: empty });
  });

  it('OAEP with an empty SEQUENCE (all defaults, RFC 4055) → SHA-1', () => {
    expect(parse(algId(OID.rsaesOaep, new asn1js.Sequence()))).toEqual({ name: 'rsa-oaep-sha1', label: empty });
  });

  it('OAEP with explicit SHA-1 and MGF1-SHA-1 (with and without NULL hash parameters) → SHA-1', () => {
    expect(parse(algId(OID.rsaesOaep, oaepParams({ hash: algId(sha1, NULL()), mgfHash: algId(sha1, NULL()) })))).toEqual({
      name: 'rsa-oaep-sha1',
      label: empty,
    });
    expect(parse(algId(OID.rsaesOaep, oaepParams({ hash: algId(sha1), mgfHash: algId(sha1) })))).toEqual({
      name: 'rsa-oaep-sha1',
      label: empty,
    });
  });

  it('OAEP with an explicit SHA-1 hashFunc only (MGF1 defaults to SHA-1) → SHA-1', () => {
    expect(parse(algId(OID.rsaesOaep, oaepParams({ hash: algId(sha1, NULL()) })))).toEqual({ name: 'rsa-oaep-sha1', label: empty });
  });

  it('OAEP with explicit SHA-256 and MGF1-SHA-256 (parameters absent or NULL) → SHA-256', () => {
    expect(parse(algId(OID.rsaesOaep, oaepParams({ hash: algId(sha256), mgfHash: algId(sha256) })))).toEqual({
      name: 'rsa-oaep-sha256',
      label: empty,
    });
    expect(parse(algId(OID.rsaesOaep, oaepParams({ hash: algId(sha256, NULL()), mgfHash: algId(sha256, NULL()) })))).toEqual({
      name: 'rsa-oaep-sha256',
      label: empty,
    });
  });

  it('OAEP with a pSpecified label → the label', () => {
    const label = Buffer.from('hisp label');
    const pSource = algId(OID.pSpecified, new asn1js.OctetString({ valueHex: label }));
    expect(parse(algId(OID.rsaesOaep, oaepParams({ hash: algId(sha256), mgfHash: algId(sha256), pSource })))).toEqual({
      name: 'rsa-oaep-sha256',
      label,
    });
    const emptyLabel = algId(OID.pSpecified, new asn1js.OctetString({ valueHex: new ArrayBuffer(0) }));
    expect(parse(algId(OID.rsaesOaep, oaepParams({ pSource: emptyLabel })))).toEqual({ name: 'rsa-oaep-sha1', label: empty });
  });

  it.each([
    ['SHA-256 with MGF1-SHA-1', { hash: sha256, mgfHash: sha1 }],
    ['SHA-1 with MGF1-SHA-256', { hash: sha1, mgfHash: sha256 }],
    ['SHA-256 with MGF1 defaulted to SHA-1', { hash: sha256 }],
    ['MGF1-SHA-256 with the hash defaulted to SHA-1', { mgfHash: sha256 }],
    ['SHA-384 with MGF1-SHA-384', { hash: OID.sha384, mgfHash: OID.sha384 }],
    ['SHA-512 with MGF1-SHA-512', { hash: OID.sha512, mgfHash: OID.sha512 }],
    ['MD5 with MGF1-MD5', { hash: OID.md5, mgfHash: OID.md5 }],
  ])('OAEP %s → HISP_CMS_UNSUPPORTED_ALGORITHM', (_name, f: { hash?: string; mgfHash?: string }) => {
    const params = oaepParams({
      ...(f.hash ? { hash: algId(f.hash) } : {}),
      ...(f.mgfHash ? { mgfHash: algId(f.mgfHash) } : {}),
    });
    expect(hispError(() => parse(algId(OID.rsaesOaep, params))).code).toBe('HISP_CMS_UNSUPPORTED_ALGORITHM');
  });

  it('a mask generation function other than MGF1 → HISP_CMS_UNSUPPORTED_ALGORITHM', () => {
    const params = new asn1js.Sequence({ value: [explicit(1, algId('1.2.840.113549.1.1.99', algId(sha1)))] });
    expect(hispError(() => parse(algId(OID.rsaesOaep, params))).code).toBe('HISP_CMS_UNSUPPORTED_ALGORITHM');
  });

  it('a label source other than pSpecified, or pSpecified without an OCTET STRING → HISP_CMS_UNSUPPORTED_ALGORITHM', () => {
    const other = oaepParams({ pSource: algId('1.2.840.113549.1.1.98', new asn1js.OctetString()) });
    expect(hispError(() => parse(algId(OID.rsaesOaep, other))).code).toBe('HISP_CMS_UNSUPPORTED_ALGORITHM');
    const notOctets = oaepParams({ pSource: algId(OID.pSpecified, NULL()) });
    expect(hispError(() => parse(algId(OID.rsaesOaep, notOctets))).code).toBe('HISP_CMS_UNSUPPORTED_ALGORITHM');
  });

  it.each([
    ['id-RSASSA-PSS', OID.rsassaPss],
    ['id-ecPublicKey', OID.ecPublicKey],
    ['AES-256 key wrap', '2.16.840.1.101.3.4.1.45'],
  ])('another key encryption algorithm (%s) → HISP_CMS_UNSUPPORTED_ALGORITHM', (_name, oid) => {
    expect(hispError(() => parse(algId(oid, NULL()))).code).toBe('HISP_CMS_UNSUPPORTED_ALGORITHM');
  });

  it('malformed OAEP parameters → HISP_CMS_MALFORMED, never another error', () => {
    const cases: asn1js.AsnType[] = [
      new asn1js.Integer({ value: 1 }), // not a SEQUENCE
      new asn1js.Sequence({ value: [new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [] })] }), // [0] empty
      new asn1js.Sequence({ value: [explicit(0, new asn1js.Integer({ value: 1 }))] }), // hashFunc not a SEQUENCE
      new asn1js.Sequence({ value: [explicit(1, algId(OID.mgf1))] }), // MGF1 without its hash
      new asn1js.Sequence({ value: [explicit(0, new asn1js.Sequence({ value: [new asn1js.Null()] }))] }), // no OID
    ];
    for (const params of cases) {
      expect(hispError(() => parse(algId(OID.rsaesOaep, params))).code).toBe('HISP_CMS_MALFORMED');
    }
  });

  it.each(['rsa-pkcs1', 'rsa-oaep-sha1', 'rsa-oaep-sha256'] as const)('round trip: what keyTransportAlgorithm(%s) writes parses back', (name) => {
    const der = encode(keyTransportAlgorithm(name));
    const parsed = parseKeyTransportAlgorithm(readAlgorithm(decodeBer(der, 'alg'), 'alg'));
    expect(parsed).toEqual({ name, label: Buffer.alloc(0) });
  });

  it('the exact encodings hisp writes (RFC 3370 §4.2.1, RFC 4055 §4.1, what openssl writes for SHA-256)', () => {
    expect(encode(keyTransportAlgorithm('rsa-pkcs1')).toString('hex')).toBe('300d06092a864886f70d0101010500');
    expect(encode(keyTransportAlgorithm('rsa-oaep-sha1')).toString('hex')).toBe('300d06092a864886f70d0101073000');
    expect(encode(keyTransportAlgorithm('rsa-oaep-sha256')).toString('hex')).toBe(
      '303806092a864886f70d010107302ba00d300b0609608648016503040201a11a301806092a864886f70d010108300b0609608648016503040201',
    );
  });
});

// ------------------------------------------------------------------------------------------------
// wrapContentKey / unwrapContentKey

describe('wrapContentKey / unwrapContentKey', () => {
  let pub: KeyObject;
  let priv: KeyObject;
  let otherPriv: KeyObject;
  beforeAll(() => {
    ({ publicKey: pub, privateKey: priv } = generateKeyPairSync('rsa', { modulusLength: 2048 }));
    ({ privateKey: otherPriv } = generateKeyPairSync('rsa', { modulusLength: 2048 }));
  });
  const none = Buffer.alloc(0);

  it.each(['rsa-pkcs1', 'rsa-oaep-sha1', 'rsa-oaep-sha256'] as const)('%s: round trip for 16, 24 and 32-octet keys', (name) => {
    for (const n of [16, 24, 32]) {
      const cek = randomBytes(n);
      const ek = wrapContentKey(pub, name, cek);
      expect(ek).toHaveLength(256);
      expect(unwrapContentKey(priv, name, none, ek, n)).toEqual(cek);
    }
  });

  it.each(['rsa-pkcs1', 'rsa-oaep-sha1', 'rsa-oaep-sha256'] as const)('%s: wrong key, wrong scheme or wrong length → a random key of the expected length', (name) => {
    const cek = randomBytes(32);
    const ek = wrapContentKey(pub, name, cek);
    const wrongScheme = name === 'rsa-pkcs1' ? 'rsa-oaep-sha1' : name === 'rsa-oaep-sha1' ? 'rsa-oaep-sha256' : 'rsa-pkcs1';
    const outs = [
      unwrapContentKey(otherPriv, name, none, ek, 32),
      unwrapContentKey(priv, wrongScheme, none, ek, 32),
      unwrapContentKey(priv, name, none, ek, 16),
    ];
    for (const out of outs) expect(out.equals(cek) || cek.includes(out)).toBe(false);
    expect(outs.map((o) => o.length)).toEqual([32, 32, 16]);
    expect(unwrapContentKey(otherPriv, name, none, ek, 32)).not.toEqual(outs[0]);
  });

  it('OAEP label: the right label recovers the key, a wrong or missing one yields the fallback', () => {
    const cek = randomBytes(16);
    const label = Buffer.from('label');
    const ek = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: label }, cek);
    expect(unwrapContentKey(priv, 'rsa-oaep-sha256', label, ek, 16)).toEqual(cek);
    expect(unwrapContentKey(priv, 'rsa-oaep-sha256', Buffer.from('other'), ek, 16)).not.toEqual(cek);
    expect(unwrapContentKey(priv, 'rsa-oaep-sha256', none, ek, 16)).not.toEqual(cek);
  });

  it('wrapContentKey refuses a non-RSA recipient key with HISP_CMS_UNSUPPORTED_ALGORITHM', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    expect(hispError(() => wrapContentKey(publicKey, 'rsa-oaep-sha1', randomBytes(16))).code).toBe(
      'HISP_CMS_UNSUPPORTED_ALGORITHM',
    );
  });

  it('unwrapContentKey with a non-RSA private key does not throw', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    for (const name of ['rsa-pkcs1', 'rsa-oaep-sha1', 'rsa-oaep-sha256'] as const) {
      expect(unwrapContentKey(privateKey, name, none, randomBytes(256), 32)).toHaveLength(32);
    }
  });
});

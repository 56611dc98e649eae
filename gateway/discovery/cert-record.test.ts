import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { hispErrorOf, vectorGroup } from '../../test/helpers/vectors.js';
import {
  CERT_RR_TYPE,
  CERT_TYPES,
  certRecordUrl,
  certTypeName,
  decodeCertRdata,
  encodeCertRdata,
  type CertRecord,
} from './cert-record.js';

const CERT_VECTOR = 'dns/cert.nhindirect.org.bin';
const dotnet = vectorGroup('dotnet-ri', [CERT_VECTOR]);

/**
 * The .NET RI serializes one RR uncompressed: owner labels, type, class, TTL, RDLENGTH, rdata, and
 * pads the file with zeros to 512 bytes. Cut by hand here, independently of the code under test.
 */
function readSerializedRr(file: Buffer): { owner: string; type: number; klass: number; ttl: number; rdata: Buffer; rest: Buffer } {
  const labels: string[] = [];
  let offset = 0;
  for (let len = file.readUInt8(offset); len !== 0; len = file.readUInt8(offset)) {
    labels.push(file.toString('ascii', offset + 1, offset + 1 + len));
    offset += 1 + len;
  }
  offset += 1;
  const rdLength = file.readUInt16BE(offset + 8);
  const rdStart = offset + 10;
  return {
    owner: labels.join('.'),
    type: file.readUInt16BE(offset),
    klass: file.readUInt16BE(offset + 2),
    ttl: file.readUInt32BE(offset + 4),
    rdata: file.subarray(rdStart, rdStart + rdLength),
    rest: file.subarray(rdStart + rdLength),
  };
}

describe.skipIf(!dotnet.present)(dotnet.title('CERT rdata of the .NET RI vector cert.nhindirect.org'), () => {
  it('decodes type PKIX, key tag 15655, algorithm 5 and a DER certificate for CN=nhindirect.org', () => {
    const file = dotnet.read(CERT_VECTOR);
    const rr = readSerializedRr(file);
    expect(file.length).toBe(512);
    expect(rr).toMatchObject({ owner: 'nhindirect.org', type: CERT_RR_TYPE, klass: 1, ttl: 2000 });
    expect(rr.rdata.length).toBe(446);
    expect(rr.rest.every((b) => b === 0)).toBe(true);

    const record = decodeCertRdata(rr.rdata);
    expect(record).toMatchObject({ certType: CERT_TYPES.PKIX, keyTag: 15655, algorithm: 5 });
    expect(certTypeName(record.certType)).toBe('PKIX');
    expect(certRecordUrl(record)).toBeUndefined();
    const cert = new X509Certificate(record.data);
    expect(cert.subject).toBe('CN=nhindirect.org');
    expect(record.data.length).toBe(rr.rdata.length - 5);
    expect(encodeCertRdata(record).equals(rr.rdata)).toBe(true);
  });

  it('copies the certificate out of the message it came in', () => {
    const rr = readSerializedRr(dotnet.read(CERT_VECTOR));
    const rdata = Buffer.from(rr.rdata);
    const record = decodeCertRdata(rdata);
    rdata.fill(0);
    expect(new X509Certificate(record.data).subject).toBe('CN=nhindirect.org');
  });

  it('refuses every truncation of the vector shorter than the fixed part, and keeps the rest', () => {
    const { rdata } = readSerializedRr(dotnet.read(CERT_VECTOR));
    for (let n = 0; n <= rdata.length; n++) {
      const cut = rdata.subarray(0, n);
      if (n < 5) {
        expect(hispErrorOf(() => decodeCertRdata(cut)).code).toBe('HISP_DNS_MALFORMED');
      } else {
        expect(decodeCertRdata(cut).data.length).toBe(n - 5);
      }
    }
  });
});

describe('CERT rdata (RFC 4398 §2)', () => {
  it('reads type, key tag and algorithm big-endian, from any offset of a larger buffer', () => {
    const backing = Buffer.from([0xee, 0xee, 0x00, 0x04, 0x12, 0x34, 0x08, 0x61, 0x62, 0xee]);
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 2, 7);
    expect(decodeCertRdata(view)).toEqual({ certType: 4, keyTag: 0x1234, algorithm: 8, data: Buffer.from('ab') });
  });

  it('accepts an empty certificate field (the caller judges the content)', () => {
    expect(decodeCertRdata(Buffer.from([0, 1, 0, 0, 0])).data.length).toBe(0);
  });

  it('refuses what is not a byte array', () => {
    expect(hispErrorOf(() => decodeCertRdata('00010000' as unknown as Uint8Array)).code).toBe('HISP_DNS_MALFORMED');
  });

  it('refuses out-of-range fields when encoding', () => {
    const base: CertRecord = { certType: 1, keyTag: 0, algorithm: 0, data: Buffer.alloc(1) };
    for (const bad of [{ certType: 65536 }, { keyTag: -1 }, { algorithm: 256 }, { certType: 1.5 }]) {
      expect(hispErrorOf(() => encodeCertRdata({ ...base, ...bad })).code).toBe('HISP_USAGE');
    }
    expect(hispErrorOf(() => encodeCertRdata({ ...base, data: Buffer.alloc(65531) })).code).toBe('HISP_USAGE');
    expect(encodeCertRdata({ ...base, data: Buffer.alloc(65530) }).length).toBe(65535);
  });

  it('names the assigned types', () => {
    expect(certTypeName(4)).toBe('IPKIX');
    expect(certTypeName(253)).toBe('URI');
    expect(certTypeName(9)).toBeUndefined();
  });

  describe('IPKIX URLs (R-DIS-2)', () => {
    const ipkix = (url: string | Buffer): CertRecord => ({
      certType: CERT_TYPES.IPKIX,
      keyTag: 0,
      algorithm: 0,
      data: Buffer.isBuffer(url) ? url : Buffer.from(url, 'ascii'),
    });

    it('returns the URL of an IPKIX record', () => {
      expect(certRecordUrl(ipkix('http://pki.example.test/d1.cer'))?.href).toBe('http://pki.example.test/d1.cer');
      expect(certRecordUrl(ipkix('ldap://ldap.example.test/cn=d1'))?.protocol).toBe('ldap:');
    });

    it('returns undefined for types that are not URLs', () => {
      expect(certRecordUrl({ ...ipkix('http://x.test/'), certType: CERT_TYPES.PKIX })).toBeUndefined();
      expect(certRecordUrl({ ...ipkix('http://x.test/'), certType: CERT_TYPES.IPGP })).toBeUndefined();
    });

    it('refuses data that is not a fetchable ASCII URL', () => {
      for (const bad of ['', 'not a url', 'file:///etc/passwd', 'javascript:alert(1)', 'http://x.test/\u00e9']) {
        expect(hispErrorOf(() => certRecordUrl(ipkix(Buffer.from(bad, 'utf8')))).code).toBe('HISP_DNS_MALFORMED');
      }
      expect(hispErrorOf(() => certRecordUrl(ipkix(Buffer.from([0x68, 0x00, 0x74])))).code).toBe('HISP_DNS_MALFORMED');
    });
  });

  describe('properties', () => {
    it('random bytes decode to a consistent record or HISP_DNS_MALFORMED, never anything else', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
          let record: CertRecord;
          try {
            record = decodeCertRdata(bytes);
          } catch (err) {
            expect(err).toBeInstanceOf(HispError);
            expect((err as HispError).code).toBe('HISP_DNS_MALFORMED');
            expect(bytes.length).toBeLessThan(5);
            return;
          }
          expect(bytes.length).toBeGreaterThanOrEqual(5);
          expect(record.data.length).toBe(bytes.length - 5);
          expect(encodeCertRdata(record).equals(Buffer.from(bytes))).toBe(true);
        }),
        { numRuns: 2000 },
      );
    });

    it('encode then decode is the identity', () => {
      const record = fc.record({
        certType: fc.integer({ min: 0, max: 0xffff }),
        keyTag: fc.integer({ min: 0, max: 0xffff }),
        algorithm: fc.integer({ min: 0, max: 0xff }),
        data: fc.uint8Array({ maxLength: 2000 }).map((a) => Buffer.from(a)),
      });
      fc.assert(
        fc.property(record, (r) => {
          expect(decodeCertRdata(encodeCertRdata(r))).toEqual(r);
        }),
      );
    });

    it('certRecordUrl on random data returns a URL, undefined or HISP_DNS_MALFORMED', () => {
      const data = fc.oneof(
        fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a)),
        fc.webUrl().map((u) => Buffer.from(u, 'utf8')),
        fc.string().map((s) => Buffer.from(s, 'utf8')),
      );
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 10 }), data, (certType, bytes) => {
          try {
            const url = certRecordUrl({ certType, keyTag: 0, algorithm: 0, data: bytes });
            if (url !== undefined) expect(['http:', 'https:', 'ldap:', 'ldaps:']).toContain(url.protocol);
          } catch (err) {
            expect(err).toBeInstanceOf(HispError);
            expect((err as HispError).code).toBe('HISP_DNS_MALFORMED');
          }
        }),
        { numRuns: 1000 },
      );
    });
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hispError } from '../../test/helpers/hisp-error.js';
import { readXml } from './xml-reader.js';
import { vectorGroup } from '../../test/helpers/vectors.js';

const ett = vectorGroup('ett', ['cda-samples/CCDA_Ambulatory.xml']);

/** `fn` throws HISP_XML_MALFORMED, its reason matching `why`. */
function refused(fn: () => unknown, why: RegExp = /./): void {
  const err = hispError(fn);
  expect(err.code).toBe('HISP_XML_MALFORMED');
  expect(err.message).toMatch(why);
}

describe('readXml', () => {
  it.skipIf(!ett.present)(ett.title('reads a C-CDA sample of ETT into a DOM'), () => {
    const doc = readXml(ett.read('cda-samples/CCDA_Ambulatory.xml'));
    expect(doc.documentElement?.localName).toBe('ClinicalDocument');
    expect(doc.documentElement?.namespaceURI).toBe('urn:hl7-org:v3');
  });

  it('refuses a document type declaration: an external entity is never read, an entity never expanded (XXE, billion laughs)', () => {
    const xxe = '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<r>&x;</r>';
    refused(() => readXml(xxe), /document type/);
    const laughs = '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><r>&b;</r>';
    refused(() => readXml(laughs));
    refused(() => readXml('<!-- c --><!doctype r SYSTEM "http://127.0.0.1/x.dtd"><r/>'), /document type/);
  });

  it('refuses what is not well-formed, too large, too deep or has too many elements', () => {
    refused(() => readXml('<r><a></r>'), /not well-formed/);
    refused(() => readXml(''));
    refused(() => readXml(`<r>${'x'.repeat(2000)}</r>`, { maxBytes: 1000 }), /octets/);
    refused(() => readXml(`${'<a>'.repeat(300)}${'</a>'.repeat(300)}`), /deep/);
    refused(() => readXml(`<r>${'<a/>'.repeat(50)}</r>`, { maxElements: 20 }), /elements/);
  });

  it('follows a byte-order mark or the declared encoding, and refuses one it does not know or bytes that are not UTF-8', () => {
    const latin1 = Buffer.concat([Buffer.from('<?xml version="1.0" encoding="ISO-8859-1"?><r>'), Buffer.from([0xe9]), Buffer.from('</r>')]);
    expect(readXml(latin1).documentElement?.textContent).toBe('é');
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('<r>é</r>', 'utf16le')]);
    expect(readXml(utf16).documentElement?.textContent).toBe('é');
    refused(() => readXml(Buffer.from('<?xml version="1.0" encoding="EBCDIC-X"?><r/>')), /encoding/);
    refused(() => readXml(Buffer.from([0x3c, 0x72, 0x3e, 0xff, 0x3c, 0x2f, 0x72, 0x3e])), /UTF-8|utf-8/);
  });

  it('any bytes: a DOM or HISP_XML_MALFORMED, never another error (property)', () => {
    const pieces = fc.constantFrom('<r>', '</r>', '<a x="1">', '</a>', '<!DOCTYPE r>', '<![CDATA[', ']]>', '&amp;', '&x;', '<?xml version="1.0"?>', '<!--', '-->', 'text', '<', '>', '"', "'", '\u0000', 'é');
    fc.assert(
      fc.property(fc.oneof(fc.array(pieces, { maxLength: 40 }).map((p) => p.join('')), fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b))), (input) => {
        try {
          readXml(input);
        } catch (err) {
          expect(err).toMatchObject({ name: 'HispError', code: 'HISP_XML_MALFORMED' });
        }
      }),
      { numRuns: 2000 },
    );
  });
});

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, describe, expect, it } from 'vitest';
import { composeMessage, composeMessageToFile, type ComposeInput } from './message-composer.js';
import { MimeEntity, splitMultipart } from './mime-entity.js';

const dir = mkdtempSync(join(tmpdir(), 'hisp-compose-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base: ComposeInput = {
  from: 'doctor@hospital.example',
  to: ['patient@phr.example'],
  cc: [],
  subject: 'Your discharge summary',
  text: 'This message was sent by Example Hospital at the request of Jane Doe.',
  documents: [],
  messageId: '<m1@hisp.example>',
  date: new Date(Date.UTC(2026, 11, 7, 12)),
  finalDelivery: true,
};

async function bytesOf(input: ComposeInput): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of composeMessage(input) as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

describe('composeMessage', () => {
  it('a C-CDA goes as application/xml with its file name, beside the text; the MDN request of R-MDN-4 is in the header', async () => {
    const ccda = Buffer.from('<ClinicalDocument xmlns="urn:hl7-org:v3"/>');
    const raw = await bytesOf({ ...base, documents: [{ filename: 'CCDA_Ambulatory.xml', contentType: 'text/plain', kind: 'ccda', content: ccda }] });
    expect(raw.toString('latin1')).not.toMatch(/(^|[^\r])\n/); // CRLF only (R-FMT-1)
    const entity = MimeEntity.parse(raw);
    expect(entity.header('message-id')).toBe('<m1@hisp.example>');
    expect(entity.header('disposition-notification-to')).toBe('doctor@hospital.example');
    expect(entity.header('disposition-notification-options')).toBe('X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true');
    expect(entity.header('x-mailer')).toBeUndefined();
    expect(entity.header('bcc')).toBeUndefined();
    const parsed = await simpleParser(raw);
    expect(parsed.text?.trim()).toBe(base.text);
    expect(parsed.attachments.map((a) => [a.filename, a.contentType, a.content.equals(ccda)])).toEqual([['CCDA_Ambulatory.xml', 'application/xml', true]]);
  });

  it('a zip puts XDM/1.0/DDM in the Subject (ETT rule 124), once; a file document is streamed from its path', async () => {
    const zipFile = join(dir, 'package.zip');
    writeFileSync(zipFile, Buffer.from('PK\u0005\u0006' + '\u0000'.repeat(18), 'latin1'));
    const withZip = await simpleParser(await bytesOf({ ...base, documents: [{ filename: 'package.zip', contentType: 'application/octet-stream', kind: 'other', content: { path: zipFile } }] }));
    expect(withZip.subject).toBe('Your discharge summary XDM/1.0/DDM');
    expect(withZip.attachments[0]?.content.length).toBe(22);
    const already = await simpleParser(await bytesOf({ ...base, subject: 'XDM/1.0/DDM', documents: [{ filename: 'x.zip', contentType: 'application/zip', kind: 'xdm', content: { path: zipFile } }] }));
    expect(already.subject).toBe('XDM/1.0/DDM');
    const none = await simpleParser(await bytesOf(base));
    expect(none.subject).toBe('Your discharge summary');
  });

  it('without final delivery no options field; an HTML alternative and Cc when given; to a file', async () => {
    const file = join(dir, 'm.eml');
    const size = await composeMessageToFile({ ...base, finalDelivery: false, cc: ['nurse@hospital.example'], html: '<p>hello</p>' }, file);
    const parsed = await simpleParser((await import('node:fs')).readFileSync(file));
    expect(size).toBeGreaterThan(100);
    expect(parsed.headers.has('disposition-notification-options')).toBe(false);
    expect(parsed.html).toContain('<p>hello</p>');
    expect(parsed.cc && !Array.isArray(parsed.cc) ? parsed.cc.text : '').toBe('nurse@hospital.example');
  });

  it('a document that is 7bit data goes as it is (RFC 2045 §6.2), any other in base64; each arrives octet for octet', async () => {
    const docs: [string, Buffer, string][] = [
      ['crlf.xml', Buffer.from('<?xml version="1.0"?>\r\n<ClinicalDocument xmlns="urn:hl7-org:v3">\r\n  <title>Summary</title>\r\n</ClinicalDocument>\r\n'), '7bit'],
      ['no-last-crlf.xml', Buffer.from('<a>\r\n  <b/>\r\n</a>'), '7bit'],
      ['blank-lines.xml', Buffer.from('<a>\r\n\r\n\r\n</a>\r\n\r\n'), '7bit'],
      ['lf.xml', Buffer.from('<a>\n  <b/>\n</a>\n'), 'base64'],
      ['utf8.xml', Buffer.from('<name>Müller</name>\r\n'), 'base64'],
      ['comment.xml', Buffer.from('<a><!-- note\r\n--></a>\r\n'), '7bit'],
      ['delimiter-like.txt', Buffer.from('a\r\n--=_hisp-x-Part_1\r\n'), 'base64'],
      ['letter.pdf', Buffer.from('%PDF-1.4\n%\u00e2\u00e3\u00cf\u00d3\n', 'latin1'), 'base64'],
    ];
    const file = join(dir, 'seven-bit.xml');
    writeFileSync(file, docs[0]![1]);
    const documents = [
      ...docs.map(([filename, content]) => ({ filename, contentType: 'application/xml', kind: 'other' as const, content })),
      { filename: 'from-file.xml', contentType: 'application/xml', kind: 'other' as const, content: { path: file }, sevenBit: true },
      { filename: 'from-file-unknown.xml', contentType: 'application/xml', kind: 'other' as const, content: { path: file } },
    ];
    const raw = await bytesOf({ ...base, documents });
    const parsed = await simpleParser(raw);
    const expected = [...docs, ['from-file.xml', docs[0]![1], '7bit'] as const, ['from-file-unknown.xml', docs[0]![1], 'base64'] as const];
    expect(parsed.attachments.map((a) => [a.filename, a.headers.get('content-transfer-encoding'), a.content.equals(expected.find(([n]) => n === a.filename)![1])])).toEqual(
      expected.map(([name, , cte]) => [name, cte, true]),
    );
    // hisp's own reader (what signing and unwrapping split with) sees the same octets.
    const entity = MimeEntity.parse(raw);
    const boundary = /boundary="?([^";]+)"?/.exec(entity.header('content-type') ?? '')![1]!;
    const parts = splitMultipart(entity.body, boundary).map((p) => MimeEntity.parse(p));
    const sevenBitParts = parts.filter((p) => p.header('content-transfer-encoding') === '7bit' && p.header('content-disposition')?.startsWith('attachment'));
    expect(sevenBitParts.map((p) => p.body.toString('latin1'))).toEqual(expected.filter(([, , cte]) => cte === '7bit').map(([, b]) => b.toString('latin1')));
  });

  it('refuses a header value that would add a field', () => {
    expect(() => composeMessage({ ...base, headers: { 'X-Hisp-Client-Ref': 'a\r\nBcc: x@y' } })).toThrow(/single line/);
  });
});

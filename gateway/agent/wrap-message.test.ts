import { describe, expect, it } from 'vitest';
import { credentialPaths } from '../../test/helpers/pki.js';
import { hispError } from '../../test/helpers/hisp-error.js';
import { rfc5322Date } from '../core/rfc5322-date.js';
import { loadCredential } from './key-material.js';
import { MimeEntity, splitMultipart } from '../mime/mime-entity.js';
import { unwrapMessage } from './unwrap-message.js';
import { wrapMessage, wrapMessageAsync, type WrapOptions } from './wrap-message.js';

const p = credentialPaths('recipient-rsa');
const credential = loadCredential(p.key, p.chain);
const options = { signers: [credential], recipients: [credential.certificate], messageIdDomain: 'hisp.test' };
const head = 'From: patient@recipient.test\r\nTo: patient@recipient.test\r\nMessage-ID: <c1@hisp.test>\r\nDate: Fri, 02 Jan 2026 00:00:00 +0000\r\n\r\n';

describe('wrapMessage: canonical line ends (RFC 5751 §3.1.1)', () => {
  it('signs bare LF and bare CR as CRLF', () => {
    const opened = unwrapMessage(wrapMessage(Buffer.from(`${head}line one\nline two\rline three\r\n`), options).message, { credentials: [credential] });
    expect(opened.message.toString('latin1')).toBe(`${head}line one\r\nline two\r\nline three\r\n`);
  });

  it('with `canonical` (a message an SMTP edge checked) signs the same bytes as without it', () => {
    const crlf = Buffer.from(`${head}line one\r\nline two\r\n`);
    const opened = unwrapMessage(wrapMessage(crlf, { ...options, canonical: true }).message, { credentials: [credential] });
    expect(opened.message.equals(crlf)).toBe(true);
    expect(opened.message.equals(unwrapMessage(wrapMessage(crlf, options).message, { credentials: [credential] }).message)).toBe(true);
  });
});

// What a peer HISP and its recipient's mail program see of a wrapped message: the outer header fields
// in clear (R-FMT-2), the S/MIME entity (R-FMT-4), and, once opened, the message as written, without Bcc.

/** A submission as an EHR writes it: folded Subject, Cc and Bcc, a field that must stay inside. */
const FULL = Buffer.from(
  [
    'Return-Path: <doctor@sender.test>',
    'From: Dr Who <doctor@sender.test>',
    'To: patient@recipient.test',
    'Cc: nurse@recipient.test',
    'Bcc: auditor@sender.test,',
    ' second.auditor@sender.test',
    'Subject: Discharge summary',
    '  for the visit of 1 January',
    'Date: Fri, 02 Jan 2026 10:11:12 +0100',
    'Message-ID: <full-1@sender.test>',
    'X-EHR-Case: 4711',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    'Hello patient.',
    '',
  ].join('\r\n'),
  'latin1',
);

/** The header section of the wire message as text, and its fields by lowercase name. */
function outerOf(message: Buffer, headerLength: number) {
  const text = message.subarray(0, headerLength).toString('latin1');
  const entity = MimeEntity.parse(message);
  const fields = (name: string) => entity.headers.filter((h) => h.name.toLowerCase() === name).map((h) => h.raw.toString('latin1'));
  return { text, entity, fields };
}

function open(message: Buffer) {
  return unwrapMessage(message, { credentials: [credential] });
}

describe('wrapMessage: the outer header fields a peer shows (R-FMT-2)', () => {
  const wrapped = wrapMessage(FULL, options);
  const outer = outerOf(wrapped.message, wrapped.headerLength);

  it('copies From, To, Cc, Subject, Date and Message-ID to the outer header exactly as written (folding included), in that order', () => {
    expect(outer.text).toBe(
      'From: Dr Who <doctor@sender.test>\r\n' +
        'To: patient@recipient.test\r\n' +
        'Cc: nurse@recipient.test\r\n' +
        'Subject: Discharge summary\r\n  for the visit of 1 January\r\n' +
        'Date: Fri, 02 Jan 2026 10:11:12 +0100\r\n' +
        'Message-ID: <full-1@sender.test>\r\n' +
        'MIME-Version: 1.0\r\n' +
        'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n' +
        'Content-Transfer-Encoding: base64\r\n' +
        'Content-Disposition: attachment; filename=smime.p7m\r\n\r\n',
    );
    expect(wrapped.messageId).toBe('<full-1@sender.test>');
    expect(wrapped.notes).toEqual(['Bcc removed']);
  });

  it('the body after headerLength is the base64 of the envelope, lines of at most 76 characters ending in CRLF (RFC 2045 §6.8)', () => {
    const body = wrapped.message.subarray(wrapped.headerLength).toString('latin1');
    expect(body.endsWith('\r\n')).toBe(true);
    const lines = body.split('\r\n').slice(0, -1);
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) expect(line).toMatch(/^[A-Za-z0-9+/=]{1,76}$/);
    expect(lines.slice(0, -1).every((l) => l.length === 76)).toBe(true);
  });

  it('a recipient never sees Bcc: not in the outer header, not in the message opened, not anywhere in the decrypted content', () => {
    // A field name or an address: base64 (the envelope, the signature) holds neither ':' nor '@',
    // so random base64 that happens to spell "bcc" is not taken for one.
    const leaked = /^bcc\s*:|auditor@/im;
    expect(wrapped.message.toString('latin1')).not.toMatch(leaked);
    const opened = open(wrapped.message);
    expect(opened.decrypted.toString('latin1')).not.toMatch(leaked);
    const inner = MimeEntity.parse(opened.message);
    expect(inner.headers.map((h) => h.name)).toEqual(['Return-Path', 'From', 'To', 'Cc', 'Subject', 'Date', 'Message-ID', 'X-EHR-Case', 'MIME-Version', 'Content-Type']);
    expect(inner.body.toString('latin1')).toBe('Hello patient.\r\n');
  });

  it('Bcc in any case of its name, several of them, is dropped; a field merely starting with Bcc is not', () => {
    const msg = Buffer.from(
      'From: a@sender.test\r\nTo: b@recipient.test\r\nBCC: c@sender.test\r\nbcc: d@sender.test\r\nBcc-Note: kept\r\n' +
        'Date: Fri, 02 Jan 2026 00:00:00 +0000\r\nMessage-ID: <b1@sender.test>\r\n\r\nbody\r\n',
    );
    const r = wrapMessage(msg, options);
    const inner = open(r.message).message.toString('latin1');
    expect(inner).not.toMatch(/c@sender|d@sender/);
    expect(inner).toContain('Bcc-Note: kept\r\n');
    expect(r.notes).toEqual(['Bcc removed']);
  });

  it('fields other than the six stay inside the envelope only (X-EHR-Case, Return-Path, the inner Content-Type)', () => {
    expect(outer.text).not.toContain('X-EHR-Case');
    expect(outer.text).not.toContain('Return-Path');
    expect(outer.text).not.toContain('text/plain');
    expect(open(wrapped.message).message.toString('latin1')).toContain('X-EHR-Case: 4711\r\n');
  });

  it('a message with Cc and no To is wrapped, with its Cc outside', () => {
    const r = wrapMessage(Buffer.from(`From: a@sender.test\r\nCc: b@recipient.test\r\nMessage-ID: <cc@x>\r\nDate: ${rfc5322Date(new Date())}\r\n\r\nx\r\n`), options);
    expect(outerOf(r.message, r.headerLength).fields('cc')).toEqual(['Cc: b@recipient.test\r\n']);
    expect(outerOf(r.message, r.headerLength).fields('to')).toEqual([]);
  });

  it('genericSubject replaces the outer Subject only; the real one travels encrypted', () => {
    const r = wrapMessage(FULL, { ...options, genericSubject: 'Direct message' });
    const o = outerOf(r.message, r.headerLength);
    expect(o.fields('subject')).toEqual(['Subject: Direct message\r\n']);
    expect(o.text).not.toContain('Discharge');
    expect(open(r.message).message.toString('latin1')).toContain('Subject: Discharge summary\r\n  for the visit of 1 January\r\n');
  });

  it('an empty genericSubject still replaces it (nothing of the Subject in clear)', () => {
    const r = wrapMessage(FULL, { ...options, genericSubject: '' });
    expect(outerOf(r.message, r.headerLength).fields('subject')).toEqual(['Subject: \r\n']);
  });

  it('names an AES-GCM envelope authEnveloped-data (RFC 8551 §3.2.2), CBC enveloped-data', () => {
    for (const [cipher, type] of [
      ['aes128-gcm', 'authEnveloped-data'],
      ['aes256-gcm', 'authEnveloped-data'],
      ['aes128-cbc', 'enveloped-data'],
    ] as const) {
      const r = wrapMessage(FULL, { ...options, cipher });
      expect(outerOf(r.message, r.headerLength).fields('content-type'), cipher).toEqual([
        `Content-Type: application/pkcs7-mime; smime-type=${type}; name=smime.p7m\r\n`,
      ]);
      expect(open(r.message).cipher).toBe(cipher);
    }
  });
});

describe('wrapMessage: Date and Message-ID added as a submission server would (RFC 6409 §8.2, §8.3; R-MDN-9)', () => {
  const signingTime = new Date('2026-02-03T04:05:06Z');
  const bare = Buffer.from('From: Doctor <doctor@sender.test>\r\nTo: patient@recipient.test\r\nSubject: s\r\n\r\nbody\r\n');

  it('adds both, outside and inside alike, with the date of signingTime and a Message-ID of messageIdDomain', () => {
    const r = wrapMessage(bare, { ...options, signingTime });
    expect(r.notes).toEqual(['Message-ID added', 'Date added']);
    expect(r.messageId).toMatch(/^<[0-9a-f]{32}@hisp\.test>$/);
    const added = `Message-ID: ${r.messageId}\r\nDate: ${rfc5322Date(signingTime)}\r\n`;
    const o = outerOf(r.message, r.headerLength);
    expect(o.text).toContain(`Subject: s\r\n${added}MIME-Version: 1.0\r\n`);
    expect(open(r.message).message.toString('latin1')).toBe(
      `From: Doctor <doctor@sender.test>\r\nTo: patient@recipient.test\r\nSubject: s\r\n${added}\r\nbody\r\n`,
    );
  });

  it('without messageIdDomain the Message-ID takes the From domain; each message gets its own', () => {
    const { messageIdDomain: _ignored, ...noDomain } = options;
    const a = wrapMessage(bare, noDomain);
    const b = wrapMessage(bare, noDomain);
    expect(a.messageId).toMatch(/^<[0-9a-f]{32}@sender\.test>$/);
    expect(a.messageId).not.toBe(b.messageId);
  });

  it('a From without a domain gives hisp.invalid', () => {
    const { messageIdDomain: _ignored, ...noDomain } = options;
    const r = wrapMessage(Buffer.from('From: undisclosed\r\nTo: patient@recipient.test\r\n\r\nx\r\n'), noDomain);
    expect(r.messageId).toMatch(/@hisp\.invalid>$/);
  });

  it('without signingTime the added Date is now', () => {
    const before = Math.floor(Date.now() / 1000) * 1000;
    const r = wrapMessage(bare, options);
    const date = /\r\nDate: ([^\r]+)\r\n/.exec(r.message.subarray(0, r.headerLength).toString('latin1'))?.[1];
    const at = Date.parse(date ?? '');
    expect(at).toBeGreaterThanOrEqual(before);
    expect(at).toBeLessThanOrEqual(Date.now());
  });

  it('keeps a Date and Message-ID that are there, and adds nothing', () => {
    const r = wrapMessage(FULL, { ...options, signingTime });
    expect(r.message.toString('latin1').match(/^Date:/gm)).toHaveLength(1);
    expect(open(r.message).message.toString('latin1').match(/^(Date|Message-ID):/gm)).toHaveLength(2);
  });
});

describe('wrapMessage: what it refuses', () => {
  it('a message without From: HISP_MIME_MALFORMED', () => {
    const e = hispError(() => wrapMessage(Buffer.from('To: patient@recipient.test\r\n\r\nx\r\n'), options));
    expect(e.code).toBe('HISP_MIME_MALFORMED');
    expect(e.message).toBe('the message has no From field');
  });

  it('a message with neither To nor Cc (Bcc only): HISP_MIME_MALFORMED', () => {
    const e = hispError(() => wrapMessage(Buffer.from('From: a@sender.test\r\nBcc: b@recipient.test\r\n\r\nx\r\n'), options));
    expect(e.code).toBe('HISP_MIME_MALFORMED');
    expect(e.message).toBe('the message has no To or Cc field');
  });
});

describe('wrapMessage: the signed entity (RFC 5751 §3.1, §3.4.3)', () => {
  function signedEntity(wrapOptions: WrapOptions, message = FULL) {
    const opened = open(wrapMessage(message, wrapOptions).message);
    const entity = MimeEntity.parse(opened.decrypted);
    const ct = entity.contentType();
    const [content, signature] = splitMultipart(entity.body, ct.params.boundary ?? '');
    return { opened, entity, ct, content: content!, signature: signature! };
  }

  it('multipart/signed of message/rfc822 and application/pkcs7-signature, with the micalg of the digest', () => {
    for (const [digest, micalg] of [
      ['sha256', 'sha-256'],
      ['sha384', 'sha-384'],
      ['sha512', 'sha-512'],
    ] as const) {
      const s = signedEntity({ ...options, digest });
      expect(s.ct.mediaType).toBe('multipart/signed');
      expect(s.ct.params).toMatchObject({ protocol: 'application/pkcs7-signature', micalg });
      expect(s.opened.digest).toBe(digest);
      expect(s.opened.warnings).toEqual([]);
    }
    const s = signedEntity(options);
    expect(s.ct.params.boundary).toMatch(/^----=_hisp_[0-9a-f]{36}$/);
    expect(s.content.toString('latin1').startsWith('Content-Type: message/rfc822\r\n\r\nReturn-Path:')).toBe(true);
    expect(s.signature.toString('latin1').startsWith(
      'Content-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=smime.p7s\r\n\r\n',
    )).toBe(true);
    expect(s.opened.wrapped).toBe(true);
  });

  it('labels 8-bit content Content-Transfer-Encoding: 8bit (RFC 2046 §5.2.1), and 7-bit content not at all', () => {
    const eight = Buffer.concat([Buffer.from('From: a@sender.test\r\nTo: b@recipient.test\r\nSubject: caf'), Buffer.from([0xc3, 0xa9]), Buffer.from('\r\n\r\nx\r\n')]);
    expect(signedEntity(options, eight).content.toString('latin1').startsWith('Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n')).toBe(true);
    const eightBody = Buffer.concat([Buffer.from('From: a@sender.test\r\nTo: b@recipient.test\r\n\r\n'), Buffer.from([0xe9]), Buffer.from('\r\n')]);
    expect(signedEntity(options, eightBody).content.toString('latin1')).toContain('Content-Transfer-Encoding: 8bit\r\n');
    expect(signedEntity(options).content.toString('latin1')).not.toContain('Content-Transfer-Encoding');
  });

  it('wrapMessageAsync gives a message that opens to the same content, with the same notes', async () => {
    const a = await wrapMessageAsync(FULL, options);
    expect(a.notes).toEqual(['Bcc removed']);
    expect(a.message.subarray(0, a.headerLength).equals(wrapped0.message.subarray(0, wrapped0.headerLength))).toBe(true);
    expect(open(a.message).message.equals(open(wrapped0.message).message)).toBe(true);
  });
});

const wrapped0 = wrapMessage(FULL, options);

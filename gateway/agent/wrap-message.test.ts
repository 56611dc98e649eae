import { describe, expect, it } from 'vitest';
import { credentialPaths } from '../../test/helpers/pki.js';
import { loadCredential } from './key-material.js';
import { unwrapMessage } from './unwrap-message.js';
import { wrapMessage } from './wrap-message.js';

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

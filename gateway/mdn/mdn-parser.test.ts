import { describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { MimeEntity } from '../mime/mime-entity.js';
import { hispError } from '../../test/helpers/hisp-error.js';
import { isNotification, notificationKind, parseMdn } from './mdn-parser.js';

/** An MDN shaped as JavaMail's MultipartReport writes it (what the ETT sends), with the given header section and fields. */
function ettMdn(fields: string, head = '', eol = '\r\n'): Buffer {
  const text = [
    'From: processedonly5@ttpedge.sitenv.org',
    'To: sender@hisp.example',
    'Subject: Automatic MDN',
    'Message-ID: <1234.5678.JavaMail@ttpedge>',
    'MIME-Version: 1.0',
    ...(head === '' ? ['Content-Type: multipart/report; report-type=disposition-notification;', '\tboundary="----=_Part_0_1"'] : [head]),
    '',
    '------=_Part_0_1',
    'Content-Type: text/plain; charset=us-ascii',
    'Content-Transfer-Encoding: 7bit',
    '',
    'Your message was successfully processed.',
    '------=_Part_0_1',
    'Content-Type: message/disposition-notification',
    'Content-Transfer-Encoding: 7bit',
    '',
    fields,
    '',
    '------=_Part_0_1--',
    '',
  ].join('\n');
  return Buffer.from(text.replace(/\r?\n/g, eol), 'utf8');
}

const GOOD_FIELDS = [
  'Reporting-UA: ttpedge.sitenv.org; Security Agent',
  'Final-Recipient: rfc822; processedonly5@ttpedge.sitenv.org',
  'Original-Recipient: rfc822; processedonly5@ttpedge.sitenv.org',
  'Original-Message-ID: <orig-42@hisp.example>',
  'Disposition: automatic-action/MDN-sent-automatically;processed',
].join('\n');

const EXPECTED = {
  disposition: 'processed',
  dispositionMode: 'automatic-action/MDN-sent-automatically',
  originalMessageId: '<orig-42@hisp.example>',
  finalRecipient: 'processedonly5@ttpedge.sitenv.org',
  reportingUa: { name: 'ttpedge.sitenv.org', product: 'Security Agent' },
  finalDeliveryExtension: false,
  from: 'processedonly5@ttpedge.sitenv.org',
};

describe('parseMdn: what the ETT generator sends (GOOD and the malformed-MDN mailboxes)', () => {
  it('GOOD', () => {
    expect(parseMdn(ettMdn(GOOD_FIELDS))).toMatchObject({ ...EXPECTED, warnings: [] });
  });

  it('white_space_mdn: spaces around names, values and separators, fields indented', () => {
    const fields = [
      '   Reporting-UA  :   ttpedge.sitenv.org ;   Security Agent   ',
      '  Final-Recipient :  rfc822 ;   processedonly5@ttpedge.sitenv.org  ',
      '\tOriginal-Message-ID:    <orig-42@hisp.example>   ',
      '  Disposition  :  automatic-action / MDN-sent-automatically  ;  processed  ',
    ].join('\n');
    expect(parseMdn(ettMdn(fields))).toMatchObject(EXPECTED);
  });

  it('extra_line_break_mdn: empty lines between fields and fields broken over lines', () => {
    const fields = [
      'Reporting-UA: ttpedge.sitenv.org;',
      'Security Agent',
      '',
      'Final-Recipient:',
      ' rfc822; processedonly5@ttpedge.sitenv.org',
      '',
      '',
      'Original-Message-ID:',
      '<orig-42@hisp.example>',
      'Disposition: automatic-action/MDN-sent-automatically;',
      '',
      'processed',
    ].join('\n');
    expect(parseMdn(ettMdn(fields))).toMatchObject(EXPECTED);
  });

  it.each([
    'automatic-action/MDN-sent-automatically; processed',
    'automatic-action/MDN-sent-automatically ;  processed',
    ' automatic-action /  MDN-sent-automatically;processed ',
    'automatic-action/MDN-sent-automatically  processed',
    'automatic-action/MDN-sent-automatically; processed (comment)',
    'automatic-action/MDN-sent-automatically;\r\n  processed',
  ])('extra_space_disposition: %j', (disposition) => {
    const fields = GOOD_FIELDS.replace(/Disposition: .*/, `Disposition: ${disposition}`);
    expect(parseMdn(ettMdn(fields))).toMatchObject(EXPECTED);
  });

  it('missing_disposition: not a usable MDN (HISP_MIME_MALFORMED)', () => {
    const fields = GOOD_FIELDS.replace(/\nDisposition: .*/, '');
    const err = hispError(() => parseMdn(ettMdn(fields)));
    expect(err.code).toBe('HISP_MIME_MALFORMED');
    expect(err.message).toMatch(/Disposition/);
    expect(hispError(() => parseMdn(ettMdn(`${GOOD_FIELDS.replace(/Disposition: .*/, 'Disposition:')}`))).code).toBe('HISP_MIME_MALFORMED');
  });

  it('different cases: field names, modes, types and address types in any case', () => {
    const fields = [
      'reporting-UA: ttpedge.sitenv.org; Security Agent',
      'final-recipient: RFC822; processedonly5@TTPEDGE.sitenv.org',
      'ORIGINAL-MESSAGE-ID: <orig-42@hisp.example>',
      'disposition: Automatic-Action/mdn-SENT-automatically;PROCESSED',
    ].join('\n');
    expect(parseMdn(ettMdn(fields))).toMatchObject(EXPECTED);
  });

  it('white_space_822 and different_cases_822: the MDN message header in odd spacing and case', () => {
    const head = 'content-type  :   Multipart/Report ;  Report-Type = "Disposition-Notification" ;  BOUNDARY="----=_Part_0_1"';
    expect(parseMdn(ettMdn(GOOD_FIELDS, head))).toMatchObject(EXPECTED);
  });

  it('LF-only and CRLF both read the same', () => {
    expect(parseMdn(ettMdn(GOOD_FIELDS, '', '\n'))).toMatchObject(EXPECTED);
  });
});

describe('parseMdn: other tolerance', () => {
  it('Final-Recipient forms: no type, display name, quoted display name, angle brackets, x400', () => {
    const final = (v: string) => parseMdn(ettMdn(GOOD_FIELDS.replace(/Final-Recipient: .*/, `Final-Recipient: ${v}`)));
    expect(final('processedonly5@ttpedge.sitenv.org').finalRecipient).toBe('processedonly5@ttpedge.sitenv.org');
    expect(final('processedonly5@ttpedge.sitenv.org').warnings).toContain('final-recipient without address type');
    expect(final('ExternalUser <processedonly5@ttpedge.sitenv.org>').finalRecipient).toBe('processedonly5@ttpedge.sitenv.org');
    expect(final('rfc822;"Doe; John" <processedonly5@ttpedge.sitenv.org>').finalRecipient).toBe('processedonly5@ttpedge.sitenv.org');
    expect(final('rfc822; <processedonly5@ttpedge.sitenv.org>').finalRecipient).toBe('processedonly5@ttpedge.sitenv.org');
    expect(final('x400; c=us;a=;p=x;o=y;s=z').finalRecipient).toBe('c=us;a=;p=x;o=y;s=z');
    const broken = final('rfc822; not a mailbox');
    expect(broken.finalRecipient).toBe('not a mailbox');
    expect(broken.warnings).toContain('final-recipient is not a mailbox');
  });

  it('reads dispositions, modifiers and the extension field', () => {
    const fields = `${GOOD_FIELDS.replace(/Disposition: .*/, 'Disposition: automatic-action/MDN-sent-automatically; failed/Error,warning')}\nFailure: first\nFailure: second\nX-Direct-Final-Destination-Delivery: anything`;
    const mdn = parseMdn(ettMdn(fields));
    expect(mdn).toMatchObject({ disposition: 'failed', modifiers: ['error', 'warning'], failure: 'first; second', finalDeliveryExtension: true });
    expect(parseMdn(ettMdn(GOOD_FIELDS.replace(/Disposition: .*/, 'Disposition: denied'))).warnings).toContain('Disposition without disposition mode');
    const odd = parseMdn(ettMdn(GOOD_FIELDS.replace(/Disposition: .*/, 'Disposition: robot-action/sent-by-robot; deleted')));
    expect(odd.dispositionMode).toBe('robot-action/sent-by-robot');
    expect(odd.warnings.some((w) => w.startsWith('unknown disposition mode'))).toBe(true);
  });

  it('unknown disposition type → HISP_MIME_MALFORMED', () => {
    const fields = GOOD_FIELDS.replace(/Disposition: .*/, 'Disposition: automatic-action/MDN-sent-automatically; read');
    expect(hispError(() => parseMdn(ettMdn(fields))).code).toBe('HISP_MIME_MALFORMED');
  });

  it('base64 and quoted-printable notification parts', () => {
    const b64 = ettMdn('X').toString('latin1').replace(
      'Content-Type: message/disposition-notification\r\nContent-Transfer-Encoding: 7bit\r\n\r\nX',
      `Content-Type: message/disposition-notification\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from(GOOD_FIELDS).toString('base64')}`,
    );
    expect(parseMdn(Buffer.from(b64, 'latin1'))).toMatchObject(EXPECTED);
    const qp = ettMdn('X').toString('latin1').replace(
      'Content-Type: message/disposition-notification\r\nContent-Transfer-Encoding: 7bit\r\n\r\nX',
      'Content-Type: message/disposition-notification\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n' +
        GOOD_FIELDS.replace('Security Agent', 'Security=20=\r\nAgent').replace('Disposition:', 'Disposition=3A'),
    );
    expect(parseMdn(Buffer.from(qp, 'latin1'))).toMatchObject(EXPECTED);
  });

  it('a multipart/report without report-type is known by its part', () => {
    const head = 'Content-Type: multipart/report; boundary="----=_Part_0_1"';
    expect(parseMdn(ettMdn(GOOD_FIELDS, head))).toMatchObject(EXPECTED);
    expect(notificationKind(ettMdn(GOOD_FIELDS, head))).toBe('mdn');
  });

  it('inside multipart/signed and message/rfc822 (decrypted, before or without unwrapping)', () => {
    const mdn = ettMdn(GOOD_FIELDS);
    const wrapped = Buffer.concat([Buffer.from('Content-Type: message/rfc822\r\n\r\n'), mdn]);
    const signed = Buffer.concat([
      Buffer.from('Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="sig"\r\n\r\n--sig\r\n'),
      wrapped,
      Buffer.from('\r\n--sig\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--sig--\r\n'),
    ]);
    expect(parseMdn(wrapped)).toMatchObject({ ...EXPECTED, from: undefined });
    expect(parseMdn(signed)).toMatchObject({ disposition: 'processed', originalMessageId: '<orig-42@hisp.example>' });
    expect(notificationKind(signed)).toBe('mdn');
  });

  it('what is not an MDN is HISP_MIME_MALFORMED', () => {
    const plain = Buffer.from('From: a@b.example\r\nTo: c@d.example\r\nSubject: hi\r\n\r\nhello\r\n');
    expect(hispError(() => parseMdn(plain)).message).toMatch(/not an MDN/);
    expect(hispError(() => parseMdn(Buffer.alloc(0))).code).toBe('HISP_MIME_MALFORMED');
    const dsn = ettMdn('Reporting-MTA: dns; x.example\n\nFinal-Recipient: rfc822; a@b.example\nAction: failed\nStatus: 5.0.0', 'Content-Type: multipart/report; report-type=delivery-status; boundary="----=_Part_0_1"');
    expect(hispError(() => parseMdn(dsn)).message).toMatch(/delivery status/);
    const noPart = ettMdn(GOOD_FIELDS).toString('latin1').replace('message/disposition-notification', 'text/plain');
    expect(hispError(() => parseMdn(Buffer.from(noPart, 'latin1'))).message).toMatch(/no message\/disposition-notification part/);
    const garbage = Buffer.from('Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n\r\nno delimiters at all');
    expect(hispError(() => parseMdn(garbage)).code).toBe('HISP_MIME_MALFORMED');
  });
});

describe('isNotification (R-MDN-2: never answer an MDN or a DSN with an MDN)', () => {
  it('tells MDNs, DSNs and other reports from ordinary mail', () => {
    expect(notificationKind(ettMdn(GOOD_FIELDS))).toBe('mdn');
    const dsn = ettMdn('Reporting-MTA: dns; x.example', 'Content-Type: multipart/report; report-type=delivery-status; boundary="----=_Part_0_1"');
    expect(notificationKind(dsn)).toBe('dsn');
    const other = Buffer.from(
      ettMdn('Feedback-Type: abuse', 'Content-Type: multipart/report; report-type=feedback-report; boundary="----=_Part_0_1"')
        .toString('latin1')
        .replace('message/disposition-notification', 'message/feedback-report'),
      'latin1',
    );
    expect(notificationKind(other)).toBe('report');
    expect(isNotification(other)).toBe(true);
    const plain = Buffer.from('From: a@b.example\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\nx\r\n--q--\r\n');
    expect(isNotification(plain)).toBe(false);
    expect(isNotification(MimeEntity.parse(plain))).toBe(false);
  });

  it('a bare notification content and a multipart/report whose structure is broken still count', () => {
    expect(notificationKind(Buffer.from(`Content-Type: message/disposition-notification\r\n\r\n${GOOD_FIELDS}`))).toBe('mdn');
    expect(notificationKind(Buffer.from('Content-Type: message/delivery-status\r\n\r\nAction: failed'))).toBe('dsn');
    const broken = Buffer.from('Content-Type: multipart/report; report-type=disposition-notification\r\n\r\nno boundary');
    expect(notificationKind(broken)).toBe('mdn');
    const brokenNoType = Buffer.from('Content-Type: multipart/report\r\n\r\nno boundary');
    expect(notificationKind(brokenNoType)).toBe('report');
  });

  it('never throws: unreadable input is not a notification; encrypted content must be unwrapped first', () => {
    expect(isNotification(Buffer.from('no header here\r\n'))).toBe(false);
    expect(isNotification(Buffer.alloc(0))).toBe(false);
    const enveloped = Buffer.from('Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMIIB');
    expect(isNotification(enveloped)).toBe(false);
  });

  it('does not throw for a multipart/signed without boundary', () => {
    expect(() => notificationKind(Buffer.from('Content-Type: multipart/signed\r\n\r\nx'))).not.toThrow();
    expect(notificationKind(Buffer.from('Content-Type: multipart/signed\r\n\r\nx'))).toBeUndefined();
  });
});

describe('errors are HispErrors', () => {
  it('parseMdn on random-looking input', () => {
    for (const input of ['\u0000\u0001', ':\r\n', 'A: b\r\n\r\n', 'Content-Type: ;;;\r\n\r\n']) {
      let thrown: unknown;
      try {
        parseMdn(Buffer.from(input));
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(HispError);
    }
  });
});

import { describe, expect, it } from 'vitest';
import { hispError } from '../../test/helpers/hisp-error.js';
import { parseDsn } from './dsn-parser.js';

/** A DSN in the RFC 3464 appendix shape (as both RIs ship it), with the given status content, tail and returned part. */
function dsn(status: string, opts: { close?: string; returned?: string; eol?: string; bom?: boolean; head?: string } = {}): Buffer {
  const lines = [
    'To: Alice@Example.ORG',
    'From: postmaster@mail.Example.COM',
    'Subject: Delivery Notification (failure) for Carol@Ivory.EDU',
    opts.head ?? 'Content-Type: multipart/report; report-type=delivery-status;\n    boundary=abcde',
    'MIME-Version: 1.0',
    'Message-ID: <dsn-7@mail.Example.COM>',
    '',
    '--abcde',
    'Content-type: text/plain; charset=us-ascii',
    '',
    'Your message could not be delivered to Carol@Ivory.EDU.',
    '',
    '--abcde',
    'Content-type: message/delivery-status',
    '',
    status,
    '',
    ...(opts.returned === undefined ? [] : ['--abcde', opts.returned, '']),
    opts.close ?? '--abcde--',
  ];
  const text = lines.join('\n').replace(/\r?\n/g, opts.eol ?? '\r\n');
  return Buffer.concat([Buffer.from(opts.bom ? [0xef, 0xbb, 0xbf] : []), Buffer.from(text, 'utf8')]);
}

const STATUS = [
  'Reporting-MTA: dns; Example.ORG',
  'Original-Envelope-ID: QQ314159',
  'Arrival-Date: Mon, 1 Jan 2024 00:00:00 +0000',
  '',
  'Original-Recipient: rfc822;Carol@Ivory.EDU',
  'Final-Recipient: rfc822;Carol@Ivory.EDU',
  'Action: failed',
  'Status: 5.0.0',
  'Remote-MTA: dns; mx.ivory.edu',
  'Diagnostic-Code: smtp; 550 error - no such recipient',
  'Last-Attempt-Date: Mon, 1 Jan 2024 00:10:00 +0000',
].join('\n');

const CAROL = {
  action: 'failed',
  status: '5.0.0',
  finalRecipient: 'Carol@ivory.edu',
  originalRecipient: 'Carol@ivory.edu',
  diagnosticCode: { type: 'smtp', text: '550 error - no such recipient' },
  remoteMta: 'mx.ivory.edu',
  lastAttemptDate: 'Mon, 1 Jan 2024 00:10:00 +0000',
};

describe('parseDsn (RFC 3464)', () => {
  it('reads per-message and per-recipient fields', () => {
    const parsed = parseDsn(dsn(STATUS));
    expect(parsed).toMatchObject({
      reportingMta: 'Example.ORG',
      originalEnvelopeId: 'QQ314159',
      arrivalDate: 'Mon, 1 Jan 2024 00:00:00 +0000',
      from: 'postmaster@mail.example.com',
      messageId: '<dsn-7@mail.Example.COM>',
      subject: 'Delivery Notification (failure) for Carol@Ivory.EDU',
    });
    expect(parsed.recipients).toEqual([expect.objectContaining(CAROL)]);
    expect(parsed.warnings).toEqual(['the DSN does not tell the original Message-ID']);
  });

  it.each([
    ['the .NET RI closing delimiter `--abcde------`', { close: '--abcde------' }],
    ['no close delimiter', { close: '' }],
    ['LF line ends', { eol: '\n' }],
    ['a UTF-8 BOM', { bom: true }],
    ['odd Content-Type spacing and case', { head: 'CONTENT-TYPE :  Multipart/Report ;  Report-Type="Delivery-Status";  Boundary = "abcde"' }],
  ])('tolerates %s', (_what, opts) => {
    expect(parseDsn(dsn(STATUS, opts)).recipients).toEqual([expect.objectContaining(CAROL)]);
  });

  it('tolerates a missing empty line after the per-message fields and recipients not separated by empty lines', () => {
    const status = [
      'Reporting-MTA: dns; Example.ORG',
      'Final-Recipient: rfc822; a@x.example',
      'Action: failed',
      'Status: 5.1.1',
      'Final-Recipient: rfc822; b@x.example',
      'Action: Delayed',
      'Status: 4.4.1 (still trying)',
      'Original-Recipient: rfc822; c.alias@x.example',
      'Final-Recipient: rfc822; c@x.example',
      'Action: delivered',
      'Status: 2.0.0',
    ].join('\n');
    const parsed = parseDsn(dsn(status));
    expect(parsed.reportingMta).toBe('Example.ORG');
    expect(parsed.recipients.map((r) => [r.finalRecipient, r.action, r.status, r.originalRecipient])).toEqual([
      ['a@x.example', 'failed', '5.1.1', undefined],
      ['b@x.example', 'delayed', '4.4.1', undefined],
      ['c@x.example', 'delivered', '2.0.0', 'c.alias@x.example'],
    ]);
    expect(parsed.warnings).toContain('no empty line between the per-message and per-recipient fields');
  });

  it('folded fields, extra empty lines, white space and case', () => {
    const status = [
      'reporting-mta:dns;Example.ORG',
      '',
      '',
      '  final-recipient :  RFC822 ;  Carol@Ivory.EDU ',
      'ACTION:   FAILED  ',
      'status: 5.0.0',
      'Diagnostic-Code: smtp; 550 error -',
      '  no such recipient',
    ].join('\n');
    const r = parseDsn(dsn(status)).recipients;
    expect(r).toHaveLength(1);
    expect(r[0]).toMatchObject({ action: 'failed', status: '5.0.0', finalRecipient: 'Carol@ivory.edu', diagnosticCode: { type: 'smtp', text: '550 error - no such recipient' } });
  });

  it('original Message-ID: from the returned headers first, else from X-…-Original-Message-Id (Java and .NET RI)', () => {
    const withX = STATUS.replace('Arrival-Date', 'X-CERN-Original-Message-Id: <9501051053.aa04167@IETF.CNR I.Reston.VA.US>\nArrival-Date');
    expect(parseDsn(dsn(withX)).originalMessageId).toBe('<9501051053.aa04167@IETF.CNR I.Reston.VA.US>');
    expect(parseDsn(dsn(STATUS.replace('Arrival-Date', 'X-Original-Message-Id: abc@x\nArrival-Date'))).originalMessageId).toBe('<abc@x>');
    const headers = 'Content-Type: text/rfc822-headers\n\nFrom: Alice@Example.ORG\nMessage-ID:\n <orig-9@Example.ORG>\nSubject: x';
    expect(parseDsn(dsn(withX, { returned: headers })).originalMessageId).toBe('<orig-9@Example.ORG>');
    const message = 'Content-Type: message/rfc822\n\nFrom: Alice@Example.ORG\nMessage-ID: <orig-10@Example.ORG>\n\nbody';
    expect(parseDsn(dsn(STATUS, { returned: message })).originalMessageId).toBe('<orig-10@Example.ORG>');
    const broken = 'Content-Type: text/rfc822-headers\n\nnot a header line\nMessage-ID: <orig-11@Example.ORG>';
    expect(parseDsn(dsn(STATUS, { returned: broken })).originalMessageId).toBe('<orig-11@Example.ORG>');
  });

  it('a diagnostic without a type, a recipient without Final-Recipient, a trailing group of extension fields', () => {
    const status = `${STATUS.replace('Diagnostic-Code: smtp; ', 'Diagnostic-Code: ')}\n\nX-Extra: 1`;
    const parsed = parseDsn(dsn(status));
    expect(parsed.recipients[0]!.diagnosticCode).toEqual({ type: '', text: '550 error - no such recipient' });
    expect(parsed.warnings).toContain('a group of fields without recipient fields was ignored');
    const noFinal = parseDsn(dsn('Reporting-MTA: dns; x.example\n\nAction: failed\nStatus: 5.0.0'));
    expect(noFinal.recipients[0]!.finalRecipient).toBeUndefined();
    expect(noFinal.warnings).toContain('DSN recipient without Final-Recipient');
  });

  it.each([
    ['an unknown Action', STATUS.replace('Action: failed', 'Action: bounced'), /unknown Action/],
    ['no Action', STATUS.replace('Action: failed\n', ''), /no Action/],
    ['an invalid Status', STATUS.replace('Status: 5.0.0', 'Status: 550'), /invalid Status/],
    ['no Status', STATUS.replace('Status: 5.0.0\n', ''), /no Status/],
    ['no recipient', 'Reporting-MTA: dns; Example.ORG', /no per-recipient fields/],
  ])('refuses %s (HISP_MIME_MALFORMED)', (_what, status, message) => {
    const err = hispError(() => parseDsn(dsn(status)));
    expect(err.code).toBe('HISP_MIME_MALFORMED');
    expect(err.message).toMatch(message);
  });

  it('refuses what is not a DSN (plain mail, an MDN, a report without delivery-status part)', () => {
    expect(hispError(() => parseDsn(Buffer.from('From: a@b.example\r\n\r\nhello'))).message).toMatch(/not a DSN/);
    const mdn = dsn('Disposition: automatic-action/MDN-sent-automatically; processed', {
      head: 'Content-Type: multipart/report; report-type=disposition-notification; boundary=abcde',
    });
    expect(hispError(() => parseDsn(mdn)).message).toMatch(/message disposition notification/);
    const noPart = Buffer.from(dsn(STATUS).toString('latin1').replace('message/delivery-status', 'text/plain'), 'latin1');
    expect(hispError(() => parseDsn(noPart)).message).toMatch(/no message\/delivery-status part/);
  });
});

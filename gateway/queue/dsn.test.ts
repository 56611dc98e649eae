import { describe, expect, it } from 'vitest';
import { findBareLineEnd, MimeEntity } from '../mime/mime-entity.js';
import { HispError } from '../core/errors.js';
import { isNotification, notificationKind } from '../mdn/mdn-parser.js';
import { notificationOptionsOf } from '../mdn/notification-options.js';
import { multipartParts } from '../../test/helpers/vectors.js';
import { buildDsn, failedRecipient, type BuildDsnOptions, type DsnAction, type DsnRecipient } from './dsn.js';
import { parseDsn } from './dsn-parser.js';

const ORIGINAL = Buffer.from(
  'From: "Alice Sender" <alice@sender.example>\r\n' +
    'To: bob@receiver.example, carol@other.example\r\n' +
    'Subject: Records for Bob\r\n' +
    'Message-ID: <orig-1@sender.example>\r\n' +
    'Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n' +
    '\r\nthe body is never returned\r\n',
);

function options(over: Partial<BuildDsnOptions> = {}): BuildDsnOptions {
  return {
    reportingMta: 'hisp.sender.example',
    arrivalDate: new Date(Date.UTC(2024, 0, 1, 0, 0, 0)),
    recipients: [failedRecipient('bob@receiver.example', { kind: 'no-certificate' })],
    originalHeaders: ORIGINAL,
    to: 'alice@sender.example',
    from: 'mailer-daemon@sender.example',
    date: new Date(Date.UTC(2024, 0, 1, 1, 0, 0)),
    messageId: '<dsn-1@sender.example>',
    boundary: 'dsn-boundary-1',
    ...over,
  };
}

describe('buildDsn (RFC 3464, R-DSN-1)', () => {
  it('writes the failure DSN of R-DSN-1 exactly', () => {
    const { message, messageId } = buildDsn(options({ originalHeaders: undefined, originalMessageId: 'orig-1@sender.example', originalSubject: 'Records for Bob', originalEnvelopeId: 'QQ314159' }));
    expect(messageId).toBe('<dsn-1@sender.example>');
    expect(message.toString('latin1')).toBe(
      [
        'From: mailer-daemon@sender.example',
        'To: alice@sender.example',
        'Subject: Undeliverable: Records for Bob',
        'Date: Mon, 1 Jan 2024 01:00:00 +0000',
        'Message-ID: <dsn-1@sender.example>',
        'In-Reply-To: <orig-1@sender.example>',
        'References: <orig-1@sender.example>',
        'Auto-Submitted: auto-replied',
        'MIME-Version: 1.0',
        'Content-Type: multipart/report; report-type=delivery-status;',
        ' boundary="dsn-boundary-1"',
        '',
        '--dsn-boundary-1',
        'Content-Type: text/plain; charset=us-ascii',
        'Content-Transfer-Encoding: 7bit',
        '',
        'This is the Direct messaging system at hisp.sender.example.',
        '',
        'Your message <orig-1@sender.example> ("Records for Bob") could not be delivered to:',
        '',
        '  bob@receiver.example: no certificate found for bob@receiver.example, so the message could not be encrypted for this recipient',
        '',
        'No further attempts will be made to deliver it to these recipients.',
        '',
        '--dsn-boundary-1',
        'Content-Type: message/delivery-status',
        'Content-Transfer-Encoding: 7bit',
        '',
        'Original-Envelope-Id: QQ314159',
        'Reporting-MTA: dns; hisp.sender.example',
        'Arrival-Date: Mon, 1 Jan 2024 00:00:00 +0000',
        'X-Original-Message-Id: <orig-1@sender.example>',
        '',
        'Final-Recipient: rfc822; bob@receiver.example',
        'Action: failed',
        'Status: 5.7.5',
        'Diagnostic-Code: smtp; 554 5.7.5 no certificate found for',
        ' bob@receiver.example, so the message could not be encrypted for this',
        ' recipient',
        '',
        '--dsn-boundary-1--',
        '',
      ].join('\r\n'),
    );
    expect(findBareLineEnd(message)).toBe(-1);
  });

  it('returns the original header section (not the body) as text/rfc822-headers, and reads id and subject from it', () => {
    const { message } = buildDsn(options());
    const parts = multipartParts(message);
    expect(parts.map((p) => MimeEntity.parse(p).contentType().mediaType)).toEqual(['text/plain', 'message/delivery-status', 'text/rfc822-headers']);
    const returned = MimeEntity.parse(parts[2]!).body.toString('latin1');
    expect(returned).toBe(ORIGINAL.toString('latin1').split('\r\n\r\n')[0] + '\r\n');
    expect(returned).not.toContain('never returned');
    const head = MimeEntity.parse(message);
    expect(head.header('subject')).toBe('Undeliverable: Records for Bob');
    expect(head.header('in-reply-to')).toBe('<orig-1@sender.example>');
  });

  it('is a notification, asks for no MDN, and parses back (R-MDN-2)', () => {
    const { message } = buildDsn(options());
    expect(notificationKind(message)).toBe('dsn');
    expect(isNotification(message)).toBe(true);
    expect(notificationOptionsOf(message).present).toBe(false);
    expect(MimeEntity.parse(message).header('disposition-notification-to')).toBeUndefined();
  });

  const ACTIONS: [DsnAction, string][] = [
    ['failed', '5.1.1'],
    ['delayed', '4.4.7'],
    ['delivered', '2.0.0'],
    ['relayed', '2.0.0'],
    ['expanded', '2.1.5'],
  ];

  it.each(ACTIONS)('round trip: action %s with status %s', (action, status) => {
    const recipient: DsnRecipient = {
      finalRecipient: 'Bob@Receiver.Example',
      originalRecipient: 'bob.alias@receiver.example',
      action,
      status,
      diagnosticCode: { type: 'smtp', text: `250 ${status} whatever` },
      remoteMta: 'mx.receiver.example',
      lastAttemptDate: new Date(Date.UTC(2024, 0, 1, 0, 30, 0)),
      willRetryUntil: new Date(Date.UTC(2024, 0, 2, 0, 0, 0)),
      reason: `the ${action} reason`,
    };
    const built = buildDsn(options({ recipients: [recipient, failedRecipient('carol@other.example', { kind: 'untrusted' })], originalEnvelopeId: 'ENV+2B1' }));
    const parsed = parseDsn(built.message);
    expect(parsed).toMatchObject({
      reportingMta: 'hisp.sender.example',
      originalEnvelopeId: 'ENV+2B1',
      arrivalDate: 'Mon, 1 Jan 2024 00:00:00 +0000',
      originalMessageId: '<orig-1@sender.example>',
      from: 'mailer-daemon@sender.example',
      messageId: '<dsn-1@sender.example>',
      warnings: [],
    });
    expect(parsed.recipients).toHaveLength(2);
    expect(parsed.recipients[0]).toMatchObject({
      action,
      status,
      finalRecipient: 'Bob@receiver.example',
      originalRecipient: 'bob.alias@receiver.example',
      diagnosticCode: { type: 'smtp', text: `250 ${status} whatever` },
      remoteMta: 'mx.receiver.example',
      lastAttemptDate: 'Mon, 1 Jan 2024 00:30:00 +0000',
    });
    expect(parsed.recipients[1]).toMatchObject({ action: 'failed', status: '5.7.1', finalRecipient: 'carol@other.example' });
    const human = MimeEntity.parse(multipartParts(built.message)[0]!).body.toString('latin1');
    expect(human).toContain(`Bob@receiver.example: the ${action} reason`);
    expect(human).toContain("carol@other.example: the recipient's HISP is not trusted");
  });

  it('subjects by the worst action, with or without the original subject', () => {
    const subject = (recipients: DsnRecipient[]) => MimeEntity.parse(buildDsn(options({ recipients })).message).header('subject');
    const delayed: DsnRecipient = { finalRecipient: 'b@r.example', action: 'delayed', status: '4.4.1' };
    const delivered: DsnRecipient = { finalRecipient: 'b@r.example', action: 'delivered', status: '2.0.0' };
    expect(subject([delayed])).toBe('Delayed: Records for Bob');
    expect(subject([delivered])).toBe('Delivered: Records for Bob');
    expect(MimeEntity.parse(buildDsn({ ...options(), originalHeaders: undefined }).message).header('subject')).toBe('Delivery Status Notification (Failure)');
    expect(MimeEntity.parse(buildDsn({ ...options(), originalHeaders: undefined, recipients: [delayed] }).message).header('subject')).toBe(
      'Delivery Status Notification (Delay)',
    );
  });

  it.each([
    ['no recipient', { recipients: [] }],
    ['failed with a 4.x.x status', { recipients: [{ finalRecipient: 'b@r.example', action: 'failed', status: '4.4.7' }] }],
    ['delivered with a 5.x.x status', { recipients: [{ finalRecipient: 'b@r.example', action: 'delivered', status: '5.0.0' }] }],
    ['a status that is not class.subject.detail', { recipients: [{ finalRecipient: 'b@r.example', action: 'failed', status: '550' }] }],
    ['an unknown action', { recipients: [{ finalRecipient: 'b@r.example', action: 'bounced', status: '5.0.0' }] }],
    ['a recipient that is not a mailbox', { recipients: [{ finalRecipient: 'nobody', action: 'failed', status: '5.0.0' }] }],
    ['a Reporting-MTA that is not a host', { reportingMta: 'not a host' }],
    ['a Remote-MTA that is not a host', { recipients: [{ finalRecipient: 'b@r.example', action: 'failed', status: '5.0.0', remoteMta: 'a b' }] }],
    ['a diagnostic type that is not a token', { recipients: [{ finalRecipient: 'b@r.example', action: 'failed', status: '5.0.0', diagnosticCode: { type: 'smtp;x', text: '' } }] }],
    ['a From that is not a mailbox', { from: 'MAILER-DAEMON' }],
  ])('refuses %s (HISP_USAGE)', (_what, over) => {
    let thrown: unknown;
    try {
      buildDsn(options(over as Partial<BuildDsnOptions>));
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(HispError);
    expect((thrown as HispError).code).toBe('HISP_USAGE');
  });

  it('one-line values: CR/LF in reasons and diagnostics never start a field', () => {
    const { message } = buildDsn(
      options({ recipients: [{ finalRecipient: 'b@r.example', action: 'failed', status: '5.0.0', diagnosticCode: { type: 'smtp', text: '550 no\r\nAction: delivered' }, reason: 'x\r\nStatus: 2.0.0' }] }),
    );
    const parsed = parseDsn(message);
    expect(parsed.recipients).toHaveLength(1);
    expect(parsed.recipients[0]).toMatchObject({ action: 'failed', status: '5.0.0', diagnosticCode: { text: '550 no Action: delivered' } });
  });
});

describe('failedRecipient: readable reasons for R-MDN-7 failures', () => {
  const cases: [string, Parameters<typeof failedRecipient>[1], string, RegExp][] = [
    ['no certificate (MT 3/7/11, 25)', { kind: 'no-certificate' }, '5.7.5', /^no certificate found for bob@receiver\.example/],
    ['untrusted HISP (MT 2/6/10, 24)', { kind: 'untrusted', detail: 'anchor of direct2.sitenv.org unknown' }, '5.7.1', /^the recipient's HISP is not trusted \(anchor/],
    ['no processed MDN (MT 4/8/12, 26)', { kind: 'mdn-timeout', awaited: 'processed', minutes: 60 }, '5.4.7', /^no processed MDN within 60 minutes/],
    ['no dispatched MDN (MT 27, 28)', { kind: 'mdn-timeout', awaited: 'dispatched', minutes: 60 }, '5.4.7', /^no dispatched MDN within 60 minutes/],
    ['failed MDN', { kind: 'failed-mdn', failure: 'mailbox unknown' }, '5.0.0', /delivery failed: mailbox unknown$/],
    ['nonexistent address (MT 1/5/9, 23)', { kind: 'rejected', reply: { code: 550, enhanced: '5.1.1', text: 'no such user' }, remoteMta: 'mx.receiver.example' }, '5.1.1', /refused the message: 550 5\.1\.1 no such user$/],
    ['rejected without enhanced code', { kind: 'rejected', reply: { code: 550, text: 'no such user' } }, '5.1.1', /550 no such user$/],
    ['rejected 4xx given up', { kind: 'rejected', reply: { code: 451, enhanced: '4.3.0', text: 'try later' } }, '5.3.0', /451 4\.3\.0 try later$/],
    ['rejected 554 without enhanced code', { kind: 'rejected', reply: { code: 554, text: 'no' } }, '5.0.0', /554 no$/],
    ['retries expired', { kind: 'expired', hours: 48, lastError: 'connection refused' }, '5.4.7', /48 hours .*connection refused/],
    ['HispError no certificate', { kind: 'error', error: new HispError('HISP_DISCOVERY_NO_CERT', 'x') }, '5.7.5', /^no certificate found for bob@receiver\.example/],
    ['HispError no valid cert', { kind: 'error', error: new HispError('HISP_DISCOVERY_NO_VALID_CERT', 'x') }, '5.7.1', /HISP is not trusted/],
    ['HispError trust anchor', { kind: 'error', error: new HispError('HISP_TRUST_NO_ANCHOR', 'x') }, '5.7.1', /HISP is not trusted/],
    ['transient HispError given up', { kind: 'error', error: new HispError('HISP_DISCOVERY_TEMPORARY', 'x', { transient: true }) }, '5.4.3', /could not be looked up/],
    ['other HispError', { kind: 'error', error: new HispError('HISP_CMS_WEAK_ALGORITHM', 'RC2 refused') }, '5.7.4', /^RC2 refused$/],
    ['not a HispError', { kind: 'error', error: new TypeError('boom') }, '5.3.0', /local error/],
  ];

  it.each(cases)('%s', (_what, failure, status, reason) => {
    const r = failedRecipient('bob@receiver.example', failure, { lastAttemptDate: new Date(0), originalRecipient: 'bob@receiver.example' });
    expect(r.action).toBe('failed');
    expect(r.status).toBe(status);
    expect(r.reason).toMatch(reason);
    expect(r.diagnosticCode?.type).toBe('smtp');
    const parsed = parseDsn(buildDsn(options({ recipients: [r] })).message).recipients[0]!;
    expect(parsed).toMatchObject({ action: 'failed', status, finalRecipient: 'bob@receiver.example' });
    expect(parsed.diagnosticCode?.text).toMatch(/^\d{3} /);
  });
});

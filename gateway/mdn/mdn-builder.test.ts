import { describe, expect, it } from 'vitest';
import { findBareLineEnd, MimeEntity } from '../mime/mime-entity.js';
import { HispError } from '../core/errors.js';
import { hispError } from '../../test/helpers/hisp-error.js';
import { multipartParts } from '../../test/helpers/vectors.js';
import { credentialPaths } from '../../test/helpers/pki.js';
import { loadCredential } from '../agent/key-material.js';
import { unwrapMessage } from '../agent/unwrap-message.js';
import { wrapMessage } from '../agent/wrap-message.js';
import { buildMdn, planMdns, type BuildMdnOptions, type MdnDisposition } from './mdn-builder.js';
import { isNotification, notificationKind, parseMdn } from './mdn-parser.js';
import { notificationOptionsOf, parseNotificationOptions } from './notification-options.js';

const ORIGINAL = Buffer.from(
  'From: "Alice Sender" <alice@sender.example>\r\n' +
    'To: Bob <bob@receiver.example>\r\n' +
    'Subject: Records for Bob\r\n' +
    'Message-ID: <orig-1@sender.example>\r\n' +
    'Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n' +
    'Disposition-Notification-To: alice@sender.example\r\n' +
    'Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\n' +
    '\r\nhello\r\n',
);

function options(over: Partial<BuildMdnOptions> = {}): BuildMdnOptions {
  return {
    original: { messageId: '<orig-1@sender.example>', from: 'alice@sender.example', to: 'bob@receiver.example', subject: 'Records for Bob' },
    disposition: 'processed',
    reportingUa: { name: 'receiver.example', product: 'hisp' },
    finalDeliveryExtension: false,
    messageId: () => '<mdn-1@receiver.example>',
    date: new Date(Date.UTC(2024, 0, 1, 0, 5, 0)),
    boundary: 'mdn-boundary-1',
    ...over,
  };
}

function headerNames(message: Buffer): string[] {
  return MimeEntity.parse(message).headers.map((h) => h.name.toLowerCase());
}

describe('buildMdn: bytes (RFC 8098 §3, R-MDN-3)', () => {
  it('writes exactly the processed MDN of R-MDN-1 (CRLF, multipart/report, the fields in RFC order)', () => {
    const { message, messageId } = buildMdn(options());
    expect(messageId).toBe('<mdn-1@receiver.example>');
    expect(message.toString('latin1')).toBe(
      [
        'From: bob@receiver.example',
        'To: alice@sender.example',
        'Subject: Processed: Records for Bob',
        'Date: Mon, 1 Jan 2024 00:05:00 +0000',
        'Message-ID: <mdn-1@receiver.example>',
        'In-Reply-To: <orig-1@sender.example>',
        'References: <orig-1@sender.example>',
        'MIME-Version: 1.0',
        'Content-Type: multipart/report; report-type=disposition-notification;',
        ' boundary="mdn-boundary-1"',
        '',
        '--mdn-boundary-1',
        'Content-Type: text/plain; charset=us-ascii',
        'Content-Transfer-Encoding: 7bit',
        '',
        'Your message <orig-1@sender.example> was received for bob@receiver.example, decrypted and its signature verified by receiver.example.',
        '',
        '--mdn-boundary-1',
        'Content-Type: message/disposition-notification',
        'Content-Transfer-Encoding: 7bit',
        '',
        'Reporting-UA: receiver.example; hisp',
        'Final-Recipient: rfc822; bob@receiver.example',
        'Original-Message-ID: <orig-1@sender.example>',
        'Disposition: automatic-action/MDN-sent-automatically; processed',
        '',
        '--mdn-boundary-1--',
        '',
      ].join('\r\n'),
    );
    expect(findBareLineEnd(message)).toBe(-1);
  });

  it('parts cut by an independent oracle: text/plain, message/disposition-notification, text/rfc822-headers', () => {
    const { message } = buildMdn(options({ original: { ...options().original, headers: ORIGINAL } }));
    const parts = multipartParts(message);
    expect(parts.map((p) => MimeEntity.parse(p).contentType().mediaType)).toEqual([
      'text/plain',
      'message/disposition-notification',
      'text/rfc822-headers',
    ]);
    // The returned header section is the original's, byte for byte, without its body.
    expect(MimeEntity.parse(parts[2]!).body.toString('latin1')).toBe(ORIGINAL.toString('latin1').split('\r\n\r\n')[0] + '\r\n');
    for (const line of message.toString('latin1').split('\r\n')) expect(line.length).toBeLessThanOrEqual(998);
  });

  it('never carries Disposition-Notification-To or -Options, whatever the original asked (R-MDN-2, ETT rule 452)', () => {
    for (const disposition of ['processed', 'dispatched', 'failed', 'displayed', 'deleted'] as const) {
      const { message } = buildMdn(
        options({
          disposition,
          finalDeliveryExtension: true,
          original: { ...options().original, dispositionNotificationTo: 'alice@sender.example', headers: ORIGINAL },
        }),
      );
      const names = headerNames(message);
      expect(names).not.toContain('disposition-notification-to');
      expect(names).not.toContain('disposition-notification-options');
      expect(notificationOptionsOf(message).present).toBe(false);
      expect(isNotification(message)).toBe(true);
    }
  });

  it('goes to Disposition-Notification-To when the original had one, else to its sender', () => {
    const dnt = buildMdn(options({ original: { ...options().original, dispositionNotificationTo: '"Receipts, Inc" <receipts@sender.example>, x@sender.example' } }));
    expect(MimeEntity.parse(dnt.message).header('to')).toBe('receipts@sender.example, x@sender.example');
    expect(MimeEntity.parse(buildMdn(options()).message).header('to')).toBe('alice@sender.example');
  });

  it('X-DIRECT-FINAL-DESTINATION-DELIVERY only on dispatched and failed MDNs, and only when the request was valid (R-MDN-6)', () => {
    const fields = (d: MdnDisposition, ext: boolean) =>
      multipartParts(buildMdn(options({ disposition: d, finalDeliveryExtension: ext })).message)[1]!.toString('latin1');
    expect(fields('dispatched', true)).toMatch(/\r\nX-DIRECT-FINAL-DESTINATION-DELIVERY:\r\n$/);
    expect(fields('failed', true)).toContain('\r\nX-DIRECT-FINAL-DESTINATION-DELIVERY:\r\n');
    expect(fields('dispatched', false)).not.toContain('X-DIRECT');
    expect(fields('processed', true)).not.toContain('X-DIRECT');
  });

  it('Original-Recipient, Failure, Error, Warning, modifiers and manual mode', () => {
    const { message } = buildMdn(
      options({
        disposition: 'failed',
        modifiers: ['error'],
        mode: 'manual',
        original: { ...options().original, originalRecipient: 'Bob.Alias@Receiver.Example' },
        failure: 'mailbox full\r\nInjected: header',
        error: 'quota exceeded',
        warning: 'retry later',
      }),
    );
    const part = multipartParts(message)[1]!.toString('latin1');
    expect(part).toContain('Original-Recipient: rfc822; Bob.Alias@receiver.example\r\nFinal-Recipient: rfc822; bob@receiver.example\r\n');
    expect(part).toContain('Disposition: manual-action/MDN-sent-manually; failed/error\r\n');
    // CR/LF in a value never starts a new field.
    expect(part).toContain('Failure: mailbox full Injected: header\r\nError: quota exceeded\r\nWarning: retry later\r\n');
    expect(part).not.toMatch(/\r\nInjected:/);
  });

  it('a failed MDN without a Failure text gets one; long values are folded; a UTF-8 Failure makes the part 8bit', () => {
    const failed = parseMdn(buildMdn(options({ disposition: 'failed' })).message);
    expect(failed.failure).toBe('the message could not be delivered to bob@receiver.example');
    const long = 'word '.repeat(60).trim();
    const { message } = buildMdn(options({ disposition: 'failed', failure: long }));
    const part = multipartParts(message)[1]!.toString('latin1');
    expect(part).toMatch(/\r\nFailure: word( word)*\r\n word/);
    for (const line of part.split('\r\n')) expect(line.length).toBeLessThanOrEqual(78);
    expect(parseMdn(message).failure).toBe(long);
    const utf8 = buildMdn(options({ disposition: 'failed', failure: 'Postfach voll für Bob' }));
    expect(multipartParts(utf8.message)[1]!.toString('latin1')).toContain('Content-Transfer-Encoding: 8bit');
    expect(parseMdn(utf8.message).failure).toBe('Postfach voll für Bob');
  });

  it('encodes a non-ASCII Subject (RFC 2047) and takes it from the original headers when not given', () => {
    const original = Buffer.from('From: a@s.example\r\nSubject: =?UTF-8?Q?Befund_f=C3=BCr?= Bob\r\nMessage-ID: <x@s.example>\r\n\r\n');
    const { message } = buildMdn(options({ original: { messageId: '<x@s.example>', from: 'a@s.example', to: 'bob@receiver.example', headers: original } }));
    const entity = MimeEntity.parse(message);
    expect(entity.header('subject')).toMatch(/^Processed: Befund =\?UTF-8\?Q\?f=C3=BCr\?= Bob$/);
    expect(parseMdn(message).subject).toBe('Processed: Befund für Bob');
  });

  it('generates a Message-ID at the final recipient\'s domain and the date now by default (R-MDN-9)', () => {
    const a = buildMdn({ ...options(), messageId: undefined, date: undefined, boundary: undefined });
    const b = buildMdn({ ...options(), messageId: undefined, date: undefined, boundary: undefined });
    expect(a.messageId).toMatch(/^<[0-9a-f]{32}@receiver\.example>$/);
    expect(a.messageId).not.toBe(b.messageId);
    expect(MimeEntity.parse(a.message).header('message-id')).toBe(a.messageId);
    expect(Date.now() - Date.parse(MimeEntity.parse(a.message).header('date')!)).toBeLessThan(60_000);
  });

  it.each([
    ['unknown disposition', { disposition: 'read' as MdnDisposition }],
    ['final recipient is not a mailbox', { original: { ...options().original, to: 'bob' } }],
    ['MDN recipient is not a mailbox', { original: { ...options().original, from: '' } }],
    ['empty original Message-ID', { original: { ...options().original, messageId: '  ' } }],
    ['empty Reporting-UA', { reportingUa: '' }],
    ['modifier that is not a token', { modifiers: ['a b'] }],
    ['bad boundary', { boundary: 'a:b' }],
  ])('refuses %s (HISP_USAGE)', (_what, over) => {
    let thrown: unknown;
    try {
      buildMdn(options(over));
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(HispError);
    expect((thrown as HispError).code).toBe('HISP_USAGE');
  });
});

describe('buildMdn → parseMdn round trips', () => {
  it.each(['processed', 'dispatched', 'failed', 'displayed', 'deleted'] as const)('%s', (disposition) => {
    for (const ext of [false, true]) {
      const built = buildMdn(options({ disposition, finalDeliveryExtension: ext, original: { ...options().original, headers: ORIGINAL, originalRecipient: 'bob@receiver.example' } }));
      const parsed = parseMdn(built.message);
      expect(parsed).toMatchObject({
        disposition,
        dispositionMode: 'automatic-action/MDN-sent-automatically',
        modifiers: [],
        originalMessageId: '<orig-1@sender.example>',
        finalRecipient: 'bob@receiver.example',
        originalRecipient: 'bob@receiver.example',
        reportingUa: { name: 'receiver.example', product: 'hisp' },
        finalDeliveryExtension: ext && (disposition === 'dispatched' || disposition === 'failed'),
        from: 'bob@receiver.example',
        messageId: '<mdn-1@receiver.example>',
        warnings: [],
      });
      expect(notificationKind(built.message)).toBe('mdn');
    }
  });

  it('Reporting-UA without product, modifiers and Error survive', () => {
    const parsed = parseMdn(buildMdn(options({ disposition: 'processed', modifiers: ['error'], reportingUa: 'receiver.example', error: 'x' })).message);
    expect(parsed.reportingUa).toEqual({ name: 'receiver.example' });
    expect(parsed.modifiers).toEqual(['error']);
    expect(parsed.error).toBe('x');
  });
});

describe('which MDNs to send (planMdns; ETT MT 39, 40)', () => {
  it('MT 39: valid request → processed, then dispatched with the extension field', () => {
    const plan = planMdns(notificationOptionsOf(ORIGINAL));
    expect(plan).toEqual({ processed: true, dispatched: true, finalDeliveryExtension: true });
    const dispatched = parseMdn(buildMdn(options({ disposition: 'dispatched', finalDeliveryExtension: plan.finalDeliveryExtension })).message);
    expect(dispatched.finalDeliveryExtension).toBe(true);
  });

  it('MT 40: malformed request → processed MDN only; a dispatched MDN, if sent anyway, has no extension field', () => {
    const bad = parseNotificationOptions('X-DIRECT-FINAL-DESTINATION-DELIVERY=optinal,true');
    expect(bad.malformed).toBe(true);
    const plan = planMdns(bad);
    expect(plan).toEqual({ processed: true, dispatched: false, finalDeliveryExtension: false });
    const processed = parseMdn(buildMdn(options({ disposition: 'processed', finalDeliveryExtension: plan.finalDeliveryExtension })).message);
    expect(processed.disposition).toBe('processed');
    expect(processed.finalDeliveryExtension).toBe(false);
    const dispatched = buildMdn(options({ disposition: 'dispatched', finalDeliveryExtension: plan.finalDeliveryExtension }));
    expect(dispatched.message.toString('latin1')).not.toContain('X-DIRECT-FINAL-DESTINATION-DELIVERY');
    expect(parseMdn(dispatched.message).finalDeliveryExtension).toBe(false);
  });

  it('no request → processed only; an unknown required option → one failed MDN naming it', () => {
    expect(planMdns(parseNotificationOptions(undefined))).toEqual({ processed: true, dispatched: false, finalDeliveryExtension: false });
    const plan = planMdns(parseNotificationOptions('x-secure-receipt=required,yes'));
    expect(plan.processed).toBe(false);
    expect(plan.dispatched).toBe(false);
    expect(plan.failedOnly).toMatch(/x-secure-receipt/);
    const failed = parseMdn(buildMdn(options({ disposition: 'failed', failure: plan.failedOnly! })).message);
    expect(failed.failure).toMatch(/unsupported required .*x-secure-receipt/);
  });
});

describe('an MDN travels like any Direct message (wrapMessage / unwrapMessage)', () => {
  it('signed and encrypted, then decrypted: still an MDN, read to the same facts, never answered', () => {
    const p = (n: Parameters<typeof credentialPaths>[0]) => credentialPaths(n);
    // The MDN comes from the recipient's address; the test PKI's patient@recipient.test signs it.
    const signer = loadCredential(p('recipient-rsa').key, p('recipient-rsa').chain);
    const built = buildMdn(
      options({
        original: { messageId: '<orig-1@sender.test>', from: 'sender@sender.test', to: 'patient@recipient.test', subject: 'Records' },
        disposition: 'dispatched',
        finalDeliveryExtension: true,
      }),
    );
    const wrapped = wrapMessage(built.message, { signers: [signer], recipients: [signer.certificate], signingTime: new Date(Date.UTC(2025, 0, 1)) });
    expect(isNotification(wrapped.message)).toBe(false); // encrypted: unwrap first
    const inner = unwrapMessage(wrapped.message, { credentials: [signer] });
    expect(inner.wrapped).toBe(true);
    expect(notificationKind(inner.message)).toBe('mdn');
    expect(notificationKind(inner.decrypted)).toBe('mdn'); // the multipart/signed before unwrapping
    expect(parseMdn(inner.message)).toMatchObject({
      disposition: 'dispatched',
      originalMessageId: '<orig-1@sender.test>',
      finalRecipient: 'patient@recipient.test',
      finalDeliveryExtension: true,
      from: 'patient@recipient.test',
      messageId: built.messageId,
    });
    expect(inner.message.equals(built.message)).toBe(true);
  });
});

// The sentence a person reads, the fields a peer reads, and the reasons buildMdn gives (mutation
// testing, docs/testing.md).
const text = (over: Partial<BuildMdnOptions>) => buildMdn(options(over)).message.toString('latin1');

describe('buildMdn: the sentence a person reads, per disposition', () => {
  it('dispatched, failed (with the reason), displayed, deleted', () => {
    expect(text({ disposition: 'dispatched' })).toContain('\r\nYour message <orig-1@sender.example> was delivered to bob@receiver.example.\r\n');
    expect(text({ disposition: 'failed', failure: 'mailbox full' })).toContain(
      '\r\nYour message <orig-1@sender.example> could not be delivered to bob@receiver.example.\r\nReason: mailbox full\r\n',
    );
    expect(text({ disposition: 'failed' })).toContain('Reason: the message could not be delivered to bob@receiver.example\r\n');
    expect(text({ disposition: 'displayed' })).toContain('\r\nYour message <orig-1@sender.example> to bob@receiver.example was displayed.\r\n');
    expect(text({ disposition: 'deleted' })).toContain('\r\nYour message <orig-1@sender.example> to bob@receiver.example was deleted without being displayed.\r\n');
  });
});

describe('buildMdn: the fields a peer reads (RFC 8098 §3.2)', () => {
  it('Reporting-UA with and without a product', () => {
    expect(text({})).toContain('\r\nReporting-UA: receiver.example; hisp\r\n');
    expect(text({ reportingUa: 'receiver.example' })).toContain('\r\nReporting-UA: receiver.example\r\n');
    expect(parseMdn(buildMdn(options({ reportingUa: 'receiver.example' })).message).reportingUa).toEqual({ name: 'receiver.example' });
  });

  it('several modifiers, comma-separated after the type', () => {
    expect(text({ disposition: 'failed', modifiers: ['error', 'warning'] })).toContain(
      '\r\nDisposition: automatic-action/MDN-sent-automatically; failed/error,warning\r\n',
    );
    expect(parseMdn(buildMdn(options({ disposition: 'failed', modifiers: ['error', 'warning'] })).message).modifiers).toEqual(['error', 'warning']);
  });

  it('the MDN Message-ID given as a string, or made from the final recipient’s domain', () => {
    expect(buildMdn(options({ messageId: '<given@receiver.example>' })).messageId).toBe('<given@receiver.example>');
    const { messageId: _drop, ...noId } = options();
    expect(buildMdn(noId).messageId).toMatch(/^<[0-9a-f]{32}@receiver\.example>$/);
  });

  it('without a boundary, a fresh one that the message uses', () => {
    const { boundary: _drop, ...noBoundary } = options();
    const message = buildMdn(noBoundary).message.toString('latin1');
    const boundary = /boundary="([^"]+)"/.exec(message)?.[1];
    expect(boundary).toBeDefined();
    expect(message).toContain(`\r\n--${boundary}--\r\n`);
  });
});

describe('buildMdn: what it cannot build (HISP_USAGE, with the reason)', () => {
  it('names the option at fault', () => {
    expect(hispError(() => buildMdn(options({ disposition: 'read' as 'processed' }))).message).toBe('unknown MDN disposition "read"');
    expect(hispError(() => buildMdn(options({ modifiers: ['not a token'] }))).message).toBe('disposition modifier is not a token: "not a token"');
    expect(hispError(() => buildMdn(options({ reportingUa: '  ' }))).message).toBe('Reporting-UA name is empty');
    expect(hispError(() => buildMdn(options({ boundary: 'has space' }))).message).toBe('invalid multipart boundary');
  });

  it('names the address at fault', () => {
    const original = options().original;
    const cases: [Partial<BuildMdnOptions>, string][] = [
      [{ original: { ...original, to: 'nobody' } }, 'the final recipient (original To): '],
      [{ original: { ...original, from: 'nobody' } }, 'the MDN recipient: '],
      [{ finalRecipient: 'nobody' }, 'Final-Recipient: '],
      [{ original: { ...original, originalRecipient: 'nobody' } }, 'Original-Recipient: '],
      [{ original: { ...original, messageId: '  ' } }, 'the original Message-ID is empty'],
      [{ messageId: '<>' }, 'the MDN Message-ID is empty'],
    ];
    for (const [over, start] of cases) {
      const e = hispError(() => buildMdn(options(over)));
      expect(e.code).toBe('HISP_USAGE');
      expect(e.message.startsWith(start), `${e.message} starts with ${start}`).toBe(true);
    }
  });
});

describe('planMdns: an unknown required option (RFC 8098 §2.2)', () => {
  it('only a failed MDN, without the final-delivery extension even when it was requested too', () => {
    const plan = planMdns(parseNotificationOptions('X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true; x-secure-receipt=required,yes'));
    expect(plan.processed).toBe(false);
    expect(plan.dispatched).toBe(false);
    expect(plan.finalDeliveryExtension).toBe(false);
    expect(plan.failedOnly).toMatch(/x-secure-receipt/i);
  });
});

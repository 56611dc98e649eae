// buildMdn and planMdns on the edges the suite left open (mutation testing, docs/testing.md): the
// sentence a person reads in each MDN, the fields a peer's tracker reads (RFC 8098 §3.2), and the
// reasons buildMdn gives when it cannot build one.
import { describe, expect, it } from 'vitest';
import { hispError } from '../../test/helpers/hisp-error.js';
import { buildMdn, planMdns, type BuildMdnOptions } from './mdn-builder.js';
import { parseMdn } from './mdn-parser.js';
import { parseNotificationOptions } from './notification-options.js';

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

// parseMdn and notificationKind on the edges the suite left open (mutation testing, docs/testing.md):
// what the operator and the tracker read of a peer's MDN (RFC 8098 §3.2): the disposition and its
// mode, the recipients, the Failure/Error/Warning texts, and the warnings on each tolerated deviation.
import { describe, expect, it } from 'vitest';
import { hispError } from '../../test/helpers/hisp-error.js';
import { notificationKind, parseMdn } from './mdn-parser.js';

function mdn(fields: readonly string[], head: readonly string[] = ['From: doctor@sender.test']): Buffer {
  return Buffer.from(
    [
      ...head,
      'To: sender@hisp.example',
      'Message-ID: <mdn-1@sender.test>',
      'MIME-Version: 1.0',
      'Content-Type: multipart/report; report-type=disposition-notification; boundary="b1"',
      '',
      '--b1',
      'Content-Type: text/plain',
      '',
      'Processed.',
      '--b1',
      'Content-Type: message/disposition-notification',
      '',
      ...fields,
      '',
      '--b1--',
      '',
    ].join('\r\n'),
  );
}

const FR = 'Final-Recipient: rfc822; patient@recipient.test';
const OMID = 'Original-Message-ID: <orig@hisp.example>';
const DISP = 'Disposition: automatic-action/MDN-sent-automatically; processed';
const parse = (...fields: string[]) => parseMdn(mdn(fields));

describe('parseMdn: what is not an MDN (HISP_MIME_MALFORMED, with the reason)', () => {
  it('a DSN', () => {
    const dsn = mdn([]).toString('latin1').replace('report-type=disposition-notification', 'report-type=delivery-status').replace('message/disposition-notification', 'message/delivery-status');
    const e = hispError(() => parseMdn(Buffer.from(dsn, 'latin1')));
    expect(e.code).toBe('HISP_MIME_MALFORMED');
    expect(e.message).toBe('not an MDN: the report is a delivery status notification');
  });

  it('a report without a disposition-notification part', () => {
    const other = mdn([]).toString('latin1').replace('report-type=disposition-notification', 'report-type=x-other').replace('message/disposition-notification', 'text/x-other');
    const e = hispError(() => parseMdn(Buffer.from(other, 'latin1')));
    expect(e.code).toBe('HISP_MIME_MALFORMED');
    expect(e.message).toBe('not an MDN: the report has no message/disposition-notification part');
  });

  it('an MDN whose Disposition is missing or blank', () => {
    for (const fields of [[FR, OMID], [FR, OMID, 'Disposition:    ']]) {
      const e = hispError(() => parse(...fields));
      expect(e.code).toBe('HISP_MIME_MALFORMED');
      expect(e.message).toBe('the MDN has no Disposition field (RFC 8098 §3.2.6)');
    }
  });

  it('a Disposition over 1000 characters; one of exactly 1000 is read', () => {
    // a comment pads the value (comments are stripped after the length check)
    const base = 'automatic-action/MDN-sent-automatically; processed (';
    const value = (n: number) => `${base}${'x'.repeat(n - base.length - 1)})`;
    expect(value(1001)).toHaveLength(1001);
    const e = hispError(() => parse(FR, OMID, `Disposition: ${value(1001)}`));
    expect(e.code).toBe('HISP_MIME_MALFORMED');
    expect(e.message).toBe('the Disposition field is longer than 1000 characters');
    expect(parse(FR, OMID, `Disposition: ${value(1000)}`).disposition).toBe('processed');
  });

  it('an unknown disposition type names the field as written', () => {
    const e = hispError(() => parse(FR, OMID, 'Disposition: automatic-action/MDN-sent-automatically; Delivered'));
    expect(e.message).toBe('unknown disposition type in Disposition: "automatic-action/MDN-sent-automatically; Delivered"');
    const long = `Disposition: ${'x'.repeat(150)}`;
    expect(hispError(() => parse(FR, OMID, long)).message).toBe(`unknown disposition type in Disposition: "${'x'.repeat(100)}"`);
  });
});

describe('parseMdn: the Disposition field (RFC 8098 §3.2.6) as peers write it', () => {
  it('a well-formed one: no warnings', () => {
    const r = parse(FR, OMID, DISP);
    expect(r).toMatchObject({ disposition: 'processed', dispositionMode: 'automatic-action/MDN-sent-automatically', modifiers: [], warnings: [] });
  });

  it('white space anywhere, comments, modifiers in any case; the mode in canonical case', () => {
    const r = parse(FR, OMID, 'Disposition: Automatic-Action / mdn-sent-AUTOMATICALLY (a comment) ; Failed / Error , Warning');
    expect(r).toMatchObject({ disposition: 'failed', dispositionMode: 'automatic-action/MDN-sent-automatically', modifiers: ['error', 'warning'], warnings: [] });
  });

  it('a space instead of the ";" after the mode', () => {
    const r = parse(FR, OMID, 'Disposition: manual-action/MDN-sent-manually   displayed');
    expect(r).toMatchObject({ disposition: 'displayed', dispositionMode: 'manual-action/MDN-sent-manually', warnings: [] });
  });

  it('no mode: read, with a warning', () => {
    const r = parse(FR, OMID, 'Disposition: processed');
    expect(r.dispositionMode).toBeUndefined();
    expect(r.warnings).toEqual(['Disposition without disposition mode']);
  });

  it('more than one ";": the last piece is the type, with a warning', () => {
    const r = parse(FR, OMID, 'Disposition: automatic-action/MDN-sent-automatically; extra; dispatched');
    expect(r.disposition).toBe('dispatched');
    expect(r.warnings).toEqual(['Disposition has more than one ";"']);
  });

  it('an unknown mode is kept as written, with a warning naming it', () => {
    const r = parse(FR, OMID, 'Disposition: robot-action/MDN-sent-automatically; processed');
    expect(r.dispositionMode).toBe('robot-action/MDN-sent-automatically');
    expect(r.warnings).toEqual(['unknown disposition mode "robot-action/MDN-sent-automatically"']);
    const half = parse(FR, OMID, 'Disposition: automatic-action/sent-by-robot; processed');
    expect(half.dispositionMode).toBe('automatic-action/sent-by-robot');
    expect(half.warnings).toEqual(['unknown disposition mode "automatic-action/sent-by-robot"']);
    const long = parse(FR, OMID, `Disposition: ${'m'.repeat(100)}/x; processed`);
    expect(long.warnings).toEqual([`unknown disposition mode "${'m'.repeat(80)}"`]);
    const bare = parse(FR, OMID, 'Disposition: automatic-action; processed');
    expect(bare.dispositionMode).toBe('automatic-action/');
  });
});

describe('parseMdn: recipients, Reporting-UA and texts', () => {
  it('Final-Recipient without address type, or not a mailbox: read, with warnings', () => {
    expect(parse('Final-Recipient: patient@recipient.test', OMID, DISP)).toMatchObject({
      finalRecipient: 'patient@recipient.test',
      warnings: ['final-recipient without address type'],
    });
    const r = parse('Final-Recipient: rfc822; not a mailbox', OMID, DISP);
    expect(r.warnings).toEqual(['final-recipient is not a mailbox']);
    expect(parse('Final-Recipient: not a mailbox', OMID, DISP).warnings).toEqual(['final-recipient without address type', 'final-recipient is not a mailbox']);
    // another address type is not expected to be a mailbox
    expect(parse('Final-Recipient: x400; /C=us/O=hospital/', OMID, DISP).warnings).toEqual([]);
  });

  it('a blank Final-Recipient or Original-Message-ID counts as missing', () => {
    const r = parse('Final-Recipient:   ', 'Original-Message-ID:  ', DISP);
    expect(r.finalRecipient).toBeUndefined();
    expect(r.originalMessageId).toBeUndefined();
    expect(r.warnings).toEqual(['no Final-Recipient field', 'no Original-Message-ID field']);
    expect(parse('Original-Recipient:  ', FR, OMID, DISP).originalRecipient).toBeUndefined();
  });

  it('Reporting-UA: name and product, a name alone, blank = absent', () => {
    expect(parse('Reporting-UA: hisp.example; hisp 1.0', FR, OMID, DISP).reportingUa).toEqual({ name: 'hisp.example', product: 'hisp 1.0' });
    expect(parse('Reporting-UA: hisp.example', FR, OMID, DISP).reportingUa).toEqual({ name: 'hisp.example' });
    expect(parse('Reporting-UA: hisp.example;  ', FR, OMID, DISP).reportingUa).toEqual({ name: 'hisp.example' });
    expect(parse('Reporting-UA:   ', FR, OMID, DISP).reportingUa).toBeUndefined();
  });

  it('Failure, Error and Warning: every non-empty field, joined; absent ones are not set', () => {
    const r = parse(FR, OMID, 'Disposition: automatic-action/MDN-sent-automatically; failed/error', 'Failure: disk full', 'Failure:', 'Failure: quota', 'Error: 550 5.2.2', 'Warning: retried');
    expect(r).toMatchObject({ failure: 'disk full; quota', error: '550 5.2.2', warning: 'retried' });
    const none = parse(FR, OMID, DISP, 'Warning:   ');
    expect('failure' in none || 'error' in none).toBe(false);
    expect(none.warning).toBeUndefined();
    expect('warning' in parse(FR, OMID, DISP)).toBe(false);
  });

  it('a From that is not an address: from undefined, the MDN still read', () => {
    const r = parseMdn(mdn([FR, OMID, DISP], ['From: undisclosed recipients']));
    expect(r.from).toBeUndefined();
    expect(r.disposition).toBe('processed');
  });
});

describe('notificationKind: never throws', () => {
  it('a multipart/report with an unreadable structure is a report; multipart/report elsewhere in the header is not', () => {
    const broken = Buffer.from('From: a@b.test\r\nContent-Type:   multipart/report; boundary="unterminated\r\n\r\nno parts\r\n');
    expect(notificationKind(broken)).toBe('report');
    const notReport = Buffer.from('From: a@b.test\r\nContent-Type: text/plain; x=multipart/report\r\n\r\nhello\r\n');
    expect(notificationKind(notReport)).toBeUndefined();
  });

  it('ordinary mail, an MDN and a message without Content-Type', () => {
    expect(notificationKind(Buffer.from('From: a@b.test\r\nSubject: hi\r\n\r\nhello\r\n'))).toBeUndefined();
    expect(notificationKind(mdn([FR, OMID, DISP]))).toBe('mdn');
  });
});

import { describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { MimeEntity } from '../mime/mime-entity.js';
import {
  addRequestHeaders,
  FINAL_DELIVERY_REQUEST,
  notificationOptionsOf,
  parseNotificationOptions,
  requestHeaderPieces,
  requestHeaders,
  unsupportedRequiredFailure,
} from './notification-options.js';

describe('parseNotificationOptions (RFC 8098 §2.2, R-MDN-4)', () => {
  it('recognises the Direct request as the ETT, the Java and the .NET RI write it', () => {
    const o = parseNotificationOptions('X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true');
    expect(o).toMatchObject({ present: true, finalDeliveryRequested: true, malformed: false, unsupportedRequired: [], problems: [] });
    expect(o.parameters).toEqual([
      { attribute: 'X-DIRECT-FINAL-DESTINATION-DELIVERY', name: 'x-direct-final-destination-delivery', importance: 'optional', values: ['true'] },
    ]);
  });

  it.each([
    'x-direct-final-destination-delivery=optional,true',
    'X-Direct-Final-Destination-Delivery=OPTIONAL,TRUE',
    '  X-DIRECT-FINAL-DESTINATION-DELIVERY = optional , true  ',
    'X-DIRECT-FINAL-DESTINATION-DELIVERY=\toptional,\ttrue',
    'X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,\r\n true',
    'X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,"true"',
    'X-DIRECT-FINAL-DESTINATION-DELIVERY=required,true',
    'X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true;',
    'signed-receipt-protocol=optional, pkcs7-signature; X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true',
  ])('case and white space do not matter: %j', (value) => {
    const o = parseNotificationOptions(value);
    expect(o.malformed).toBe(false);
    expect(o.finalDeliveryRequested).toBe(true);
  });

  it.each([
    ['bare option (no importance, no value)', 'X-DIRECT-FINAL-DESTINATION-DELIVERY'],
    ['no importance', 'X-DIRECT-FINAL-DESTINATION-DELIVERY=true'],
    ['unknown importance', 'X-DIRECT-FINAL-DESTINATION-DELIVERY=mandatory,true'],
    ['no value', 'X-DIRECT-FINAL-DESTINATION-DELIVERY=optional'],
    ['empty value', 'X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,'],
    ['value with a space', 'X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,tr ue'],
    ['colon instead of equals', 'X-DIRECT-FINAL-DESTINATION-DELIVERY:optional,true'],
    ['another malformed parameter beside a valid one', 'X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true; bogus'],
    ['empty parameter between two', 'a=optional,b;;X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true'],
    ['attribute that is not a token', 'X-DIRECT FINAL=optional,true'],
    ['unterminated quoted value', 'X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,"true'],
  ])('malformed (%s): no final-destination request', (_what, value) => {
    const o = parseNotificationOptions(value);
    expect(o.present).toBe(true);
    expect(o.malformed).toBe(true);
    expect(o.problems.length).toBeGreaterThan(0);
    expect(o.finalDeliveryRequested).toBe(false);
  });

  it('a well-formed false or another option does not ask for final-destination delivery', () => {
    expect(parseNotificationOptions('X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,false')).toMatchObject({
      malformed: false,
      finalDeliveryRequested: false,
    });
    expect(parseNotificationOptions('X-NOT-SO-TIMELY=optional,true')).toMatchObject({ malformed: false, finalDeliveryRequested: false });
  });

  it('absent header: nothing asked, nothing malformed', () => {
    expect(parseNotificationOptions(undefined)).toEqual({
      present: false,
      finalDeliveryRequested: false,
      malformed: false,
      unsupportedRequired: [],
      parameters: [],
      problems: [],
    });
  });

  it('an unknown required parameter is reported (the MDN must then be "failed", RFC 8098 §2.2)', () => {
    const o = parseNotificationOptions('X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true; x-frob=required,1,2; x-opt=optional,3');
    expect(o.unsupportedRequired).toEqual(['x-frob']);
    expect(o.finalDeliveryRequested).toBe(true);
    expect(o.parameters.find((p) => p.name === 'x-frob')?.values).toEqual(['1', '2']);
    expect(unsupportedRequiredFailure(o)).toMatch(/x-frob/);
    expect(unsupportedRequiredFailure(parseNotificationOptions('a=optional,b'))).toBeUndefined();
  });

  it('quoted values keep separators and unescape quoted pairs', () => {
    const o = parseNotificationOptions('x-a=optional,"one; two","th\\"ree"');
    expect(o.malformed).toBe(false);
    expect(o.parameters[0]?.values).toEqual(['one; two', 'th"ree']);
  });

  it('several Disposition-Notification-Options fields are read as one list', () => {
    const entity = MimeEntity.parse(
      Buffer.from(
        'From: a@b.example\r\nDisposition-Notification-Options: x-a=optional,1\r\n' +
          'disposition-notification-options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\n\r\nbody',
      ),
    );
    const o = notificationOptionsOf(entity);
    expect(o.parameters.map((p) => p.name)).toEqual(['x-a', 'x-direct-final-destination-delivery']);
    expect(o.finalDeliveryRequested).toBe(true);
  });
});

describe('requestHeaders / addRequestHeaders (R-MDN-4, ETT MT 45/46)', () => {
  const plain = Buffer.from('From: "Alice" <alice@sender.example>\r\nTo: bob@receiver.example\r\nSubject: hi\r\n\r\nbody\r\n');

  it('adds Disposition-Notification-To (the sender) and the Direct options at the end of the header section', () => {
    const out = addRequestHeaders(plain, '"Alice" <alice@sender.example>').toString('latin1');
    expect(out).toBe(
      'From: "Alice" <alice@sender.example>\r\nTo: bob@receiver.example\r\nSubject: hi\r\n' +
        'Disposition-Notification-To: alice@sender.example\r\n' +
        `Disposition-Notification-Options: ${FINAL_DELIVERY_REQUEST}\r\n\r\nbody\r\n`,
    );
    const o = notificationOptionsOf(Buffer.from(out, 'latin1'));
    expect(o.finalDeliveryRequested).toBe(true);
  });

  it('does not duplicate what the message already has', () => {
    const asked = addRequestHeaders(plain, 'alice@sender.example');
    expect(addRequestHeaders(asked, 'alice@sender.example')).toBe(asked);
    const withDnt = Buffer.from('From: a@s.example\r\nDisposition-Notification-To: receipts@s.example\r\n\r\nx');
    const out = addRequestHeaders(withDnt, 'a@s.example').toString();
    expect(out.match(/Disposition-Notification-To/g)).toHaveLength(1);
    expect(out).toContain('Disposition-Notification-To: receipts@s.example');
    expect(out).toContain(`Disposition-Notification-Options: ${FINAL_DELIVERY_REQUEST}`);
  });

  it('merges an options field that lacks the Direct parameter (or is malformed) into one field', () => {
    const msg = Buffer.from(
      'From: a@s.example\r\nDisposition-Notification-Options: x-other=optional,"v 1"; broken\r\nTo: b@r.example\r\n\r\nx',
    );
    const out = addRequestHeaders(msg, 'a@s.example').toString();
    expect(out.match(/Disposition-Notification-Options/gi)).toHaveLength(1);
    expect(out).toContain(`Disposition-Notification-Options: x-other=optional,"v 1"; ${FINAL_DELIVERY_REQUEST}\r\n`);
    expect(out).toContain('To: b@r.example\r\n');
    expect(notificationOptionsOf(Buffer.from(out))).toMatchObject({ finalDeliveryRequested: true, malformed: false });
  });

  it('keeps LF line ends of an LF message and works on a message that is all header', () => {
    const lf = addRequestHeaders(Buffer.from('From: a@s.example\nTo: b@r.example\n\nbody\n'), 'a@s.example').toString();
    expect(lf).toBe(
      `From: a@s.example\nTo: b@r.example\nDisposition-Notification-To: a@s.example\nDisposition-Notification-Options: ${FINAL_DELIVERY_REQUEST}\n\nbody\n`,
    );
    const headerOnly = addRequestHeaders(Buffer.from('From: a@s.example'), 'a@s.example').toString();
    expect(headerOnly).toBe(`From: a@s.example\r\nDisposition-Notification-To: a@s.example\r\nDisposition-Notification-Options: ${FINAL_DELIVERY_REQUEST}\r\n`);
  });

  it('requestHeaderPieces gives the same bytes as pieces, reusing the caller\'s parse (but not across a byte order mark)', () => {
    const pieces = requestHeaderPieces(plain, 'alice@sender.example', {}, MimeEntity.parse(plain));
    expect(Buffer.concat(pieces).equals(addRequestHeaders(plain, 'alice@sender.example'))).toBe(true);
    const asked = addRequestHeaders(plain, 'alice@sender.example');
    expect(requestHeaderPieces(asked, 'alice@sender.example', {}, MimeEntity.parse(asked))).toEqual([asked]);
    // With a BOM the caller's entity (parsed with the BOM) is not used: the fields still go in the header section.
    const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), plain]);
    const out = Buffer.concat(requestHeaderPieces(bom, 'alice@sender.example', {}, MimeEntity.parse(plain))).toString('latin1');
    expect(out).toBe(addRequestHeaders(bom, 'alice@sender.example').toString('latin1'));
  });

  it('finalDelivery: false asks only for an MDN', () => {
    const edit = requestHeaders(MimeEntity.parse(plain).headers, 'alice@sender.example', { finalDelivery: false });
    expect(edit).toEqual({ fields: 'Disposition-Notification-To: alice@sender.example\r\n', drop: [] });
  });

  it('refuses a sender that is not a mailbox (HISP_USAGE)', () => {
    expect(() => addRequestHeaders(plain, 'not an address')).toThrow(HispError);
    try {
      addRequestHeaders(plain, 'nobody');
    } catch (err) {
      expect((err as HispError).code).toBe('HISP_USAGE');
    }
  });
});

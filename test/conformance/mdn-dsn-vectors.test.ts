// Conformance of the MDN and DSN readers against the notifications the Direct reference
// implementations ship (Java RI agent/gateway/monitor samples, .NET RI context tests): every vector
// is read to the facts a HISP needs (disposition, original Message-ID, final recipient, extension
// field; DSN action, status, recipient, diagnostic, original Message-ID), including their
// deviations (no close delimiter, fields in the part header, no `rfc822;`, display names, BOM, no
// spaces after colons). Ordinary and encrypted messages of the same folders are not notifications.
//
// The vectors are third-party data in ../shared/vectors (see each group's INDEX.md); every group is
// skipped, with the reason in its title, when absent.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HispError } from '../../gateway/core/errors.js';
import { isNotification, notificationKind, parseMdn } from '../../gateway/mdn/mdn-parser.js';
import { parseDsn } from '../../gateway/queue/dsn-parser.js';
import { hispErrorOf, vectorGroup } from '../helpers/vectors.js';

const JAVA_MDNS = [
  'messages/MDNMessage.txt',
  'messages/MDNDispatchedMessage.txt',
  'messages/MDNMessageFriendlyNameFinalRecip.txt',
  'messages/MDNMessageNonCanonicalized.txt',
  'messages/MDNResponse.txt',
];
const JAVA_OTHERS = ['messages/MessageWithAttachment.txt', 'messages/MultipartMimeMessage.txt', 'messages/CCTestMessage.txt', 'messages/EncryptedMessage2.txt'];
const java = vectorGroup('java-ri', [...JAVA_MDNS, 'messages/DSNMessage.txt', ...JAVA_OTHERS]);

const DOTNET_MDNS = ['messages/mdn-processed.eml', 'messages/mdn-dispatched.eml'];
const DOTNET_OTHERS = ['messages/simple.eml', 'messages/multipart_1To.eml', 'messages/envelopeSignature.eml'];
const dotnet = vectorGroup('dotnet-ri', [...DOTNET_MDNS, 'messages/DSNMessage.txt', ...DOTNET_OTHERS]);

/** The Original-Message-ID every Java RI sample answers (with the space the RI's test data has). */
const JAVA_ORIGINAL_ID = '<9501051053.aa04167@IETF.CNR I.Reston.VA.US>';
const JAVA_UA = { name: 'starugh-stateline.com', product: 'NHIN Direct Security Agent' };

// A few random mutations of each vector: the readers fail only with HispError.
const SEED = Number(process.env.FC_SEED ?? 20261125);
function mutated(seed: Buffer): fc.Arbitrary<Buffer> {
  const edit = fc.oneof(
    fc.record({ at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }).map((m) => (b: Buffer) => {
      if (b.length === 0) return b;
      const out = Buffer.from(b);
      out[m.at % b.length]! ^= 1 << m.bit;
      return out;
    }),
    fc.record({ at: fc.nat(), chunk: fc.constantFrom('\r\n', '\n', ':', ';', '--', '\r\n\r\n', '"', '(', ' ', '\u0000') }).map((m) => (b: Buffer) => {
      const at = m.at % (b.length + 1);
      return Buffer.concat([b.subarray(0, at), Buffer.from(m.chunk, 'latin1'), b.subarray(at)]);
    }),
    fc.record({ at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }).map((m) => (b: Buffer) => {
      const at = b.length === 0 ? 0 : m.at % b.length;
      return Buffer.concat([b.subarray(0, at), b.subarray(at + m.len)]);
    }),
  );
  return fc.array(edit, { minLength: 1, maxLength: 4 }).map((edits) => edits.reduce((b, e) => e(b), seed));
}

function onlyHispErrors(seed: Buffer): void {
  fc.assert(
    fc.property(mutated(seed), (bytes) => {
      for (const read of [parseMdn, parseDsn]) {
        try {
          read(bytes);
        } catch (err) {
          if (!(err instanceof HispError)) throw err;
        }
      }
      expect(() => notificationKind(bytes)).not.toThrow();
    }),
    { seed: SEED, numRuns: 100, endOnFailure: true },
  );
}

describe.skipIf(!java.present)(java.title('Java RI notifications'), () => {
  it('MDNMessage.txt: processed; no spaces after ";"; Final-Recipient without rfc822; no close delimiter', () => {
    const mdn = parseMdn(java.read('messages/MDNMessage.txt'));
    expect(mdn).toMatchObject({
      disposition: 'processed',
      dispositionMode: 'automatic-action/MDN-sent-automatically',
      modifiers: [],
      originalMessageId: JAVA_ORIGINAL_ID,
      finalRecipient: 'externUser1@starugh-stateline.com',
      reportingUa: JAVA_UA,
      finalDeliveryExtension: false,
      from: 'externUser1@starugh-stateline.com',
      messageId: '<0c796d0e-4c76-43e8-be40-2cd5e30c1005>',
    });
    expect(mdn.warnings).toEqual(['final-recipient without address type']);
  });

  it('MDNDispatchedMessage.txt: dispatched with the X-DIRECT-FINAL-DESTINATION-DELIVERY extension field (LF line ends)', () => {
    expect(parseMdn(java.read('messages/MDNDispatchedMessage.txt'))).toMatchObject({
      disposition: 'dispatched',
      originalMessageId: JAVA_ORIGINAL_ID,
      finalRecipient: 'externUser1@starugh-stateline.com',
      finalDeliveryExtension: true,
    });
  });

  it('MDNMessageFriendlyNameFinalRecip.txt: Final-Recipient with a display name', () => {
    expect(parseMdn(java.read('messages/MDNMessageFriendlyNameFinalRecip.txt'))).toMatchObject({
      disposition: 'processed',
      finalRecipient: 'externUser1@starugh-stateline.com',
      originalMessageId: JAVA_ORIGINAL_ID,
    });
  });

  it('MDNMessageNonCanonicalized.txt: quoted display names in From and To', () => {
    expect(parseMdn(java.read('messages/MDNMessageNonCanonicalized.txt'))).toMatchObject({
      disposition: 'processed',
      finalRecipient: 'llindsey@messaging.cernerdemos.com',
      from: 'llindsey@messaging.cernerdemos.com',
      originalMessageId: JAVA_ORIGINAL_ID,
    });
  });

  it('MDNResponse.txt: notification fields in the part header, no Final-Recipient nor Original-Message-ID', () => {
    const mdn = parseMdn(java.read('messages/MDNResponse.txt'));
    expect(mdn).toMatchObject({
      disposition: 'processed',
      reportingUa: { name: 'messaging.cerner.com', product: 'Security Agent' },
      finalRecipient: undefined,
      originalMessageId: undefined,
      from: 'user1@cerner.com',
    });
    expect(mdn.warnings).toEqual(['no Final-Recipient field', 'no Original-Message-ID field']);
  });

  it('DSNMessage.txt: failed 5.0.0 for Carol, original id from X-CERN-Original-Message-Id', () => {
    const dsn = parseDsn(java.read('messages/DSNMessage.txt'));
    expect(dsn).toMatchObject({
      reportingMta: 'Example.ORG',
      originalEnvelopeId: 'QQ314159',
      originalMessageId: JAVA_ORIGINAL_ID,
      from: 'externUser1@starugh-stateline.com',
      warnings: [],
    });
    expect(dsn.recipients).toHaveLength(1);
    expect(dsn.recipients[0]).toMatchObject({
      action: 'failed',
      status: '5.0.0',
      finalRecipient: 'Carol@ivory.edu',
      originalRecipient: 'Carol@ivory.edu',
      diagnosticCode: { type: 'smtp', text: '550 error - no such recipient' },
    });
    expect(dsn.recipients[0]!.fields.map((f) => f.name)).toContain('SMTP-Remote-Recipient');
  });

  it('MDNs are MDNs, the DSN is a DSN, and neither parses as the other', () => {
    for (const file of JAVA_MDNS) {
      expect(notificationKind(java.read(file)), file).toBe('mdn');
      expect(hispErrorOf(() => parseDsn(java.read(file))).code).toBe('HISP_MIME_MALFORMED');
    }
    expect(notificationKind(java.read('messages/DSNMessage.txt'))).toBe('dsn');
    expect(hispErrorOf(() => parseMdn(java.read('messages/DSNMessage.txt'))).message).toMatch(/delivery status/);
  });

  it('ordinary and encrypted messages are not notifications (they get an MDN; notifications never do)', () => {
    for (const file of JAVA_OTHERS) {
      expect(isNotification(java.read(file)), file).toBe(false);
      expect(hispErrorOf(() => parseMdn(java.read(file))).code).toBe('HISP_MIME_MALFORMED');
    }
  });

  it('mutations of every Java RI notification only ever raise HispError', () => {
    for (const file of [...JAVA_MDNS, 'messages/DSNMessage.txt']) onlyHispErrors(java.read(file));
  });
});

describe.skipIf(!dotnet.present)(dotnet.title('.NET RI notifications'), () => {
  it('mdn-processed.eml: BOM, LF, no spaces after colons', () => {
    const bytes = dotnet.read('messages/mdn-processed.eml');
    expect([...bytes.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf]);
    expect(parseMdn(bytes)).toMatchObject({
      disposition: 'processed',
      dispositionMode: 'automatic-action/MDN-sent-automatically',
      originalMessageId: '<c8a0389fd14c40c185956ff9108bab07@Direct.Surescripts.com>',
      finalRecipient: 'Jean@opsstation.lab',
      reportingUa: { name: 'Direct.West.Hobo.Lab', product: 'Direct Security Agent' },
      finalDeliveryExtension: false,
      from: 'Jean@opsstation.lab',
      messageId: '<cad6c4e5daa14a5ab05bc1b2409f1f49@Direct.West.Hobo.Lab>',
      subject: 'processed:Test Subject 40bec126-77d3-4364-9e63-b98c282209ba',
      warnings: [],
    });
  });

  it('mdn-dispatched.eml: extension field with an empty value, Final-Recipient with a quoted display name', () => {
    expect(parseMdn(dotnet.read('messages/mdn-dispatched.eml'))).toMatchObject({
      disposition: 'dispatched',
      originalMessageId: '<cbjfnk7ziimajrb8prk5r0ehk9lb3g@Direct.Surescripts.com>',
      finalRecipient: 'Jean@opsstation.lab',
      reportingUa: { name: 'direct.west.hobo.lab', product: 'Direct Security Agent' },
      finalDeliveryExtension: true,
      warnings: [],
    });
  });

  it('DSNMessage.txt: failed 5.0.0, original id from X-Original-Message-Id; also with the `--abcde------` close', () => {
    const bytes = dotnet.read('messages/DSNMessage.txt');
    const dashed = Buffer.from(bytes.toString('latin1').replace(/--abcde--\s*$/, '--abcde------'), 'latin1');
    expect(dashed.toString('latin1').endsWith('--abcde------')).toBe(true);
    for (const input of [bytes, dashed]) {
      const dsn = parseDsn(input);
      expect(dsn).toMatchObject({
        reportingMta: 'Example.ORG',
        originalEnvelopeId: 'QQ314159',
        originalMessageId: '<9501051053.aa04167@IETF.CNR I.Reston.VA.US>',
        from: 'postmaster@mail.example.com',
      });
      expect(dsn.recipients.map((r) => [r.action, r.status, r.finalRecipient, r.diagnosticCode?.text])).toEqual([
        ['failed', '5.0.0', 'Carol@ivory.edu', '550 error - no such recipient'],
      ]);
      expect(notificationKind(input)).toBe('dsn');
    }
  });

  it('ordinary and encrypted messages are not notifications', () => {
    for (const file of DOTNET_OTHERS) expect(isNotification(dotnet.read(file)), file).toBe(false);
    for (const file of DOTNET_MDNS) expect(notificationKind(dotnet.read(file)), file).toBe('mdn');
  });

  it('mutations of every .NET RI notification only ever raise HispError', () => {
    for (const file of [...DOTNET_MDNS, 'messages/DSNMessage.txt']) onlyHispErrors(dotnet.read(file));
  });
});

// Property tests of the MDN readers, which see bytes from the network (decrypted, but written by any
// peer): random bytes and random mutations of valid MDNs go into parseMdn, notificationKind and
// parseNotificationOptions. The only acceptable failure is a HispError, within a bounded time; and
// what buildMdn writes, parseMdn reads back to the same facts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildMdn, type MdnDisposition } from './mdn-builder.js';
import { isNotification, notificationKind, parseMdn } from './mdn-parser.js';
import { addRequestHeaders, notificationOptionsOf, parseNotificationOptions } from './notification-options.js';
import { NASTY_TEXT, applyMutation, mutationArbitrary, onlyHispError, type Mutation } from '../../test/helpers/mutations.js';

// ------------------------------------------------------------------------------------------------
// Harness (the same as test/integration/parsers.property.test.ts: fixed seed, FC_SEED overrides)

const SEED = Number(process.env.FC_SEED ?? 20261125);
const params = (numRuns = 250): fc.Parameters<unknown> => ({ seed: SEED, numRuns, endOnFailure: true });


const mutationArb = mutationArbitrary(NASTY_TEXT, { flip: 4, set: 2, truncate: 1, insert: 4, delete: 2 });

const applyMutations = (seed: Buffer, ms: readonly Mutation[]): Buffer => ms.reduce(applyMutation, seed);

const REPORT_HEAD = 'Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n';
const NOTIFICATION = '--b\r\nContent-Type: message/disposition-notification\r\n\r\n';
const NASTY_REPORTS: [string, Buffer][] = [
  ['100 000 notification fields', Buffer.from(`${REPORT_HEAD}${NOTIFICATION}${'Failure: x\r\n'.repeat(100_000)}--b--\r\n`)],
  ['a Disposition folded 200 000 times', Buffer.from(`${REPORT_HEAD}${NOTIFICATION}Disposition: a${'\r\n /'.repeat(200_000)}\r\n--b--\r\n`)],
  ['a Disposition of 1 MB of "a/"', Buffer.from(`${REPORT_HEAD}${NOTIFICATION}Disposition: ${'a/'.repeat(500_000)}\r\n--b--\r\n`)],
  ['200 000 colon-less lines', Buffer.from(`${REPORT_HEAD}${NOTIFICATION}Disposition: x\r\n${'processed;\r\n'.repeat(200_000)}--b--\r\n`)],
  ['100 000 parts', Buffer.from(`${REPORT_HEAD}${'--b\r\n\r\nx\r\n'.repeat(100_000)}`)],
  ['100 000 delimiters not at a line start', Buffer.from(`${REPORT_HEAD}${' --b'.repeat(100_000)}`)],
  ['message/rfc822 nested 10 000 times', Buffer.from(`${'Content-Type: message/rfc822\r\n\r\n'.repeat(10_000)}x`)],
  ['multipart/signed nested 1 000 times', Buffer.from(`${'Content-Type: multipart/signed; boundary=s\r\n\r\n--s\r\n'.repeat(1_000)}x`)],
  ['1 MB Final-Recipient without a type', Buffer.from(`${REPORT_HEAD}${NOTIFICATION}Disposition: processed\r\nFinal-Recipient: ${'a'.repeat(1_000_000)}\r\n--b--\r\n`)],
  ['1 MB of "<" in Original-Message-ID', Buffer.from(`${REPORT_HEAD}${NOTIFICATION}Disposition: processed\r\nOriginal-Message-ID: ${'<'.repeat(1_000_000)}\r\n--b--\r\n`)],
  ['1 MB field name', Buffer.from(`${REPORT_HEAD}${NOTIFICATION}Disposition: processed\r\nx-${'a-'.repeat(500_000)}: 1\r\n--b--\r\n`)],
  ['base64 notification of 1 MB garbage', Buffer.from(`${REPORT_HEAD}--b\r\nContent-Type: message/disposition-notification\r\nContent-Transfer-Encoding: base64\r\n\r\n${'!'.repeat(1_000_000)}\r\n--b--`)],
];

const SEEDS: Buffer[] = [
  buildMdn({
    original: { messageId: '<o@s.example>', from: 'a@s.example', to: 'b@r.example', subject: 'S', headers: Buffer.from('From: a@s.example\r\nSubject: S\r\n\r\n') },
    disposition: 'dispatched',
    reportingUa: { name: 'r.example', product: 'hisp' },
    finalDeliveryExtension: true,
    failure: 'none',
    messageId: '<m@r.example>',
    date: new Date(0),
  }).message,
  Buffer.from(
    '\uFEFFMIME-Version: 1.0\nTo: Joe <Joe@hobo.lab>\nFrom: "Jean" <Jean@opsstation.lab>\nContent-Type: multipart/report;\n\tboundary="fb90";\n\treport-type=disposition-notification\n\n' +
      '--fb90\nContent-Type: text/plain\n\nMessage Delivery Notification\n--fb90\nContent-Type: message/disposition-notification\n\n' +
      'Disposition:automatic-action/MDN-sent-automatically;dispatched\nX-DIRECT-FINAL-DESTINATION-DELIVERY:\nReporting-UA:direct.west.hobo.lab;Direct Security Agent\n' +
      'Original-Message-ID:<c@Direct.Surescripts.com>\nFinal-Recipient:rfc822;"Jean" <Jean@opsstation.lab>\n\n--fb90--\n',
  ),
  Buffer.from(
    'to: User1@Cerner.com\r\ncontent-type: multipart/report; report-type=disposition-notification; boundary="----=_Part_5"\r\n\r\n' +
      '------=_Part_5\r\n\r\ntext\r\n------=_Part_5\r\nContent-Type: message/disposition-notification\r\nDisposition: automatic-action/MDN-sent-automatically;processed\r\n' +
      'Reporting-UA: x;y\r\n',
  ),
];

describe('MDN readers only ever throw HispError', () => {
  it('random bytes into parseMdn, notificationKind and notificationOptionsOf', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
        const b = Buffer.from(bytes);
        onlyHispError(() => parseMdn(b));
        onlyHispError(() => notificationOptionsOf(b));
        expect(() => notificationKind(b)).not.toThrow();
      }),
      params(),
    );
  });

  it('random header-like text (names, colons, semicolons, boundaries) into parseMdn', () => {
    const piece = fc.constantFrom(
      'Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n', '\r\n', '--b\r\n', '--b--', '--b---',
      'Content-Type: message/disposition-notification\r\n', 'Disposition: ', 'automatic-action/MDN-sent-automatically', ';', '/', ',',
      'processed', 'Final-Recipient: ', 'rfc822;', '<a@b>', '"', '(', ')', ' ', '\t', ':', 'Content-Transfer-Encoding: base64\r\n',
      'Content-Transfer-Encoding: quoted-printable\r\n', '=', '=\r\n', 'Content-Type: multipart/signed; boundary=b\r\n', 'Content-Type: message/rfc822\r\n',
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 60 }), (pieces) => {
        const b = Buffer.from(pieces.join(''));
        onlyHispError(() => parseMdn(b));
        expect(() => notificationKind(b)).not.toThrow();
      }),
      params(),
    );
  });

  it.each(SEEDS.map((s, i) => [i, s] as const))('mutations of valid MDN %i', (_i, seed) => {
    expect(parseMdn(seed).disposition).toMatch(/processed|dispatched/);
    fc.assert(
      fc.property(fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (ms) => {
        const b = applyMutations(seed, ms);
        onlyHispError(() => parseMdn(b));
        expect(() => notificationKind(b)).not.toThrow();
      }),
      params(),
    );
  });

  it.each(NASTY_REPORTS)('nasty input: %s', (_what, bytes) => {
    onlyHispError(() => parseMdn(bytes));
    onlyHispError(() => notificationKind(bytes));
  });

  it('random strings into parseNotificationOptions never throw', () => {
    const piece = fc.constantFrom('X-DIRECT-FINAL-DESTINATION-DELIVERY', '=', ',', ';', 'optional', 'required', 'true', '"', '\\', ' ', '\r\n ', 'x');
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.array(piece, { maxLength: 40 }).map((p) => p.join(''))), (s) => {
        const o = parseNotificationOptions(s);
        expect(o.present).toBe(true);
        // A request is only ever read from a well-formed field.
        if (o.finalDeliveryRequested) expect(o.malformed).toBe(false);
      }),
      params(),
    );
  });
});

describe('buildMdn → parseMdn keeps the facts', () => {
  const atom = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,15}$/);
  const address = fc.tuple(atom, atom, fc.constantFrom('example', 'test', 'org')).map(([l, d, t]) => `${l}@${d}.${t}`);
  const text = fc.string({ unit: fc.constantFrom(...'abcXYZ09 ;/,=:<>"()\\\t\r\n\u00e9\u4e2d\u0000-'.split('')), maxLength: 300 });

  it('for any disposition, addresses, ids and free text', () => {
    fc.assert(
      fc.property(
        fc.record({
          disposition: fc.constantFrom<MdnDisposition>('processed', 'dispatched', 'failed', 'displayed', 'deleted'),
          from: address,
          to: address,
          id: fc.tuple(atom, atom).map(([a, b]) => `<${a}@${b}>`),
          ext: fc.boolean(),
          failure: fc.option(text, { nil: undefined }),
          subject: fc.option(text, { nil: undefined }),
          ua: atom,
        }),
        (r) => {
          const built = buildMdn({
              original: { messageId: r.id, from: r.from, to: r.to, subject: r.subject },
              disposition: r.disposition,
              reportingUa: { name: r.ua, product: 'hisp' },
              finalDeliveryExtension: r.ext,
              failure: r.failure,
            date: new Date(0),
          });
          const p = parseMdn(built.message);
          expect(p.disposition).toBe(r.disposition);
          expect(p.originalMessageId).toBe(r.id);
          expect(p.finalRecipient).toBe(r.to);
          expect(p.from).toBe(r.to);
          expect(p.finalDeliveryExtension).toBe(r.ext && (r.disposition === 'dispatched' || r.disposition === 'failed'));
          expect(isNotification(built.message)).toBe(true);
          expect(notificationOptionsOf(built.message).present).toBe(false);
          // eslint-disable-next-line no-control-regex
          const expectedFailure = r.failure?.replace(/[\x00-\x1f\x7f]+/g, ' ').replace(/ {2,}/g, ' ').trim();
          if (expectedFailure !== undefined && expectedFailure !== '') expect(p.failure).toBe(expectedFailure);
        },
      ),
      params(150),
    );
  });

  it('addRequestHeaders asks validly, once, whatever the message had', () => {
    const existing = fc.constantFrom(
      'Disposition-Notification-To: other@s.example\r\n',
      'Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\n',
      'Disposition-Notification-Options: garbage;;\r\n',
      'Disposition-Notification-Options: x-a=optional,1\r\n',
      'Disposition-Notification-Options: x-b=required,"q;v"\r\n',
      'X-Other: 1\r\n',
    );
    fc.assert(
      fc.property(fc.array(existing, { maxLength: 4 }), (extra) => {
        const msg = Buffer.from(`From: a@s.example\r\nTo: b@r.example\r\n${extra.join('')}\r\nbody\r\n`);
        const once = addRequestHeaders(msg, 'a@s.example');
        const o = notificationOptionsOf(once);
        expect(o.finalDeliveryRequested).toBe(true);
        expect(o.malformed).toBe(false);
        expect(addRequestHeaders(once, 'a@s.example').equals(once)).toBe(true);
        const dnt = extra.filter((e) => e.startsWith('Disposition-Notification-To')).length;
        expect(once.toString().match(/^Disposition-Notification-To:/gim)).toHaveLength(Math.max(1, dnt));
        expect(once.toString().endsWith('\r\n\r\nbody\r\n')).toBe(true);
      }),
      params(100),
    );
  });
});

// Property tests of the DSN reader, which sees bytes from the network (DSNs from peers and MTAs):
// random bytes and random mutations of valid DSNs go into parseDsn. The only acceptable failure is
// a HispError, within a bounded time; and what buildDsn writes, parseDsn reads back to the same facts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { notificationKind } from '../mdn/mdn-parser.js';
import { buildDsn, failedRecipient, type DsnAction, type DsnRecipient } from './dsn.js';
import { parseDsn } from './dsn-parser.js';
import { NASTY_TEXT, applyMutation, mutationArbitrary, onlyHispError, type Mutation } from '../../test/helpers/mutations.js';

// ------------------------------------------------------------------------------------------------
// Harness (the same as test/integration/parsers.property.test.ts: fixed seed, FC_SEED overrides)

const SEED = Number(process.env.FC_SEED ?? 20261125);
const params = (numRuns = 250): fc.Parameters<unknown> => ({ seed: SEED, numRuns, endOnFailure: true });


const mutationArb = mutationArbitrary(NASTY_TEXT, { flip: 4, set: 2, truncate: 1, insert: 4, delete: 2 });

const applyMutations = (seed: Buffer, ms: readonly Mutation[]): Buffer => ms.reduce(applyMutation, seed);

const DSN_HEAD = 'Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n';
const NASTY_DSNS: [string, Buffer][] = [
  ['100 000 recipient groups', Buffer.from(`${DSN_HEAD}Reporting-MTA: dns; x\r\n${'\r\nFinal-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.0.0\r\n'.repeat(100_000)}--b--`)],
  ['300 000 empty lines', Buffer.from(`${DSN_HEAD}Reporting-MTA: dns; x${'\r\n'.repeat(300_000)}Action: failed\r\nStatus: 5.0.0\r\n--b--`)],
  ['a Diagnostic-Code folded 200 000 times', Buffer.from(`${DSN_HEAD}Reporting-MTA: dns; x\r\n\r\nAction: failed\r\nStatus: 5.0.0\r\nDiagnostic-Code: smtp;${'\r\n x'.repeat(200_000)}\r\n--b--`)],
  ['a 1 MB Status', Buffer.from(`${DSN_HEAD}Reporting-MTA: dns; x\r\n\r\nAction: failed\r\nStatus: 5.${'1'.repeat(1_000_000)}\r\n--b--`)],
  ['a 1 MB Action of parentheses', Buffer.from(`${DSN_HEAD}Reporting-MTA: dns; x\r\n\r\nAction: ${'('.repeat(1_000_000)}\r\nStatus: 5.0.0\r\n--b--`)],
  ['a 1 MB X-…-Original-Message-Id name', Buffer.from(`${DSN_HEAD}x-${'a-'.repeat(500_000)}original-message-id: <a@b>\r\n\r\nAction: failed\r\nStatus: 5.0.0\r\n--b--`)],
  ['returned headers of 1 MB of "message-id:" lines', Buffer.from(`${DSN_HEAD}Reporting-MTA: dns; x\r\n\r\nAction: failed\r\nStatus: 5.0.0\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\n${'message-id:'.repeat(100_000)}\r\n--b--`)],
];

const SEEDS: Buffer[] = [
  buildDsn({
    reportingMta: 'hisp.s.example',
    originalEnvelopeId: 'E1',
    arrivalDate: new Date(0),
    recipients: [
      failedRecipient('b@r.example', { kind: 'no-certificate' }),
      failedRecipient('c@r.example', { kind: 'rejected', reply: { code: 550, enhanced: '5.1.1', text: 'no such user' }, remoteMta: 'mx.r.example' }),
    ],
    originalHeaders: Buffer.from('From: a@s.example\r\nMessage-ID: <o@s.example>\r\nSubject: S\r\n\r\n'),
    to: 'a@s.example',
    from: 'mailer-daemon@s.example',
    date: new Date(0),
    messageId: '<d@s.example>',
  }).message,
  Buffer.from(
    'To: Alice@Example.ORG\nFrom: postmaster@mail.Example.COM\nContent-Type: multipart/report; report-type=delivery-status;\n    boundary=abcde\nMIME-Version: 1.0\n\n' +
      '--abcde\nContent-type: text/plain; charset=us-ascii\n\nnot delivered\n\n--abcde\nContent-type: message/delivery-status\n\n' +
      'Reporting-MTA: dns; Example.ORG\nOriginal-Envelope-ID: QQ314159\nX-Original-Message-Id: <9501051053.aa04167@IETF.CNR I.Reston.VA.US>\n\n' +
      'Original-Recipient: rfc822;Carol@Ivory.EDU\nFinal-Recipient: rfc822;Carol@Ivory.EDU\nDiagnostic-Code: smtp; 550 error - no such recipient\nAction: failed\nStatus: 5.0.0\n\n--abcde------',
  ),
];

describe('parseDsn only ever throws HispError', () => {
  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
        onlyHispError(() => parseDsn(Buffer.from(bytes)));
      }),
      params(),
    );
  });

  it('random report-like text', () => {
    const piece = fc.constantFrom(
      'Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n', '\r\n', '--b\r\n', '--b--', '--b------',
      'Content-Type: message/delivery-status\r\n', 'Content-Type: text/rfc822-headers\r\n', 'Reporting-MTA: dns; x\r\n', 'Final-Recipient: ',
      'Original-Recipient: ', 'rfc822;', 'a@b.example', 'Action: ', 'failed', 'Status: ', '5.0.0', '4.4.7', 'Diagnostic-Code: smtp; 550 x',
      'Message-ID: <m@x>', 'X-Original-Message-Id: ', ';', ' ', ':', '(', ')',
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 60 }), (pieces) => {
        const b = Buffer.from(pieces.join(''));
        onlyHispError(() => parseDsn(b));
        expect(() => notificationKind(b)).not.toThrow();
      }),
      params(),
    );
  });

  it.each(SEEDS.map((s, i) => [i, s] as const))('mutations of valid DSN %i', (_i, seed) => {
    expect(parseDsn(seed).recipients.length).toBeGreaterThan(0);
    fc.assert(
      fc.property(fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (ms) => {
        onlyHispError(() => parseDsn(applyMutations(seed, ms)));
      }),
      params(),
    );
  });

  it.each(NASTY_DSNS)('nasty input: %s', (_what, bytes) => {
    onlyHispError(() => parseDsn(bytes));
  });
});

describe('buildDsn → parseDsn keeps the facts', () => {
  const atom = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,15}$/);
  const address = fc.tuple(atom, atom, fc.constantFrom('example', 'test')).map(([l, d, t]) => `${l}@${d}.${t}`);
  const CLASS: Record<DsnAction, string> = { failed: '5', delayed: '4', delivered: '2', relayed: '2', expanded: '2' };
  const recipient: fc.Arbitrary<DsnRecipient> = fc
    .record({
      finalRecipient: address,
      originalRecipient: fc.option(address, { nil: undefined }),
      action: fc.constantFrom<DsnAction>('failed', 'delayed', 'delivered', 'relayed', 'expanded'),
      subject: fc.integer({ min: 0, max: 7 }),
      detail: fc.integer({ min: 0, max: 999 }),
      diagnostic: fc.option(fc.string({ unit: fc.constantFrom(...'abc XYZ 0123 ;:()<>-\r\n\t'.split('')), maxLength: 200 }), { nil: undefined }),
    })
    .map((r) => {
      const out: DsnRecipient = { finalRecipient: r.finalRecipient, action: r.action, status: `${CLASS[r.action]}.${r.subject}.${r.detail}` };
      if (r.originalRecipient !== undefined) out.originalRecipient = r.originalRecipient;
      if (r.diagnostic !== undefined) out.diagnosticCode = { type: 'smtp', text: r.diagnostic };
      return out;
    });

  it('for any recipients, actions, statuses and diagnostics', () => {
    fc.assert(
      fc.property(fc.array(recipient, { minLength: 1, maxLength: 6 }), fc.option(atom, { nil: undefined }), (recipients, envid) => {
        const built = buildDsn({ reportingMta: 'hisp.s.example', originalEnvelopeId: envid, recipients, to: 'a@s.example', from: 'mailer-daemon@s.example', originalMessageId: '<o@s.example>' });
        const p = parseDsn(built.message);
        expect(p.originalMessageId).toBe('<o@s.example>');
        expect(p.originalEnvelopeId).toBe(envid);
        expect(p.recipients).toHaveLength(recipients.length);
        recipients.forEach((r, i) => {
          const q = p.recipients[i]!;
          expect([q.action, q.status, q.finalRecipient, q.originalRecipient]).toEqual([r.action, r.status, r.finalRecipient, r.originalRecipient]);
          if (r.diagnosticCode !== undefined) {
            // eslint-disable-next-line no-control-regex
            const text = r.diagnosticCode.text.replace(/[\x00-\x1f\x7f]+/g, ' ').replace(/ {2,}/g, ' ').trim();
            expect(q.diagnosticCode).toEqual({ type: 'smtp', text });
          }
        });
      }),
      params(150),
    );
  });
});

// Direct Context (the Direct Project's Implementation Guide for Expressing Context in Direct
// Messaging, 1.0/1.1): the metadata part read and written, every rule of the guide refused as
// HISP_CONTEXT_MALFORMED, and hostile bytes never anything else.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hispError } from '../../test/helpers/hisp-error.js';
import { CONTEXT_ACTIONS, CONTEXT_CATEGORIES, CONTEXT_PURPOSES, formatDirectContext, newContextId, parseDirectContext, type DirectContext } from './direct-context.js';

const text = (lines: string[]) => Buffer.from(`${lines.join('\r\n')}\r\n`);

describe('parseDirectContext', () => {
  it('reads the fields of a metadata part: patient ids, type, purpose, patient parameters, folded lines, fields it does not know', () => {
    const context = parseDirectContext(
      text([
        'version: 1.0',
        'id: 0d1b6f5e-3c64-4a42-9f0f-2d0c1f6b7a55',
        'patient-id: 2.16.840.1.113883.19.999999:MRN-123; 2.16.840.1.113883.4.1:999-00-1234',
        'type: radiology/report',
        'purpose: treatment',
        'patient: givenName=Jane; surname=Doe;',
        ' dateOfBirth=1970-01-31; gender=F',
        'creation-time: 20181107120000-0500',
      ]),
    );
    expect(context).toEqual({
      version: '1.0',
      id: '0d1b6f5e-3c64-4a42-9f0f-2d0c1f6b7a55',
      patientId: [
        { authority: '2.16.840.1.113883.19.999999', id: 'MRN-123' },
        { authority: '2.16.840.1.113883.4.1', id: '999-00-1234' },
      ],
      type: { category: 'radiology', action: 'report' },
      purpose: 'treatment',
      patient: { givenName: 'Jane', surname: 'Doe', dateOfBirth: '1970-01-31', gender: 'F' },
      other: { 'creation-time': '20181107120000-0500' },
    });
  });

  it('refuses what the guide does not allow, each with HISP_CONTEXT_MALFORMED', () => {
    const base = ['version: 1.0', 'id: x1'];
    const cases: [string[], RegExp][] = [
      [['id: x1'], /no version/],
      [['version: 1.0'], /no id/],
      [['version: 2.0', 'id: x1'], /version/],
      [[...base, 'type: radiology'], /category\/action/],
      [[...base, 'type: dentistry/report'], /category\/action/],
      [[...base, 'purpose: curiosity'], /purpose/],
      [[...base, 'patient-id: MRN-123'], /OID:id/],
      [[...base, 'patient-id: hospital:MRN-123'], /OID:id/],
      [[...base, 'patient: shoeSize=44'], /parameter/],
      [[...base, 'id: x2'], /twice/],
      [[...base, 'no colon here'], /name: value/],
      [[...base, 'b@d name: x'], /not a name/],
    ];
    for (const [lines, reason] of cases) {
      const err = hispError(() => parseDirectContext(text(lines)));
      expect({ code: err.code, ok: reason.test(err.message) }, `${lines.join(' | ')}: ${err.message}`).toEqual({ code: 'HISP_CONTEXT_MALFORMED', ok: true });
    }
    expect(hispError(() => parseDirectContext(Buffer.alloc(70 * 1024, 0x61))).code).toBe('HISP_CONTEXT_MALFORMED');
    expect(hispError(() => parseDirectContext(text([...base, ...Array.from({ length: 100 }, (_, i) => `x-${i}: y`)]))).message).toMatch(/more than 100 fields/);
  });

  it('any bytes: a context or HISP_CONTEXT_MALFORMED, never another error', () => {
    const line = fc.oneof(
      fc.constantFrom('version: 1.0', 'version: 1.1', 'id: abc', 'type: laboratory/result', 'purpose: payment', 'patient: surname=Doe', 'patient-id: 1.2.3:9', ' folded', ''),
      fc.string({ maxLength: 80 }),
      fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b).toString('latin1')),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 30 }), fc.constantFrom('\r\n', '\n', '\r'), (lines, eol) => {
        try {
          const c = parseDirectContext(Buffer.from(lines.join(eol), 'latin1'));
          expect(typeof c.version).toBe('string');
          expect(typeof c.id).toBe('string');
        } catch (err) {
          expect((err as { code?: string }).code).toBe('HISP_CONTEXT_MALFORMED');
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('formatDirectContext', () => {
  it('writes what it reads back, for any context within the guide', () => {
    const token = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9.-]{0,20}$/);
    const context: fc.Arbitrary<DirectContext> = fc.record(
      {
        version: fc.constantFrom('1.0', '1.1'),
        id: fc.constant(newContextId()),
        patientId: fc.array(fc.record({ authority: fc.constantFrom('2.16.840.1.113883.19.5', '1.2.3'), id: token }), { minLength: 1, maxLength: 3 }),
        type: fc.record({ category: fc.constantFrom(...CONTEXT_CATEGORIES), action: fc.constantFrom(...CONTEXT_ACTIONS) }),
        purpose: fc.constantFrom(...CONTEXT_PURPOSES),
        patient: fc.record({ givenName: token, surname: token }, { requiredKeys: ['surname'] }),
      },
      { requiredKeys: ['version', 'id'] },
    );
    fc.assert(
      fc.property(context, (c) => {
        expect(parseDirectContext(Buffer.from(formatDirectContext(c)))).toEqual(c);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses a value that is not printable US-ASCII on one line', () => {
    expect(hispError(() => formatDirectContext({ version: '1.0', id: 'a', patient: { surname: 'Müller' } })).code).toBe('HISP_CONTEXT_MALFORMED');
    expect(hispError(() => formatDirectContext({ version: '1.0', id: 'a\r\nBcc: x' })).code).toBe('HISP_CONTEXT_MALFORMED');
  });
});

// readJsonBody against JSON.parse over the whole text, the oracle: whatever the body (well formed,
// malformed, long base64 fields valid or broken, strings with escapes, names that look like values),
// it is refused exactly when JSON.parse refuses it, and otherwise its value is JSON.parse's, but for
// the base64 fields kept as octets, which are the decoding of the text JSON.parse gives.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBase64Text } from './api-schemas.js';
import { base64Member, jsonText, LONG_STRING, readJsonBody } from './json-body.js';

const FIELDS = ['/documents/*/content', '/document/content'];
const oddChar = fc.constantFrom('"', '\\', ':', '{', '}', ',', '[', '\u0001', '\n', ' ', '-', '_', '=', 'é', '\ud83d\ude00', 'A');

/** A long string, mostly valid base64 around LONG_STRING, often changed at one place. */
const longText = fc
  .tuple(fc.uint8Array({ minLength: (LONG_STRING * 3) / 4 - 8, maxLength: (LONG_STRING * 3) / 4 + 40 }), fc.nat(), oddChar, fc.constantFrom('replace', 'insert', 'remove', 'keep', 'keep'))
  .map(([bytes, at, c, how]) => {
    const s = Buffer.from(bytes).toString('base64');
    const i = at % s.length;
    if (how === 'replace') return s.slice(0, i) + c + s.slice(i + 1);
    if (how === 'insert') return s.slice(0, i) + c + s.slice(i);
    if (how === 'remove') return s.slice(0, i) + s.slice(i + 1);
    return s;
  });

const body = fc.record(
  {
    documents: fc.array(fc.record({ filename: fc.string({ maxLength: 8 }), content: fc.oneof(longText, fc.string({ maxLength: 8 })) }, { requiredKeys: [] }), { maxLength: 3 }),
    document: fc.record({ content: longText }),
    text: fc.oneof(longText, fc.string({ unit: 'grapheme', maxLength: 20 })),
    extra: fc.jsonValue({ maxDepth: 3 }),
  },
  { requiredKeys: [] },
);

/** The serialized body, sometimes with one character of JSON syntax (or not) put in, replaced or taken out anywhere. */
const bodyText = fc
  .tuple(body, fc.constantFrom(undefined, 2, '\t'), fc.option(fc.tuple(fc.nat(), oddChar, fc.constantFrom('replace', 'insert', 'remove')), { freq: 2 }))
  .map(([value, space, change]) => {
    let s = JSON.stringify(value, null, space);
    if (change) {
      const [at, c, how] = change;
      const i = at % (s.length + 1);
      s = how === 'insert' ? s.slice(0, i) + c + s.slice(i) : how === 'replace' ? s.slice(0, i) + c + s.slice(i + 1) : s.slice(0, i) + s.slice(i + 1);
    }
    return s;
  });

function keptFields(value: unknown): { owner: object; original: (parsed: unknown) => unknown }[] {
  const out: { owner: object; original: (parsed: unknown) => unknown }[] = [];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return out;
  const v = value as { documents?: unknown; document?: unknown };
  if (Array.isArray(v.documents)) {
    v.documents.forEach((d, i) => {
      if (d !== null && typeof d === 'object') out.push({ owner: d as object, original: (p) => ((p as { documents: Record<string, unknown>[] }).documents[i]!).content });
    });
  }
  if (v.document !== null && typeof v.document === 'object' && !Array.isArray(v.document)) out.push({ owner: v.document, original: (p) => (p as { document: Record<string, unknown> }).document.content });
  return out;
}

describe('readJsonBody, against JSON.parse', () => {
  it('refuses what JSON.parse refuses; otherwise JSON.parse’s value, base64 fields kept as their decoding', () => {
    fc.assert(
      fc.property(bodyText, (sent) => {
        // What arrives: UTF-8 octets (a lone surrogate of a cut pair arrives as U+FFFD).
        const octets = Buffer.from(sent, 'utf8');
        const text = octets.toString('utf8');
        let expected: unknown;
        let refused = false;
        try {
          expected = JSON.parse(text);
        } catch {
          refused = true;
        }
        if (refused) {
          expect(() => readJsonBody(octets, FIELDS, JSON.parse)).toThrow();
          return;
        }
        const value = readJsonBody(octets, FIELDS, JSON.parse);
        expect(JSON.parse(jsonText(value).toString('utf8'))).toEqual(expected);
        for (const { owner, original } of keptFields(value)) {
          const bytes = base64Member(owner, 'content');
          if (!bytes) continue;
          const source = original(expected);
          expect(typeof source).toBe('string');
          expect(bytes.equals(decodeBase64Text(source as string)!)).toBe(true);
        }
      }),
      { numRuns: 400 },
    );
  });
});

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { base64Member, jsonText, LONG_STRING, MAX_STRINGS, readJsonBody } from './json-body.js';

const FIELDS = ['/documents/*/content'];
const read = (text: string, fields: readonly string[] = FIELDS) => readJsonBody(Buffer.from(text, 'utf8'), fields, JSON.parse) as Record<string, unknown>;
/** The value with its kept base64 fields written back as their text: what JSON.parse gives for the whole body. */
const materialized = (value: unknown) => JSON.parse(jsonText(value).toString('utf8')) as unknown;
const b64 = (n: number) => randomBytes(n).toString('base64');

describe('readJsonBody (issue 15, "Speed": a send body’s long base64 never a JavaScript string)', () => {
  it('keeps a document’s long base64 content as its octets, the rest of the body as JSON.parse reads it', () => {
    const documents = [0, 1].map(() => ({ filename: 'ccda.xml', kind: 'ccda', content: b64(3000) }));
    const text = JSON.stringify({ from: 'a@a.test', to: ['b@b.test'], documents, subject: 'x' }, null, 2);
    const value = read(text);
    const docs = value.documents as Record<string, unknown>[];
    docs.forEach((d, i) => {
      // What the schema sees: a short string, not the 4 KB of text.
      expect(typeof d.content).toBe('string');
      expect((d.content as string).length).toBeLessThan(64);
      expect(base64Member(d, 'content')).toEqual(Buffer.from(documents[i]!.content, 'base64'));
    });
    expect(materialized(value)).toEqual(JSON.parse(text));
    // The hash of an Idempotency-Key is over this text: the same as JSON.stringify of the whole parse.
    expect(jsonText(value).toString('utf8')).toBe(JSON.stringify(JSON.parse(text)));
  });

  it('reads short contents, and bodies of routes without base64 fields, as they are', () => {
    const text = JSON.stringify({ documents: [{ content: b64(100) }], note: 'y'.repeat(5000) });
    const value = read(text);
    expect(value).toEqual(JSON.parse(text));
    expect(base64Member((value.documents as object[])[0]!, 'content')).toBeUndefined();
    const other = read(JSON.stringify({ documents: [{ content: b64(3000) }] }), []);
    expect(base64Member((other.documents as object[])[0]!, 'content')).toBeUndefined();
  });

  it('puts back every long string that is not a base64 field: other fields, the body itself, non-base64 contents', () => {
    const mixed = JSON.stringify({ documents: [{ content: b64(3000) }], text: 'a'.repeat(3000), list: ['b'.repeat(2000), 'c'.repeat(2000)] });
    const value = read(mixed);
    expect(base64Member((value.documents as object[])[0]!, 'content')).toBeDefined();
    expect({ ...value, documents: undefined }).toEqual({ ...(JSON.parse(mixed) as object), documents: undefined });
    const cases = [
      { documents: [{ content: `${b64(3000)}-` }] }, // base64url's '-': not base64
      { documents: [{ content: `${b64(3000).slice(0, -4)}AA==${'QUJD'.repeat(2)}` }] }, // '=' inside
      { documents: [{ content: 'é'.repeat(2000) }] },
      { documents: [{ content: b64(3000).slice(0, -1) }] }, // not whole quanta
      { documents: { content: b64(3000) } }, // not an array: `*` names nothing
    ];
    for (const body of cases) {
      const text = JSON.stringify(body);
      expect(read(text)).toEqual(JSON.parse(text));
    }
    const whole = JSON.stringify('d'.repeat(3000));
    expect(read(whole)).toBe(JSON.parse(whole));
  });

  it('finds strings as RFC 8259 §7 delimits them: escaped quotation marks, reverse solidi before the closing one', () => {
    const content = b64(3000);
    const text = `{"a":"say \\"${'x'.repeat(LONG_STRING)}\\" \\\\","b":"\\\\","documents":[{"content":"${content}"}]}`;
    const value = read(text);
    expect(materialized(value)).toEqual(JSON.parse(text));
    expect(base64Member((value.documents as object[])[0]!, 'content')).toEqual(Buffer.from(content, 'base64'));
  });

  it('never takes a member name for a value', () => {
    const name = 'k'.repeat(3000);
    const text = `{"documents":[{"${name}" : 1, "content":"${b64(3000)}"}]}`;
    expect(Object.keys((read(text).documents as object[])[0]!)).toEqual([name, 'content']);
  });

  it('refuses a body exactly when JSON.parse does, even for a string the parse drops', () => {
    const bad = [
      `{"documents":[{"content":"${b64(3000)}\u0001"}]}`, // a control character in a string
      `{"text":"${'a'.repeat(3000)}\t"}`,
      `{"documents":[{"content":"${b64(3000)}\u0001","content":"${b64(3000)}"}]}`, // the first one dropped by the parse
      `{"documents":[{"content":"${b64(3000)}"}]`,
      `{"documents":[{"content":"${b64(3000)}}]}`,
    ];
    for (const text of bad) {
      expect(() => JSON.parse(text) as unknown).toThrow();
      expect(() => read(text)).toThrow();
    }
  });

  it('reads bodies of very long arrays as JSON.parse does (no stack overflow, no pair per element)', () => {
    for (const body of [{ documents: new Array(200_000).fill(0), text: 'a'.repeat(2000) }, { x: new Array(200_000).fill(0), text: 'a'.repeat(2000) }]) {
      const text = JSON.stringify(body);
      expect(read(text)).toEqual(JSON.parse(text));
    }
  });

  it(`looks at no more than ${MAX_STRINGS} strings, and still reads the body whole`, () => {
    const text = JSON.stringify({ many: Array.from({ length: MAX_STRINGS }, () => 's'), documents: [{ content: b64(3000) }] });
    const value = read(text);
    expect(value).toEqual(JSON.parse(text));
    expect(base64Member((value.documents as object[])[0]!, 'content')).toBeUndefined();
  });

  it('decodes base64 longer than one decoding chunk, and tells a change of the field from the kept octets', () => {
    const content = b64(200 * 1024);
    const value = read(JSON.stringify({ documents: [{ content }] }));
    const doc = (value.documents as Record<string, unknown>[])[0]!;
    expect(base64Member(doc, 'content')).toEqual(Buffer.from(content, 'base64'));
    doc.content = 'QUJD';
    expect(base64Member(doc, 'content')).toBeUndefined();
  });
});

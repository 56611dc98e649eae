import { describe, expect, it } from 'vitest';
import { randomHexId } from './random-id.js';

describe('randomHexId', () => {
  it('gives the digits asked for, every digit position varying (none of the UUID’s fixed digits)', () => {
    const ids = Array.from({ length: 2000 }, () => randomHexId(30));
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{30}$/);
    expect(new Set(ids).size).toBe(ids.length);
    // Each position takes many values over 2,000 draws (a fixed version or variant digit would take one to four).
    for (let i = 0; i < 30; i++) expect(new Set(ids.map((id) => id[i])).size, `digit ${i}`).toBeGreaterThan(12);
    expect(randomHexId(24)).toMatch(/^[0-9a-f]{24}$/);
    expect(() => randomHexId(31)).toThrow(RangeError);
    expect(() => randomHexId(0)).toThrow(RangeError);
  });
});

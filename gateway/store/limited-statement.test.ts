import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LimitedStatement } from './limited-statement.js';

let sqlite: BetterSqlite3.Database;

beforeEach(() => {
  sqlite = new BetterSqlite3(':memory:');
  sqlite.exec('CREATE TABLE due (id INTEGER PRIMARY KEY, at INTEGER NOT NULL); CREATE INDEX due_at ON due (at)');
  const insert = sqlite.prepare<[number]>('INSERT INTO due (at) VALUES (?)');
  for (let i = 1; i <= 20; i++) insert.run(i * 10);
});

afterEach(() => sqlite.close());

const earliest = () => new LimitedStatement<[number], { id: number }>(sqlite, (n) => `SELECT id FROM due WHERE at <= ? ORDER BY at LIMIT ${n}`);

describe('LimitedStatement', () => {
  it('returns at most the given number of rows, in order, with the other parameters bound as usual', () => {
    const q = earliest();
    expect(q.limit(3).all(1000).map((r) => r.id)).toEqual([1, 2, 3]);
    expect(q.limit(5).all(1000)).toHaveLength(5);
    expect(q.limit(100).all(55).map((r) => r.id)).toEqual([1, 2, 3, 4, 5]);
  });

  it('rounds a fractional limit down and gives no rows for 0, a negative limit or NaN (never "no limit", which LIMIT -1 would be)', () => {
    const q = earliest();
    expect(q.limit(2.9).all(1000)).toHaveLength(2);
    for (const n of [0, 0.5, -1, Number.NaN]) expect(q.limit(n).all(1000)).toEqual([]);
  });

  it('takes a huge limit or Infinity as "every row" (the text never holds an exponent or "Infinity")', () => {
    const q = earliest();
    for (const n of [1e21, Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER + 10]) expect(q.limit(n).all(1000)).toHaveLength(20);
  });

  it('keeps one prepared statement per limit, so that a repeated limit is not prepared again (the point of it)', () => {
    const q = earliest();
    const first = q.limit(7);
    expect(q.limit(7)).toBe(first);
    expect(q.limit(8)).not.toBe(first);
  });

  it('keeps a bounded number of limits: asking for many drops the least recently used, and each still answers right', () => {
    const q = earliest();
    const first = q.limit(1);
    const busy = q.limit(20);
    for (let n = 2; n <= 12; n++) {
      expect(q.limit(n).all(1000)).toHaveLength(n);
      expect(q.limit(20)).toBe(busy); // used all along: never dropped
    }
    expect(q.limit(1)).not.toBe(first); // prepared again after it was dropped
    expect(q.limit(1).all(1000)).toHaveLength(1);
  });

  it('prepares its SQL at construction, so that a mistake shows at start', () => {
    expect(() => new LimitedStatement(sqlite, (n) => `SELECT nope FROM due LIMIT ${n}`)).toThrow(/no such column/);
  });
});

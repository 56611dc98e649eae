import type { Statement } from 'better-sqlite3';
import type { SqliteConnection } from './database.js';

/** Distinct limits kept prepared; callers use one or two each (a worker's batch, a sweep's size). */
const KEPT = 8;

/**
 * A query whose LIMIT is written into its text, one prepared statement per limit, instead of bound
 * as a parameter.
 *
 * Why: SQLite (3.53, as better-sqlite3 12 bundles it) hands the value of a bound LIMIT to the query
 * planner, and so marks the statement to be prepared again whenever that parameter is bound — and
 * better-sqlite3 binds every parameter at every run. A bound LIMIT therefore costs a full parse and
 * plan per run (`perf` showed sqlite3Reprepare under each sqlite3_step). Measured alone on hisp's
 * schema with nothing due: the relay's lease query ≈ 120 µs with a bound LIMIT against ≈ 6 µs with
 * it in the text (both with temp_store = MEMORY, database.ts), a plain index range ≈ 15 against
 * ≈ 2 µs. The lease query runs about once per two messages a relay worker takes, so it counted.
 *
 * @example
 * const due = new LimitedStatement<[number], Row>(sqlite, (n) => `SELECT * FROM t WHERE at <= ? ORDER BY at LIMIT ${n}`);
 * due.limit(100).all(now);
 */
export class LimitedStatement<P extends unknown[] | object = unknown[], R = unknown> {
  private readonly prepared = new Map<number, Statement<P, R>>();

  constructor(
    private readonly sqlite: SqliteConnection,
    private readonly sql: (limit: number) => string,
  ) {
    // Prepared once here, so that a mistake in the SQL shows at start, not at the first sweep.
    this.limit(1);
  }

  /** The statement for `limit` rows, rounded down; less than 1 or not a number: none. */
  limit(limit: number): Statement<P, R> {
    const n = limit >= 1 ? Math.floor(Math.min(limit, Number.MAX_SAFE_INTEGER)) : 0;
    let stmt = this.prepared.get(n);
    if (stmt === undefined) {
      stmt = this.sqlite.prepare<P, R>(this.sql(n));
      // The least recently used goes when too many limits have been asked for (an operator's list sizes, say).
      if (this.prepared.size >= KEPT) this.prepared.delete(this.prepared.keys().next().value as number);
    } else {
      this.prepared.delete(n); // to the end of the Map's order: most recently used
    }
    this.prepared.set(n, stmt);
    return stmt;
  }
}

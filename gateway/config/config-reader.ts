import { accessSync, constants, statSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * The reading half of configuration validation: typed access to one table of the parsed TOML that
 * records every problem under its exact key path (`domains[1].credentials[0].cert`) and goes on with
 * a default, so that one pass reports every error. Values are never echoed in messages except enum
 * values of keys that are not secret (a typo in `cipher` should show the typo; a password never).
 */

/** One problem: the key path and what is wrong there. */
export interface ConfigIssue {
  path: string;
  message: string;
}

export class Issues {
  readonly errors: ConfigIssue[] = [];
  readonly warnings: ConfigIssue[] = [];

  error(path: string, message: string): void {
    this.errors.push({ path, message });
  }

  warn(path: string, message: string): void {
    this.warnings.push({ path, message });
  }
}

/** `parent.key`, quoting keys that are not bare TOML keys (`remoteDomains."*"`). */
export function childPath(parent: string, key: string): string {
  const k = /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
  return parent === '' ? k : `${parent}.${k}`;
}

export function indexPath(parent: string, index: number): string {
  return `${parent}[${index}]`;
}

/** What a TOML value is, for "expected …, got …" messages. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return 'a string';
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a number';
  if (typeof value === 'boolean') return 'a boolean';
  if (typeof value === 'bigint') return 'an integer';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a date';
  if (value !== null && typeof value === 'object') return isTable(value) ? 'a table' : 'a date';
  return typeof value;
}

export function isTable(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Date) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === null || proto === Object.prototype;
}

function quote(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j] ?? 0;
      row[j] = Math.min(cur + 1, (row[j - 1] ?? 0) + 1, prev + (a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length] ?? 0;
}

export function suggestion(key: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = distance(key, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(key.length / 4)) ? ` (did you mean "${best}"?)` : '';
}

interface NumberRange {
  min: number;
  max: number;
  integer?: boolean;
}

/**
 * One table of the configuration. Every accessor marks its key as known; {@link done} then reports
 * the keys nobody asked for (typos must not pass silently).
 */
export class Section {
  private readonly known = new Set<string>();

  private constructor(
    readonly issues: Issues,
    readonly path: string,
    private readonly raw: Record<string, unknown>,
    /** The folder relative paths are resolved against. */
    readonly baseDir: string,
  ) {}

  /** A section over `value`, which must be a table (else an error, and an empty section). */
  static of(issues: Issues, path: string, value: unknown, baseDir: string): Section {
    if (value === undefined) return new Section(issues, path, {}, baseDir);
    if (!isTable(value)) {
      issues.error(path, `expected a table, got ${describe(value)}`);
      return new Section(issues, path, {}, baseDir);
    }
    return new Section(issues, path, value, baseDir);
  }

  at(key: string): string {
    return childPath(this.path, key);
  }

  has(key: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.raw, key) && this.raw[key] !== undefined;
  }

  /** The keys present in the table (for tables whose keys are names, like remoteDomains). */
  keys(): string[] {
    return Object.keys(this.raw);
  }

  value(key: string): unknown {
    this.known.add(key);
    return Object.prototype.hasOwnProperty.call(this.raw, key) ? this.raw[key] : undefined;
  }

  private fail(key: string, message: string): void {
    this.issues.error(this.at(key), message);
  }

  optString(key: string, options: { nonEmpty?: boolean } = {}): string | undefined {
    const v = this.value(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') {
      this.fail(key, `expected a string, got ${describe(v)}`);
      return undefined;
    }
    if ((options.nonEmpty ?? true) && v.trim() === '') {
      this.fail(key, 'must not be empty');
      return undefined;
    }
    return v;
  }

  string(key: string, def: string): string {
    return this.optString(key) ?? def;
  }

  requiredString(key: string): string | undefined {
    if (!this.has(key)) {
      this.value(key);
      this.fail(key, 'missing (required)');
      return undefined;
    }
    return this.optString(key);
  }

  optNumber(key: string, range: NumberRange): number | undefined {
    const v = this.value(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      this.fail(key, `expected ${range.integer ? 'an integer' : 'a number'}, got ${describe(v)}`);
      return undefined;
    }
    if (range.integer && !Number.isInteger(v)) {
      this.fail(key, `expected an integer, got ${v}`);
      return undefined;
    }
    if (v < range.min || v > range.max) {
      this.fail(key, `must be from ${range.min} to ${range.max} (got ${v})`);
      return undefined;
    }
    return v;
  }

  int(key: string, def: number, min: number, max: number): number {
    return this.optNumber(key, { min, max, integer: true }) ?? def;
  }

  number(key: string, def: number, min: number, max: number): number {
    return this.optNumber(key, { min, max }) ?? def;
  }

  /** A port: 1-65535, or 0 (any free port) when `allowZero`. */
  port(key: string, def: number, allowZero = true): number {
    return this.int(key, def, allowZero ? 0 : 1, 65535);
  }

  bool(key: string, def: boolean): boolean {
    const v = this.value(key);
    if (v === undefined) return def;
    if (typeof v !== 'boolean') {
      this.fail(key, `expected true or false, got ${describe(v)}`);
      return def;
    }
    return v;
  }

  oneOf<T extends string>(key: string, values: readonly T[], def: T): T {
    const v = this.value(key);
    if (v === undefined) return def;
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
      this.fail(key, `expected one of ${values.map((x) => `"${x}"`).join(', ')}, got ${typeof v === 'string' ? quote(v) : describe(v)}`);
      return def;
    }
    return v as T;
  }

  /** An array of strings; `check` may refuse one element (returning the message). */
  stringList(key: string, def: readonly string[], check?: (value: string, path: string) => string | undefined): string[] {
    const v = this.value(key);
    if (v === undefined) return [...def];
    if (!Array.isArray(v)) {
      this.fail(key, `expected an array of strings, got ${describe(v)}`);
      return [...def];
    }
    const out: string[] = [];
    v.forEach((item: unknown, i) => {
      const p = indexPath(this.at(key), i);
      if (typeof item !== 'string' || item.trim() === '') {
        this.issues.error(p, typeof item === 'string' ? 'must not be empty' : `expected a string, got ${describe(item)}`);
        return;
      }
      const problem = check?.(item, p);
      if (problem !== undefined) this.issues.error(p, problem);
      else out.push(item);
    });
    return out;
  }

  numberList(key: string, def: readonly number[], range: NumberRange): number[] {
    const v = this.value(key);
    if (v === undefined) return [...def];
    if (!Array.isArray(v)) {
      this.fail(key, `expected an array of numbers, got ${describe(v)}`);
      return [...def];
    }
    const out: number[] = [];
    v.forEach((item: unknown, i) => {
      const p = indexPath(this.at(key), i);
      if (typeof item !== 'number' || !Number.isFinite(item) || (range.integer && !Number.isInteger(item))) {
        this.issues.error(p, `expected ${range.integer ? 'an integer' : 'a number'}, got ${describe(item)}`);
      } else if (item < range.min || item > range.max) {
        this.issues.error(p, `must be from ${range.min} to ${range.max} (got ${item})`);
      } else {
        out.push(item);
      }
    });
    return out;
  }

  /** A sub-table (empty when absent). */
  section(key: string): Section {
    return Section.of(this.issues, this.at(key), this.value(key), this.baseDir);
  }

  /** An array of tables (`[[key]]`), empty when absent. */
  sections(key: string): Section[] {
    const v = this.value(key);
    if (v === undefined) return [];
    if (!Array.isArray(v)) {
      this.fail(key, `expected an array of tables ([[${this.at(key)}]]), got ${describe(v)}`);
      return [];
    }
    return v.map((item: unknown, i) => Section.of(this.issues, indexPath(this.at(key), i), item, this.baseDir));
  }

  /** An optional path, made absolute against the base folder (not checked). */
  optPath(key: string): string | undefined {
    const v = this.optString(key);
    return v === undefined ? undefined : resolve(this.baseDir, v);
  }

  /** An optional file that must exist and be readable when given. */
  optFile(key: string): string | undefined {
    const p = this.optPath(key);
    if (p !== undefined && !checkReadableFile(this.issues, this.at(key), p)) return undefined;
    return p;
  }

  /** A required file that must exist and be readable. */
  requiredFile(key: string): string | undefined {
    if (!this.has(key)) {
      this.value(key);
      this.fail(key, 'missing (required)');
      return undefined;
    }
    return this.optFile(key);
  }

  /**
   * A list of files that must exist and be readable: every valid entry (made absolute) with its key
   * path, and whether the file could be read.
   */
  fileList(key: string): { path: string; file: string; readable: boolean }[] {
    const files: { path: string; file: string; readable: boolean }[] = [];
    this.stringList(key, [], (value, path) => {
      const file = resolve(this.baseDir, value);
      files.push({ path, file, readable: checkReadableFile(this.issues, path, file) });
      return undefined;
    });
    return files;
  }

  /** Reports every key of the table that no accessor asked for. */
  done(): void {
    const known = [...this.known];
    for (const key of Object.keys(this.raw)) {
      if (!this.known.has(key)) this.issues.error(this.at(key), `unknown key${suggestion(key, known)}`);
    }
  }
}

/** Records an error and returns false unless `file` is a readable regular file. */
export function checkReadableFile(issues: Issues, path: string, file: string): boolean {
  try {
    if (!statSync(file).isFile()) {
      issues.error(path, `not a file: ${file}`);
      return false;
    }
    accessSync(file, constants.R_OK);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') issues.error(path, `file not found: ${file}`);
    else if (code === 'EACCES' || code === 'EPERM') issues.error(path, `file not readable (permission denied): ${file}`);
    else issues.error(path, `cannot read ${file}${code ? ` (${code})` : ''}`);
    return false;
  }
}

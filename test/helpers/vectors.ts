// Access to the third-party interoperability vectors in ../shared/vectors (beside the repository).
// They are not part of the repository: CI copies shared/ next to it, a developer may not have it.
// Every group is therefore optional; tests ask `vectorGroup()` and skip visibly when it is absent,
// except with CI=true, where an absent group fails the run (test/helpers/require-peer.ts).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { isHispError, type HispError } from '../../gateway/core/errors.js';
import { requirePeer } from './require-peer.js';

/** The repository root (this file is test/helpers/vectors.ts). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** ../shared/vectors relative to the repository root. */
export const VECTORS_DIR = path.resolve(REPO_ROOT, '../shared/vectors');

export type VectorGroupName = 'java-ri' | 'dotnet-ri' | 'ett' | 'dcdt';

export interface VectorGroup {
  name: VectorGroupName;
  /** True when the group and every file the caller needs are present. */
  present: boolean;
  /** Why not, for the test title ('' when present). */
  reason: string;
  /** Absolute path of a file of the group. */
  path(rel: string): string;
  /** Bytes of a file of the group. */
  read(rel: string): Buffer;
  /** `title`, or `title (skipped: …)` when the group is absent, so the skip shows in the report. */
  title(title: string): string;
}

/**
 * A vector group with the files a test needs. When something is missing: with CI=true a
 * MissingPeerError names it (the run fails: test/helpers/require-peer.ts); otherwise the group is
 * not present, and the reason goes into the describe title and is printed once on stderr.
 */
export function vectorGroup(name: VectorGroupName, required: readonly string[] = []): VectorGroup {
  const dir = path.join(VECTORS_DIR, name);
  const display = path.relative(REPO_ROOT, dir);
  let reason = '';
  if (!existsSync(path.join(dir, 'INDEX.md'))) {
    reason = `${display} absent`;
  } else {
    const missing = required.filter((rel) => !existsSync(path.join(dir, rel)));
    if (missing.length > 0) reason = `${display} lacks ${missing.join(', ')}`;
  }
  const gate = requirePeer(reason === '' ? undefined : `the ${name} conformance vectors: ${reason}`);
  return {
    name,
    present: !gate.skip,
    reason,
    path: (rel) => path.join(dir, rel),
    read: (rel) => readFileSync(path.join(dir, rel)),
    title: (title) => (reason === '' ? title : `${title} (skipped: ${reason})`),
  };
}

/** Runs `fn`, expects it to throw a HispError and returns that error. */
/** The HispError an async call rejects with (fails the test if it resolves or rejects otherwise). */
export async function hispErrorOfAsync(fn: () => Promise<unknown>): Promise<HispError> {
  let thrown: unknown;
  try {
    await fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected a HispError to be thrown').toBeDefined();
  if (!isHispError(thrown)) throw new Error(`expected a HispError, got ${String(thrown)}`, { cause: thrown });
  return thrown;
}

export function hispErrorOf(fn: () => unknown): HispError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected a HispError to be thrown').toBeDefined();
  if (!isHispError(thrown)) throw new Error(`expected a HispError, got ${String(thrown)}`, { cause: thrown });
  return thrown;
}

/**
 * The body parts of a multipart entity, cut by hand (RFC 2046 §5.1.1: the CRLF before a delimiter
 * belongs to the delimiter): an oracle independent of the MIME parser under test. CRLF input only.
 */
export function multipartParts(entity: Buffer): Buffer[] {
  const headerEnd = entity.indexOf('\r\n\r\n');
  if (headerEnd < 0) throw new Error('no header/body separator');
  const header = entity.subarray(0, headerEnd).toString('latin1').replace(/\r\n[ \t]+/g, ' ');
  const boundary = /boundary="?([^";\r\n]+)"?/i.exec(header)?.[1];
  if (boundary === undefined) throw new Error('no boundary parameter');
  const open = Buffer.from(`--${boundary}\r\n`);
  const first = entity.indexOf(open, headerEnd);
  if (first < 0) throw new Error('no opening delimiter');
  const parts: Buffer[] = [];
  let start = first + open.length;
  for (;;) {
    const end = entity.indexOf(`\r\n--${boundary}`, start);
    if (end < 0) throw new Error('no closing delimiter');
    parts.push(entity.subarray(start, end));
    const after = end + 4 + boundary.length;
    if (entity.subarray(after, after + 2).toString('latin1') === '--') return parts;
    start = entity.indexOf('\r\n', after) + 2;
  }
}

/** The body of an entity: everything after the first empty line (CRLF or LF). */
export function bodyOf(entity: Buffer): Buffer {
  const crlf = entity.indexOf('\r\n\r\n');
  if (crlf >= 0) return entity.subarray(crlf + 4);
  const lf = entity.indexOf('\n\n');
  if (lf < 0) throw new Error('no header/body separator');
  return entity.subarray(lf + 2);
}

import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import { HispError } from '../core/errors.js';

/** Reads a file, or all of stdin when the path is undefined or `-`. */
export function readInput(path: string | undefined): Buffer {
  try {
    return readFileSync(path === undefined || path === '-' ? 0 : path);
  } catch (cause) {
    throw new HispError('HISP_IO', `cannot read ${path ?? 'standard input'}: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Writes the result to a file (through a temporary file and a rename, so that a reader never sees
 * half a message) or to stdout. Called only once the whole result exists: on failure nothing is
 * written.
 */
export async function writeOutput(path: string | undefined, data: Buffer): Promise<void> {
  if (path === undefined || path === '-') {
    await new Promise<void>((resolve, reject) => {
      process.stdout.write(data, (err) => (err ? reject(err) : resolve()));
    });
    return;
  }
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (cause) {
    throw new HispError('HISP_IO', `cannot write ${path}: ${(cause as Error).message}`, { cause });
  }
}

export function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (cause) {
    throw new HispError('HISP_IO', `cannot read ${what} ${path}: ${(cause as Error).message}`, { cause });
  }
}

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** One figure of bench/results/latest.json (`npm run bench`, `npm run fuzz`). */
export interface Figure {
  name: string;
  value: number;
  unit: string;
  reference: number | null;
  /** value / reference */
  ratio: number | null;
  /** e.g. ">= 1000" (value) or "ratio <= 4"; null when the figure is informative. */
  target: string | null;
  pass: boolean | null;
  machine: string;
}

/**
 * Writes `figures` into `file`, keeping the figures of the other run: `npm run bench` keeps the
 * `fuzz.*` figures of `npm run fuzz`, which keeps everything else (the two run apart: the fuzz run
 * takes minutes and is not part of the bench). Returns how many earlier figures were kept.
 */
export function writeFigures(file: string, figures: readonly Figure[], keep: (f: Figure) => boolean): number {
  const previous: Figure[] = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Figure[]) : [];
  const kept = previous.filter(keep);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify([...kept, ...figures], null, 2)}\n`);
  return kept.length;
}

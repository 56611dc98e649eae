import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DOMParser } from '@xmldom/xmldom';
import { renderCcda } from '../gateway/documents/ccda-renderer.js';
import { REPO_ROOT } from './agent-workload.js';
import type { Figure } from './figure.js';

/**
 * Rendering a 1 MB C-CDA (issue 15, Speed): `renderCcda` (bounded read, header, every section's
 * narrative to HTML) against a bare `new DOMParser().parseFromString` of the same document in the
 * same run, medians of interleaved runs. Target: rendering ≤ 2× the parse (the renderer must not
 * cost more than reading the XML it renders). The document is an ETT sample (CCDA_Inpatient.xml,
 * ../shared/vectors) whose body is repeated to about 1 MiB; without the vectors there is no figure.
 */
const SAMPLE = join(REPO_ROOT, '..', 'shared', 'vectors', 'ett', 'cda-samples', 'CCDA_Inpatient.xml');
const SIZE = 1024 * 1024;
const RUNS = 9;

/** The sample with its structuredBody's components repeated until the document is at least `size` characters. */
export function enlargeCcda(sample: string, size: number): string {
  const bodyStart = sample.indexOf('<component>', sample.indexOf('<structuredBody'));
  const bodyEnd = sample.lastIndexOf('</structuredBody>');
  if (bodyStart < 0 || bodyEnd < bodyStart) throw new Error('the sample has no structuredBody components');
  const components = sample.slice(bodyStart, bodyEnd);
  const copies = Math.max(1, Math.ceil((size - sample.length) / components.length) + 1);
  return sample.slice(0, bodyStart) + components.repeat(copies) + sample.slice(bodyEnd);
}

export function benchRender(machine: string): Promise<Figure[]> {
  if (!existsSync(SAMPLE)) {
    console.log(`documents: skipped: ${SAMPLE} absent (the ETT vectors)`);
    return Promise.resolve([]);
  }
  const doc = enlargeCcda(readFileSync(SAMPLE, 'utf8'), SIZE);
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
  const parse = () => new DOMParser().parseFromString(doc, 'application/xml');
  const render = () => renderCcda(doc);
  for (let i = 0; i < 2; i++) {
    parse();
    render();
  }
  const parseMs: number[] = [];
  const renderMs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    gc();
    parseMs.push(timed(parse));
    gc();
    renderMs.push(timed(render));
  }
  const value = median(renderMs);
  const reference = median(parseMs);
  const ratio = Math.round((value / reference) * 1000) / 1000;
  console.log(`documents: ${(doc.length / SIZE).toFixed(2)} MiB C-CDA, render ${value.toFixed(1)} ms, bare parse ${reference.toFixed(1)} ms (medians of ${RUNS})`);
  return Promise.resolve([
    { name: 'documents.render_1MB.ms', value: Math.round(value * 1000) / 1000, unit: 'ms', reference: Math.round(reference * 1000) / 1000, ratio, target: 'ratio <= 2', pass: ratio <= 2, machine },
  ]);
}

function timed(fn: () => unknown): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

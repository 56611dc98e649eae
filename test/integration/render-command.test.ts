// `hisp render FILE.xml [--out FILE.html]`: the page on stdout or in a file, exit 1 with the code on stderr.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RENDERED_CCDA_CSP } from '../../gateway/documents/ccda-renderer.js';
import { cdaDocument, section } from '../helpers/ccda-documents.js';
import { vocabularyViolations } from '../helpers/rendered-html.js';

const repo = resolve(import.meta.dirname, '..', '..');
const work = mkdtempSync(join(tmpdir(), 'hisp-render-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const hisp = (args: string[], input?: string) => spawnSync(process.execPath, [join(repo, 'bin/hisp.js'), 'render', ...args], { encoding: 'utf8', input });
const file = (name: string, content: string) => {
  const path = join(work, name);
  writeFileSync(path, content);
  return path;
};

describe('hisp render', () => {
  const doc = file('summary.xml', cdaDocument({ title: 'Visit note', sections: [section('Blood pressure <content styleCode="Bold">120/80</content>', 'Vitals')] }));

  it('writes the page to stdout', () => {
    const r = hisp([doc]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`<meta http-equiv="Content-Security-Policy" content="${RENDERED_CCDA_CSP}">`);
    expect(r.stdout).toContain('<h2 class="cda-title">Vitals</h2>');
    expect(r.stdout).toContain('Blood pressure <span class="cda-bold">120/80</span>');
    expect(vocabularyViolations(r.stdout)).toEqual([]);
    expect(r.stderr).toBe('');
  });

  it('writes the page to --out, reads - as stdin, and prints the summary with --summary', () => {
    const out = join(work, 'page.html');
    const r = hisp(['-', '--out', out, '--summary'], readFileSync(doc, 'utf8'));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(readFileSync(out, 'utf8')).toContain('<h1>Visit note</h1>');
    expect(JSON.parse(r.stderr)).toMatchObject({ title: 'Visit note', patient: { name: 'Ms. Ada K. Lovelace' }, author: 'Charles Babbage', date: '2024-01-02T09:30:00-05:00' });
  });

  it('exits 1 with the code on stderr, writing nothing, for what is not a CDA, not XML, or not there', () => {
    const out = join(work, 'never.html');
    const notCda = hisp([file('ccr.xml', '<ContinuityOfCareRecord xmlns="urn:astm-org:CCR"/>'), '--out', out]);
    expect(notCda.status).toBe(1);
    expect(notCda.stderr).toMatch(/^hisp: HISP_CDA_INVALID: the root element is "ContinuityOfCareRecord"/);
    expect(existsSync(out)).toBe(false);
    const notXml = hisp([file('broken.xml', '<ClinicalDocument xmlns="urn:hl7-org:v3"><title>')]);
    expect(notXml.status).toBe(1);
    expect(notXml.stderr).toMatch(/^hisp: HISP_XML_MALFORMED: /);
    expect(notXml.stdout).toBe('');
    const missing = hisp([join(work, 'missing.xml')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^hisp: HISP_IO: cannot read/);
  });

  it('refuses a file larger than the reader takes before reading it', () => {
    const big = join(work, 'big.xml');
    writeFileSync(big, '');
    // A sparse 33 MiB file: refused from its size alone.
    spawnSync('truncate', ['-s', String(33 * 1024 * 1024), big]);
    const r = hisp([big]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`HISP_XML_MALFORMED: ${big} is 34603008 octets, more than the 33554432 the XML reader takes: not read`);
  });

  it('answers --help, and exits 2 without a file', () => {
    expect(hisp(['--help']).stdout).toContain('Usage: hisp render [options] <file>');
    expect(hisp([]).status).toBe(2);
  });
});

// `hisp xdm pack` and `hisp xdm unpack` through the real binary (bin/hisp.js, built): the contracts of
// issue 15 — `pack --out FILE.zip [--patient-id ID] DOC…`, `unpack FILE.zip [--json] [--out-dir DIR]`
// with `{"documents": [{"path", "mimeType", "size", "sha1", "hashMatches"}], "submissionSet": {…}}`,
// and exit 1 with `HISP_…: reason` on stderr for bad input.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rawZip } from '../helpers/raw-zip.js';
import { vectorGroup } from '../helpers/vectors.js';

const repo = resolve(import.meta.dirname, '..', '..');
const work = mkdtempSync(join(tmpdir(), 'hisp-xdm-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const hisp = (...args: string[]) => spawnSync(process.execPath, [join(repo, 'bin', 'hisp.js'), 'xdm', ...args], { cwd: work, encoding: 'utf8' });
const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');

interface UnpackJson {
  documents: { path: string; mimeType: string; size: number; sha1: string; hashMatches: boolean; file?: string }[];
  submissionSet: { patientId: string | null; uniqueId: string | null };
}

const ccda = Buffer.from('<ClinicalDocument xmlns="urn:hl7-org:v3"><title>Referral</title></ClinicalDocument>\n');
const pdf = Buffer.from('%PDF-1.4\n% referral letter\n');
writeFileSync(join(work, 'referral.xml'), ccda);
writeFileSync(join(work, 'letter.pdf'), pdf);

describe('hisp xdm pack | unpack', () => {
  it('packs documents with a patient id, and unpacks them with --json: path, type, size, SHA-1, hash matches', () => {
    const packed = hisp('pack', '--out', 'out.zip', '--patient-id', '77^^^&2.16.840.1.113883.19.5&ISO', 'referral.xml', 'letter.pdf');
    expect(packed.status, packed.stderr).toBe(0);
    expect(packed.stdout).toMatch(/out\.zip: 2 document\(s\)/);
    const unpacked = hisp('unpack', 'out.zip', '--json');
    expect(unpacked.status, unpacked.stderr).toBe(0);
    const report = JSON.parse(unpacked.stdout) as UnpackJson;
    expect(report.documents.map(({ path, mimeType, size, sha1, hashMatches }) => ({ path, mimeType, size, sha1, hashMatches }))).toEqual([
      { path: 'IHE_XDM/SUBSET01/REFERRAL.XML', mimeType: 'text/xml', size: ccda.length, sha1: sha1(ccda), hashMatches: true },
      { path: 'IHE_XDM/SUBSET01/LETTER.PDF', mimeType: 'application/pdf', size: pdf.length, sha1: sha1(pdf), hashMatches: true },
    ]);
    expect(report.submissionSet.patientId).toBe('77^^^&2.16.840.1.113883.19.5&ISO');
  });

  it('writes the documents under --out-dir and says where, in the readable report', () => {
    expect(hisp('pack', '--out', 'dir.zip', 'referral.xml').status).toBe(0);
    const r = hisp('unpack', 'dir.zip', '--out-dir', 'extracted');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/IHE_XDM\/SUBSET01\/REFERRAL\.XML {2}text\/xml {2}\d+ octets {2}sha1 [0-9a-f]{40} {2}hash matches {2}-> /);
    expect(readFileSync(join(work, 'extracted/IHE_XDM/SUBSET01/REFERRAL.XML'))).toEqual(ccda);
  });

  const ett = vectorGroup('ett', ['cda-samples/BadXHTML.zip']);
  it.skipIf(!ett.present)(ett.title("accepts ETT's BadXHTML.zip, whose INDEX.HTM is not XHTML"), () => {
    const r = hisp('unpack', ett.path('cda-samples/BadXHTML.zip'), '--json');
    expect(r.status, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as UnpackJson).documents).toEqual([expect.objectContaining({ path: 'IHE_XDM/SUBSET01/TOC_A.XML', hashMatches: true })]);
  });

  it('exits 1 with HISP_…: reason on stderr, printing nothing, for what is not an XDM zip or is unsafe', () => {
    writeFileSync(join(work, 'slip.zip'), rawZip([{ name: 'IHE_XDM/SUBSET01/METADATA.XML', data: Buffer.from('<r/>') }, { name: '../../tmp/evil', data: Buffer.from('x') }]));
    for (const [file, code] of [
      ['referral.xml', 'HISP_XDM_MALFORMED'],
      ['slip.zip', 'HISP_XDM_UNSAFE'],
      ['missing.zip', 'HISP_IO'],
    ] as const) {
      const r = hisp('unpack', file, '--json', '--out-dir', 'never');
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`${code}: \\S`));
      expect(r.stdout).toBe('');
    }
    expect(existsSync(join(work, 'never'))).toBe(false);
    const missingDoc = hisp('pack', '--out', 'none.zip', 'no-such.xml');
    expect(missingDoc.status).toBe(1);
    expect(missingDoc.stderr).toMatch(/HISP_IO: cannot read no-such\.xml/);
    expect(existsSync(join(work, 'none.zip'))).toBe(false);
  });

  it('refuses a malformed --patient-id or a missing --out as a usage error (exit 2)', () => {
    const badId = hisp('pack', '--out', 'x.zip', '--patient-id', '1234', 'referral.xml');
    expect(badId.status).toBe(2);
    expect(badId.stderr).toMatch(/HISP_USAGE: the patient id must be an HL7 CX/);
    expect(hisp('pack', 'referral.xml').status).toBe(2);
  });

  it('answers --help for both verbs', () => {
    expect(hisp('pack', '--help').stdout).toContain('Usage: hisp xdm pack [options] <doc...>');
    expect(hisp('unpack', '--help').stdout).toContain('Usage: hisp xdm unpack [options] <file>');
  });
});

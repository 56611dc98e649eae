import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import type { Element } from '@xmldom/xmldom';
import { afterAll, describe, expect, it } from 'vitest';
import { hispRejection } from '../../test/helpers/hisp-error.js';
import { missingExecutable, requirePeer } from '../../test/helpers/require-peer.js';
import { vectorGroup } from '../../test/helpers/vectors.js';
import { readXml } from './xml-reader.js';
import { isoName, packXdm, type XdmPackOptions } from './xdm-pack.js';
import { unpackXdm } from './xdm-unpack.js';
import { XDS } from './xds-identifiers.js';

const work = mkdtempSync(join(tmpdir(), 'hisp-xdm-pack-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');
const PATIENT = '1234^^^&2.16.840.1.113883.4.6&ISO';
const CCDA = Buffer.from('<?xml version="1.0"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3"><title>Summary of care</title></ClinicalDocument>\n');
const ccdaFile = join(work, 'CCDA_Ambulatory.xml');
writeFileSync(ccdaFile, CCDA);
const NOTE = Buffer.from('Patient asked for a copy.\n');

/** Packs into memory (a stream as `out`), for tests. */
async function packToBuffer(options: Omit<XdmPackOptions, 'out'>): Promise<{ zip: Buffer; result: Awaited<ReturnType<typeof packXdm>> }> {
  const chunks: Buffer[] = [];
  const out = new PassThrough();
  out.on('data', (c: Buffer) => chunks.push(c));
  const result = await packXdm({ ...options, out });
  return { zip: Buffer.concat(chunks), result };
}

/** Unpacks with every document's bytes kept, by path. */
async function unpackKeeping(zip: Buffer | string) {
  const bytes = new Map<string, Buffer[]>();
  const pkg = await unpackXdm(zip, {
    onDocument: ({ path }) => {
      bytes.set(path, []);
      return new Writable({ write: (c: Buffer, _e, done) => (bytes.get(path)!.push(c), done()) });
    },
  });
  return { pkg, bytes: (path: string) => Buffer.concat(bytes.get(path) ?? []) };
}

/** METADATA.XML and the other files of a package, by name (through hisp's reader, writing them to a folder). */
async function filesOf(zip: Buffer | string, name: string): Promise<string> {
  const dir = join(work, `files-${name}`);
  await unpackXdm(zip, { outDir: dir });
  return dir;
}

describe('packXdm then unpackXdm: the round trip', () => {
  it('gives back every document byte for byte, described by its metadata: hash, size, type, URI, patient, unique ids', async () => {
    const now = new Date('2025-03-04T05:06:07Z');
    const { zip, result } = await packToBuffer({
      documents: [{ path: ccdaFile, title: 'Summary of care', creationTime: new Date('2025-01-02T03:04:05Z') }, { content: NOTE, filename: 'note.txt' }],
      patientId: PATIENT,
      now,
    });
    expect(result.documents.map((d) => [d.path, d.mimeType, d.size, d.sha1])).toEqual([
      ['IHE_XDM/SUBSET01/CCDA_AMB.XML', 'text/xml', CCDA.length, sha1(CCDA)],
      ['IHE_XDM/SUBSET01/NOTE.TXT', 'text/plain', NOTE.length, sha1(NOTE)],
    ]);
    expect(result.size).toBe(zip.length);

    const { pkg, bytes } = await unpackKeeping(zip);
    expect(bytes('IHE_XDM/SUBSET01/CCDA_AMB.XML')).toEqual(CCDA);
    expect(bytes('IHE_XDM/SUBSET01/NOTE.TXT')).toEqual(NOTE);
    expect(pkg.warnings).toEqual([]);
    expect(pkg.documents.map((d) => [d.path, d.hashMatches, d.sizeMatches, d.matchedBy])).toEqual([
      ['IHE_XDM/SUBSET01/CCDA_AMB.XML', true, true, 'hash'],
      ['IHE_XDM/SUBSET01/NOTE.TXT', true, true, 'hash'],
    ]);
    const [ccda, note] = pkg.documents.map((d) => d.entry!);
    expect(ccda).toMatchObject({
      entryUUID: result.documents[0]!.entryUUID,
      uniqueId: result.documents[0]!.uniqueId,
      mimeType: 'text/xml',
      uri: 'CCDA_AMB.XML',
      hash: sha1(CCDA),
      size: CCDA.length,
      creationTime: '20250102030405',
      title: 'Summary of care',
      patientId: PATIENT,
      sourcePatientId: PATIENT,
      limitedMetadata: true,
    });
    expect(note).toMatchObject({ creationTime: '20250304050607', mimeType: 'text/plain', uri: 'NOTE.TXT' });
    expect(pkg.submissionSet).toMatchObject({
      entryUUID: result.submissionSet.entryUUID,
      uniqueId: result.submissionSet.uniqueId,
      sourceId: result.submissionSet.sourceId,
      patientId: PATIENT,
      submissionTime: '20250304050607',
      limitedMetadata: true,
    });
  });

  it('writes the patient’s name, birth date and sex in sourcePatientInfo (ITI TF-3 4.2.3.2.23), HL7 v2 escaped; what is malformed is left out', async () => {
    const { zip } = await packToBuffer({
      documents: [{ content: NOTE, filename: 'note.txt' }],
      patientId: PATIENT,
      patient: { surname: 'O|Brien^Smith', givenName: 'Ada', middleName: 'B&C', dateOfBirth: '1990-02-03', gender: 'F' },
    });
    const { pkg } = await unpackKeeping(zip);
    expect(pkg.documents[0]!.entry!.sourcePatientInfo).toEqual([`PID-3|${PATIENT}`, 'PID-5|O\\F\\Brien\\S\\Smith^Ada^B\\T\\C', 'PID-7|19900203', 'PID-8|F']);
    const { zip: partial } = await packToBuffer({ documents: [{ content: NOTE, filename: 'note.txt' }], patient: { givenName: 'Ada', dateOfBirth: 'early 1990', gender: 'female' } });
    expect((await unpackKeeping(partial)).pkg.documents[0]!.entry!.sourcePatientInfo).toEqual(['PID-5|^Ada']);
    for (const dateOfBirth of ['1970-13-45', '2023-02-29', '2024-0501', '19900203']) {
      const { zip: one } = await packToBuffer({ documents: [{ content: NOTE, filename: 'note.txt' }], patient: { dateOfBirth } });
      expect((await unpackKeeping(one)).pkg.documents[0]!.entry!.sourcePatientInfo, dateOfBirth).toEqual(dateOfBirth === '19900203' ? ['PID-7|19900203'] : []);
    }
  });

  it('writes full metadata, without the limited-metadata marks, when the codes, language and content type are given', async () => {
    const code = (c: string, s: string) => ({ code: c, codingScheme: s, displayName: `${c} name` });
    const { zip } = await packToBuffer({
      documents: [
        {
          content: CCDA,
          filename: 'ccd.xml',
          languageCode: 'en-US',
          codes: {
            classCode: code('34133-9', '2.16.840.1.113883.6.1'),
            typeCode: code('34133-9', '2.16.840.1.113883.6.1'),
            formatCode: code('urn:hl7-org:sdwg:ccda-structuredBody:2.1', '1.3.6.1.4.1.19376.1.2.3'),
            confidentialityCode: code('N', '2.16.840.1.113883.5.25'),
            healthcareFacilityTypeCode: code('OF', '2.16.840.1.113883.5.111'),
            practiceSettingCode: code('408443003', '2.16.840.1.113883.6.96'),
          },
        },
      ],
      contentTypeCode: code('34133-9', '2.16.840.1.113883.6.1'),
      author: { institution: 'Get Well Clinic', telecom: 'provider@direct.example.org' },
      intendedRecipients: ['patient@phr.example.org'],
      title: 'Records for the patient',
    });
    const { pkg } = await unpackKeeping(zip);
    const e = pkg.documents[0]!.entry!;
    expect(e.limitedMetadata).toBe(false);
    expect(e.formatCode).toEqual({ code: 'urn:hl7-org:sdwg:ccda-structuredBody:2.1', codingScheme: '1.3.6.1.4.1.19376.1.2.3', displayName: 'urn:hl7-org:sdwg:ccda-structuredBody:2.1 name' });
    expect(e.confidentialityCodes.map((c) => c.code)).toEqual(['N']);
    expect(e.languageCode).toBe('en-US');
    expect(e.authors).toEqual([{ person: null, institutions: ['Get Well Clinic'], roles: [], specialties: [], telecommunications: ['^^Internet^provider@direct.example.org'] }]);
    expect(pkg.submissionSet).toMatchObject({ limitedMetadata: false, title: 'Records for the patient', intendedRecipients: ['|^^Internet^patient@phr.example.org'], contentTypeCode: { code: '34133-9' } });
  });

  it('writes comments, every confidentiality code given, and a creationTime of the precision known (a day stays a day)', async () => {
    const restricted = [
      { code: 'R', codingScheme: '2.16.840.1.113883.5.25', displayName: 'Restricted' },
      { code: 'HIV', codingScheme: '2.16.840.1.113883.5.4' },
    ];
    const { zip } = await packToBuffer({
      documents: [
        { content: CCDA, filename: 'ccd.xml', title: 'Discharge summary', comments: 'After the knee operation', creationTime: '20240501', codes: { confidentialityCode: restricted } },
        { content: NOTE, filename: 'n.txt', creationTime: new Date('2024-05-01T10:30:00+02:00'), codes: { confidentialityCode: [] } },
      ],
    });
    const [first, second] = (await unpackKeeping(zip)).pkg.documents.map((d) => d.entry!);
    expect(first).toMatchObject({ title: 'Discharge summary', comments: 'After the knee operation', creationTime: '20240501', limitedMetadata: true });
    expect(first!.confidentialityCodes).toEqual([
      { code: 'R', codingScheme: '2.16.840.1.113883.5.25', displayName: 'Restricted' },
      { code: 'HIV', codingScheme: '2.16.840.1.113883.5.4', displayName: 'HIV' },
    ]);
    expect(second).toMatchObject({ comments: null, creationTime: '20240501083000', confidentialityCodes: [] });
  });

  it('mints unique ids under the OID root given, with it as sourceId; without one, 2.25 UUID OIDs (ITU-T X.667)', async () => {
    const root = '2.16.840.1.113883.3.72.5.9';
    const rooted = (await packToBuffer({ documents: [{ content: NOTE, filename: 'a.txt' }, { content: NOTE, filename: 'b.txt' }], oidRoot: root })).result;
    const ids = [rooted.submissionSet.uniqueId, ...rooted.documents.map((d) => d.uniqueId)];
    for (const id of ids) expect(id).toMatch(new RegExp(`^${root.replaceAll('.', '\\.')}\\.\\d+\\.\\d+$`));
    expect(new Set(ids).size).toBe(3);
    expect(rooted.submissionSet.sourceId).toBe(root);

    const free = (await packToBuffer({ documents: [{ content: NOTE, filename: 'a.txt' }] })).result;
    for (const id of [free.submissionSet.uniqueId, free.submissionSet.sourceId, free.documents[0]!.uniqueId]) {
      expect(id).toMatch(/^2\.25\.[1-9]\d*$/);
      expect(BigInt(id.slice(5))).toBeLessThan(2n ** 128n);
      expect(id.length).toBeLessThanOrEqual(64);
    }
    // Two packages never share ids.
    const again = (await packToBuffer({ documents: [{ content: NOTE, filename: 'a.txt' }], oidRoot: root })).result;
    expect(again.submissionSet.uniqueId).not.toBe(rooted.submissionSet.uniqueId);
  });

  it('names document files as ETT samples do: ISO 9660 level 1, upper case, 8 + 3, unique, never METADATA.XML', () => {
    const taken = new Set(['METADATA.XML']);
    expect(['CCDA_Ambulatory.xml', 'ccda ambulatory.XML', 'résumé final.pdf', 'metadata.xml', 'notes', '.hidden', 'a.b.c.json', 'CCDA_Ambulatory.xml'].map((n) => isoName(n, taken))).toEqual([
      'CCDA_AMB.XML',
      'CCDA_AM1.XML',
      'R_SUM__F.PDF',
      'METADAT1.XML',
      'NOTES',
      'HIDDEN',
      'A_B_C.JSO',
      'CCDA_AM2.XML',
    ]);
  });
});

describe('packXdm: the package as other readers see it', () => {
  const unzip = requirePeer(missingExecutable('unzip'));
  it.skipIf(unzip.skip)(unzip.title('is a zip `unzip -t` finds no error in, with the layout of ITI TF-2b 3.32.4.1.2.2'), async () => {
    const file = join(work, 'second-reader.zip');
    await packXdm({ documents: [{ path: ccdaFile }, { content: NOTE, filename: 'note.txt' }], out: file, patientId: PATIENT });
    expect(execFileSync('unzip', ['-t', file]).toString()).toMatch(/No errors detected/);
    const names = execFileSync('unzip', ['-Z1', file]).toString().trim().split('\n');
    expect(names.sort()).toEqual(['IHE_XDM/', 'IHE_XDM/SUBSET01/', 'IHE_XDM/SUBSET01/CCDA_AMB.XML', 'IHE_XDM/SUBSET01/METADATA.XML', 'IHE_XDM/SUBSET01/NOTE.TXT', 'INDEX.HTM', 'README.TXT']);
    expect(execFileSync('unzip', ['-p', file, 'IHE_XDM/SUBSET01/CCDA_AMB.XML'])).toEqual(CCDA);
  });

  it.skipIf(unzip.skip)(unzip.title('has an INDEX.HTM that is XHTML, links every document and runs no script, and a README.TXT that lists them'), async () => {
    const dir = join(work, 'index');
    mkdirSync(dir);
    const file = join(dir, 'p.zip');
    await packXdm({ documents: [{ path: ccdaFile, title: '<script>alert(1)</script>' }, { content: NOTE, filename: 'note.txt' }], out: file, title: 'For <b>you</b>' });
    const names = execFileSync('unzip', ['-Z1', file]).toString().trim().split('\n');
    const index = readXml(execFileSync('unzip', ['-p', file, 'INDEX.HTM']));
    expect(index.documentElement?.namespaceURI).toBe('http://www.w3.org/1999/xhtml');
    expect(index.getElementsByTagName('script').length).toBe(0);
    const hrefs = Array.from({ length: index.getElementsByTagName('a').length }, (_, i) => (index.getElementsByTagName('a').item(i) as Element).getAttribute('href'));
    expect(hrefs).toEqual(['IHE_XDM/SUBSET01/CCDA_AMB.XML', 'IHE_XDM/SUBSET01/NOTE.TXT', 'IHE_XDM/SUBSET01/METADATA.XML', 'README.TXT']);
    for (const h of hrefs) expect(names).toContain(h);
    expect(index.getElementsByTagName('title').item(0)?.textContent).toBe('For <b>you</b>');
    const readme = execFileSync('unzip', ['-p', file, 'README.TXT']).toString();
    expect(readme).toMatch(/CCDA_AMB\.XML\s+- document/);
    expect(readme).toMatch(/METADATA\.XML/);
  });

  const ett = vectorGroup('ett', ['cda-samples/XDM_LIM.ZIP', 'cda-samples/ToC_XDM_Full_Metadata.zip']);
  it.skipIf(!ett.present)(ett.title("writes METADATA.XML with the element structure of ETT's samples"), async () => {
    const samples = readdirSync(ett.path('cda-samples')).filter((f) => /_XDM.*\.zip$|^XDM_.*\.ZIP$|^ToC_.*\.zip$/i.test(f));
    expect(samples.length).toBeGreaterThanOrEqual(8);
    const sets = await Promise.all(samples.map(async (s) => paths(readFileSync(join(await filesOf(ett.path(`cda-samples/${s}`), s), 'IHE_XDM/SUBSET01/METADATA.XML')))));
    const everywhere = [...sets[0]!].filter((p) => sets.every((s) => s.has(p)));
    const anywhere = new Set(sets.flatMap((s) => [...s]));

    // What every ETT sample carries (author, title, patient, type and format codes included, as
    // theirs), ours carries; and ours has nothing ETT's samples lack.
    const codes = { typeCode: { code: '34133-9', codingScheme: 'LOINC' }, formatCode: { code: '2.16.840.1.113883.10.20.1', codingScheme: 'HITSP' } };
    const { zip } = await packToBuffer({ documents: [{ content: CCDA, filename: 'ccd.xml', codes }], patientId: PATIENT, author: { institution: 'Get Well Clinic' }, title: 'Submission Set' });
    const ours = paths(readFileSync(join(await filesOf(zip, 'ours'), 'IHE_XDM/SUBSET01/METADATA.XML')));
    expect(everywhere.filter((p) => !ours.has(p))).toEqual([]);
    expect([...ours].filter((p) => !anywhere.has(p))).toEqual([]);
  });
});

describe('packXdm: refusals', () => {
  it('refuses a malformed patient id, OID root or sourceId, and an empty package (HISP_USAGE)', async () => {
    const doc = [{ content: NOTE, filename: 'n.txt' }];
    const usage = async (o: Partial<XdmPackOptions>, why: RegExp) => {
      const err = await hispRejection(packXdm({ documents: doc, out: new PassThrough(), ...o }));
      expect(err.code).toBe('HISP_USAGE');
      expect(err.message).toMatch(why);
    };
    await usage({ patientId: '1234' }, /CX id\^\^\^&OID&ISO/);
    await usage({ patientId: '12^^^&2.16.840&ISO&x' }, /CX/);
    await usage({ oidRoot: '1.2.abc' }, /OID root must be an OID/);
    await usage({ oidRoot: '3.1' }, /first arc 0, 1 or 2/);
    await usage({ oidRoot: `1.2.${'9'.repeat(40)}` }, /too long/);
    await usage({ sourceId: '01.2' }, /sourceId must be an OID/);
    await usage({ documents: [] }, /at least one document/);
    await usage({ title: 'bell \u0007' }, /character XML cannot carry/);
    await usage({ documents: [{ ...doc[0]!, comments: 'nul \u0000' }] }, /character XML cannot carry/);
    for (const creationTime of ['2024-05-01', '202405011', '']) await usage({ documents: [{ ...doc[0]!, creationTime }] }, /DTM/);
  });

  it('refuses a document it cannot read (HISP_IO), leaving no file behind, half-written or temporary', async () => {
    const dir = join(work, 'unreadable');
    mkdirSync(dir);
    const out = join(dir, 'out.zip');
    for (const path of [join(dir, 'missing.xml'), dir]) {
      const err = await hispRejection(packXdm({ documents: [{ path }], out }));
      expect(err.code).toBe('HISP_IO');
    }
    expect(readdirSync(dir)).toEqual([]);
  });
});

/** Element paths (namespace:localName from the root) of an XML document. */
function paths(xml: Buffer): Set<string> {
  const ns = (el: Element) => (el.namespaceURI === XDS.lcmNamespace ? 'lcm' : el.namespaceURI === XDS.rimNamespace ? 'rim' : String(el.namespaceURI));
  const out = new Set<string>();
  const walk = (el: Element, prefix: string) => {
    const path = `${prefix}/${ns(el)}:${el.localName}`;
    out.add(path);
    for (let n = el.firstChild; n; n = n.nextSibling) if (n.nodeType === 1) walk(n as Element, path);
  };
  walk(readXml(xml).documentElement!, '');
  return out;
}

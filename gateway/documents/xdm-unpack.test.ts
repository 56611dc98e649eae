import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { inflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { HispError } from '../core/errors.js';
import { hispRejection } from '../../test/helpers/hisp-error.js';
import { applyMutation, mutationArbitrary } from '../../test/helpers/mutations.js';
import { rawZip, type RawEntry } from '../../test/helpers/raw-zip.js';
import { unpackXdm, type XdmLimits } from './xdm-unpack.js';

const work = mkdtempSync(join(tmpdir(), 'hisp-xdm-unpack-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');
const CCDA = Buffer.from('<ClinicalDocument xmlns="urn:hl7-org:v3"><title>Summary</title></ClinicalDocument>\n');
const PDF = Buffer.from('%PDF-1.4\n% a small pdf\n');

interface EntrySpec {
  uri?: string;
  hash?: string;
  size?: number;
  mimeType?: string;
  id?: string;
}

/**
 * A METADATA.XML written by hand (not by hisp's writer): one DocumentEntry per spec, only the
 * attributes the spec gives, in the ETT samples' default-namespace style.
 */
function metadata(entries: readonly EntrySpec[], patientId = '1^^^&2.16.840.1.113883.4.6&ISO'): Buffer {
  const slot = (name: string, v: string | number | undefined) => (v === undefined ? '' : `<Slot name="${name}"><ValueList><Value>${v}</Value></ValueList></Slot>`);
  const eos = entries
    .map(
      (e, i) => `<ExtrinsicObject id="${e.id ?? `doc${i}`}" mimeType="${e.mimeType ?? 'text/xml'}" objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1">
        ${slot('hash', e.hash)}${slot('size', e.size)}${slot('URI', e.uri)}
        <ExternalIdentifier id="ei${i}" registryObject="${e.id ?? `doc${i}`}" identificationScheme="urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab" value="2.25.${i + 1}"/>
      </ExtrinsicObject>`,
    )
    .join('\n');
  return Buffer.from(`<SubmitObjectsRequest xmlns="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">
  <RegistryObjectList xmlns="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
    ${eos}
    <RegistryPackage id="SubmissionSet">
      ${slot('submissionTime', '20240101120000')}
      <ExternalIdentifier id="ss1" registryObject="SubmissionSet" identificationScheme="urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8" value="2.25.99"/>
      <ExternalIdentifier id="ss2" registryObject="SubmissionSet" identificationScheme="urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446" value="${patientId.replaceAll('&', '&amp;')}"/>
    </RegistryPackage>
    <Classification id="c1" classifiedObject="SubmissionSet" classificationNode="urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"/>
  </RegistryObjectList>
</SubmitObjectsRequest>`);
}

/** A well-formed package: README, INDEX, a C-CDA and a PDF described by their hashes and URIs. */
function goodPackage(prefix = ''): Buffer {
  return rawZip([
    { name: `${prefix}README.TXT`, data: Buffer.from('readme') },
    { name: `${prefix}INDEX.HTM`, data: Buffer.from('<html><body>index') },
    { name: `${prefix}IHE_XDM/SUBSET01/METADATA.XML`, data: metadata([{ uri: 'DOC1.XML', hash: sha1(CCDA), size: CCDA.length }, { uri: 'DOC2.PDF', hash: sha1(PDF), size: PDF.length, mimeType: 'application/pdf' }]), method: 8 },
    { name: `${prefix}IHE_XDM/SUBSET01/DOC1.XML`, data: CCDA, method: 8 },
    { name: `${prefix}IHE_XDM/SUBSET01/DOC2.PDF`, data: PDF },
  ]);
}

async function refused(source: Buffer | string, code: HispError['code'], why: RegExp, limits: Partial<XdmLimits> = {}): Promise<void> {
  const err = await hispRejection(unpackXdm(source, { limits }));
  expect(err.code).toBe(code);
  expect(err.message).toMatch(why);
}

describe('unpackXdm: the documents and their metadata', () => {
  it('lists each document with its DocumentEntry, matched by SHA-1, and says the hashes and sizes match', async () => {
    const pkg = await unpackXdm(goodPackage());
    expect(pkg.documents.map((d) => [d.path, d.mimeType, d.size, d.sha1, d.hashMatches, d.sizeMatches, d.matchedBy])).toEqual([
      ['IHE_XDM/SUBSET01/DOC1.XML', 'text/xml', CCDA.length, sha1(CCDA), true, true, 'hash'],
      ['IHE_XDM/SUBSET01/DOC2.PDF', 'application/pdf', PDF.length, sha1(PDF), true, true, 'hash'],
    ]);
    expect(pkg.documents[0]!.entry).toMatchObject({ entryUUID: 'doc0', uniqueId: '2.25.1', uri: 'DOC1.XML' });
    expect(pkg.submissionSet).toMatchObject({ entryUUID: 'SubmissionSet', uniqueId: '2.25.99', patientId: '1^^^&2.16.840.1.113883.4.6&ISO', submissionTime: '20240101120000' });
    expect(pkg.subsets).toEqual([expect.objectContaining({ folder: 'IHE_XDM/SUBSET01', missing: [] })]);
    expect(pkg.warnings).toEqual([]);
    // Plain JSON: what the API and `--json` print.
    expect(JSON.parse(JSON.stringify(pkg))).toEqual(pkg);
  });

  it('is tolerant: any letter case, a wrapping folder, a subset not named SUBSET01, junk entries, an INDEX.HTM that is not XHTML', async () => {
    const zip = rawZip([
      { name: 'Export 2024/' },
      { name: 'Export 2024/readme.txt', data: Buffer.from('r') },
      { name: 'Export 2024/INDEX.htm', data: Buffer.from('<html><p>not closed') },
      { name: 'Export 2024/ihe_xdm/LUCY_0/Metadata.xml', data: metadata([{ uri: 'ccd.xml', hash: sha1(CCDA) }]) },
      { name: 'Export 2024/ihe_xdm/LUCY_0/ccd.xml', data: CCDA },
      { name: 'Export 2024/ihe_xdm/LUCY_0/.DS_Store', data: Buffer.from('junk') },
      { name: '__MACOSX/Export 2024/._INDEX.htm', data: Buffer.from('junk') },
      { name: 'Export 2024/Thumbs.db', data: Buffer.from('junk') },
    ]);
    const pkg = await unpackXdm(zip);
    expect(pkg.documents.map((d) => [d.path, d.folder, d.hashMatches])).toEqual([['Export 2024/ihe_xdm/LUCY_0/ccd.xml', 'Export 2024/ihe_xdm/LUCY_0', true]]);
    expect(pkg.warnings).toEqual([]);
  });

  it('takes a package zipped without its IHE_XDM folder: METADATA.XML at the root, README.TXT and INDEX.HTM beside it are not documents', async () => {
    const zip = rawZip([
      { name: 'README.TXT', data: Buffer.from('r') },
      { name: 'INDEX.HTM', data: Buffer.from('i') },
      { name: 'METADATA.XML', data: metadata([{ uri: 'DOC1.XML', hash: sha1(CCDA) }]) },
      { name: 'DOC1.XML', data: CCDA },
    ]);
    const pkg = await unpackXdm(zip);
    expect(pkg.documents.map((d) => [d.path, d.folder, d.matchedBy])).toEqual([['DOC1.XML', '', 'hash']]);
    expect(pkg.warnings).toEqual([]);
  });

  it('falls back to the URI when the metadata gives no hash, and reports a hash that does not match', async () => {
    const zip = rawZip([
      { name: 'IHE_XDM/SUBSET01/METADATA.XML', data: metadata([{ uri: 'DOC1.XML' }, { uri: 'doc2.pdf', hash: '0'.repeat(40), size: 3 }]) },
      { name: 'IHE_XDM/SUBSET01/DOC1.XML', data: CCDA },
      { name: 'IHE_XDM/SUBSET01/DOC2.PDF', data: PDF },
    ]);
    const pkg = await unpackXdm(zip);
    expect(pkg.documents.map((d) => [d.path, d.matchedBy, d.hashMatches, d.sizeMatches])).toEqual([
      ['IHE_XDM/SUBSET01/DOC1.XML', 'uri', false, null],
      ['IHE_XDM/SUBSET01/DOC2.PDF', 'uri', false, false],
    ]);
  });

  it('prefers the hash to the URI: two entries whose URIs were swapped still find their documents', async () => {
    const zip = rawZip([
      { name: 'IHE_XDM/SUBSET01/METADATA.XML', data: metadata([{ uri: 'DOC2.PDF', hash: sha1(CCDA), id: 'ccda' }, { uri: 'DOC1.XML', hash: sha1(PDF), id: 'pdf' }]) },
      { name: 'IHE_XDM/SUBSET01/DOC1.XML', data: CCDA },
      { name: 'IHE_XDM/SUBSET01/DOC2.PDF', data: PDF },
    ]);
    const pkg = await unpackXdm(zip);
    expect(pkg.documents.map((d) => [d.path, d.entry?.entryUUID, d.matchedBy])).toEqual([
      ['IHE_XDM/SUBSET01/DOC1.XML', 'ccda', 'hash'],
      ['IHE_XDM/SUBSET01/DOC2.PDF', 'pdf', 'hash'],
    ]);
  });

  it('reports a DocumentEntry without its document and a document without an entry, and unpacks the rest', async () => {
    const zip = rawZip([
      { name: 'IHE_XDM/SUBSET01/METADATA.XML', data: metadata([{ uri: 'DOC1.XML', hash: sha1(CCDA) }, { uri: 'GONE.XML', hash: 'f'.repeat(40), id: 'gone' }]) },
      { name: 'IHE_XDM/SUBSET01/DOC1.XML', data: CCDA },
      { name: 'IHE_XDM/SUBSET01/EXTRA.TXT', data: Buffer.from('extra') },
    ]);
    const pkg = await unpackXdm(zip);
    expect(pkg.documents.map((d) => [d.path, d.matchedBy, d.mimeType])).toEqual([
      ['IHE_XDM/SUBSET01/DOC1.XML', 'hash', 'text/xml'],
      ['IHE_XDM/SUBSET01/EXTRA.TXT', null, 'text/plain'],
    ]);
    expect(pkg.subsets[0]!.missing.map((e) => e.entryUUID)).toEqual(['gone']);
    expect(pkg.warnings).toEqual([
      'IHE_XDM/SUBSET01/METADATA.XML: DocumentEntry gone (URI GONE.XML) has no document in the package',
      'IHE_XDM/SUBSET01/EXTRA.TXT: no DocumentEntry describes it',
    ]);
  });

  it('reads every subset of a package with two, each document matched within its own', async () => {
    const zip = rawZip([
      { name: 'IHE_XDM/SUBSET01/METADATA.XML', data: metadata([{ uri: 'DOC.XML', hash: sha1(CCDA) }]) },
      { name: 'IHE_XDM/SUBSET01/DOC.XML', data: CCDA },
      { name: 'IHE_XDM/SUBSET02/METADATA.XML', data: metadata([{ uri: 'DOC.XML', hash: sha1(PDF) }], '2^^^&1.2.3&ISO') },
      { name: 'IHE_XDM/SUBSET02/DOC.XML', data: PDF },
    ]);
    const pkg = await unpackXdm(zip);
    expect(pkg.documents.map((d) => [d.folder, d.hashMatches])).toEqual([
      ['IHE_XDM/SUBSET01', true],
      ['IHE_XDM/SUBSET02', true],
    ]);
    expect(pkg.subsets.map((s) => s.submissionSet?.patientId)).toEqual(['1^^^&2.16.840.1.113883.4.6&ISO', '2^^^&1.2.3&ISO']);
    expect(pkg.submissionSet?.patientId).toBe('1^^^&2.16.840.1.113883.4.6&ISO');
  });
});

describe('unpackXdm: where the documents go', () => {
  it('streams each document to the Writable onDocument gives, as it inflates', async () => {
    const got = new Map<string, Buffer[]>();
    const pkg = await unpackXdm(goodPackage(), {
      onDocument: ({ path }) => {
        got.set(path, []);
        return new Writable({ write: (c: Buffer, _e, done) => (got.get(path)!.push(c), done()) });
      },
    });
    expect(pkg.documents).toHaveLength(2);
    expect(Buffer.concat(got.get('IHE_XDM/SUBSET01/DOC1.XML')!)).toEqual(CCDA);
    expect(Buffer.concat(got.get('IHE_XDM/SUBSET01/DOC2.PDF')!)).toEqual(PDF);
  });

  it('writes the documents and METADATA.XML under outDir at their paths, owner-only, and never over a file', async () => {
    const out = join(work, 'out-1');
    const pkg = await unpackXdm(goodPackage(), { outDir: out });
    expect(readFileSync(join(out, 'IHE_XDM/SUBSET01/DOC1.XML'))).toEqual(CCDA);
    expect(pkg.documents[1]!.file).toBe(join(out, 'IHE_XDM/SUBSET01/DOC2.PDF'));
    expect(existsSync(join(out, 'IHE_XDM/SUBSET01/METADATA.XML'))).toBe(true);
    expect(existsSync(join(out, 'INDEX.HTM'))).toBe(false);
    expect(statSync(join(out, 'IHE_XDM/SUBSET01/DOC1.XML')).mode & 0o777).toBe(0o600);
    const again = await hispRejection(unpackXdm(goodPackage(), { outDir: out }));
    expect(again.code).toBe('HISP_IO');
    // The first unpacking's files are still there, untouched.
    expect(readFileSync(join(out, 'IHE_XDM/SUBSET01/DOC1.XML'))).toEqual(CCDA);
  });

  it('refuses to write over a file already in outDir, leaves it as it was, and takes back what it wrote', async () => {
    const out = join(work, 'out-3');
    mkdirSync(join(out, 'IHE_XDM/SUBSET01'), { recursive: true });
    writeFileSync(join(out, 'IHE_XDM/SUBSET01/DOC2.PDF'), 'mine');
    const err = await hispRejection(unpackXdm(goodPackage(), { outDir: out }));
    expect(err.code).toBe('HISP_IO');
    expect(readFileSync(join(out, 'IHE_XDM/SUBSET01/DOC2.PDF'), 'utf8')).toBe('mine');
    expect(readdirSync(join(out, 'IHE_XDM/SUBSET01'))).toEqual(['DOC2.PDF']);
  });

  it('takes back what it wrote to outDir when the package turns out to be refused half-way', async () => {
    const out = join(work, 'out-2');
    const zip = rawZip([
      { name: 'IHE_XDM/SUBSET01/METADATA.XML', data: metadata([{ uri: 'DOC1.XML' }]) },
      { name: 'IHE_XDM/SUBSET01/DOC1.XML', data: CCDA },
      { name: 'IHE_XDM/SUBSET01/BOMB.XML', data: Buffer.alloc(4 * 1024 * 1024), method: 8 },
    ]);
    const err = await hispRejection(unpackXdm(zip, { outDir: out }));
    expect(err.code).toBe('HISP_XDM_TOO_LARGE');
    expect(existsSync(out)).toBe(false);
  });
});

describe('unpackXdm: refusals', () => {
  it('refuses what is not a zip, and a zip without METADATA.XML or with metadata that is not XDM (HISP_XDM_MALFORMED)', async () => {
    await refused(Buffer.from('PK\x03\x04 this is not a zip'), 'HISP_XDM_MALFORMED', /not a zip/);
    await refused(Buffer.alloc(0), 'HISP_XDM_MALFORMED', /not a zip/);
    await refused(rawZip([{ name: 'README.TXT', data: Buffer.from('x') }]), 'HISP_XDM_MALFORMED', /no METADATA\.XML/);
    await refused(rawZip([{ name: 'IHE_XDM/SUBSET01/METADATA.XML', data: Buffer.from('<a><b></a>') }]), 'HISP_XDM_MALFORMED', /METADATA\.XML cannot be read: .*not well-formed/);
    await refused(rawZip([{ name: 'IHE_XDM/SUBSET01/METADATA.XML', data: Buffer.from('<html><body/></html>') }]), 'HISP_XDM_MALFORMED', /no RegistryObjectList/);
    // An external entity in METADATA.XML is never read (readXml refuses any DTD).
    const xxe = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><SubmitObjectsRequest><RegistryObjectList>&x;</RegistryObjectList></SubmitObjectsRequest>';
    await refused(rawZip([{ name: 'IHE_XDM/SUBSET01/METADATA.XML', data: Buffer.from(xxe) }]), 'HISP_XDM_MALFORMED', /document type/);
    await refused(join(work, 'no-such.zip'), 'HISP_IO', /cannot read/);
  });

  it('refuses an entry whose bytes do not match its CRC-32, and one whose header lies about its size', async () => {
    const good = goodPackage();
    await refused(rawZip([{ name: 'IHE_XDM/SUBSET01/METADATA.XML', data: metadata([]) }, { name: 'IHE_XDM/SUBSET01/DOC.XML', data: CCDA, crc: 1234 }]), 'HISP_XDM_MALFORMED', /DOC\.XML is corrupt: its CRC-32/);
    await refused(
      rawZip([{ name: 'IHE_XDM/SUBSET01/METADATA.XML', data: metadata([]) }, { name: 'IHE_XDM/SUBSET01/DOC.XML', data: Buffer.alloc(50_000), method: 8, declaredSize: 100 }]),
      'HISP_XDM_MALFORMED',
      /DOC\.XML cannot be inflated/,
    );
    expect((await unpackXdm(good)).documents).toHaveLength(2);
  });

  it.each([
    ['../evil.xml', /climbs out/],
    ['IHE_XDM/SUBSET01/../../../etc/cron.d/x', /climbs out/],
    ['/etc/passwd', /absolute/],
    ['C:/Windows/win.ini', /drive letter/],
    ['IHE_XDM\\SUBSET01\\DOC.XML', /backslash/],
    ['IHE_XDM/SUBSET01/DOC\u0000.XML', /control character/],
    [`IHE_XDM/${'A'.repeat(300)}.XML`, /longer than a file system takes/],
  ])('refuses the entry name %j (HISP_XDM_UNSAFE)', async (name, why) => {
    await refused(rawZip([...entriesOf(goodPackage()), { name, data: Buffer.from('x') }]), 'HISP_XDM_UNSAFE', why);
  });

  it('refuses a symbolic link, a duplicate name in any letter case, and a file that is also a folder (HISP_XDM_UNSAFE)', async () => {
    const base = entriesOf(goodPackage());
    await refused(rawZip([...base, { name: 'IHE_XDM/SUBSET01/LINK.XML', data: Buffer.from('/etc/passwd'), unixMode: 0o120777 }]), 'HISP_XDM_UNSAFE', /symbolic link/);
    await refused(rawZip([...base, { name: 'IHE_XDM/SUBSET01/DOC1.XML', data: PDF }]), 'HISP_XDM_UNSAFE', /name the same file/);
    await refused(rawZip([...base, { name: 'ihe_xdm/subset01/doc1.xml', data: PDF }]), 'HISP_XDM_UNSAFE', /name the same file/);
    await refused(rawZip([...base, { name: 'IHE_XDM/SUBSET01/DOC1.XML/x', data: PDF }]), 'HISP_XDM_UNSAFE', /which is a file/);
    // A junk entry is checked like any other: a link named .DS_Store is still a link.
    await refused(rawZip([...base, { name: '.DS_Store', data: Buffer.from('/'), unixMode: 0o120777 }]), 'HISP_XDM_UNSAFE', /symbolic link/);
  });

  it('refuses too many entries (HISP_XDM_TOO_LARGE)', async () => {
    const many = Array.from({ length: 12 }, (_, i) => ({ name: `IHE_XDM/SUBSET01/F${i}.TXT`, data: Buffer.from(`${i}`) }));
    await refused(rawZip([...entriesOf(goodPackage()), ...many]), 'HISP_XDM_TOO_LARGE', /17 entries, more than the 10/, { maxEntries: 10 });
  });

  it('refuses a document past the per-entry and the total size caps, counted as it inflates', async () => {
    const big = (n: number) => ({ name: `IHE_XDM/SUBSET01/BIG${n}.TXT`, data: Buffer.from('abcdefghij'.repeat(60_000)), method: 8 as const });
    await refused(rawZip([...entriesOf(goodPackage()), big(1)]), 'HISP_XDM_TOO_LARGE', /BIG1\.TXT inflates to more than 500000 octets/, { maxEntryBytes: 500_000, maxRatio: 10_000 });
    await refused(rawZip([...entriesOf(goodPackage()), big(1), big(2)]), 'HISP_XDM_TOO_LARGE', /the package inflates to more than 1000000 octets \(at IHE_XDM\/SUBSET01\/BIG2\.TXT\)/, { maxTotalBytes: 1_000_000, maxRatio: 10_000, maxOverallRatio: 10_000 });
  });

  it('stops a zip bomb at its compression ratio, having inflated no more than the ratio allows and a chunk', async () => {
    const bomb = rawZip([...entriesOf(goodPackage()), { name: 'IHE_XDM/SUBSET01/BOMB.XML', data: Buffer.alloc(64 * 1024 * 1024), method: 8 }]);
    const compressed = bomb.length - goodPackage().length;
    expect(compressed).toBeLessThan(100_000);
    let delivered = 0;
    const err = await hispRejection(
      unpackXdm(bomb, {
        onDocument: () => new Writable({ write: (c: Buffer, _e, done) => ((delivered += c.length), done()) }),
      }),
    );
    expect(err.code).toBe('HISP_XDM_TOO_LARGE');
    expect(err.message).toMatch(/BOMB\.XML inflates more than 200 times its \d+ compressed octets: a zip bomb/);
    // 64 MiB were promised; what passed is bounded by the ratio: 200 × the compressed octets.
    expect(delivered).toBeLessThanOrEqual(200 * compressed);
  });

  it('stops many small bombs, each under the grace, at the overall ratio of the package', async () => {
    const bombs = Array.from({ length: 40 }, (_, i) => ({ name: `IHE_XDM/SUBSET01/Z${i}.TXT`, data: Buffer.alloc(512 * 1024), method: 8 as const }));
    await refused(rawZip([...entriesOf(goodPackage()), ...bombs]), 'HISP_XDM_TOO_LARGE', /the package inflates more than 200 times its \d+ octets/);
  });

  it('refuses a METADATA.XML larger than its cap before parsing it', async () => {
    const huge = Buffer.concat([metadata([]).subarray(0, 60), Buffer.from(`<!-- ${'x'.repeat(300_000)} -->`)]);
    await refused(rawZip([{ name: 'IHE_XDM/SUBSET01/METADATA.XML', data: huge, method: 8 }]), 'HISP_XDM_TOO_LARGE', /METADATA\.XML is larger than 100000 octets/, { maxMetadataBytes: 100_000 });
  });
});

describe('unpackXdm: hostile bytes (property)', () => {
  const settle = async (input: Buffer) => {
    try {
      return await unpackXdm(input, { limits: { maxTotalBytes: 8 * 1024 * 1024 } });
    } catch (err) {
      if (!(err instanceof HispError) || !['HISP_XDM_MALFORMED', 'HISP_XDM_UNSAFE', 'HISP_XDM_TOO_LARGE'].includes(err.code)) {
        throw new Error(`not a typed XDM refusal: ${String(err)}`, { cause: err });
      }
      return err;
    }
  };

  it('random bytes, and random bytes after a zip signature: a result or a typed XDM error', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), fc.boolean(), async (bytes, signed) => {
        const input = signed ? Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04]), bytes, Buffer.from([0x50, 0x4b, 0x05, 0x06]), Buffer.alloc(18)]) : Buffer.from(bytes);
        await settle(input);
      }),
      { numRuns: 500 },
    );
  });

  it('mutated valid packages (flipped, set, cut, inserted, deleted octets): a result or a typed XDM error, never a hang', async () => {
    const seeds = [goodPackage(), goodPackage('Wrap/')];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...seeds), fc.array(mutationArbitrary([Buffer.from('PK'), Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from('../')]), { minLength: 1, maxLength: 4 }), async (seed, mutations) => {
        const input = mutations.reduce(applyMutation, seed);
        const t0 = performance.now();
        await settle(input);
        expect(performance.now() - t0).toBeLessThan(5000);
      }),
      { numRuns: 600 },
    );
  });
});

/** The entries of a zip made by {@link rawZip}, read back raw, so that a test can add a hostile one. */
function entriesOf(zip: Buffer): RawEntry[] {
  const out: RawEntry[] = [];
  let at = 0;
  while (zip.readUInt32LE(at) === 0x04034b50) {
    const method = zip.readUInt16LE(at + 8) as 0 | 8;
    const stored = zip.readUInt32LE(at + 18);
    const nameLength = zip.readUInt16LE(at + 26);
    const name = zip.subarray(at + 30, at + 30 + nameLength).toString('utf8');
    const body = zip.subarray(at + 30 + nameLength, at + 30 + nameLength + stored);
    out.push({ name, data: method === 8 ? inflateRawSync(body) : Buffer.from(body), method });
    at += 30 + nameLength + stored;
  }
  return out;
}

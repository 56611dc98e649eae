// Conformance of the XDM reader against the packages ETT (the ONC Edge Testing Tool) sends and
// expects receivers to take: every XDM zip of its cda-samples unpacks, each document found by the
// SHA-1 of its DocumentEntry, its size as declared, no entry without its document. BadXHTML.zip, whose
// INDEX.HTM is not XHTML, is accepted (ETT SMTP Test 27, requirements R-XDM-3); the full and limited
// metadata variants are told apart (R-XDM-1).
//
// The vectors are third-party data in ../shared/vectors/ett (see its INDEX.md): skipped, with the
// reason in the title, when absent; with CI=true their absence fails the run.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { unpackXdm } from '../../gateway/documents/xdm-unpack.js';
import { vectorGroup } from '../helpers/vectors.js';

const ett = vectorGroup('ett', ['cda-samples/BadXHTML.zip', 'cda-samples/XDM_FULL.ZIP', 'cda-samples/XDM_LIM.ZIP']);
const samples = ett.present ? readdirSync(ett.path('cda-samples')).filter((f) => /\.zip$/i.test(f)) : [];

describe.skipIf(!ett.present)(ett.title('ETT XDM samples'), () => {
  it('holds the thirteen packages of ETT 2.3.73', () => {
    expect(samples.length).toBe(13);
  });

  it.each(samples)('%s unpacks: every document matched by its SHA-1, sized as declared, none missing', async (name) => {
    const pkg = await unpackXdm(ett.path(`cda-samples/${name}`));
    expect(pkg.documents.length).toBeGreaterThan(0);
    for (const d of pkg.documents) {
      expect(d).toMatchObject({ folder: 'IHE_XDM/SUBSET01', hashMatches: true, sizeMatches: true, matchedBy: 'hash' });
      expect(d.entry?.uri?.toUpperCase()).toBe(d.path.slice('IHE_XDM/SUBSET01/'.length).toUpperCase());
    }
    expect(pkg.subsets.flatMap((s) => s.missing)).toEqual([]);
    expect(pkg.warnings).toEqual([]);
    expect(pkg.submissionSet?.sourceId).toMatch(/^[0-9.]+$/);
  });

  it('tells the full metadata sample from the limited one by its limitedMetadata classification', async () => {
    const full = await unpackXdm(ett.path('cda-samples/XDM_FULL.ZIP'));
    const limited = await unpackXdm(ett.path('cda-samples/XDM_LIM.ZIP'));
    expect(full.documents[0]!.entry?.limitedMetadata).toBe(false);
    expect(limited.documents[0]!.entry?.limitedMetadata).toBe(true);
    expect(limited.documents[0]!.entry?.languageCode).toBeNull();
    expect(full.documents[0]!.entry?.languageCode).toBe('en-us');
  });

  it('reads the patient, the author and the codes ETT puts in its metadata', async () => {
    const pkg = await unpackXdm(ett.path('cda-samples/CCDA_Ambulatory_in_XDM.zip'));
    expect(pkg.submissionSet).toMatchObject({ patientId: '1^^^&2.16.840.1.113883.4.6&ISO', submissionTime: '20110117211159', authors: [{ institutions: ['Lucy Personal Health Record'] }] });
    expect(pkg.documents[0]!.entry).toMatchObject({
      mimeType: 'application/xml',
      typeCode: { code: '34096-8', codingScheme: 'LOINC' },
      formatCode: { code: '2.16.840.1.113883.10.20.1', codingScheme: 'HITSP' },
      sourcePatientInfo: expect.arrayContaining(['PID-5|Jones^Isabella^^^^']) as unknown,
    });
  });
});

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { vectorGroup } from '../../test/helpers/vectors.js';
import { documentTools } from './document-tools.js';

const ett = vectorGroup('ett', ['cda-samples/CCDA_Ambulatory.xml', 'cda-samples/CCDA_Ambulatory_in_XDM.zip']);
const dir = mkdtempSync(join(tmpdir(), 'hisp-doc-tools-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!ett.present)(ett.title('documentTools: what the send service and the API mailboxes use'), () => {
  const tools = documentTools();

  it('renders a C-CDA and summarizes its header; what is no C-CDA has no summary', () => {
    const ccda = ett.read('cda-samples/CCDA_Ambulatory.xml');
    expect(tools.renderCcda(ccda)).toMatch(/^<!DOCTYPE html>/i);
    expect(tools.summarizeCcda(ccda)).toMatchObject({ patient: { name: expect.any(String) as string } });
    expect(tools.summarizeCcda(Buffer.from('<note/>'))).toBeUndefined();
    expect(tools.summarizeCcda(Buffer.from('not xml'))).toBeUndefined();
  });

  it('describes ETT’s XDM sample, and what it packs itself, with matching hashes; a zip that is no XDM is not described', async () => {
    const sample = await tools.describeXdm(ett.read('cda-samples/CCDA_Ambulatory_in_XDM.zip'));
    expect(sample?.documents.length).toBeGreaterThan(0);
    expect(sample?.documents.every((d) => d.hashMatches === true)).toBe(true);
    const file = join(dir, 'x.zip');
    const ccda = ett.read('cda-samples/CCDA_Ambulatory.xml');
    await tools.packXdm([{ filename: 'CCDA_Ambulatory.xml', contentType: 'application/xml', kind: 'ccda', content: ccda }], file);
    const own = await tools.describeXdm(readFileSync(file));
    expect(own?.documents).toEqual([expect.objectContaining({ mimeType: 'text/xml', size: ccda.length, hashMatches: true })]);
    expect(await tools.describeXdm(Buffer.from('PK\u0003\u0004 not a zip', 'latin1'))).toBeUndefined();
  });

  it('packs the SubmissionSet a send describes: the patient (CX), a title, the intended recipients', async () => {
    const file = join(dir, 'described.zip');
    await tools.packXdm([{ filename: 'CCDA_Ambulatory.xml', contentType: 'application/xml', kind: 'ccda', content: ett.read('cda-samples/CCDA_Ambulatory.xml') }], file, {
      patientId: 'MRN-1^^^&2.16.840.1.113883.19.5&ISO',
      title: 'Health information from Example Hospital',
      intendedRecipients: ['patient@phr.example'],
    });
    const described = await tools.describeXdm(readFileSync(file));
    expect(described?.submissionSet).toMatchObject({ patientId: 'MRN-1^^^&2.16.840.1.113883.19.5&ISO', title: 'Health information from Example Hospital', intendedRecipients: ['|^^Internet^patient@phr.example'] });
  });

  it('packs each document’s DocumentEntry as the send describes it: codes, title, comments, creationTime, language; the others derived only', async () => {
    const file = join(dir, 'entries.zip');
    const loinc = (code: string, displayName: string) => ({ code, codingScheme: '2.16.840.1.113883.6.1', displayName });
    const ccda = ett.read('cda-samples/CCDA_Ambulatory.xml');
    await tools.packXdm(
      [
        {
          filename: 'CCDA_Ambulatory.xml',
          contentType: 'application/xml',
          kind: 'ccda',
          content: ccda,
          entry: {
            title: 'Discharge summary',
            comments: 'After the knee operation',
            creationTime: '20240501',
            languageCode: 'en-US',
            codes: {
              typeCode: loinc('18842-5', 'Discharge summary'),
              classCode: loinc('11490-0', 'Physician Discharge summary'),
              formatCode: { code: 'urn:hl7-org:sdwg:ccda-structuredBody:2.1', codingScheme: '1.3.6.1.4.1.19376.1.2.3' },
              confidentialityCode: [{ code: 'N', codingScheme: '2.16.840.1.113883.5.25', displayName: 'normal' }],
              healthcareFacilityTypeCode: { code: 'HOSP', codingScheme: '2.16.840.1.113883.5.111' },
              practiceSettingCode: { code: '394802001', codingScheme: '2.16.840.1.113883.6.96', displayName: 'General medicine' },
            },
          },
        },
        { filename: 'note.txt', contentType: 'text/plain', kind: 'other', content: Buffer.from('A note.\n'), entry: { title: 'A note' } },
      ],
      file,
    );
    const [full, plain] = (await tools.describeXdm(readFileSync(file)))!.documents.map((d) => d.entry as Record<string, unknown>);
    expect(full).toMatchObject({
      title: 'Discharge summary',
      comments: 'After the knee operation',
      creationTime: '20240501',
      languageCode: 'en-US',
      typeCode: { code: '18842-5', codingScheme: '2.16.840.1.113883.6.1', displayName: 'Discharge summary' },
      classCode: { code: '11490-0', codingScheme: '2.16.840.1.113883.6.1', displayName: 'Physician Discharge summary' },
      formatCode: { code: 'urn:hl7-org:sdwg:ccda-structuredBody:2.1', codingScheme: '1.3.6.1.4.1.19376.1.2.3' },
      confidentialityCodes: [{ code: 'N', codingScheme: '2.16.840.1.113883.5.25', displayName: 'normal' }],
      healthcareFacilityTypeCode: { code: 'HOSP', codingScheme: '2.16.840.1.113883.5.111' },
      practiceSettingCode: { code: '394802001', codingScheme: '2.16.840.1.113883.6.96' },
      // All six codes and a language: full metadata (TF-3 4.2.3.2.29).
      limitedMetadata: false,
    });
    expect(plain).toMatchObject({ title: 'A note', typeCode: null, classCode: null, languageCode: null, confidentialityCodes: [], limitedMetadata: true });
    expect(plain!.creationTime).toMatch(/^\d{14}$/);
  });
});

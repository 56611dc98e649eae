// The ITI-65 Bundle reader: what a valid Minimal Metadata Bundle gives (recipients from the
// ihe-intendedRecipient extension, the author, the documents from their Binaries), and each rule
// of ITI TF-2 3.65 / FHIR R4 broken, named with its entry.
import { describe, expect, it } from 'vitest';
import { hispError } from '../../test/helpers/hisp-error.js';
import { CCDA_FORMAT, mhdBundle, type MhdTestDocument, type TestBundle } from '../../test/helpers/mhd-bundles.js';
import { MHD, MHD_LIMITS, readMhdBundle, type MhdIssue } from './mhd-bundle.js';

function issuesOf(body: unknown): MhdIssue[] {
  const err = hispError(() => readMhdBundle(body));
  expect(err.code).toBe('HISP_FHIR_INVALID');
  return err.details?.issues as MhdIssue[];
}

/** The bundle with the resource of entry `i` changed by `edit`. */
function edited(edit: (b: TestBundle) => void, bundle = mhdBundle()): TestBundle {
  const copy = structuredClone(bundle);
  edit(copy);
  return copy;
}
const find = (b: TestBundle, type: string) => b.entry.find((e) => e.resource.resourceType === type)!.resource;

describe('readMhdBundle', () => {
  it('reads a Minimal Metadata Bundle: recipients, author, documents with their octets, patient and entry types', () => {
    const ccda = Buffer.from('<ClinicalDocument xmlns="urn:hl7-org:v3"/>');
    const b = mhdBundle({
      recipients: ['patient@phr.example', 'Nurse@Clinic.Example'],
      recipientResources: [{ resourceType: 'Endpoint', status: 'active', connectionType: { system: MHD.connectionTypes, code: 'direct-project' }, address: 'mailto:records@practice.example', payloadType: [], }],
      documents: [
        { content: ccda, format: CCDA_FORMAT, title: 'summary.xml' },
        { content: Buffer.from('%PDF-1.4'), contentType: 'application/pdf' },
      ],
      patient: 'Patient/123',
    });
    const s = readMhdBundle(b);
    expect(s.recipients).toEqual([
      { address: 'patient@phr.example', resourceType: 'Practitioner' },
      { address: 'Nurse@clinic.example', resourceType: 'Practitioner' },
      { address: 'records@practice.example', resourceType: 'Endpoint' },
    ]);
    expect(s.sender).toBe('doctor@hospital.test');
    expect(s.patient).toEqual({ reference: 'Patient/123' });
    expect(s.title).toBe('Discharge summary');
    expect(s.uniqueId).toBe('urn:uuid:40b3366f-7e4b-4d02-bbac-901aaa8d7183');
    expect(s.documents.map((d) => [d.filename, d.contentType, d.kind])).toEqual([
      ['summary.xml', 'application/xml', 'ccda'],
      [expect.stringMatching(/^document-\d+\.pdf$/), 'application/pdf', 'pdf'],
    ]);
    expect(s.documents[0]!.content.equals(ccda)).toBe(true);
    expect(s.entryTypes[s.submissionSetEntry]).toBe('List');
    expect(s.entryTypes).toHaveLength(b.entry.length);
  });

  it('XML without a C-CDA format code goes as it is (kind other); a title with folders is made a plain name', () => {
    const s = readMhdBundle(mhdBundle({ documents: [{ content: Buffer.from('<a/>'), title: '../../etc/passwd' }] }));
    expect(s.documents[0]).toMatchObject({ kind: 'other', filename: '.._.._etc_passwd' });
  });

  it('the same recipient twice is one recipient; a contained recipient (#id) is read', () => {
    const b = edited((x) => {
      const list = find(x, 'List');
      list.contained = [{ resourceType: 'Patient', id: 'p', telecom: [{ system: 'email', value: 'jane@phr.example' }] }];
      (list.extension as unknown[]).push({ url: MHD.intendedRecipient, valueReference: { reference: '#p' } }, { url: MHD.intendedRecipient, valueReference: { reference: '#p' } });
    });
    expect(readMhdBundle(b).recipients.map((r) => r.address)).toEqual(['patient@phr.example', 'jane@phr.example']);
  });

  it('a Patient subject of the Bundle gives the Direct Context: OID identifiers, official name, birth date, gender; the rest is left out', () => {
    const s = readMhdBundle(
      mhdBundle({
        patientResource: {
          identifier: [{ system: 'urn:oid:2.16.840.1.113883.19.5', value: 'MRN-42' }, { system: 'http://example.org/mrn', value: 'x' }, { system: 'urn:oid:1.2.3', value: 'semi;colon' }],
          name: [{ use: 'nickname', given: ['Izzy'] }, { use: 'official', family: 'Jones', given: ['Isabella', 'Anne'] }],
          birthDate: '1970-01-31',
          gender: 'female',
        },
      }),
    );
    // The Bundle's urn:uuid means nothing later: the Patient is named by its OID identifier and name.
    expect(s.patient).toEqual({ identifier: { system: 'urn:oid:2.16.840.1.113883.19.5', value: 'MRN-42' }, display: 'Isabella Jones' });
    expect(s.context).toEqual({
      patientId: [{ authority: '2.16.840.1.113883.19.5', id: 'MRN-42' }],
      patient: { givenName: 'Isabella', middleName: 'Anne', surname: 'Jones', dateOfBirth: '1970-01-31', gender: 'F' },
    });
    expect(readMhdBundle(mhdBundle({ patientResource: { name: [{ family: 'Ünïcode' }], gender: 'other' } })).context).toBeUndefined();
    expect(readMhdBundle(mhdBundle({ patient: 'Patient/elsewhere' })).context).toBeUndefined();
  });

  it('reads each DocumentReference’s DocumentEntry: codes (systems as XDS OIDs), title, comments, creationTime, language', () => {
    const s = readMhdBundle(
      mhdBundle({
        documents: [
          {
            content: Buffer.from('<ClinicalDocument xmlns="urn:hl7-org:v3"/>'),
            format: CCDA_FORMAT,
            title: 'Discharge summary',
            attachment: { language: 'en-US', creation: '2024-05-01T10:30:00.250+02:00' },
            reference: {
              type: { coding: [{ system: 'http://loinc.org', code: '18842-5', display: 'Discharge summary' }], text: 'Discharge summary' },
              category: [{ coding: [{ system: 'http://loinc.org', code: '11490-0' }] }],
              securityLabel: [
                { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R', display: 'restricted' }] },
                { coding: [{ system: 'urn:oid:2.16.840.1.113883.5.4', code: 'HIV' }] },
              ],
              context: {
                // A coding without a system is passed over for the next one, a translation of the same concept.
                facilityType: { coding: [{ code: 'local-hosp' }, { system: 'http://terminology.hl7.org/CodeSystem/v3-RoleCode', code: 'HOSP' }] },
                practiceSetting: { coding: [{ system: 'http://snomed.info/sct', code: '394802001', display: 'General medicine' }] },
              },
              date: '2024-05-02T08:00:00Z',
              description: '  After the knee operation  ',
            },
          },
        ],
      }),
    );
    expect(s.documents[0]!.documentEntry).toEqual({
      title: 'Discharge summary',
      comments: 'After the knee operation',
      // attachment.creation, in UTC, to the second; DocumentReference.date is only its stand-in.
      creationTime: '20240501083000',
      languageCode: 'en-US',
      codes: {
        typeCode: { code: '18842-5', codingScheme: '2.16.840.1.113883.6.1', displayName: 'Discharge summary' },
        classCode: { code: '11490-0', codingScheme: '2.16.840.1.113883.6.1' },
        confidentialityCode: [
          { code: 'R', codingScheme: '2.16.840.1.113883.5.25', displayName: 'restricted' },
          { code: 'HIV', codingScheme: '2.16.840.1.113883.5.4' },
        ],
        healthcareFacilityTypeCode: { code: 'HOSP', codingScheme: '2.16.840.1.113883.5.111' },
        practiceSettingCode: { code: '394802001', codingScheme: '2.16.840.1.113883.6.96', displayName: 'General medicine' },
        formatCode: { code: CCDA_FORMAT, codingScheme: '1.3.6.1.4.1.19376.1.2.3' },
      },
    });
  });

  it('leaves out what the DocumentReference does not say; a date keeps its precision; date stands in for a missing creation', () => {
    const entryOf = (d: Partial<MhdTestDocument>) => readMhdBundle(mhdBundle({ documents: [{ content: Buffer.from('x'), contentType: 'text/plain', ...d }] })).documents[0]!.documentEntry;
    expect(entryOf({})).toEqual({});
    expect(entryOf({ title: 'note.txt' })).toEqual({ title: 'note.txt' });
    expect(entryOf({ attachment: { creation: '2024' } })).toEqual({ creationTime: '2024' });
    expect(entryOf({ attachment: { creation: '2024-05' } })).toEqual({ creationTime: '202405' });
    expect(entryOf({ attachment: { creation: '2024-05-01' } })).toEqual({ creationTime: '20240501' });
    expect(entryOf({ reference: { date: '2024-05-01T23:30:00-01:00' } })).toEqual({ creationTime: '20240502003000' });
    // A code system of its own goes as it is (codingScheme is free text in XDS).
    expect(entryOf({ reference: { type: { coding: [{ system: 'https://codes.example/doc-types', code: 'note' }] } } })).toEqual({ codes: { typeCode: { code: 'note', codingScheme: 'https://codes.example/doc-types' } } });
  });

  it('cuts long titles at a whole character: never half a surrogate pair, which XML could not carry', () => {
    const long = `${'a'.repeat(MHD_LIMITS.titleChars - 1)}😀 and more`;
    const s = readMhdBundle(edited((b) => (find(b, 'List').title = long), mhdBundle({ documents: [{ content: Buffer.from('x'), contentType: 'text/plain', title: long }] })));
    expect(s.title).toBe('a'.repeat(MHD_LIMITS.titleChars - 1));
    expect(s.documents[0]!.documentEntry.title).toBe('a'.repeat(MHD_LIMITS.titleChars - 1));
  });

  it('no author with a Direct address: sender undefined (the route decides)', () => {
    expect(readMhdBundle(mhdBundle({ author: null })).sender).toBeUndefined();
  });

  const cases: [string, (b: TestBundle) => void, string, RegExp][] = [
    ['not a transaction', (b) => (b.type = 'collection'), 'Bundle.type', /transaction/],
    ['no SubmissionSet', (b) => (find(b, 'List').code = { coding: [{ system: MHD.listTypes, code: 'folder' }] }), 'Bundle.entry', /0 SubmissionSets/],
    ['two SubmissionSets', (b) => b.entry.push({ ...structuredClone(b.entry[0]!), fullUrl: 'urn:uuid:other' }), 'Bundle.entry', /2 SubmissionSets/],
    ['the List without the MHD profile', (b) => (find(b, 'List').meta = {}), 'Bundle.entry[0].resource.meta.profile', /MHD SubmissionSet profile/],
    ['an entry without fullUrl', (b) => (b.entry[1]!.fullUrl = undefined as unknown as string), 'Bundle.entry[1].fullUrl', /required/],
    ['two entries with one fullUrl', (b) => (b.entry[2]!.fullUrl = b.entry[1]!.fullUrl), 'Bundle.entry[2].fullUrl', /another entry/],
    ['a PUT', (b) => (b.entry[1]!.request.method = 'PUT'), 'Bundle.entry[1].request.method', /POST/],
    ['request.url of another type', (b) => (b.entry[1]!.request.url = 'Patient'), 'Bundle.entry[1].request.url', /Practitioner/],
    ['no recipient', (b) => (find(b, 'List').extension = []), 'Bundle.entry[0].resource.extension', /no recipient/],
    ['a recipient not in the Bundle', (b) => ((find(b, 'List').extension as { valueReference: unknown }[])[0]!.valueReference = { reference: 'Practitioner/elsewhere' }), 'Bundle.entry[0].resource.extension[0].valueReference', /this Bundle/],
    ['a recipient without email', (b) => (b.entry[1]!.resource.telecom = [{ system: 'phone', value: '555' }]), 'Bundle.entry[0].resource.extension[0].valueReference', /no email telecom/],
    ['a recipient address that is not one', (b) => (b.entry[1]!.resource.telecom = [{ system: 'email', value: 'mailto:no at sign' }]), 'Bundle.entry[0].resource.extension[0].valueReference', /not a Direct address/],
    ['an Endpoint that is not direct-project', (b) => {
        b.entry[1]!.resource = { resourceType: 'Endpoint', connectionType: { system: MHD.connectionTypes, code: 'hl7-fhir-rest' }, address: 'mailto:a@b.example' };
        b.entry[1]!.request.url = 'Endpoint';
      },
      'Bundle.entry[0].resource.extension[0].valueReference',
      /direct-project/,
    ],
    ['a DocumentReference not listed', (b) => (find(b, 'List').entry = []), 'Bundle.entry[0].resource.entry', /must list/],
    ['a List item that is not a DocumentReference', (b) => ((find(b, 'List').entry as { item: { reference: string } }[])[0]!.item.reference = b.entry[1]!.fullUrl), 'Bundle.entry[0].resource.entry[0].item', /DocumentReference/],
    ['a DocumentReference not current', (b) => (find(b, 'DocumentReference').status = 'superseded'), 'Bundle.entry[3].resource.status', /current/],
    ['an attachment url that is no Binary', (b) => ((find(b, 'DocumentReference').content as { attachment: { url: string } }[])[0]!.attachment.url = 'urn:uuid:nowhere'), 'Bundle.entry[3].resource.content[0].attachment.url', /Binary/],
    ['inline data', (b) => ((find(b, 'DocumentReference').content as { attachment: Record<string, unknown> }[])[0]!.attachment.data = 'AAAA'), 'Bundle.entry[3].resource.content[0].attachment.data', /Binary/],
    ['Binary data not base64', (b) => (find(b, 'Binary').data = 'not base64!'), 'Bundle.entry[4].resource.data', /base64/],
    ['a size that does not match', (b) => ((find(b, 'DocumentReference').content as { attachment: Record<string, unknown> }[])[0]!.attachment.size = 3), 'Bundle.entry[3].resource.content[0].attachment.size', /octets/],
    ['a hash that does not match', (b) => ((find(b, 'DocumentReference').content as { attachment: Record<string, unknown> }[])[0]!.attachment.hash = 'AAAAAAAAAAAAAAAAAAAAAAAAAAA='), 'Bundle.entry[3].resource.content[0].attachment.hash', /SHA-1/],
    ['a Binary of another media type', (b) => (find(b, 'Binary').contentType = 'application/pdf'), 'Bundle.entry[4].resource.contentType', /attachment says/],
    ['a SubmissionSet title XML cannot carry', (b) => (find(b, 'List').title = 'bell \u0007'), 'Bundle.entry[0].resource.title', /XML can carry/],
    ['a type that is no CodeableConcept', (b) => (find(b, 'DocumentReference').type = 'note'), 'Bundle.entry[3].resource.type', /CodeableConcept/],
    ['a type of text only', (b) => (find(b, 'DocumentReference').type = { text: 'Discharge summary' }), 'Bundle.entry[3].resource.type.coding', /system and a code/],
    ['a type coding list that is no list', (b) => (find(b, 'DocumentReference').type = { coding: { system: 'http://loinc.org', code: '1-8' } }), 'Bundle.entry[3].resource.type.coding', /list of Codings/],
    ['a code with a control character', (b) => (find(b, 'DocumentReference').type = { coding: [{ system: 'http://loinc.org', code: '18842-5\u0000' }] }), 'Bundle.entry[3].resource.type.coding[0].code', /code of at most/],
    ['a system too long', (b) => (find(b, 'DocumentReference').type = { coding: [{ system: `http://${'x'.repeat(300)}`, code: 'a' }] }), 'Bundle.entry[3].resource.type.coding[0].system', /URI of at most 256/],
    ['a display with a lone surrogate', (b) => (find(b, 'DocumentReference').context = { practiceSetting: { coding: [{ system: 'http://snomed.info/sct', code: '1', display: 'x\ud800' }] } }), 'Bundle.entry[3].resource.context.practiceSetting.coding[0].display', /XML can carry/],
    ['too many codings', (b) => (find(b, 'DocumentReference').type = { coding: Array.from({ length: 21 }, () => ({ system: 'http://loinc.org', code: '1' })) }), 'Bundle.entry[3].resource.type.coding', /at most 20/],
    ['a category that is no list', (b) => (find(b, 'DocumentReference').category = { coding: [{ system: 'http://loinc.org', code: '1' }] }), 'Bundle.entry[3].resource.category', /list/],
    ['two categories', (b) => (find(b, 'DocumentReference').category = [{ coding: [{ system: 's', code: '1' }] }, { coding: [{ system: 's', code: '2' }] }]), 'Bundle.entry[3].resource.category', /one CodeableConcept at most/],
    ['a securityLabel that is no list', (b) => (find(b, 'DocumentReference').securityLabel = { coding: [] }), 'Bundle.entry[3].resource.securityLabel', /list/],
    ['too many securityLabels', (b) => (find(b, 'DocumentReference').securityLabel = Array.from({ length: 11 }, () => ({ coding: [{ system: 's', code: 'N' }] }))), 'Bundle.entry[3].resource.securityLabel', /at most 10/],
    ['a securityLabel not coded', (b) => (find(b, 'DocumentReference').securityLabel = [{ coding: [{ system: 's', code: 'N' }] }, {}]), 'Bundle.entry[3].resource.securityLabel[1].coding', /system and a code/],
    ['a context that is no object', (b) => (find(b, 'DocumentReference').context = []), 'Bundle.entry[3].resource.context', /object/],
    ['a facilityType coding that is no object', (b) => (find(b, 'DocumentReference').context = { facilityType: { coding: [7] } }), 'Bundle.entry[3].resource.context.facilityType.coding[0]', /Coding/],
    ['a format without a system', (b) => ((find(b, 'DocumentReference').content as Record<string, unknown>[])[0]!.format = { code: CCDA_FORMAT }), 'Bundle.entry[3].resource.content[0].format', /system and a code/],
    ['a language that is no tag', (b) => ((find(b, 'DocumentReference').content as { attachment: Record<string, unknown> }[])[0]!.attachment.language = 'en_US'), 'Bundle.entry[3].resource.content[0].attachment.language', /BCP 47/],
    ['a creation on 30 February', (b) => ((find(b, 'DocumentReference').content as { attachment: Record<string, unknown> }[])[0]!.attachment.creation = '2024-02-30'), 'Bundle.entry[3].resource.content[0].attachment.creation', /dateTime/],
    ['a creation time without a zone', (b) => ((find(b, 'DocumentReference').content as { attachment: Record<string, unknown> }[])[0]!.attachment.creation = '2024-05-01T10:30:00'), 'Bundle.entry[3].resource.content[0].attachment.creation', /dateTime/],
    ['a date without a time (an instant)', (b) => (find(b, 'DocumentReference').date = '2024-05-01'), 'Bundle.entry[3].resource.date', /instant/],
    ['an attachment title XML cannot carry', (b) => ((find(b, 'DocumentReference').content as { attachment: Record<string, unknown> }[])[0]!.attachment.title = 'a\u0001b'), 'Bundle.entry[3].resource.content[0].attachment.title', /XML can carry/],
    ['a description that is no text', (b) => (find(b, 'DocumentReference').description = 42), 'Bundle.entry[3].resource.description', /text/],
  ];
  for (const [name, edit, expression, message] of cases) {
    it(`refuses ${name}, naming ${expression}`, () => {
      const issues = issuesOf(edited(edit));
      expect(issues.some((i) => i.expression === expression && message.test(i.message)), JSON.stringify(issues)).toBe(true);
    });
  }

  it('refuses what is not a Bundle at all, and bounds entries, recipients and documents', () => {
    for (const body of [null, 42, 'x', [], { resourceType: 'Patient' }, { resourceType: 'Bundle', type: 'transaction' }, { resourceType: 'Bundle', type: 'transaction', entry: [1, null] }]) issuesOf(body);
    expect(issuesOf(edited((b) => (b.entry = Array.from({ length: MHD_LIMITS.entries + 1 }, () => b.entry[1]!))))[0]!.message).toMatch(/at most/);
    const many = mhdBundle({ recipients: Array.from({ length: MHD_LIMITS.recipients + 1 }, (_, i) => `p${i}@phr.example`) });
    expect(issuesOf(many)[0]!.message).toMatch(/at most \d+ (entries|intended recipients)/);
    const docs = mhdBundle({ documents: Array.from({ length: MHD_LIMITS.documents + 1 }, (_, i) => ({ content: Buffer.from(`d${i}`), contentType: 'text/plain' })) });
    expect(issuesOf(docs)[0]!.message).toMatch(/at most \d+ documents/);
  });

  it('names at most 20 issues', () => {
    const b = mhdBundle({ documents: Array.from({ length: 15 }, (_, i) => ({ content: Buffer.from(`d${i}`), contentType: 'text/plain' })) });
    for (const e of b.entry) if (e.resource.resourceType === 'Binary') e.resource.data = '!';
    for (const e of b.entry) if (e.resource.resourceType === 'DocumentReference') e.resource.status = 'x';
    expect(issuesOf(b)).toHaveLength(20);
  });
});

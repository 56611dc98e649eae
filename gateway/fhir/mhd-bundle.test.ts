// The ITI-65 Bundle reader: what a valid Minimal Metadata Bundle gives (recipients from the
// ihe-intendedRecipient extension, the author, the documents from their Binaries), and each rule
// of ITI TF-2 3.65 / FHIR R4 broken, named with its entry.
import { describe, expect, it } from 'vitest';
import { hispError } from '../../test/helpers/hisp-error.js';
import { CCDA_FORMAT, mhdBundle, type TestBundle } from '../../test/helpers/mhd-bundles.js';
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

// Hostile Bundles for the ITI-65 reader: any JSON value, valid Bundles with one or more values
// anywhere replaced by anything (or removed), and the DocumentEntry metadata (codes, dates, language,
// titles) made of hostile text. The reader answers a submission or HISP_FHIR_INVALID naming at least
// one issue, never another error; what it accepts is still bounded, and its DocumentEntries can be
// written as METADATA.XML (a send it accepted is never refused later for its metadata).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isHispError } from '../core/errors.js';
import { writeXdmMetadata } from '../documents/xdm-metadata-writer.js';
import { CCDA_FORMAT, mhdBundle } from '../../test/helpers/mhd-bundles.js';
import { MHD_LIMITS, readMhdBundle } from './mhd-bundle.js';

/** Every path (keys and indexes) of a JSON value. */
function paths(value: unknown, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(value)) value.forEach((v, i) => paths(v, [...at, i], out));
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) paths(v, [...at, k], out);
  return out;
}

function setAt(root: unknown, path: (string | number)[], value: unknown, remove: boolean): unknown {
  if (path.length === 0) return value;
  let node = root as Record<string | number, unknown>;
  for (const p of path.slice(0, -1)) node = node[p] as Record<string | number, unknown>;
  const last = path.at(-1)!;
  if (remove) delete node[last];
  else node[last] = value;
  return root;
}

function expectReadOrRefused(body: unknown): void {
  try {
    const s = readMhdBundle(body);
    expect(s.recipients.length).toBeGreaterThan(0);
    expect(s.recipients.length).toBeLessThanOrEqual(MHD_LIMITS.recipients);
    expect(s.documents.length).toBeLessThanOrEqual(MHD_LIMITS.documents);
    const entries = s.documents.map((d, i) => ({ ...d.documentEntry, entryUUID: `urn:uuid:${i}`, uniqueId: `1.2.${i}`, mimeType: d.contentType, sha1: '0', size: 1, uri: `D${i}.XML`, creationTime: d.documentEntry.creationTime ?? new Date(0) }));
    writeXdmMetadata({ entryUUID: 'urn:uuid:s', uniqueId: '1.2', sourceId: '1.2', submissionTime: new Date(0), ...(s.title !== undefined ? { title: s.title } : {}) }, entries);
  } catch (err) {
    if (!isHispError(err)) throw err;
    expect(err.code).toBe('HISP_FHIR_INVALID');
    expect((err.details?.issues as unknown[]).length).toBeGreaterThan(0);
  }
}

const concept = (system: string, code: string, display?: string) => ({ coding: [{ system, code, ...(display ? { display } : {}) }] });
const base = mhdBundle({
  recipients: ['patient@phr.example', 'nurse@clinic.example'],
  documents: [
    {
      content: Buffer.from('<ClinicalDocument xmlns="urn:hl7-org:v3"/>'),
      format: CCDA_FORMAT,
      title: 'ccda.xml',
      attachment: { language: 'en-US', creation: '2024-05-01T10:30:00+02:00' },
      reference: {
        type: concept('http://loinc.org', '18842-5', 'Discharge summary'),
        category: [concept('http://loinc.org', '11490-0')],
        securityLabel: [concept('http://terminology.hl7.org/CodeSystem/v3-Confidentiality', 'N')],
        context: { facilityType: concept('urn:oid:2.16.840.1.113883.5.111', 'HOSP'), practiceSetting: concept('http://snomed.info/sct', '394802001') },
        date: '2024-05-02T08:00:00Z',
        description: 'After the operation',
      },
    },
    { content: Buffer.from('plain'), contentType: 'text/plain' },
  ],
  patientResource: { identifier: [{ system: 'urn:oid:1.2.3', value: 'MRN-1' }], name: [{ use: 'official', family: 'Jones', given: ['Ada', 'B'] }], birthDate: '1970-01-31', gender: 'female' },
});
const basePaths = paths(base);

/** Text that breaks what XDS can carry: controls, lone surrogates, U+FFFF, date-ish and over-long strings. */
const hostileText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('\u0000', '\u0007', '\ud800', '\udc00', '\uffff', 'a', '1', '0', ' ', '-', ':', 'T', 'Z', '+', '.', '_'), maxLength: 40 }),
  fc.string({ minLength: 250, maxLength: 1100 }),
);
const hostileCoding = fc.oneof(fc.record({ system: hostileText, code: hostileText, display: hostileText }, { requiredKeys: [] }), fc.anything({ maxDepth: 2 }));
const hostileConcept = fc.oneof(fc.record({ coding: fc.oneof(fc.array(hostileCoding, { maxLength: 22 }), hostileCoding), text: hostileText }, { requiredKeys: [] }), hostileText, fc.anything({ maxDepth: 2 }));
/** Where the DocumentEntry metadata is, and what goes there. */
const DOCUMENT_REFERENCE = base.entry.findIndex((e) => e.resource.resourceType === 'DocumentReference');
const metadataEdits: [(string | number)[], fc.Arbitrary<unknown>][] = [
  [['type'], hostileConcept],
  [['category'], fc.oneof(fc.array(hostileConcept, { maxLength: 3 }), hostileConcept)],
  [['securityLabel'], fc.oneof(fc.array(hostileConcept, { maxLength: 12 }), hostileConcept)],
  [['context'], fc.oneof(fc.record({ facilityType: hostileConcept, practiceSetting: hostileConcept }, { requiredKeys: [] }), hostileText)],
  [['date'], hostileText],
  [['description'], hostileText],
  [['content', 0, 'format'], hostileCoding],
  [['content', 0, 'attachment', 'language'], hostileText],
  [['content', 0, 'attachment', 'creation'], hostileText],
  [['content', 0, 'attachment', 'title'], hostileText],
];

describe('readMhdBundle with hostile input', () => {
  it('hostile DocumentEntry metadata (codes, dates, language, titles): a submission whose entries can be written, or HISP_FHIR_INVALID', () => {
    const edit = fc.oneof(...metadataEdits.map(([path, value]) => fc.record({ path: fc.constant(path), value })));
    const listTitle = fc.option(hostileText, { nil: undefined });
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), listTitle, (edits, title) => {
        const body = structuredClone(base);
        for (const e of edits) setAt(body, ['entry', DOCUMENT_REFERENCE, 'resource', ...e.path], e.value, false);
        if (title !== undefined) body.entry[0]!.resource.title = title;
        expectReadOrRefused(body);
      }),
      { numRuns: 600 },
    );
  });


  it('any JSON value: a submission or HISP_FHIR_INVALID', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => expectReadOrRefused(v)), { numRuns: 300 });
  });

  it('a valid Bundle with values replaced by anything, or removed: a submission or HISP_FHIR_INVALID', () => {
    const edit = fc.record({ at: fc.nat(basePaths.length - 1), value: fc.anything({ maxDepth: 3 }), remove: fc.boolean() });
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), (edits) => {
        let body: unknown = structuredClone(base);
        for (const e of edits) {
          const path = basePaths[e.at]!;
          try {
            body = setAt(body, path, e.value, e.remove);
          } catch {
            // The path is gone after an earlier edit: that edit stands alone.
          }
        }
        expectReadOrRefused(body);
      }),
      { numRuns: 600 },
    );
  });
});

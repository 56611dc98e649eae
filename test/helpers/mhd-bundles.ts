// IHE MHD ITI-65 Provide Document Bundles for tests (gateway/fhir/): a valid Minimal Metadata
// Bundle by default (SubmissionSet List, a DocumentReference and its Binary per document, the
// recipients and the author as entries), built from options, for tests to break one rule at a time.
import { createHash } from 'node:crypto';
import { MHD } from '../../gateway/fhir/mhd-bundle.js';

export interface MhdTestDocument {
  content: Buffer;
  contentType?: string;
  /** An IHE format code (urn:hl7-org:sdwg:ccda-structuredBody:2.1 makes it a C-CDA). */
  format?: string;
  title?: string;
  /** More elements of the DocumentReference (type, category, securityLabel, context, date, description). */
  reference?: Record<string, unknown>;
  /** More elements of its attachment (language, creation). */
  attachment?: Record<string, unknown>;
}

export interface MhdTestOptions {
  documents?: MhdTestDocument[];
  /** Direct addresses of intended recipients (each a Practitioner entry with an email telecom). */
  recipients?: string[];
  /** Recipient resources as they are (an Endpoint, a Patient…), besides `recipients`. */
  recipientResources?: Record<string, unknown>[];
  /** The author's Direct address (a Practitioner entry referenced by List.source); null: none. */
  author?: string | null;
  patient?: string;
  /** A Patient entry List.subject references (instead of `patient`). */
  patientResource?: Record<string, unknown>;
}

export const CCDA_FORMAT = 'urn:hl7-org:sdwg:ccda-structuredBody:2.1';

export type TestBundle = { resourceType: 'Bundle'; type: string; entry: { fullUrl: string; resource: Record<string, unknown>; request: { method: string; url: string } }[] } & Record<string, unknown>;

const entry = (fullUrl: string, resource: Record<string, unknown>) => ({ fullUrl, resource, request: { method: 'POST', url: String(resource.resourceType) } });

export function mhdBundle(options: MhdTestOptions = {}): TestBundle {
  const documents = options.documents ?? [{ content: Buffer.from('Hello, this is a note.\r\n'), contentType: 'text/plain', title: 'note.txt' }];
  const recipients = options.recipients ?? ['patient@phr.example'];
  const entries: TestBundle['entry'] = [];
  const extension: Record<string, unknown>[] = [];
  recipients.forEach((address, i) => {
    const url = `urn:uuid:00000000-0000-4000-8000-1000000000${String(i).padStart(2, '0')}`;
    entries.push(entry(url, { resourceType: 'Practitioner', telecom: [{ system: 'email', value: `mailto:${address}` }] }));
    extension.push({ url: MHD.intendedRecipient, valueReference: { reference: url } });
  });
  (options.recipientResources ?? []).forEach((resource, i) => {
    const url = `urn:uuid:00000000-0000-4000-8000-2000000000${String(i).padStart(2, '0')}`;
    entries.push(entry(url, resource));
    extension.push({ url: MHD.intendedRecipient, valueReference: { reference: url } });
  });
  const author = options.author === undefined ? 'doctor@hospital.test' : options.author;
  let source: Record<string, unknown> | undefined;
  if (author !== null) {
    const url = 'urn:uuid:00000000-0000-4000-8000-300000000000';
    entries.push(entry(url, { resourceType: 'Practitioner', telecom: [{ system: 'email', value: author }] }));
    source = { reference: url };
  }
  let subject = options.patient;
  if (options.patientResource) {
    subject = 'urn:uuid:00000000-0000-4000-8000-600000000000';
    entries.push(entry(subject, { resourceType: 'Patient', ...options.patientResource }));
  }
  const items: Record<string, unknown>[] = [];
  documents.forEach((d, i) => {
    const docUrl = `urn:uuid:00000000-0000-4000-8000-4000000000${String(i).padStart(2, '0')}`;
    const binUrl = `urn:uuid:00000000-0000-4000-8000-5000000000${String(i).padStart(2, '0')}`;
    const contentType = d.contentType ?? 'application/xml';
    entries.push(
      entry(docUrl, {
        resourceType: 'DocumentReference',
        status: 'current',
        masterIdentifier: { system: 'urn:ietf:rfc:3986', value: `urn:oid:1.2.3.4.${i + 1}` },
        ...d.reference,
        content: [
          {
            attachment: { contentType, url: binUrl, size: d.content.length, hash: createHash('sha1').update(d.content).digest('base64'), ...(d.title ? { title: d.title } : {}), ...d.attachment },
            ...(d.format ? { format: { system: 'http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode', code: d.format } } : {}),
          },
        ],
      }),
    );
    entries.push(entry(binUrl, { resourceType: 'Binary', contentType, data: d.content.toString('base64') }));
    items.push({ item: { reference: docUrl } });
  });
  const list = {
    resourceType: 'List',
    meta: { profile: [MHD.submissionSetProfiles[0]] },
    extension,
    identifier: [{ use: 'official', system: 'urn:ietf:rfc:3986', value: 'urn:uuid:40b3366f-7e4b-4d02-bbac-901aaa8d7183' }],
    status: 'current',
    mode: 'working',
    title: 'Discharge summary',
    code: { coding: [{ system: MHD.listTypes, code: 'submissionset' }] },
    ...(subject ? { subject: { reference: subject } } : {}),
    ...(source ? { source } : {}),
    entry: items,
  };
  return {
    resourceType: 'Bundle',
    meta: { profile: ['https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.Minimal.ProvideBundle'] },
    type: 'transaction',
    entry: [entry('urn:uuid:00000000-0000-4000-8000-000000000001', list), ...entries],
  };
}

import { createHash } from 'node:crypto';
import { decodeBase64Text } from '../api/api-schemas.js';
import { base64Member } from '../api/json-body.js';
import { DirectAddress } from '../core/direct-address.js';
import { HispError } from '../core/errors.js';
import { xmlSafe } from '../documents/xdm-metadata-writer.js';
import type { DocumentKind } from '../mime/message-composer.js';
import { SEND_LIMITS, type XdmEntryDescription } from '../flows/send-message.js';
import { clip, readDocumentEntry } from './mhd-document-entry.js';

/**
 * Reading an IHE MHD ITI-65 "Provide Document Bundle" request (ITI TF-2 3.65.4.1, Minimal Metadata
 * option) as hostile input: a FHIR R4 `transaction` Bundle holding one SubmissionSet `List`, its
 * DocumentReferences and the Binaries their attachments point at. Every rule broken is named with
 * the entry it is about (index and fullUrl), so that the OperationOutcome can point at it.
 * Bounded: entries, documents, recipients, the depth nothing walks (only known paths are read).
 */

/** MHD canonical URLs (profiles.ihe.net/ITI/MHD, the IG's StructureDefinitions and CodeSystems). */
export const MHD = {
  submissionSetProfiles: [
    'https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.Minimal.SubmissionSet',
    'https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.Comprehensive.SubmissionSet',
    'https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.UnContained.Comprehensive.SubmissionSet',
  ],
  listTypes: 'https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes',
  intendedRecipient: 'https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-intendedRecipient',
  authorOrg: 'https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-authorOrg',
  /** FHIR R4 Endpoint.connectionType (terminology.hl7.org endpoint-connection-type): Direct Project. */
  connectionTypes: 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type',
} as const;

/** Bounds of one Bundle: a send's documents and recipients, and room for the resources that name them. */
export const MHD_LIMITS = Object.freeze({
  entries: 2 * SEND_LIMITS.documents + SEND_LIMITS.recipients + 20,
  documents: SEND_LIMITS.documents,
  recipients: SEND_LIMITS.recipients,
  /** Contained resources of the SubmissionSet (recipients, author). */
  contained: SEND_LIMITS.recipients + 10,
  /** Extensions of the SubmissionSet looked at. */
  extensions: SEND_LIMITS.recipients + 50,
  titleChars: 255,
});

/** One rule broken: where (`Bundle.entry[3]`, with its fullUrl) and what. */
export interface MhdIssue {
  /** A FHIRPath-like location: Bundle.entry[3].resource.content[0].attachment.url. */
  expression: string;
  message: string;
}

export interface MhdDocument {
  /** The DocumentReference's fullUrl in the request, and its index among the entries. */
  fullUrl: string;
  entry: number;
  filename: string;
  contentType: string;
  kind: DocumentKind;
  content: Buffer;
  /** Its XDS DocumentEntry as the DocumentReference describes it (mhd-document-entry.ts): only what was given. */
  documentEntry: XdmEntryDescription;
}

export interface MhdRecipient {
  address: string;
  /** The resource type it was found in: Patient, Practitioner, RelatedPerson, Organization, PractitionerRole, Endpoint. */
  resourceType: string;
}

export interface MhdSubmission {
  /** Index of the SubmissionSet's entry. */
  submissionSetEntry: number;
  /** Its identifier (uniqueId) when given. */
  uniqueId?: string | undefined;
  title?: string | undefined;
  /**
   * List.subject as a reference that means something after the transaction: as given when it points
   * outside the Bundle (`Patient/123`, an absolute URL); for a Patient of the Bundle (its urn:uuid
   * fullUrl means nothing later), its first urn:oid identifier and its name.
   */
  patient?: MhdPatientRef | undefined;
  /** The author's Direct address (List.source or ihe-authorOrg, email telecom), when there is one. */
  sender?: string | undefined;
  recipients: MhdRecipient[];
  documents: MhdDocument[];
  /** The resource type of every entry, in order (for the transaction-response). */
  entryTypes: string[];
  /** The patient of List.subject, when it is a Patient of the Bundle, as Direct Context fields (documents/direct-context.ts). */
  context?: MhdPatientContext | undefined;
}

export interface MhdPatientRef {
  reference?: string;
  identifier?: { system: string; value: string };
  display?: string;
}

/** What a Patient resource gives a Direct Context (Implementation Guide for Expressing Context in Direct Messaging 1.1 §3.3, §3.6). */
export interface MhdPatientContext {
  patientId?: { authority: string; id: string }[];
  patient?: Partial<Record<'givenName' | 'surname' | 'middleName' | 'dateOfBirth' | 'gender', string>>;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

class Issues {
  readonly list: MhdIssue[] = [];
  add(expression: string, message: string): void {
    if (this.list.length < 20) this.list.push({ expression, message });
  }
  fail(): never {
    const first = this.list[0]!;
    throw new HispError('HISP_FHIR_INVALID', `${first.expression}: ${first.message}`.slice(0, 500), { details: { issues: this.list } });
  }
}

/** Throws HISP_FHIR_INVALID (one issue) at once: the Bundle cannot be read further. */
function stop(expression: string, message: string): never {
  throw new HispError('HISP_FHIR_INVALID', `${expression}: ${message}`.slice(0, 500), { details: { issues: [{ expression, message }] } });
}

/**
 * Reads and checks an ITI-65 Bundle (already parsed JSON). Returns the submission, or throws
 * HISP_FHIR_INVALID with `details.issues` (at most 20), each naming the entry and the rule.
 */
export function readMhdBundle(body: unknown): MhdSubmission {
  if (!isObject(body) || body.resourceType !== 'Bundle') stop('Bundle', 'the body must be a FHIR Bundle resource (resourceType "Bundle")');
  const bundle = body;
  // ITI TF-2 3.65.4.1.2: the Provide Document Bundle message is a transaction Bundle.
  if (bundle.type !== 'transaction') stop('Bundle.type', 'must be "transaction" (ITI-65 3.65.4.1.2)');
  if (!Array.isArray(bundle.entry) || bundle.entry.length === 0) stop('Bundle.entry', 'a Provide Document Bundle has entries: a SubmissionSet List, DocumentReferences, Binaries');
  if (bundle.entry.length > MHD_LIMITS.entries) stop('Bundle.entry', `at most ${MHD_LIMITS.entries} entries`);

  const issues = new Issues();
  const byUrl = new Map<string, { index: number; resource: Json }>();
  const entryTypes: string[] = [];
  const entries = bundle.entry as unknown[];
  entries.forEach((raw, index) => {
    const at = `Bundle.entry[${index}]`;
    if (!isObject(raw)) {
      issues.add(at, 'must be an object');
      entryTypes.push('');
      return;
    }
    const entry = raw;
    const resource = entry.resource;
    const type = isObject(resource) ? str(resource.resourceType) : undefined;
    entryTypes.push(type ?? '');
    if (!isObject(resource) || type === undefined || !/^[A-Z][A-Za-z]{1,63}$/.test(type)) issues.add(`${at}.resource`, 'must be a FHIR resource (an object with a resourceType)');
    const fullUrl = str(entry.fullUrl);
    // FHIR R4 Bundle bdl-7: fullUrl unique; transaction entries are referenced by it (urn:uuid: for new ones).
    if (fullUrl === undefined || fullUrl.length === 0 || fullUrl.length > 2048) issues.add(`${at}.fullUrl`, 'is required: the other entries reference this one by it');
    else if (byUrl.has(fullUrl)) issues.add(`${at}.fullUrl`, `${fullUrl.slice(0, 100)} is the fullUrl of another entry too (bdl-7)`);
    else if (isObject(resource)) byUrl.set(fullUrl, { index, resource });
    // FHIR R4 Bundle bdl-3: every entry of a transaction has a request; ITI-65 creates with POST.
    const request = entry.request;
    if (!isObject(request) || request.method !== 'POST') issues.add(`${at}.request.method`, 'must be POST (ITI-65 creates every resource of the Bundle)');
    else if (type !== undefined && str(request.url) !== type) issues.add(`${at}.request.url`, `must be "${type}", the type of its resource`);
  });
  if (issues.list.length > 0) issues.fail();

  // The SubmissionSet: a List coded submissionset (MHD List types), with the MHD profile.
  const lists = [...byUrl.values()].filter(({ resource }) => resource.resourceType === 'List');
  const submissionSets = lists.filter(({ resource }) => arr((resource.code as Json | undefined)?.coding).some((c) => isObject(c) && c.system === MHD.listTypes && c.code === 'submissionset'));
  if (submissionSets.length !== 1) stop('Bundle.entry', `holds ${submissionSets.length} SubmissionSets: exactly one List coded ${MHD.listTypes}#submissionset is required (ITI-65 3.65.4.1.2.1)`);
  const { index: ssIndex, resource: ssResource } = submissionSets[0]!;
  const ss = ssResource;
  const ssAt = `Bundle.entry[${ssIndex}].resource`;
  const profiles = arr(isObject(ss.meta) ? ss.meta.profile : undefined);
  if (!profiles.some((p) => typeof p === 'string' && (MHD.submissionSetProfiles as readonly string[]).includes(p))) {
    issues.add(`${ssAt}.meta.profile`, `must claim the MHD SubmissionSet profile (${MHD.submissionSetProfiles[0]})`);
  }
  if (ss.status !== 'current') issues.add(`${ssAt}.status`, 'must be "current" (MHD SubmissionSet)');
  if (ss.mode !== 'working') issues.add(`${ssAt}.mode`, 'must be "working" (MHD SubmissionSet)');
  // The title goes into the XDM package's METADATA.XML and INDEX.HTM: text XML can carry (XML 1.0 §2.2).
  if (ss.title !== undefined && (typeof ss.title !== 'string' || !xmlSafe(ss.title))) issues.add(`${ssAt}.title`, 'must be a text XML can carry (no control characters, no lone surrogates)');
  const contained = new Map<string, Json>();
  const containedList = arr(ss.contained);
  if (containedList.length > MHD_LIMITS.contained) stop(`${ssAt}.contained`, `at most ${MHD_LIMITS.contained} contained resources`);
  for (const c of containedList) if (isObject(c) && typeof c.id === 'string') contained.set(`#${c.id}`, c);
  const resolve = (ref: unknown): Json | undefined => {
    const r = isObject(ref) ? str(ref.reference) : undefined;
    if (r === undefined) return undefined;
    return r.startsWith('#') ? contained.get(r) : byUrl.get(r)?.resource;
  };

  // Recipients: ihe-intendedRecipient (ITI TF-3 4.5.1: intendedRecipient), each resolved to a Direct address.
  const extensions = arr(ss.extension);
  if (extensions.length > MHD_LIMITS.extensions) stop(`${ssAt}.extension`, `at most ${MHD_LIMITS.extensions} extensions`);
  const recipients: MhdRecipient[] = [];
  extensions.forEach((ext, i) => {
    if (!isObject(ext) || ext.url !== MHD.intendedRecipient) return;
    const at = `${ssAt}.extension[${i}].valueReference`;
    const target = resolve(ext.valueReference);
    if (!target) {
      issues.add(at, 'must reference a resource of this Bundle (its fullUrl) or one contained in the SubmissionSet (#id)');
      return;
    }
    const found = directAddressOf(target);
    if (typeof found === 'string') issues.add(at, found);
    else if (!recipients.some((r) => r.address.toLowerCase() === found.address.toLowerCase())) recipients.push(found);
  });
  if (recipients.length === 0 && issues.list.length === 0) {
    issues.add(`${ssAt}.extension`, `names no recipient: add an ${MHD.intendedRecipient} extension (a Patient, Practitioner, RelatedPerson or Organization with an email telecom, or an Endpoint of connectionType direct-project)`);
  }
  if (recipients.length > MHD_LIMITS.recipients) stop(`${ssAt}.extension`, `at most ${MHD_LIMITS.recipients} intended recipients`);

  // The author: List.source (SubmissionSet.author) or the ihe-authorOrg extension, when it has a Direct address.
  let sender: string | undefined;
  const authorOrg = extensions.find((e) => isObject(e) && e.url === MHD.authorOrg) as Json | undefined;
  for (const candidate of [resolve(ss.source), authorOrg ? resolve(authorOrg.valueReference) : undefined]) {
    const found = candidate ? directAddressOf(candidate) : undefined;
    if (found && typeof found !== 'string') {
      sender = found.address;
      break;
    }
  }

  // The documents: the List's entries, each a DocumentReference of this Bundle.
  const items = arr(ss.entry);
  if (items.length === 0) issues.add(`${ssAt}.entry`, 'must list the DocumentReferences submitted');
  if (items.length > MHD_LIMITS.documents) stop(`${ssAt}.entry`, `at most ${MHD_LIMITS.documents} documents`);
  const documents: MhdDocument[] = [];
  const listed = new Set<number>();
  items.forEach((item, i) => {
    const at = `${ssAt}.entry[${i}].item`;
    const ref = isObject(item) && isObject(item.item) ? str(item.item.reference) : undefined;
    const target = ref === undefined ? undefined : byUrl.get(ref);
    if (!target || target.resource.resourceType !== 'DocumentReference') {
      issues.add(at, 'must reference a DocumentReference of this Bundle by its fullUrl');
      return;
    }
    if (listed.has(target.index)) return;
    listed.add(target.index);
    documents.push(...readDocument(target.resource, target.index, ref!, byUrl, issues));
  });
  // ITI-65 3.65.4.1.3: every DocumentReference of the Bundle belongs to the SubmissionSet.
  for (const { index, resource } of byUrl.values()) {
    if (resource.resourceType === 'DocumentReference' && !listed.has(index)) issues.add(`Bundle.entry[${index}]`, 'a DocumentReference the SubmissionSet does not list (List.entry.item)');
  }
  if (documents.length > MHD_LIMITS.documents) stop(`${ssAt}.entry`, `at most ${MHD_LIMITS.documents} documents`);
  if (issues.list.length > 0) issues.fail();

  const subjectResource = resolve(ss.subject);
  const context = subjectResource?.resourceType === 'Patient' ? patientContext(subjectResource) : undefined;
  const uniqueId = arr(ss.identifier).find((id) => isObject(id) && id.use === 'official') as Json | undefined;
  const subject = isObject(ss.subject) ? str(ss.subject.reference) : undefined;
  return {
    submissionSetEntry: ssIndex,
    uniqueId: str(uniqueId?.value)?.slice(0, 256),
    title: typeof ss.title === 'string' ? clip(ss.title, MHD_LIMITS.titleChars) : undefined,
    patient: subjectResource ? (context ? patientRefOf(context) : undefined) : subject !== undefined ? { reference: subject.slice(0, 2048) } : undefined,
    sender,
    recipients,
    documents,
    entryTypes,
    context,
  };
}

/** A Patient of the Bundle as a reference: its first OID identifier and its name. */
function patientRefOf(context: MhdPatientContext): MhdPatientRef | undefined {
  const pid = context.patientId?.[0];
  const name = [context.patient?.givenName, context.patient?.surname].filter((n) => n !== undefined).join(' ');
  if (!pid && name === '') return undefined;
  return { ...(pid ? { identifier: { system: `urn:oid:${pid.authority}`, value: pid.id } } : {}), ...(name !== '' ? { display: name } : {}) };
}

/** A Direct Context value: printable US-ASCII without the IG's separators (; and =), else left out. */
const contextValue = (v: unknown): string | undefined => (typeof v === 'string' && /^[\x20-\x3a\x3c\x3e-\x7e]{1,100}$/.test(v.trim()) ? v.trim() : undefined);

/**
 * The Patient's identifiers whose system is an OID (`urn:oid:…`: Direct Context §3.3, the assigning
 * authority is an OID), its first official (or first) name, birth date and gender (§3.6). What is
 * not printable US-ASCII is left out rather than refused: the context is a help to the recipient.
 */
function patientContext(patient: Json): MhdPatientContext | undefined {
  const patientId = arr(patient.identifier)
    .slice(0, 20)
    .flatMap((i) => {
      const m = isObject(i) ? /^urn:oid:([0-2](?:\.(?:0|[1-9][0-9]*))+)$/.exec(str(i.system) ?? '') : null;
      const id = isObject(i) ? contextValue(i.value) : undefined;
      return m && id !== undefined && !id.includes(' ') ? [{ authority: m[1]!, id }] : [];
    });
  const names = arr(patient.name).slice(0, 20).filter(isObject);
  const name = names.find((n) => n.use === 'official') ?? names[0];
  const given = name ? arr(name.given).map(contextValue) : [];
  const fields: MhdPatientContext['patient'] = {};
  if (given[0] !== undefined) fields.givenName = given[0];
  if (given[1] !== undefined) fields.middleName = given[1];
  const family = name ? contextValue(name.family) : undefined;
  if (family !== undefined) fields.surname = family;
  const birth = str(patient.birthDate);
  if (birth !== undefined && /^\d{4}-\d{2}-\d{2}$/.test(birth)) fields.dateOfBirth = birth;
  // FHIR AdministrativeGender to the IG's examples' letters; other and unknown are not guessed.
  const gender = { male: 'M', female: 'F' }[str(patient.gender) ?? ''];
  if (gender !== undefined) fields.gender = gender;
  const out: MhdPatientContext = {};
  if (patientId.length > 0) out.patientId = patientId;
  if (Object.keys(fields).length > 0) out.patient = fields;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** The documents of one DocumentReference: each content.attachment, its octets from the Binary its url names. */
function readDocument(doc: Json, index: number, fullUrl: string, byUrl: Map<string, { index: number; resource: Json }>, issues: Issues): MhdDocument[] {
  const at = `Bundle.entry[${index}].resource`;
  if (doc.status !== 'current') issues.add(`${at}.status`, 'must be "current" (a new document, ITI-65 3.65.4.1.2)');
  const contents = arr(doc.content);
  if (contents.length === 0) issues.add(`${at}.content`, 'is required: the document’s attachment');
  if (contents.length > MHD_LIMITS.documents) {
    issues.add(`${at}.content`, `at most ${MHD_LIMITS.documents} attachments`);
    return [];
  }
  const entryOf = readDocumentEntry(doc, at, issues);
  const out: MhdDocument[] = [];
  contents.forEach((content, i) => {
    const cat = `${at}.content[${i}]`;
    const attachment = isObject(content) && isObject(content.attachment) ? content.attachment : undefined;
    if (!attachment) {
      issues.add(`${cat}.attachment`, 'is required');
      return;
    }
    if (attachment.data !== undefined) {
      issues.add(`${cat}.attachment.data`, 'must not be given: ITI-65 sends the document as a Binary entry, named by attachment.url');
      return;
    }
    const url = str(attachment.url);
    const binary = url === undefined ? undefined : byUrl.get(url);
    if (!binary || binary.resource.resourceType !== 'Binary') {
      issues.add(`${cat}.attachment.url`, 'must be the fullUrl of a Binary entry of this Bundle');
      return;
    }
    const bat = `Bundle.entry[${binary.index}].resource`;
    const data = str(binary.resource.data);
    // Octets already when the body was read with this field kept out of strings (api/json-body.ts).
    const bytes = base64Member(binary.resource, 'data') ?? (data === undefined ? undefined : decodeBase64Text(data));
    if (!bytes) {
      issues.add(`${bat}.data`, 'must be the document in base64 (RFC 4648 §4, no line breaks)');
      return;
    }
    const contentType = str(attachment.contentType) ?? str(binary.resource.contentType);
    if (contentType === undefined || !/^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$/.test(contentType.split(';')[0]!.trim())) {
      issues.add(`${cat}.attachment.contentType`, 'is required: a media type (type/subtype)');
      return;
    }
    const binaryType = str(binary.resource.contentType);
    if (binaryType !== undefined && mediaType(binaryType) !== mediaType(contentType)) issues.add(`${bat}.contentType`, `is ${binaryType.slice(0, 80)}, the attachment says ${contentType.slice(0, 80)}`);
    // FHIR R4 Attachment.size: octets before base64; Attachment.hash: base64 of the SHA-1 of the data.
    const size = attachment.size;
    if (size !== undefined && size !== bytes.length) issues.add(`${cat}.attachment.size`, `is ${JSON.stringify(size).slice(0, 20)}, the Binary holds ${bytes.length} octets`);
    const hash = attachment.hash;
    if (hash !== undefined && hash !== createHash('sha1').update(bytes).digest('base64')) issues.add(`${cat}.attachment.hash`, 'is not the base64 SHA-1 of the Binary’s octets (FHIR R4 Attachment.hash)');
    out.push({
      fullUrl,
      entry: index,
      filename: filenameOf(str(attachment.title), out.length + index, contentType),
      contentType: mediaType(contentType),
      kind: kindOf(contentType, isObject(content) ? content.format : undefined),
      content: bytes,
      documentEntry: entryOf(content as Json, cat),
    });
  });
  return out;
}

const mediaType = (t: string): string => t.split(';')[0]!.trim().toLowerCase();

/**
 * What the send service makes of a document. A C-CDA is known by its format code (IHE format codes:
 * urn:hl7-org:sdwg:ccda-… ; urn:ihe:pcc:xphr:2007 for the older HITSP C32) on an XML attachment:
 * then it is checked as CDA and rendered for people (R-BB-6). Other XML goes as it is.
 */
function kindOf(contentType: string, format: unknown): DocumentKind {
  const type = mediaType(contentType);
  const code = isObject(format) ? str(format.code) : undefined;
  if ((type === 'application/xml' || type === 'text/xml' || type === 'application/cda+xml') && code !== undefined && /^urn:(hl7-org:sdwg:ccda|ihe:pcc:xphr)/.test(code)) return 'ccda';
  if (type === 'application/pdf') return 'pdf';
  if (type === 'application/fhir+json' || type === 'application/fhir+xml') return 'fhir';
  return 'other';
}

const EXTENSIONS: Record<string, string> = { 'application/xml': 'xml', 'text/xml': 'xml', 'application/pdf': 'pdf', 'application/fhir+json': 'json', 'application/json': 'json', 'text/plain': 'txt', 'application/fhir+xml': 'xml' };

/** attachment.title as a file name (no folders, no control characters), else document-N with the type's extension. */
function filenameOf(title: string | undefined, n: number, contentType: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what is removed from a name
  const clean = title?.replace(/[/\\\u0000-\u001f\u007f]/g, '_').trim().slice(0, MHD_LIMITS.titleChars);
  if (clean && clean !== '.' && clean !== '..') return clean;
  return `document-${n + 1}.${EXTENSIONS[mediaType(contentType)] ?? 'bin'}`;
}

const PEOPLE = new Set(['Patient', 'Practitioner', 'RelatedPerson', 'Organization', 'PractitionerRole']);

/**
 * The Direct address of a recipient or author (MHD ihe-intendedRecipient: "for XDR and eMail (e.g.
 * Direct) this tends to be a Practitioner or Patient with a telecom holding an email"): the first
 * email telecom of a person or organization, or an Endpoint's address when its connectionType is
 * direct-project. A string is why not.
 */
function directAddressOf(resource: Json): MhdRecipient | string {
  const type = str(resource.resourceType) ?? '';
  let value: string | undefined;
  if (type === 'Endpoint') {
    const ct = resource.connectionType;
    if (!isObject(ct) || ct.system !== MHD.connectionTypes || ct.code !== 'direct-project') return `an Endpoint must have connectionType ${MHD.connectionTypes}#direct-project`;
    value = str(resource.address);
  } else if (PEOPLE.has(type)) {
    const telecom = arr(resource.telecom).slice(0, 50).find((t) => isObject(t) && t.system === 'email' && typeof t.value === 'string' && t.use !== 'old');
    value = telecom ? str((telecom as Json).value) : undefined;
    if (value === undefined) return `the ${type} has no email telecom (its Direct address)`;
  } else {
    return `a ${type.slice(0, 40) || 'resource'} cannot be a Direct recipient: a Patient, Practitioner, RelatedPerson, Organization, PractitionerRole or Endpoint`;
  }
  if (value === undefined) return `the ${type} has no address`;
  const bare = value.replace(/^mailto:/i, '').slice(0, 400);
  try {
    return { address: DirectAddress.parse(bare).toString(), resourceType: type };
  } catch {
    return `${JSON.stringify(bare.slice(0, 80))} is not a Direct address (local@domain)`;
  }
}

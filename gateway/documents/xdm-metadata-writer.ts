import { randomUUID } from 'node:crypto';
import { create } from 'xmlbuilder2';
import { HispError } from '../core/errors.js';
import { XDS } from './xds-identifiers.js';

type XMLBuilder = ReturnType<typeof create>;

/** A coded value of XDS metadata (ITI TF-3 4.2.3.1.2): a code, its scheme and a display name. */
export interface XdsCode {
  code: string;
  codingScheme: string;
  displayName?: string;
}

/** Who sent the package: the author of the SubmissionSet and of each DocumentEntry (TF-3 4.2.3.1.4). */
export interface XdmAuthor {
  /** authorInstitution (XON, the organization's name). */
  institution?: string;
  /** authorTelecommunication: the author's Direct address (XTN `^^Internet^address`). */
  telecom?: string;
}

/**
 * The six codes XDS requires of a DocumentEntry and a limited-metadata package may omit
 * (TF-3 Table 4.3.1-3): each is written when given; with all six and a languageCode, the entry is
 * full metadata.
 */
export interface DocumentCodes {
  classCode?: XdsCode;
  typeCode?: XdsCode;
  formatCode?: XdsCode;
  /** One, or several: an entry may carry more than one confidentiality mark (TF-3 4.2.3.2.5). */
  confidentialityCode?: XdsCode | readonly XdsCode[];
  healthcareFacilityTypeCode?: XdsCode;
  practiceSettingCode?: XdsCode;
}

const CODE_SCHEMES = [
  ['classCode', XDS.documentEntry.classCode],
  ['confidentialityCode', XDS.documentEntry.confidentialityCode],
  ['formatCode', XDS.documentEntry.formatCode],
  ['healthcareFacilityTypeCode', XDS.documentEntry.healthcareFacilityTypeCode],
  ['practiceSettingCode', XDS.documentEntry.practiceSettingCode],
  ['typeCode', XDS.documentEntry.typeCode],
] as const;

export interface SubmissionSetInput {
  entryUUID: string;
  uniqueId: string;
  sourceId: string;
  submissionTime: Date;
  /** CX `id^^^&oid&ISO`, R2 in XDM: absent when the sender does not know it. */
  patientId?: string;
  title?: string;
  author?: XdmAuthor;
  /** Direct addresses the package is for (intendedRecipient, XTN). */
  intendedRecipients?: readonly string[];
  contentTypeCode?: XdsCode;
}

/** The patient as the sending system knows them (a send's Direct Context patient: documents/direct-context.ts §3.6 names). */
export interface XdmPatient {
  givenName?: string | undefined;
  middleName?: string | undefined;
  surname?: string | undefined;
  /** `YYYY-MM-DD` or `YYYYMMDD`; anything else is left out. */
  dateOfBirth?: string | undefined;
  /** HL7 Table 0001 (`M`, `F`, `O`, `U`, `A`, `N`); anything else is left out. */
  gender?: string | undefined;
}

export interface DocumentEntryInput {
  entryUUID: string;
  uniqueId: string;
  mimeType: string;
  /** SHA-1 of the document, lowercase hex (TF-3 4.2.3.2.10). */
  sha1: string;
  size: number;
  /** The document's file name, relative to METADATA.XML (ITI TF-2b 3.32.4.1.2.2). */
  uri: string;
  /** A time, or a DTM already of the precision known (`20240501`: a day, TF-3 4.2.3.1.5). */
  creationTime: Date | string;
  patientId?: string;
  /** Demographics of the patient for sourcePatientInfo (PID-5, PID-7, PID-8 beside PID-3). */
  patient?: XdmPatient;
  title?: string;
  /** DocumentEntry.comments (TF-3 4.2.3.2.4), written as the entry's Description. */
  comments?: string;
  author?: XdmAuthor;
  languageCode?: string;
  codes?: DocumentCodes;
}

/**
 * METADATA.XML of an XDM submission set: an ebRS 3.0 SubmitObjectsRequest holding the SubmissionSet
 * (a RegistryPackage), one DocumentEntry (an ExtrinsicObject) per document and a HasMember
 * Association from the set to each entry (ITI TF-3 4.2.1, 4.2.2). The layout follows the ETT XDM
 * samples: slots first, then classifications, then external identifiers, ObjectRefs last.
 *
 * An entry without all six codes and a language is marked limitedMetadata (TF-3 4.2.3.2.29), and so
 * is the SubmissionSet when it lacks contentTypeCode or holds a limited entry (4.2.3.3.13): the
 * receiver then knows those attributes were not known, not forgotten.
 */
export function writeXdmMetadata(submissionSet: SubmissionSetInput, entries: readonly DocumentEntryInput[]): Buffer {
  const root = create({ version: '1.0', encoding: 'UTF-8' }).ele(XDS.lcmNamespace, 'lcm:SubmitObjectsRequest');
  root.att('http://www.w3.org/2000/xmlns/', 'xmlns:rim', XDS.rimNamespace);
  const list = root.ele(XDS.rimNamespace, 'rim:RegistryObjectList');
  const schemes = new Set<string>();

  for (const entry of entries) {
    const limited = isLimited(entry);
    const eo = list.ele(XDS.rimNamespace, 'rim:ExtrinsicObject', { id: entry.entryUUID, mimeType: text(entry.mimeType), objectType: XDS.stableDocumentEntry });
    slot(eo, 'creationTime', [typeof entry.creationTime === 'string' ? dtmText(entry.creationTime) : dtm(entry.creationTime)]);
    slot(eo, 'hash', [entry.sha1]);
    if (entry.languageCode !== undefined) slot(eo, 'languageCode', [entry.languageCode]);
    slot(eo, 'size', [String(entry.size)]);
    if (entry.patientId !== undefined) slot(eo, 'sourcePatientId', [entry.patientId]);
    const info = sourcePatientInfo(entry.patientId, entry.patient);
    if (info.length > 0) slot(eo, 'sourcePatientInfo', info);
    slot(eo, 'URI', [entry.uri]);
    if (entry.title !== undefined) localized(eo, 'rim:Name', entry.title);
    // ebRIM 3.0 RegistryObjectType: Name, then Description.
    if (entry.comments !== undefined) localized(eo, 'rim:Description', entry.comments);
    if (entry.author) author(eo, entry.entryUUID, XDS.documentEntry.author, entry.author, schemes);
    for (const [name, scheme] of CODE_SCHEMES) {
      for (const code of codeList(entry.codes?.[name])) coded(eo, entry.entryUUID, scheme, code, schemes);
    }
    if (limited) classificationNode(eo, entry.entryUUID, XDS.documentEntryLimited);
    if (entry.patientId !== undefined) externalId(eo, entry.entryUUID, XDS.documentEntry.patientId, entry.patientId, 'XDSDocumentEntry.patientId', schemes);
    externalId(eo, entry.entryUUID, XDS.documentEntry.uniqueId, entry.uniqueId, 'XDSDocumentEntry.uniqueId', schemes);
    schemes.add(XDS.stableDocumentEntry);
  }

  const ss = submissionSet;
  const setLimited = ss.contentTypeCode === undefined || entries.some(isLimited);
  const rp = list.ele(XDS.rimNamespace, 'rim:RegistryPackage', { id: ss.entryUUID });
  slot(rp, 'submissionTime', [dtm(ss.submissionTime)]);
  if (ss.intendedRecipients?.length) slot(rp, 'intendedRecipient', ss.intendedRecipients.map((a) => `|^^Internet^${hl7(a)}`));
  if (ss.title !== undefined) localized(rp, 'rim:Name', ss.title);
  if (ss.author) author(rp, ss.entryUUID, XDS.submissionSet.author, ss.author, schemes);
  if (ss.contentTypeCode) coded(rp, ss.entryUUID, XDS.submissionSet.contentTypeCode, ss.contentTypeCode, schemes);
  if (setLimited) classificationNode(rp, ss.entryUUID, XDS.submissionSetLimited);
  if (ss.patientId !== undefined) externalId(rp, ss.entryUUID, XDS.submissionSet.patientId, ss.patientId, 'XDSSubmissionSet.patientId', schemes);
  externalId(rp, ss.entryUUID, XDS.submissionSet.sourceId, ss.sourceId, 'XDSSubmissionSet.sourceId', schemes);
  externalId(rp, ss.entryUUID, XDS.submissionSet.uniqueId, ss.uniqueId, 'XDSSubmissionSet.uniqueId', schemes);

  // The classification that makes the RegistryPackage a SubmissionSet, outside it as in ETT's samples
  // (ebRIM allows either place: TF-3 4.2.1.1).
  classificationNode(list, ss.entryUUID, XDS.submissionSetNode);
  schemes.add(XDS.submissionSetNode);
  for (const entry of entries) {
    const assoc = list.ele(XDS.rimNamespace, 'rim:Association', {
      id: urnUuid(),
      associationType: XDS.hasMember,
      sourceObject: ss.entryUUID,
      targetObject: entry.entryUUID,
    });
    slot(assoc, 'SubmissionSetStatus', ['Original']);
  }
  // Every scheme and node referred to but not defined here (ebRS 3.0 §3.1.1: references resolve
  // to objects in the request or to ObjectRefs), as ETT's samples list them.
  for (const id of schemes) list.ele(XDS.rimNamespace, 'rim:ObjectRef', { id });
  return Buffer.from(root.end({ prettyPrint: true }), 'utf8');
}

/** Without all six codes and a language, an entry is limited metadata (TF-3 4.2.3.2.29). */
function isLimited(entry: DocumentEntryInput): boolean {
  return entry.languageCode === undefined || CODE_SCHEMES.some(([name]) => codeList(entry.codes?.[name]).length === 0);
}

function codeList(code: XdsCode | readonly XdsCode[] | undefined): readonly XdsCode[] {
  if (code === undefined) return [];
  return isCodeArray(code) ? code : [code];
}
const isCodeArray = (code: XdsCode | readonly XdsCode[]): code is readonly XdsCode[] => Array.isArray(code);

/** `urn:uuid:` and a fresh random UUID (RFC 4122), the entryUUID form of TF-3 4.2.3.1.8. */
export function urnUuid(): string {
  return `urn:uuid:${randomUUID()}`;
}

/** DTM (TF-3 4.2.3.1.5): UTC, YYYYMMDDhhmmss. */
export function dtm(at: Date): string {
  return at.toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

/** A DTM of any precision TF-3 4.2.3.1.5 allows (YYYY[MM[DD[hh[mm[ss]]]]]), as given; anything else is refused. */
export function dtmText(value: string): string {
  if (!/^[0-9]{4}(?:[0-9]{2}){0,5}$/.test(value)) throw new HispError('HISP_USAGE', `a DTM time is YYYY[MM[DD[hh[mm[ss]]]]] (ITI TF-3 4.2.3.1.5): ${JSON.stringify(value.slice(0, 40))}`);
  return value;
}

function slot(parent: XMLBuilder, name: string, values: readonly string[]): void {
  const list = parent.ele(XDS.rimNamespace, 'rim:Slot', { name }).ele(XDS.rimNamespace, 'rim:ValueList');
  for (const v of values) list.ele(XDS.rimNamespace, 'rim:Value').txt(text(v));
}

function localized(parent: XMLBuilder, element: 'rim:Name' | 'rim:Description', value: string): void {
  parent.ele(XDS.rimNamespace, element).ele(XDS.rimNamespace, 'rim:LocalizedString', { value: text(value) });
}

function author(parent: XMLBuilder, owner: string, scheme: string, who: XdmAuthor, schemes: Set<string>): void {
  const c = schemeClassification(parent, owner, scheme, '', schemes);
  if (who.institution !== undefined) slot(c, 'authorInstitution', [hl7(who.institution)]);
  if (who.telecom !== undefined) slot(c, 'authorTelecommunication', [`^^Internet^${hl7(who.telecom)}`]);
}

function coded(parent: XMLBuilder, owner: string, scheme: string, code: XdsCode, schemes: Set<string>): void {
  const c = schemeClassification(parent, owner, scheme, code.code, schemes);
  slot(c, 'codingScheme', [code.codingScheme]);
  localized(c, 'rim:Name', code.displayName ?? code.code);
}

/** An external classification (TF-3 4.2.1.1.2): a scheme, the object, a node representation. */
function schemeClassification(parent: XMLBuilder, owner: string, scheme: string, node: string, schemes: Set<string>): XMLBuilder {
  schemes.add(scheme);
  return parent.ele(XDS.rimNamespace, 'rim:Classification', {
    id: urnUuid(),
    objectType: XDS.classificationType,
    classificationScheme: scheme,
    classifiedObject: owner,
    nodeRepresentation: text(node),
  });
}

function classificationNode(parent: XMLBuilder, owner: string, node: string): void {
  parent.ele(XDS.rimNamespace, 'rim:Classification', { id: urnUuid(), objectType: XDS.classificationType, classifiedObject: owner, classificationNode: node });
}

function externalId(parent: XMLBuilder, owner: string, scheme: string, value: string, name: string, schemes: Set<string>): void {
  const e = parent.ele(XDS.rimNamespace, 'rim:ExternalIdentifier', {
    id: urnUuid(),
    objectType: XDS.externalIdentifierType,
    registryObject: owner,
    identificationScheme: scheme,
    value: text(value),
  });
  localized(e, 'rim:Name', name);
  schemes.add(scheme);
}

/**
 * Text for an XML document: XML 1.0 §2.2 forbids most C0 controls, lone surrogates, U+FFFE and U+FFFF,
 * and a serializer that drops them would write something other than what was asked for: refused.
 */
export function text(value: string): string {
  if (!xmlSafe(value)) {
    throw new HispError('HISP_USAGE', `a metadata value holds a character XML cannot carry: ${JSON.stringify(value.slice(0, 80))}`);
  }
  return value;
}

/** Whether XML 1.0 can carry `value` as it is (§2.2: no C0 control but tab, LF and CR, no lone surrogate, no U+FFFE or U+FFFF). */
export function xmlSafe(value: string): boolean {
  // eslint-disable-next-line no-control-regex
  return !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(value);
}

/** HL7 v2 escapes (v2.5 §2.7.4) for free text inside an XON or XTN component. */
function hl7(value: string): string {
  return value.replace(/[\\|^&~]/g, (c) => ({ '\\': '\\E\\', '|': '\\F\\', '^': '\\S\\', '&': '\\T\\', '~': '\\R\\' })[c] ?? c);
}

/**
 * DocumentEntry.sourcePatientInfo (ITI TF-3 4.2.3.2.23): the patient's demographics as the source
 * knows them, HL7 v2 PID fields one a value (`PID-3|id`, `PID-5|family^given^middle`, `PID-7|date`,
 * `PID-8|sex`). Only what is known and well formed; names escaped as HL7 v2 text (v2.5 §2.7.4).
 */
function sourcePatientInfo(patientId: string | undefined, patient: XdmPatient | undefined): string[] {
  const values: string[] = [];
  if (patientId !== undefined) values.push(`PID-3|${patientId}`);
  if (!patient) return values;
  const name = [patient.surname, patient.givenName, patient.middleName].map((part) => hl7Text(part ?? ''));
  if (name.some((part) => part !== '')) values.push(`PID-5|${name.join('^').replace(/\^+$/, '')}`);
  // A calendar date, `YYYY-MM-DD` or `YYYYMMDD` (not a mix), that exists (no 13th month, no 30 February).
  const birth = /^(\d{4})(-?)(\d{2})\2(\d{2})$/.exec(patient.dateOfBirth ?? '');
  if (birth) {
    const [y, m, d] = [Number(birth[1]), Number(birth[3]), Number(birth[4])];
    const date = new Date(Date.UTC(y, m - 1, d));
    if (date.getUTCFullYear() === y && date.getUTCMonth() === m - 1 && date.getUTCDate() === d) values.push(`PID-7|${birth[1]}${birth[3]}${birth[4]}`);
  }
  if (patient.gender !== undefined && /^[MFOUAN]$/.test(patient.gender)) values.push(`PID-8|${patient.gender}`);
  return values;
}

/** HL7 v2 escapes (v2.5 §2.7.4): the escape character first, then field, component, repetition and subcomponent separators; what XML cannot carry (controls, astral characters) dropped. */
function hl7Text(value: string): string {
  return value
    .slice(0, 200)
    .replace(/[^\x20-\x7e\u00a0-\ud7ff\ue000-\ufffd]/g, '')
    .replace(/\\/g, '\\E\\')
    .replace(/\|/g, '\\F\\')
    .replace(/\^/g, '\\S\\')
    .replace(/~/g, '\\R\\')
    .replace(/&/g, '\\T\\');
}

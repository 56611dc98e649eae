import type { Element } from '@xmldom/xmldom';
import { HispError, isHispError } from '../core/errors.js';
import { readXml, type XmlLimits } from './xml-reader.js';
import { XDS } from './xds-identifiers.js';

/** A coded value (ITI TF-3 4.2.3.1.2) as the sender wrote it. */
export interface XdsCodedValue {
  code: string;
  codingScheme: string | null;
  displayName: string | null;
}

/** An author classification (TF-3 4.2.3.1.4), its slots as written (HL7 v2 XCN, XON, XTN strings). */
export interface XdmAuthorInfo {
  person: string | null;
  institutions: string[];
  roles: string[];
  specialties: string[];
  telecommunications: string[];
}

/** The SubmissionSet of a METADATA.XML (TF-3 4.2.3.3): every attribute null or empty when absent. */
export interface XdmSubmissionSet {
  entryUUID: string;
  uniqueId: string | null;
  sourceId: string | null;
  patientId: string | null;
  submissionTime: string | null;
  title: string | null;
  comments: string | null;
  contentTypeCode: XdsCodedValue | null;
  authors: XdmAuthorInfo[];
  intendedRecipients: string[];
  limitedMetadata: boolean;
}

/** A DocumentEntry (TF-3 4.2.3.2): the metadata of one document, null or empty when absent. */
export interface XdmDocumentEntry {
  entryUUID: string;
  uniqueId: string | null;
  patientId: string | null;
  sourcePatientId: string | null;
  sourcePatientInfo: string[];
  mimeType: string | null;
  /** SHA-1 as written, lowercased (hex when the sender followed TF-3 4.2.3.2.10). */
  hash: string | null;
  size: number | null;
  /** The document's path relative to the METADATA.XML folder (ITI TF-2b 3.32.4.1.2.2). */
  uri: string | null;
  title: string | null;
  comments: string | null;
  creationTime: string | null;
  serviceStartTime: string | null;
  serviceStopTime: string | null;
  languageCode: string | null;
  repositoryUniqueId: string | null;
  legalAuthenticator: string | null;
  classCode: XdsCodedValue | null;
  typeCode: XdsCodedValue | null;
  formatCode: XdsCodedValue | null;
  healthcareFacilityTypeCode: XdsCodedValue | null;
  practiceSettingCode: XdsCodedValue | null;
  confidentialityCodes: XdsCodedValue[];
  eventCodes: XdsCodedValue[];
  authors: XdmAuthorInfo[];
  limitedMetadata: boolean;
}

export interface XdmMetadata {
  /** Null when the file holds no RegistryPackage that is a SubmissionSet. */
  submissionSet: XdmSubmissionSet | null;
  documentEntries: XdmDocumentEntry[];
}

/**
 * Reads the METADATA.XML of an XDM submission set (an ebRS 3.0 SubmitObjectsRequest, ITI TF-2b
 * 3.32.4.1.2.2) with {@link readXml}, tolerantly, as received packages vary (requirements §1.8):
 *
 * - elements are found by local name, whatever their namespace or prefix;
 * - a Classification or ExternalIdentifier counts for the object it names (classifiedObject,
 *   registryObject) whether it is nested in that object or beside it (ebRIM allows both);
 * - the SubmissionSet is the RegistryPackage classified as one, else the one with a SubmissionSet
 *   uniqueId, else the only RegistryPackage that is not a Folder;
 * - every attribute is optional here (a sender of limited metadata omits codes; ETT's and NIST's
 *   samples omit several): the caller sees null, never a made-up value.
 *
 * What cannot be read as XML, or holds no RegistryObjectList at all, is HISP_XDM_MALFORMED.
 */
export function readXdmMetadata(bytes: Buffer, limits: Partial<XmlLimits> = {}): XdmMetadata {
  let root: Element;
  try {
    root = readXml(bytes, limits).documentElement!;
  } catch (err) {
    if (isHispError(err)) throw new HispError('HISP_XDM_MALFORMED', `METADATA.XML cannot be read: ${err.message}`, { cause: err });
    throw err;
  }
  const all = elements(root);
  if (!all.some((e) => e.localName === 'RegistryObjectList')) {
    throw new HispError('HISP_XDM_MALFORMED', `METADATA.XML is not an ebRS SubmitObjectsRequest: no RegistryObjectList (its root is ${root.localName ?? '?'})`);
  }
  // Classifications and external identifiers by the object they describe.
  const classifications = new Map<string, Element[]>();
  const identifiers = new Map<string, Element[]>();
  for (const el of all) {
    if (el.localName === 'Classification') push(classifications, attr(el, 'classifiedObject') ?? parentId(el), el);
    else if (el.localName === 'ExternalIdentifier') push(identifiers, attr(el, 'registryObject') ?? parentId(el), el);
  }
  const objectOf = (el: Element) => {
    const id = attr(el, 'id') ?? '';
    return { el, id, classifications: classifications.get(id) ?? [], identifiers: identifiers.get(id) ?? [] };
  };

  const packages = all.filter((e) => e.localName === 'RegistryPackage').map(objectOf);
  const isNode = (o: RegistryObject, node: string) => o.classifications.some((c) => attr(c, 'classificationNode') === node);
  const submission =
    packages.find((p) => isNode(p, XDS.submissionSetNode)) ??
    packages.find((p) => p.identifiers.some((i) => attr(i, 'identificationScheme') === XDS.submissionSet.uniqueId)) ??
    (packages.filter((p) => !isNode(p, XDS.folderNode)).length === 1 ? packages.find((p) => !isNode(p, XDS.folderNode)) : undefined);

  return {
    submissionSet: submission ? submissionSetOf(submission) : null,
    documentEntries: all.filter((e) => e.localName === 'ExtrinsicObject').map((e) => documentEntryOf(objectOf(e))),
  };
}

interface RegistryObject {
  el: Element;
  id: string;
  classifications: Element[];
  identifiers: Element[];
}

function submissionSetOf(o: RegistryObject): XdmSubmissionSet {
  const ss = XDS.submissionSet;
  return {
    entryUUID: o.id,
    uniqueId: identifier(o, ss.uniqueId),
    sourceId: identifier(o, ss.sourceId),
    patientId: identifier(o, ss.patientId),
    submissionTime: slotValue(o.el, 'submissionTime'),
    title: localizedString(o.el, 'Name'),
    comments: localizedString(o.el, 'Description'),
    contentTypeCode: codes(o, ss.contentTypeCode)[0] ?? null,
    authors: authors(o, ss.author),
    intendedRecipients: slotValues(o.el, 'intendedRecipient'),
    limitedMetadata: o.classifications.some((c) => attr(c, 'classificationNode') === XDS.submissionSetLimited),
  };
}

function documentEntryOf(o: RegistryObject): XdmDocumentEntry {
  const de = XDS.documentEntry;
  const size = slotValue(o.el, 'size');
  return {
    entryUUID: o.id,
    uniqueId: identifier(o, de.uniqueId),
    patientId: identifier(o, de.patientId),
    sourcePatientId: slotValue(o.el, 'sourcePatientId'),
    sourcePatientInfo: slotValues(o.el, 'sourcePatientInfo'),
    mimeType: attr(o.el, 'mimeType'),
    hash: slotValue(o.el, 'hash')?.toLowerCase() ?? null,
    size: size !== null && /^[0-9]{1,15}$/.test(size) ? Number(size) : null,
    uri: uriOf(slotValues(o.el, 'URI')),
    title: localizedString(o.el, 'Name'),
    comments: localizedString(o.el, 'Description'),
    creationTime: slotValue(o.el, 'creationTime'),
    serviceStartTime: slotValue(o.el, 'serviceStartTime'),
    serviceStopTime: slotValue(o.el, 'serviceStopTime'),
    languageCode: slotValue(o.el, 'languageCode'),
    repositoryUniqueId: slotValue(o.el, 'repositoryUniqueId'),
    legalAuthenticator: slotValue(o.el, 'legalAuthenticator'),
    classCode: codes(o, de.classCode)[0] ?? null,
    typeCode: codes(o, de.typeCode)[0] ?? null,
    formatCode: codes(o, de.formatCode)[0] ?? null,
    healthcareFacilityTypeCode: codes(o, de.healthcareFacilityTypeCode)[0] ?? null,
    practiceSettingCode: codes(o, de.practiceSettingCode)[0] ?? null,
    confidentialityCodes: codes(o, de.confidentialityCode),
    eventCodes: codes(o, de.eventCodeList),
    authors: authors(o, de.author),
    limitedMetadata: o.classifications.some((c) => attr(c, 'classificationNode') === XDS.documentEntryLimited),
  };
}

/**
 * The URI slot. XDS.a let a URI longer than a slot value (128 characters then) be split into values
 * `1|…`, `2|…` (TF-3 4.2.3.2.24): those are put back together in order.
 */
function uriOf(values: string[]): string | null {
  if (values.length > 1 && values.every((v) => /^[0-9]+\|/.test(v))) {
    return values
      .map((v) => ({ n: Number(v.slice(0, v.indexOf('|'))), part: v.slice(v.indexOf('|') + 1) }))
      .sort((a, b) => a.n - b.n)
      .map((p) => p.part)
      .join('');
  }
  return values[0] ?? null;
}

function identifier(o: RegistryObject, scheme: string): string | null {
  const e = o.identifiers.find((i) => attr(i, 'identificationScheme') === scheme);
  return e ? (attr(e, 'value')?.trim() ?? null) : null;
}

function codes(o: RegistryObject, scheme: string): XdsCodedValue[] {
  return o.classifications
    .filter((c) => attr(c, 'classificationScheme') === scheme)
    .map((c) => ({ code: attr(c, 'nodeRepresentation') ?? '', codingScheme: slotValue(c, 'codingScheme'), displayName: localizedString(c, 'Name') }));
}

function authors(o: RegistryObject, scheme: string): XdmAuthorInfo[] {
  return o.classifications
    .filter((c) => attr(c, 'classificationScheme') === scheme)
    .map((c) => ({
      person: slotValue(c, 'authorPerson'),
      institutions: slotValues(c, 'authorInstitution'),
      roles: slotValues(c, 'authorRole'),
      specialties: slotValues(c, 'authorSpecialty'),
      telecommunications: slotValues(c, 'authorTelecommunication'),
    }));
}

/** Values of the direct child Slot `name` of `el` (not of nested classifications). */
function slotValues(el: Element, name: string): string[] {
  const slot = children(el, 'Slot').find((s) => attr(s, 'name') === name);
  if (!slot) return [];
  return children(slot, 'ValueList')
    .flatMap((list) => children(list, 'Value'))
    .map((v) => (v.textContent ?? '').trim());
}

function slotValue(el: Element, name: string): string | null {
  const v = slotValues(el, name)[0];
  return v === undefined || v === '' ? null : v;
}

/** `<Name><LocalizedString value=…/></Name>` (or Description) directly under `el`. */
function localizedString(el: Element, container: 'Name' | 'Description'): string | null {
  for (const c of children(el, container)) {
    const s = children(c, 'LocalizedString')[0];
    if (s) return attr(s, 'value');
  }
  return null;
}

function children(el: Element, localName: string): Element[] {
  const out: Element[] = [];
  for (let n = el.firstChild; n; n = n.nextSibling) if (n.nodeType === 1 && (n as Element).localName === localName) out.push(n as Element);
  return out;
}

/** Every element, in document order, without recursion (readXml bounded the depth and count). */
function elements(root: Element): Element[] {
  const out: Element[] = [];
  const stack: Element[] = [root];
  while (stack.length > 0) {
    const el = stack.pop()!;
    out.push(el);
    const kids: Element[] = [];
    for (let n = el.firstChild; n; n = n.nextSibling) if (n.nodeType === 1) kids.push(n as Element);
    for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]!);
  }
  return out;
}

function attr(el: Element, name: string): string | null {
  return el.hasAttribute(name) ? el.getAttribute(name) : null;
}

function parentId(el: Element): string {
  const p = el.parentNode;
  return p && p.nodeType === 1 ? (attr(p as Element, 'id') ?? '') : '';
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

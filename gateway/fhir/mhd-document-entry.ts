import { xmlSafe, type DocumentCodes, type XdsCode } from '../documents/xdm-metadata-writer.js';
import type { XdmEntryDescription } from '../flows/send-message.js';

/**
 * The XDS DocumentEntry an MHD DocumentReference describes, for the XDM package of an ITI-65 send
 * ("XDM built from the same metadata", issue 16). The mapping is MHD's (ITI TF-2 3.65.4.1.2.1, the
 * IHE.MHD.Minimal.DocumentReference profile's "XDS and MHD Mapping", after ITI TF-3 4.5.1):
 *
 * | DocumentReference | DocumentEntry |
 * |---|---|
 * | type | typeCode |
 * | category (MHD: 0..1) | classCode |
 * | securityLabel (0..*) | confidentialityCode (0..*) |
 * | content.format | formatCode |
 * | context.facilityType, context.practiceSetting | healthcareFacilityTypeCode, practiceSettingCode |
 * | content.attachment.creation (else date) | creationTime |
 * | content.attachment.language | languageCode |
 * | content.attachment.title | title |
 * | description | comments |
 *
 * Only what is given is written: Minimal Metadata lets every one of these be absent, and XDM takes an
 * entry without them as limited metadata (TF-3 4.2.3.2.29; the writer marks it). Nothing is guessed
 * (no format code from the media type, no "normal" confidentiality). What is given but cannot be
 * written as XDS (a concept without a coded value, a code XML cannot carry, a date that is none) is
 * refused with the element's path, as every other rule of the Bundle.
 */

/** Bounds of the metadata read: XDS writes each value in an attribute or a slot, held whole. */
export const ENTRY_LIMITS = Object.freeze({
  /** Coding.system (a URI; the codingScheme), Coding.code, Coding.display. */
  systemChars: 256,
  codeChars: 256,
  displayChars: 255,
  /** Codings of one CodeableConcept looked at; securityLabels of one DocumentReference. */
  codings: 20,
  securityLabels: 10,
  /** attachment.title (as the SubmissionSet's title), description: longer is cut, at a whole character. */
  titleChars: 255,
  commentsChars: 1024,
});

/** Where a rule broken is reported (the Bundle reader's issue list). */
export interface IssueSink {
  add(expression: string, message: string): void;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Code systems FHIR names by a URL and XDS by the OID HL7 registered for them (FHIR R4
 * terminologies-systems.html lists both): an XDM receiver, such as ETT's samples, expects the OID
 * in codingScheme. A `urn:oid:` system loses its prefix; any other goes as it is (codingScheme is
 * free text in XDS: ETT's and the Java RI's samples have "LOINC", "Connect-a-thon classCodes").
 */
const OID_OF_SYSTEM = new Map<string, string>([
  ['http://loinc.org', '2.16.840.1.113883.6.1'],
  ['http://snomed.info/sct', '2.16.840.1.113883.6.96'],
  ['http://terminology.hl7.org/CodeSystem/v3-Confidentiality', '2.16.840.1.113883.5.25'],
  ['http://terminology.hl7.org/CodeSystem/v3-ActCode', '2.16.840.1.113883.5.4'],
  ['http://terminology.hl7.org/CodeSystem/v3-RoleCode', '2.16.840.1.113883.5.111'],
  ['http://nucc.org/provider-taxonomy', '2.16.840.1.113883.6.101'],
  ['http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode', '1.3.6.1.4.1.19376.1.2.3'],
]);

/**
 * Reads the DocumentReference-wide metadata at once (its rules broken go to `issues` once), and
 * returns the reader of each `content`: the entry of that attachment.
 */
export function readDocumentEntry(doc: Json, at: string, issues: IssueSink): (content: Json, contentAt: string) => XdmEntryDescription {
  const codes: DocumentCodes = {};
  const typeCode = concept(doc.type, `${at}.type`, issues);
  if (typeCode) codes.typeCode = typeCode;
  // FHIR R4 DocumentReference.category is 0..*; MHD Minimal takes one (classCode is one code).
  if (doc.category !== undefined) {
    if (!Array.isArray(doc.category)) issues.add(`${at}.category`, 'must be a list of CodeableConcepts');
    else if (doc.category.length > 1) issues.add(`${at}.category`, 'holds one CodeableConcept at most: it is the DocumentEntry’s classCode (MHD DocumentReference)');
    else if (doc.category.length === 1) {
      const classCode = concept(doc.category[0], `${at}.category[0]`, issues);
      if (classCode) codes.classCode = classCode;
    }
  }
  if (doc.securityLabel !== undefined) {
    if (!Array.isArray(doc.securityLabel)) issues.add(`${at}.securityLabel`, 'must be a list of CodeableConcepts');
    else if (doc.securityLabel.length > ENTRY_LIMITS.securityLabels) issues.add(`${at}.securityLabel`, `at most ${ENTRY_LIMITS.securityLabels} labels`);
    else {
      const labels = doc.securityLabel.map((l, i) => concept(l, `${at}.securityLabel[${i}]`, issues)).filter((c) => c !== undefined);
      if (labels.length > 0) codes.confidentialityCode = labels;
    }
  }
  if (doc.context !== undefined) {
    if (!isObject(doc.context)) issues.add(`${at}.context`, 'must be an object');
    else {
      const facility = concept(doc.context.facilityType, `${at}.context.facilityType`, issues);
      if (facility) codes.healthcareFacilityTypeCode = facility;
      const setting = concept(doc.context.practiceSetting, `${at}.context.practiceSetting`, issues);
      if (setting) codes.practiceSettingCode = setting;
    }
  }
  const comments = freeText(doc.description, `${at}.description`, ENTRY_LIMITS.commentsChars, issues);
  // DocumentReference.date is when the reference was made (an instant); it stands in for the
  // document's creation only when the attachment does not say (attachment.creation is MHD's mapping).
  const date = doc.date === undefined ? undefined : dtmOf(doc.date, `${at}.date`, true, issues);

  return (content, contentAt) => {
    const attachment = isObject(content.attachment) ? content.attachment : {};
    const aat = `${contentAt}.attachment`;
    const entry: XdmEntryDescription = {};
    const format = content.format === undefined ? undefined : coding(content.format, `${contentAt}.format`, true, issues);
    const all: DocumentCodes = format ? { ...codes, formatCode: format } : { ...codes };
    if (Object.keys(all).length > 0) entry.codes = all;
    const title = freeText(attachment.title, `${aat}.title`, ENTRY_LIMITS.titleChars, issues);
    if (title !== undefined) entry.title = title;
    if (comments !== undefined) entry.comments = comments;
    const creation = attachment.creation === undefined ? undefined : dtmOf(attachment.creation, `${aat}.creation`, false, issues);
    if ((creation ?? date) !== undefined) entry.creationTime = creation ?? date;
    if (attachment.language !== undefined) {
      const language = attachment.language;
      // FHIR R4 Attachment.language: a BCP 47 tag (RFC 5646 §2.1, its syntax without checking the registry).
      if (typeof language === 'string' && language.length <= 64 && /^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$/.test(language)) entry.languageCode = language;
      else issues.add(`${aat}.language`, 'must be a language tag (BCP 47, e.g. en-US)');
    }
    return entry;
  };
}

/**
 * A CodeableConcept as one XDS code: its first Coding with a system and a code (the others are
 * translations of the same concept: FHIR R4 datatypes, CodeableConcept). A concept with none (text only)
 * cannot be written as an XDS code and is refused.
 */
function concept(value: unknown, at: string, issues: IssueSink): XdsCode | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value)) {
    issues.add(at, 'must be a CodeableConcept (an object with coding)');
    return undefined;
  }
  const codings = value.coding;
  if (codings !== undefined && !Array.isArray(codings)) {
    issues.add(`${at}.coding`, 'must be a list of Codings');
    return undefined;
  }
  if (codings !== undefined && codings.length > ENTRY_LIMITS.codings) {
    issues.add(`${at}.coding`, `at most ${ENTRY_LIMITS.codings} codings`);
    return undefined;
  }
  let first: XdsCode | undefined;
  let malformed = false;
  (codings ?? []).forEach((c, i) => {
    const code = coding(c, `${at}.coding[${i}]`, false, issues);
    if (code === null) malformed = true;
    else first ??= code;
  });
  if (!first && !malformed) issues.add(`${at}.coding`, 'needs a Coding with a system and a code: the DocumentEntry carries a coded value (ITI TF-3 4.2.3.1.2)');
  return malformed ? undefined : first;
}

/**
 * A Coding as an XDS code (code, codingScheme, displayName). Null when malformed (reported); undefined
 * when incomplete, and `complete` is not asked (a CodeableConcept's other codings may do).
 */
function coding(value: unknown, at: string, complete: boolean, issues: IssueSink): XdsCode | null | undefined {
  if (!isObject(value)) {
    issues.add(at, 'must be a Coding (an object with system and code)');
    return null;
  }
  const fields = [
    // FHIR R4 datatypes: uri has no whitespace; code has no leading, trailing or double whitespace.
    ['system', ENTRY_LIMITS.systemChars, /^\S+$/],
    ['code', ENTRY_LIMITS.codeChars, /^\S+(?: \S+)*$/],
    ['display', ENTRY_LIMITS.displayChars, /\S/],
  ] as const;
  let malformed = false;
  for (const [name, max, form] of fields) {
    const v = value[name];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v.length > max || !form.test(v) || !xmlSafe(v)) {
      issues.add(`${at}.${name}`, `must be a ${name === 'system' ? 'URI' : name === 'code' ? 'code' : 'text'} of at most ${max} characters XML can carry`);
      malformed = true;
    }
  }
  if (malformed) return null;
  const { system, code, display } = value as { system?: string; code?: string; display?: string };
  if (system === undefined || code === undefined) {
    if (complete) issues.add(at, 'needs a system and a code: the DocumentEntry carries a coded value (ITI TF-3 4.2.3.1.2)');
    return complete ? null : undefined;
  }
  const oid = /^urn:oid:([0-2](?:\.(?:0|[1-9][0-9]*))+)$/.exec(system);
  return { code, codingScheme: oid ? oid[1]! : (OID_OF_SYSTEM.get(system) ?? system), ...(display !== undefined ? { displayName: display } : {}) };
}

/** A free text (title, description): a string XML can carry, cut at `max` characters (never inside a surrogate pair). */
function freeText(value: unknown, at: string, max: number, issues: IssueSink): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/\S/.test(value) || !xmlSafe(value)) {
    issues.add(at, 'must be a text XML can carry (no control characters, no lone surrogates)');
    return undefined;
  }
  return clip(value.trim(), max);
}

/** `value` cut at `max` UTF-16 units, one less when that would split a surrogate pair. */
export function clip(value: string, max: number): string {
  if (value.length <= max) return value;
  const code = value.charCodeAt(max - 1);
  return value.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

/**
 * A FHIR R4 dateTime (or an instant: a time is required) as an XDS DTM (TF-3 4.2.3.1.5): of the
 * precision given (a day stays YYYYMMDD), a time converted to UTC; seconds' fractions dropped.
 */
function dtmOf(value: unknown, at: string, instant: boolean, issues: IssueSink): string | undefined {
  const m = typeof value === 'string' && value.length <= 40 ? /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(Z|[+-]\d{2}:\d{2}))?)?)?$/.exec(value) : null;
  const dtm = m && (!instant || m[4] !== undefined) ? utcDtm(m) : undefined;
  if (dtm === undefined) issues.add(at, instant ? 'must be a FHIR instant (YYYY-MM-DDThh:mm:ss with a time zone)' : 'must be a FHIR dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone)');
  return dtm;
}

function utcDtm(m: RegExpExecArray): string | undefined {
  const [, y, mo, d, h, mi, s, zone] = m;
  const year = Number(y);
  const month = mo === undefined ? 1 : Number(mo);
  const day = d === undefined ? 1 : Number(d);
  const at = new Date(0);
  at.setUTCFullYear(year, month - 1, day);
  // The calendar must keep what was written: no 13th month, no 30 February.
  if (year === 0 || at.getUTCFullYear() !== year || at.getUTCMonth() !== month - 1 || at.getUTCDate() !== day) return undefined;
  if (h === undefined) return `${y}${mo ?? ''}${d ?? ''}`;
  const [hours, minutes, seconds] = [Number(h), Number(mi), Number(s)];
  const offset = zone === 'Z' ? 0 : (zone!.startsWith('-') ? -1 : 1) * (Number(zone!.slice(1, 3)) * 60 + Number(zone!.slice(4, 6)));
  if (hours > 23 || minutes > 59 || seconds > 59 || Math.abs(offset) > 14 * 60 || Number(zone?.slice(4, 6) ?? 0) > 59) return undefined;
  at.setUTCHours(hours, minutes - offset, seconds, 0);
  const iso = at.toISOString();
  return /^\d{4}-/.test(iso) ? iso.replace(/[-:T]/g, '').slice(0, 14) : undefined;
}

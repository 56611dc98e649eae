import type { Document, Element } from '@xmldom/xmldom';
import { hl7Child, hl7Children, hl7Path } from './hl7-dom.js';

/** A patient identifier of the header (`recordTarget/patientRole/id`, CDA R2 §4.2.2.11). */
export interface CcdaPatientId {
  /** The assigning authority's OID or UUID. */
  root: string;
  /** The identifier under that root; null when the root alone identifies. */
  extension: string | null;
}

/**
 * Who and what a C-CDA is about, from its header (CDA R2 §4.2), as plain JSON: the API returns
 * `ccda: {title, patient, author, date}` of received documents from it. Strings are display text:
 * whitespace collapsed, bidirectional controls replaced (see {@link displayText}), at most
 * {@link SUMMARY_TEXT_MAX} characters; dates are ISO 8601 at the precision the document gives.
 */
export interface CcdaSummary {
  /** `ClinicalDocument/title` (CDA R2 §4.2.1.3). */
  title: string | null;
  patient: {
    /** The first `patient/name`, legal (`use="L"`) first: prefixes, given names, family names, suffixes. */
    name: string | null;
    /** `patient/birthTime`, e.g. `1947-05-01`. */
    birthTime: string | null;
    /** `administrativeGenderCode`: its displayName, else Male/Female/Undifferentiated for M/F/UN, else the code. */
    gender: string | null;
    /** `patientRole/id` with a root, at most {@link SUMMARY_MAX_IDS}. */
    ids: CcdaPatientId[];
  };
  /** The first author (CDA R2 §4.2.2.2): its person's name, else its device (model, software). */
  author: string | null;
  /** The custodian organization (who keeps the document, CDA R2 §4.2.2.3), else the first author's organization. */
  organization: string | null;
  /** `ClinicalDocument/effectiveTime`: when the document was created (CDA R2 §4.2.1.4). */
  date: string | null;
}

/** A summary holds display strings, not documents: longer ones are cut (with an ellipsis). */
export const SUMMARY_TEXT_MAX = 500;
/** Patient identifiers kept in a summary (a real header has a handful). */
export const SUMMARY_MAX_IDS = 20;

/** AdministrativeGender (HL7 v3 code system 2.16.840.1.113883.5.1). */
const GENDERS: ReadonlyMap<string, string> = new Map([
  ['M', 'Male'],
  ['F', 'Female'],
  ['UN', 'Undifferentiated'],
]);

/**
 * Unicode explicit directional embeddings, overrides and isolates (UAX #9 §2.1-2.4): one of them in
 * a name or a dose can show "01" as "10" or hide text ("Trojan Source", CVE-2021-42574). They are
 * replaced by U+FFFD, which shows that something was there; the implicit marks LRM, RLM and ALM stay
 * (they cannot reorder strong characters, and right-to-left scripts need no controls to display).
 */
export const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/g;

/** Text for display: whitespace collapsed and trimmed, bidirectional controls replaced, at most `max` characters. */
export function displayText(raw: string, max = SUMMARY_TEXT_MAX): string {
  const text = raw.replace(/\s+/g, ' ').trim().replace(BIDI_CONTROLS, '\uFFFD');
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * The header summary of a CDA document already read (and checked to be a ClinicalDocument) by the
 * caller. Only fixed paths of the header are read (never a search of the document: an `author` of an
 * entry is not the document's author).
 */
export function summarizeCcda(doc: Document): CcdaSummary {
  const root = doc.documentElement!;
  const patientRole = hl7Path(root, 'recordTarget', 'patientRole');
  const patient = patientRole ? hl7Child(patientRole, 'patient') : null;
  const assignedAuthor = hl7Path(root, 'author', 'assignedAuthor');
  return {
    title: textOf(hl7Child(root, 'title')),
    patient: {
      name: patient ? personName(patient) : null,
      birthTime: patient ? hl7Time(hl7Child(patient, 'birthTime')?.getAttribute('value') ?? null) : null,
      gender: patient ? gender(hl7Child(patient, 'administrativeGenderCode')) : null,
      ids: patientRole ? patientIds(patientRole) : [],
    },
    author: assignedAuthor ? authorName(assignedAuthor) : null,
    organization:
      textOf(hl7Path(root, 'custodian', 'assignedCustodian', 'representedCustodianOrganization', 'name')) ??
      textOf(assignedAuthor ? hl7Path(assignedAuthor, 'representedOrganization', 'name') : null),
    date: hl7Time(hl7Child(root, 'effectiveTime')?.getAttribute('value') ?? null),
  };
}

function textOf(el: Element | null): string | null {
  if (!el) return null;
  const text = displayText(el.textContent ?? '');
  return text === '' ? null : text;
}

/** A person name (PN, HL7 v3 data types): its parts in display order, or its text when it has none. */
function personName(holder: Element): string | null {
  const names = hl7Children(holder, 'name');
  const name = names.find((n) => (n.getAttribute('use') ?? '').split(/\s+/).includes('L')) ?? names[0];
  if (!name) return null;
  const parts: string[] = [];
  for (const kind of ['prefix', 'given', 'family', 'suffix']) {
    for (const part of hl7Children(name, kind)) parts.push(part.textContent ?? '');
  }
  const text = displayText(parts.length > 0 ? parts.join(' ') : (name.textContent ?? ''));
  return text === '' ? null : text;
}

function authorName(assignedAuthor: Element): string | null {
  const person = hl7Child(assignedAuthor, 'assignedPerson');
  if (person) return personName(person);
  const device = hl7Child(assignedAuthor, 'assignedAuthoringDevice');
  if (!device) return null;
  const parts = [textOf(hl7Child(device, 'manufacturerModelName')), textOf(hl7Child(device, 'softwareName'))].filter((p): p is string => p !== null);
  return parts.length > 0 ? displayText(parts.join(', ')) : null;
}

function gender(code: Element | null): string | null {
  if (!code) return null;
  const display = displayText(code.getAttribute('displayName') ?? '');
  if (display !== '') return display;
  const value = displayText(code.getAttribute('code') ?? '');
  return value === '' ? null : (GENDERS.get(value) ?? value);
}

function patientIds(patientRole: Element): CcdaPatientId[] {
  const ids: CcdaPatientId[] = [];
  for (const id of hl7Children(patientRole, 'id')) {
    const root = displayText(id.getAttribute('root') ?? '', 200);
    if (root === '') continue;
    const extension = displayText(id.getAttribute('extension') ?? '', 200);
    ids.push({ root, extension: extension === '' ? null : extension });
    if (ids.length === SUMMARY_MAX_IDS) break;
  }
  return ids;
}

/** HL7 v3 TS (YYYYMMDDHHMMSS.UUUU±ZZZZ, any trailing part absent): year, month, day, hour, minute, second, fraction, zone. */
const HL7_TS = /^(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?$/;

/**
 * An HL7 v3 point in time as ISO 8601 at the precision given (`20120806` → `2012-08-06`,
 * `20130802101010-0500` → `2013-08-02T10:10:10-05:00`); null when absent or not a valid TS. The
 * zone is kept only with a time of day (ISO 8601 has no zoned calendar date).
 */
function hl7Time(value: string | null): string | null {
  if (value === null) return null;
  const m = HL7_TS.exec(value.trim());
  if (!m) return null;
  const [, year, month, day, hour, minute, second, fraction, zone] = m;
  const within = (v: string | undefined, lo: number, hi: number) => v === undefined || (Number(v) >= lo && Number(v) <= hi);
  if (!within(month, 1, 12) || !within(day, 1, 31) || !within(hour, 0, 23) || !within(minute, 0, 59) || !within(second, 0, 60)) return null;
  let iso = year!;
  if (month) iso += `-${month}`;
  if (day) iso += `-${day}`;
  if (hour) {
    iso += `T${hour}`;
    if (minute) iso += `:${minute}`;
    if (second) iso += `:${second}${fraction ?? ''}`;
    if (zone) iso += `${zone.slice(0, 3)}:${zone.slice(3)}`;
  }
  return iso;
}


import { randomUUID } from 'node:crypto';
import { HispError } from '../core/errors.js';

/**
 * Direct Context (the Direct Project's "Implementation Guide for Expressing Context in Direct
 * Messaging", 1.0 of 2016, 1.1 of 2018): the message header `X-Direct-Context` names, by its
 * Content-ID, a text/plain part (`metadata.txt`, an attachment, so that a reader without support
 * still sees it) whose lines are `name: value` fields, as a header section is written (RFC 5322
 * §2.2, folding included): `version`, `id` (unique to the transaction), `patient-id` (`authority:id`
 * pairs separated by `;`, the authority an OID), `type` (`category/action`), `purpose`, `patient`
 * (`parameter=value` pairs separated by `;`), `encapsulation`, and the 1.1 ADT fields.
 */
export const DIRECT_CONTEXT_HEADER = 'X-Direct-Context';
export const DIRECT_CONTEXT_FILENAME = 'metadata.txt';

/** The IG's normative categories and actions of `type` (§3.4): no other values are permitted. */
export const CONTEXT_CATEGORIES = ['laboratory', 'radiology', 'pharmacy', 'referral', 'general', 'error'] as const;
export const CONTEXT_ACTIONS = ['order', 'report', 'result', 'query', 'response', 'notification'] as const;
/** `purpose` (§3.5). */
export const CONTEXT_PURPOSES = ['treatment', 'payment', 'operations', 'emergency', 'research'] as const;
/** The patient matching parameters (§3.6). */
export const CONTEXT_PATIENT_PARAMETERS = [
  'givenName',
  'surname',
  'middleName',
  'dateOfBirth',
  'gender',
  'socialSecurityNumber',
  'telephoneNumber',
  'streetAddress',
  'localityName',
  'stateOrProvinceName',
  'postalCode',
  'country',
  'directAddress',
] as const;
export type ContextPatientParameter = (typeof CONTEXT_PATIENT_PARAMETERS)[number];

export interface DirectContext {
  version: string;
  id: string;
  patientId?: { authority: string; id: string }[];
  type?: { category: string; action: string };
  purpose?: string;
  patient?: Partial<Record<ContextPatientParameter, string>>;
  encapsulation?: string;
  /** Fields this reader does not interpret (the 1.1 ADT fields, later ones), as they came. */
  other?: Record<string, string>;
}

/** Bounds of a metadata part read from a message (hostile input). */
export const DIRECT_CONTEXT_LIMITS = { bytes: 64 * 1024, fields: 100, patientIds: 20 } as const;

const KNOWN = new Set(['version', 'id', 'patient-id', 'type', 'purpose', 'patient', 'encapsulation']);

/** Reads a `metadata.txt` part. Throws HISP_CONTEXT_MALFORMED (never anything else) for what is not one. */
export function parseDirectContext(bytes: Buffer): DirectContext {
  if (bytes.length > DIRECT_CONTEXT_LIMITS.bytes) bad(`the metadata part is larger than ${DIRECT_CONTEXT_LIMITS.bytes} octets`);
  // A header section's text: unfold (RFC 5322 §2.2.3), then one field a line.
  const text = bytes.toString('utf8').replace(/\r?\n[ \t]+/g, ' ');
  const fields = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) bad('a line of the metadata part is not "name: value"');
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!/^[a-z0-9-]{1,64}$/.test(name)) bad('a field name of the metadata part is not a name');
    if (fields.has(name)) bad(`the field ${name} appears twice`);
    if (fields.size >= DIRECT_CONTEXT_LIMITS.fields) bad(`more than ${DIRECT_CONTEXT_LIMITS.fields} fields`);
    fields.set(name, line.slice(colon + 1).trim());
  }
  const version = fields.get('version');
  if (version === undefined || version === '') bad('no version (§3.1: required)');
  if (!/^1\.[0-9]+$/.test(version)) bad(`version ${JSON.stringify(version.slice(0, 20))} is not one this reader knows (1.x)`);
  const id = fields.get('id');
  if (id === undefined || id === '') bad('no id (§3.2: required)');
  if (id.length > 256) bad('the id is longer than 256 characters');
  const context: DirectContext = { version, id };
  const patientId = fields.get('patient-id');
  if (patientId !== undefined) context.patientId = parsePatientIds(patientId);
  const type = fields.get('type');
  if (type !== undefined) context.type = parseType(type);
  const purpose = fields.get('purpose');
  if (purpose !== undefined) {
    if (!(CONTEXT_PURPOSES as readonly string[]).includes(purpose)) bad(`purpose ${JSON.stringify(purpose.slice(0, 40))} is not one of ${CONTEXT_PURPOSES.join(', ')}`);
    context.purpose = purpose;
  }
  const patient = fields.get('patient');
  if (patient !== undefined) context.patient = parsePatient(patient);
  const encapsulation = fields.get('encapsulation');
  if (encapsulation !== undefined) context.encapsulation = encapsulation;
  const other = Object.fromEntries([...fields].filter(([name]) => !KNOWN.has(name)));
  if (Object.keys(other).length > 0) context.other = other;
  return context;
}

/** Writes a `metadata.txt` part (CRLF lines, US-ASCII: values with other characters are refused). */
export function formatDirectContext(context: DirectContext): string {
  const lines: string[] = [`version: ${context.version}`, `id: ${context.id}`];
  if (context.patientId?.length) lines.push(`patient-id: ${context.patientId.map((p) => `${p.authority}:${p.id}`).join('; ')}`);
  if (context.type) lines.push(`type: ${context.type.category}/${context.type.action}`);
  if (context.purpose) lines.push(`purpose: ${context.purpose}`);
  const patient = Object.entries(context.patient ?? {}).filter(([, v]) => v !== undefined && v !== '');
  if (patient.length > 0) lines.push(`patient: ${patient.map(([k, v]) => `${k}=${v}`).join('; ')}`);
  if (context.encapsulation) lines.push(`encapsulation: ${context.encapsulation}`);
  for (const [k, v] of Object.entries(context.other ?? {})) lines.push(`${k}: ${v}`);
  for (const line of lines) {
    if (!/^[\x20-\x7e]*$/.test(line) || line.length > 998) throw new HispError('HISP_CONTEXT_MALFORMED', 'a Direct Context value must be printable US-ASCII on one line');
  }
  const text = `${lines.join('\r\n')}\r\n`;
  // What is written must read back: the same rules both ways.
  parseDirectContext(Buffer.from(text));
  return text;
}

/** A new context's id (§3.2: unique to the transaction). */
export function newContextId(): string {
  return randomUUID();
}

function parsePatientIds(value: string): { authority: string; id: string }[] {
  const pairs = value.split(';').map((p) => p.trim()).filter((p) => p !== '');
  if (pairs.length === 0 || pairs.length > DIRECT_CONTEXT_LIMITS.patientIds) bad(`patient-id must hold 1 to ${DIRECT_CONTEXT_LIMITS.patientIds} authority:id pairs`);
  return pairs.map((pair) => {
    const colon = pair.indexOf(':');
    const authority = pair.slice(0, colon).trim();
    const id = pair.slice(colon + 1).trim();
    // §3.3: the pid-context is an OID (the assigning authority).
    if (colon <= 0 || id === '' || !/^[0-2](\.(0|[1-9][0-9]*))+$/.test(authority)) bad('patient-id is not "OID:id" pairs separated by ";"');
    return { authority, id };
  });
}

function parseType(value: string): { category: string; action: string } {
  const [category, action, ...rest] = value.split('/').map((s) => s.trim());
  if (rest.length > 0 || !(CONTEXT_CATEGORIES as readonly string[]).includes(category ?? '') || !(CONTEXT_ACTIONS as readonly string[]).includes(action ?? '')) {
    bad(`type ${JSON.stringify(value.slice(0, 60))} is not category/action (${CONTEXT_CATEGORIES.join('|')} / ${CONTEXT_ACTIONS.join('|')})`);
  }
  return { category: category!, action: action! };
}

function parsePatient(value: string): Partial<Record<ContextPatientParameter, string>> {
  const out: Partial<Record<ContextPatientParameter, string>> = {};
  for (const pair of value.split(';').map((p) => p.trim()).filter((p) => p !== '')) {
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    if (eq <= 0 || !(CONTEXT_PATIENT_PARAMETERS as readonly string[]).includes(name)) bad(`patient: ${JSON.stringify(pair.slice(0, 40))} is not parameter=value with a parameter of §3.6`);
    out[name as ContextPatientParameter] = pair.slice(eq + 1).trim();
  }
  return out;
}

function bad(reason: string): never {
  throw new HispError('HISP_CONTEXT_MALFORMED', `Direct Context: ${reason}`);
}

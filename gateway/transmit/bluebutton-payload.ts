import type { SendRequest } from '../flows/send-message.js';

/**
 * The text parts of a Blue Button+ transmission (BB+ "Transmitting Data Using the Direct Protocol",
 * §F Payload; requirements R-FMT-7): the body sentence naming who sent and at whose request, and the
 * optional request.txt naming the destination, the patient, the data holder and whether it recurs.
 * Names come from the authorization (the schema bars control characters, so a name cannot add a line).
 */

/** "This message was sent by [Data Holder Name] at the request of [Patient Name]." (§F, verbatim). */
export function contextSentence(dataHolder: string, patient: string): string {
  return `This message was sent by ${dataHolder} at the request of ${patient}.`;
}

/** request.txt: one `Field: value` line each (§F), CRLF as a text/plain MIME part's canonical line end (RFC 2046 §4.1.1). */
export function requestTxt(facts: { destination: string; patient: string; dataHolder: string; recurring: boolean }): Buffer {
  const lines = [`Destination: ${facts.destination}`, `Patient: ${facts.patient}`, `Data-holder: ${facts.dataHolder}`, `Recurring: ${facts.recurring ? 'Yes' : 'No'}`];
  return Buffer.from(`${lines.join('\r\n')}\r\n`, 'utf8');
}

/** A value the Direct Context metadata can carry as it is (printable US-ASCII without its separators `;` and `=`). */
const CONTEXT_VALUE = /^[\x20-\x3a\x3c\x3e-\x7e]{1,200}$/;
/** An assigning authority that is an OID (Direct Context §3.3: `patient-id` pairs are `OID:id`). */
const OID = /^[0-2](\.(0|[1-9][0-9]*))+$/;

/**
 * The Direct Context of a transmission (issue 16: "written on send from the authorization and
 * patient"; documents/direct-context.ts): the patient's id under its assigning authority when that
 * is an OID, the date of birth, and the type of what goes (a new result: laboratory/result; any
 * other record: general/report). Only values the metadata can carry as they are go along: a name
 * is one string to hisp (the guide wants given name and surname apart), so it is left to the
 * C-CDA, whose header has it. Purpose is left out: a patient's own request is none of the guide's
 * five (treatment, payment, operations, emergency, research).
 */
export function transmissionContext(patient: { patientRef: string; assigningAuthority: string | null; birthDate: string | null }, trigger: string): NonNullable<SendRequest['context']> {
  const context: NonNullable<SendRequest['context']> = { type: trigger === 'new-result' ? { category: 'laboratory', action: 'result' } : { category: 'general', action: 'report' } };
  if (patient.assigningAuthority !== null && OID.test(patient.assigningAuthority) && CONTEXT_VALUE.test(patient.patientRef)) {
    context.patientId = [{ authority: patient.assigningAuthority, id: patient.patientRef }];
  }
  if (patient.birthDate !== null && CONTEXT_VALUE.test(patient.birthDate)) context.patient = { dateOfBirth: patient.birthDate };
  return context;
}

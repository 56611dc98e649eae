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

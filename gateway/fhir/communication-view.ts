import type { Communication, CommunicationPayload, DocumentReference } from '@medplum/fhirtypes';
import type { MailboxMessageView } from '../mailbox/mailbox-message.js';

/** A mailbox message id (msg_<hex>) as a FHIR id (FHIR R4 datatypes id: [A-Za-z0-9-.]{1,64}, no underscore). */
export function communicationId(messageId: string): string {
  return messageId.replace(/^msg_/, 'msg-');
}

/** The mailbox message id of a Communication id; undefined when it is not one. */
export function mailboxMessageId(communicationId: string): string | undefined {
  return /^msg-[0-9a-f]{24}$/.test(communicationId) ? communicationId.replace(/^msg-/, 'msg_') : undefined;
}

/**
 * A received message as a FHIR R4 Communication: `recipient` the mailbox, `sender` the signer's
 * From, `received` when hisp took it, `status` completed once the PHR acknowledged it (its final
 * delivery) and in-progress while it waits; `subject` the patient of its Direct Context. The body (text, html) goes as attachments of the
 * payload; each attached document as a DocumentReference, contained, its attachment's url the
 * part's octets at `GET /v1/mailboxes/{address}/messages/{id}/parts/{pid}` (same key, same scope).
 */
export function communicationFor(view: MailboxMessageView, mailbox: string, messageId: string | null, base: string): Communication {
  const partUrl = (pid: string) => `${base}/v1/mailboxes/${encodeURIComponent(mailbox)}/messages/${view.id}/parts/${pid}`;
  const payload: CommunicationPayload[] = [];
  const contained: DocumentReference[] = [];
  for (const part of view.parts) {
    const attachment = { contentType: part.contentType, url: partUrl(part.id), size: part.size, ...(part.filename !== null ? { title: part.filename } : {}) };
    if (part.id === 'text' || part.id === 'html') {
      payload.push({ contentAttachment: attachment });
      continue;
    }
    contained.push({
      resourceType: 'DocumentReference',
      id: part.id,
      status: 'current',
      // The part's SHA-256 (FHIR's Attachment.hash is SHA-1: not computed here), as an identifier.
      identifier: [{ system: 'urn:ietf:rfc:3986', value: `ni:///sha-256;${Buffer.from(part.sha256, 'hex').toString('base64url')}` }],
      ...(part.filename !== null ? { description: part.filename } : {}),
      content: [{ attachment }],
    });
    payload.push({ contentReference: { reference: `#${part.id}`, type: 'DocumentReference' } });
  }
  const communication: Communication = {
    resourceType: 'Communication',
    id: communicationId(view.id),
    ...(contained.length > 0 ? { contained } : {}),
    identifier: messageId ? [{ system: 'urn:ietf:rfc:3986', value: `mid:${encodeURIComponent(messageId)}` }] : [],
    status: view.acknowledgedAt ? 'completed' : 'in-progress',
    medium: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationMode', code: 'EMAILWRIT', display: 'email' }] }],
    received: view.receivedAt,
    recipient: [{ identifier: { system: 'urn:ietf:rfc:3986', value: `mailto:${mailbox}` }, display: mailbox }],
    payload,
  };
  if (view.from) communication.sender = { identifier: { system: 'urn:ietf:rfc:3986', value: `mailto:${view.from}` }, display: view.from };
  if (view.subject) communication.topic = { text: view.subject };
  // The patient the sender named in its Direct Context (IG for Expressing Context in Direct Messaging §3.3, §3.6).
  const context = view.context?.valid ? view.context : undefined;
  const pid = context?.patientId?.[0];
  const name = [context?.patient?.givenName, context?.patient?.surname].filter((n) => n !== undefined).join(' ');
  if (pid || name !== '') {
    communication.subject = { ...(pid ? { identifier: { system: `urn:oid:${pid.authority}`, value: pid.id } } : {}), ...(name !== '' ? { display: name } : {}) };
  }
  return communication;
}

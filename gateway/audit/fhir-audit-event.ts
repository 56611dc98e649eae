import type { AuditEvent, AuditEventAgent, AuditEventEntity, Coding } from '@medplum/fhirtypes';
import type { AuditEntry } from './audit-log.js';

/** hisp's own code systems (the action names, the actors' identifiers), under one base. */
export const HISP_SYSTEM = 'urn:hisp';

/** DICOM audit event types (DICOM PS3.15 A.5.3, the codes FHIR R4's audit-event-type value set takes). */
const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const EVENT_TYPES = {
  export: { system: DCM, code: '110106', display: 'Export' },
  import: { system: DCM, code: '110107', display: 'Import' },
  patientRecord: { system: DCM, code: '110110', display: 'Patient Record' },
  securityAttributes: { system: DCM, code: '110137', display: 'User Security Attributes Changed' },
  application: { system: DCM, code: '110100', display: 'Application Activity' },
} as const satisfies Record<string, Coding>;

/**
 * One audit entry as a FHIR R4 AuditEvent (`hisp audit export`, issue 16): `type` the DICOM event
 * type of what was done (a message sent: Export; received: Import; a patient's authorization or
 * transmission: Patient Record; an API key: User Security Attributes Changed), `subtype` hisp's own
 * action name, `action` C/U/D/E, `outcome` 0 (success) or 8 (serious failure), the agent who did it
 * (identified in hisp's terms: `urn:hisp:actor:api-key` and so on), the source (this hisp), and
 * the entities: the object, the patient when there is one, and the entry's chain hashes (so that an
 * exported file can be checked against the store's chain).
 */
export function toFhirAuditEvent(entry: AuditEntry, observer: string): AuditEvent {
  const entities: AuditEventEntity[] = [
    {
      what: { identifier: { system: `${HISP_SYSTEM}:${entry.object.kind}`, value: entry.object.id } },
      // audit-entity-type 2: System Object.
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '2', display: 'System Object' },
      detail: [
        { type: 'hisp-detail', valueString: JSON.stringify(entry.detail) },
        { type: 'hisp-prev-hash', valueString: entry.prevHash },
        { type: 'hisp-hash', valueString: entry.hash },
      ],
    },
  ];
  if (entry.patientRef !== null) {
    entities.push({
      what: { identifier: { system: `${HISP_SYSTEM}:patient`, value: entry.patientRef } },
      // audit-entity-type 1: Person; object-role 1: Patient.
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '1', display: 'Person' },
      role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1', display: 'Patient' },
    });
  }
  const agent: AuditEventAgent = {
    who: { identifier: { system: `${HISP_SYSTEM}:actor:${entry.actor.kind}`, value: entry.actor.id }, display: `${entry.actor.kind} ${entry.actor.id}` },
    requestor: entry.actor.kind !== 'system',
  };
  return {
    resourceType: 'AuditEvent',
    id: entry.id,
    type: eventType(entry),
    subtype: [{ system: `${HISP_SYSTEM}:audit-action`, code: entry.action }],
    action: actionCode(entry.action),
    recorded: new Date(entry.at).toISOString(),
    outcome: entry.outcome === 'success' ? '0' : '8',
    agent: [agent],
    // security-source-type 4: Application Server.
    source: { observer: { display: observer }, type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' }] },
    entity: entities,
  };
}

function eventType(entry: AuditEntry): Coding {
  const family = entry.action.slice(0, entry.action.indexOf('.'));
  if (family === 'message') return entry.action === 'message.received' ? EVENT_TYPES.import : EVENT_TYPES.export;
  if (family === 'authorization' || family === 'transmission' || family === 'record') return EVENT_TYPES.patientRecord;
  if (family === 'api-key') return EVENT_TYPES.securityAttributes;
  return EVENT_TYPES.application;
}

/** FHIR audit-event-action: C create, R read, U update, D delete, E execute, by the action's verb. */
function actionCode(action: string): 'C' | 'R' | 'U' | 'D' | 'E' {
  const verb = action.slice(action.lastIndexOf('.') + 1);
  if (['created', 'granted', 'queued', 'received', 'submitted'].includes(verb)) return 'C';
  if (['revoked', 'deleted'].includes(verb)) return 'D';
  if (['updated', 'acknowledged'].includes(verb)) return 'U';
  if (['read', 'listed', 'exported'].includes(verb)) return 'R';
  return 'E';
}

import type { SqliteConnection } from '../store/database.js';

/** One-time, or on every update of the record (Blue Button+ "Transmit" §C, R-BB-1). */
export type TransmitFrequency = 'once' | 'on-update';

/** A destination of an authorization, with how it wants the documents. */
export interface TransmitDestination {
  address: string;
  /** mime: the documents attached; xdm: one XDM zip; both. */
  package: 'mime' | 'xdm' | 'both';
  /** The C-CDA's rendering as text/html along (R-BB-6). */
  humanReadable: boolean;
  /** A request.txt part (BB+ §F Payload, R-FMT-7). */
  requestTxt: boolean;
}

export interface GrantedBy {
  kind: 'patient' | 'representative' | 'staff';
  name: string | null;
}

/** A patient's authorization as stored: nothing is ever deleted, a revocation is a time and who. */
export interface Authorization {
  id: string;
  /** `<assigningAuthority>|<patientRef>`, or the patientRef alone: how the store finds a patient. */
  patientKey: string;
  patientRef: string;
  assigningAuthority: string | null;
  patient: { name: string; birthDate: string | null };
  /** The data holder's Direct address the messages go from. */
  from: string;
  dataHolder: { name: string };
  destinations: TransmitDestination[];
  frequency: TransmitFrequency;
  /** The minimum time between two sends to a destination, in minutes; null: none. */
  intervalMinutes: number | null;
  grantedBy: GrantedBy;
  method: 'portal' | 'in-person' | 'written';
  consent: { version: string; sha256: string };
  expiresAt: number | null;
  createdAt: number;
  /** The API key that recorded it. */
  createdBy: string;
  revokedAt: number | null;
  revokedBy: string | null;
  /** A once-authorization: when its first send went, and the document's SHA-256. */
  fulfilledAt: number | null;
  fulfilledSha256: string | null;
}

export type AuthorizationStatus = 'active' | 'revoked' | 'expired' | 'fulfilled';

/** Revoked first (it is final), then expired, then a once-authorization already sent. */
export function authorizationStatus(a: Authorization, now: number): AuthorizationStatus {
  if (a.revokedAt !== null) return 'revoked';
  if (a.expiresAt !== null && a.expiresAt <= now) return 'expired';
  if (a.frequency === 'once' && a.fulfilledAt !== null) return 'fulfilled';
  return 'active';
}

interface Row {
  id: string;
  patient_key: string;
  patient_ref: string;
  assigning_authority: string | null;
  patient_name: string;
  patient_birth_date: string | null;
  from_address: string;
  data_holder_name: string;
  destinations: string;
  frequency: string;
  interval_minutes: number | null;
  granted_by: string;
  method: string;
  consent_version: string;
  consent_sha256: string;
  expires_at: number | null;
  created_at: number;
  created_by: string;
  revoked_at: number | null;
  revoked_by: string | null;
  fulfilled_at: number | null;
  fulfilled_sha256: string | null;
}

const COLUMNS =
  'id, patient_key, patient_ref, assigning_authority, patient_name, patient_birth_date, from_address, data_holder_name, destinations, frequency, interval_minutes, granted_by, method, consent_version, consent_sha256, expires_at, created_at, created_by, revoked_at, revoked_by, fulfilled_at, fulfilled_sha256';

/** The patient's key in the store: the assigning authority, when given, scopes the reference. */
export function patientKey(patientRef: string, assigningAuthority?: string | null): string {
  return assigningAuthority ? `${assigningAuthority}|${patientRef}` : patientRef;
}

/**
 * Patients' authorizations (schema.ts migration 11). Writes run in the caller's transaction (with
 * their audit entry); a revocation or a fulfilment is set once and never changed after.
 */
export class AuthorizationStore {
  private readonly insertRow;
  private readonly byId;
  private readonly byPatient;
  private readonly revokeRow;
  private readonly fulfilRow;

  constructor(sqlite: SqliteConnection) {
    this.insertRow = sqlite.prepare<Row>(`INSERT INTO transmit_authorizations (${COLUMNS}) VALUES (${COLUMNS.split(', ').map((c) => `@${c}`).join(', ')})`);
    this.byId = sqlite.prepare<[string], Row>(`SELECT ${COLUMNS} FROM transmit_authorizations WHERE id = ?`);
    this.byPatient = sqlite.prepare<[string], Row>(`SELECT ${COLUMNS} FROM transmit_authorizations WHERE patient_key = ? ORDER BY created_at, id`);
    this.revokeRow = sqlite.prepare<[number, string, string]>('UPDATE transmit_authorizations SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL');
    this.fulfilRow = sqlite.prepare<[number, string, string]>('UPDATE transmit_authorizations SET fulfilled_at = ?, fulfilled_sha256 = ? WHERE id = ? AND fulfilled_at IS NULL AND revoked_at IS NULL');
  }

  insert(a: Authorization): void {
    this.insertRow.run({
      id: a.id,
      patient_key: a.patientKey,
      patient_ref: a.patientRef,
      assigning_authority: a.assigningAuthority,
      patient_name: a.patient.name,
      patient_birth_date: a.patient.birthDate,
      from_address: a.from,
      data_holder_name: a.dataHolder.name,
      destinations: JSON.stringify(a.destinations),
      frequency: a.frequency,
      interval_minutes: a.intervalMinutes,
      granted_by: JSON.stringify(a.grantedBy),
      method: a.method,
      consent_version: a.consent.version,
      consent_sha256: a.consent.sha256,
      expires_at: a.expiresAt,
      created_at: a.createdAt,
      created_by: a.createdBy,
      revoked_at: a.revokedAt,
      revoked_by: a.revokedBy,
      fulfilled_at: a.fulfilledAt,
      fulfilled_sha256: a.fulfilledSha256,
    });
  }

  get(id: string): Authorization | undefined {
    const row = this.byId.get(id);
    return row ? toAuthorization(row) : undefined;
  }

  /** The patient's authorizations, oldest first, revoked ones included. */
  listByPatient(key: string): Authorization[] {
    return this.byPatient.all(key).map(toAuthorization);
  }

  /** Revokes it; false when it was revoked already (the first revocation stands). */
  revoke(id: string, at: number, by: string): boolean {
    return this.revokeRow.run(at, by, id).changes === 1;
  }

  /** Marks a once-authorization sent (by the document of `sha256`); false when it was already, or is revoked. */
  fulfil(id: string, at: number, sha256: string): boolean {
    return this.fulfilRow.run(at, sha256, id).changes === 1;
  }
}

function toAuthorization(r: Row): Authorization {
  return {
    id: r.id,
    patientKey: r.patient_key,
    patientRef: r.patient_ref,
    assigningAuthority: r.assigning_authority,
    patient: { name: r.patient_name, birthDate: r.patient_birth_date },
    from: r.from_address,
    dataHolder: { name: r.data_holder_name },
    destinations: JSON.parse(r.destinations) as TransmitDestination[],
    frequency: r.frequency as TransmitFrequency,
    intervalMinutes: r.interval_minutes,
    grantedBy: JSON.parse(r.granted_by) as GrantedBy,
    method: r.method as Authorization['method'],
    consent: { version: r.consent_version, sha256: r.consent_sha256 },
    expiresAt: r.expires_at,
    createdAt: r.created_at,
    createdBy: r.created_by,
    revokedAt: r.revoked_at,
    revokedBy: r.revoked_by,
    fulfilledAt: r.fulfilled_at,
    fulfilledSha256: r.fulfilled_sha256,
  };
}

import { createHash } from 'node:crypto';

/** The prev_hash of the first entry: nothing before it. */
export const GENESIS_HASH = '0'.repeat(64);

/** The name under which the chain's hash function is registered on every connection (database.ts). */
export const AUDIT_HASH_FUNCTION = 'hisp_audit_hash';

/** The columns of an audit entry that its hash covers, as stored. */
export interface AuditChainFields {
  seq: number;
  id: string;
  at: number;
  actorKind: string;
  actorId: string;
  action: string;
  objectKind: string;
  objectId: string;
  outcome: string;
  patientRef: string | null;
  /** The stored JSON text, as stored (not re-serialized: its octets are what is hashed). */
  detail: string;
}

/**
 * The hash of an audit entry (issue 16, "Audit"): SHA-256 over the previous entry's hash and every
 * stored column of this one, as a JSON array (one unambiguous serialization: no field can run into
 * the next), hex. Chaining makes an edited or deleted past entry visible: its own hash, or the next
 * entry's prev_hash, no longer matches (`hisp audit verify`). The same function runs in JavaScript
 * for entries appended by the application and, registered on the connection, in SQL for those
 * the event triggers write (schema.ts migration 10), so both hash alike.
 */
export function auditHash(prevHash: string, f: AuditChainFields): string {
  const canonical = JSON.stringify([prevHash, f.seq, f.id, f.at, f.actorKind, f.actorId, f.action, f.objectKind, f.objectId, f.outcome, f.patientRef, f.detail]);
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

/** {@link auditHash} as SQLite calls it (better-sqlite3 user function: positional, SQL values). */
export function auditHashSql(...args: unknown[]): string {
  const [prevHash, seq, id, at, actorKind, actorId, action, objectKind, objectId, outcome, patientRef, detail] = args;
  return auditHash(String(prevHash), {
    seq: Number(seq),
    id: String(id),
    at: Number(at),
    actorKind: String(actorKind),
    actorId: String(actorId),
    action: String(action),
    objectKind: String(objectKind),
    objectId: String(objectId),
    outcome: String(outcome),
    patientRef: typeof patientRef === 'string' ? patientRef : null,
    detail: String(detail),
  });
}

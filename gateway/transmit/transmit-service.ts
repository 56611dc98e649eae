import { patientCx } from '../documents/xdm-pack.js';
import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { AuditLog, AuditOutcome, AuditRecord } from '../audit/audit-log.js';
import { addressInScopes } from '../core/address-scope.js';
import { DirectAddress } from '../core/direct-address.js';
import { HispError } from '../core/errors.js';
import type { MessageTracker } from '../events/message-tracker.js';
import type { RecipientStatus } from '../events/message-status.js';
import type { RecipientCheckServices } from '../flows/recipient-check.js';
import type { MessageSender } from '../flows/send-message.js';
import { validateRecipients } from '../flows/validate-recipients.js';
import type { DocumentKind } from '../mime/message-composer.js';
import type { HispDatabase } from '../store/database.js';
import { AuthorizationStore, authorizationStatus, patientKey, type Authorization, type GrantedBy, type TransmitDestination, type TransmitFrequency } from './authorization-store.js';
import { contextSentence, requestTxt, transmissionContext } from './bluebutton-payload.js';
import { TransmissionStore, type RecordTrigger, type Transmission } from './transmission-store.js';

/** Destinations a push sends to at once (see push). */
const PUSH_CONCURRENCY = 16;

/** Who asks: the API key (its id and its send-as scopes: it sees the authorizations sent from them) and its client. */
export interface TransmitActor {
  keyId: string;
  sendAs: readonly string[];
  client: string;
}

/** The patient a request names: the path's reference, scoped by an assigning authority when given. */
export interface PatientId {
  patientRef: string;
  assigningAuthority?: string | undefined;
}

export interface AuthorizationInput {
  patient: { name: string; birthDate?: string | undefined };
  from: string;
  dataHolder: { name: string };
  destinations: readonly { address: string; package?: TransmitDestination['package'] | undefined; humanReadable?: boolean | undefined; requestTxt?: boolean | undefined }[];
  frequency: TransmitFrequency;
  intervalMinutes?: number | undefined;
  grantedBy: { kind: GrantedBy['kind']; name?: string | undefined };
  method: Authorization['method'];
  consent: { version: string; sha256: string };
  expiresAt?: number | undefined;
}

export interface RecordInput {
  document: { filename: string; contentType: string; kind: DocumentKind; content: Buffer };
  trigger: RecordTrigger;
  madeAt: number;
  subject?: string | undefined;
}

export interface PushOutcome {
  recordId: string;
  sha256: string;
  transmissions: Transmission[];
}

/** A transmission with its message's delivery to the destination, as the tracking has it now. */
export interface TransmissionView extends Transmission {
  delivery: RecipientStatus | null;
}

export interface TransmitServiceDeps {
  db: HispDatabase;
  sender: MessageSender;
  tracker: MessageTracker;
  audit: AuditLog;
  checks: RecipientCheckServices;
  now: () => number;
  /** The recipient check (default validateRecipients, as POST /v1/recipients/validate runs it); tests give their own verdicts. */
  validate?: typeof validateRecipients;
}

/** How long a client waits before asking again when a destination's discovery failed for now. */
export const DESTINATION_RETRY_AFTER_S = 60;
/** The recipient check of an authorization's destinations, all at once. */
const CHECK_TIMEOUT_MS = 30_000;

const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`;

/**
 * Blue Button+ transmit (issue 16; BB+ "Transmitting Data Using the Direct Protocol", requirements
 * §1.11): a patient's authorizations, and records pushed by the data holder's EHR sent to every
 * destination that asked for them, each as its own Direct message through MessageSender (the same
 * queue, signing and tracking as any send).
 *
 * Commits: each destination's message commits with its transmission row and audit entry (and, for
 * the first, the record's row and `record.received`), in the send's own commit; the skipped
 * destinations commit together at the end. A crash midway leaves the destinations reached with
 * their transmission and the others with nothing: the EHR, which had no 202, pushes again, and the
 * same document then goes to those others only (the de-duplication by SHA-256 skips the rest). The
 * check is made again inside each send's commit (and the unique index `transmissions_sent_once`
 * backs it), so that "never twice" holds under concurrent pushes too.
 */
export class TransmitService {
  readonly authorizations: AuthorizationStore;
  readonly transmissions: TransmissionStore;

  constructor(private readonly deps: TransmitServiceDeps) {
    this.authorizations = new AuthorizationStore(deps.db.sqlite);
    this.transmissions = new TransmissionStore(deps.db.sqlite);
  }

  /**
   * Records an authorization once every destination is trusted under the `from` domain's policy
   * for a patient-directed send (decision 5): anything else is HISP_TRANSMIT_DESTINATION_REFUSED
   * with each destination's verdict (transient, 503, when the only trouble is a discovery to try later).
   * The caller has checked that the key may send as `from`.
   */
  async authorize(patient: PatientId, input: AuthorizationInput, actor: TransmitActor): Promise<Authorization> {
    const from = parseAddress(input.from, 'from');
    if (!this.deps.checks.registry.isLocalDomain(from.domain)) throw new HispError('HISP_API_INVALID_REQUEST', `from: ${from.domain} is not a domain of this gateway`);
    const destinations = input.destinations.map((d, i): TransmitDestination => ({
      address: parseAddress(d.address, `destinations/${i}/address`).toString().toLowerCase(),
      package: d.package ?? 'mime',
      humanReadable: d.humanReadable ?? true,
      requestTxt: d.requestTxt ?? false,
    }));
    const seen = new Set<string>();
    destinations.forEach((d, i) => {
      if (seen.has(d.address)) throw new HispError('HISP_API_INVALID_REQUEST', `body /destinations/${i}: the same address twice`);
      seen.add(d.address);
    });
    const now = this.deps.now();
    if (input.expiresAt !== undefined && input.expiresAt <= now) throw new HispError('HISP_API_INVALID_REQUEST', 'body /expiresAt: in the past');

    const verdicts = await (this.deps.validate ?? validateRecipients)(
      destinations.map((d) => d.address),
      { scope: from.toString(), domain: from.domain },
      this.deps.checks,
      { at: new Date(now), patientDirected: true, timeoutMs: CHECK_TIMEOUT_MS },
    );
    const refused = verdicts.filter((v) => v.verdict !== 'trusted');
    if (refused.length > 0) {
      const later = refused.every((v) => v.verdict === 'try-later');
      throw new HispError('HISP_TRANSMIT_DESTINATION_REFUSED', `${refused.length} destination(s) not trusted for a patient-directed send from ${from.domain}: ${refused.map((v) => `${v.address} (${v.verdict})`).join(', ').slice(0, 400)}`, {
        transient: later,
        details: {
          destinations: refused.map((v) => ({ address: v.address, verdict: v.verdict, ...(v.code ? { code: v.code } : {}), ...(v.reason ? { reason: v.reason } : {}) })),
          ...(later ? { retryAfter: DESTINATION_RETRY_AFTER_S } : {}),
        },
      });
    }

    const authorization: Authorization = {
      id: newId('auth'),
      patientKey: patientKey(patient.patientRef, patient.assigningAuthority),
      patientRef: patient.patientRef,
      assigningAuthority: patient.assigningAuthority ?? null,
      patient: { name: input.patient.name, birthDate: input.patient.birthDate ?? null },
      from: from.toString(),
      dataHolder: { name: input.dataHolder.name },
      destinations,
      frequency: input.frequency,
      intervalMinutes: input.intervalMinutes ?? null,
      grantedBy: { kind: input.grantedBy.kind, name: input.grantedBy.name ?? null },
      method: input.method,
      consent: { version: input.consent.version, sha256: input.consent.sha256.toLowerCase() },
      expiresAt: input.expiresAt ?? null,
      createdAt: now,
      createdBy: actor.keyId,
      revokedAt: null,
      revokedBy: null,
      fulfilledAt: null,
      fulfilledSha256: null,
    };
    await this.deps.db.batch(() => {
      this.authorizations.insert(authorization);
      this.deps.audit.append(patientEntry(actor.keyId, 'authorization.granted', authorization.id, authorization.patientKey, now, {
          from: authorization.from,
          destinations: destinations.map((d) => d.address),
          frequency: authorization.frequency,
          grantedBy: authorization.grantedBy.kind,
          method: authorization.method,
          consentVersion: authorization.consent.version,
          consentSha256: authorization.consent.sha256,
        }));
    });
    return authorization;
  }

  /** The patient's authorizations the key sees (sent from its send-as scopes), revoked ones too; HISP_TRANSMIT_UNKNOWN_PATIENT when none. */
  list(patient: PatientId, actor: Pick<TransmitActor, 'sendAs'>): Authorization[] {
    const visible = this.visible(patient, actor);
    if (visible.length === 0) throw unknownPatient();
    return visible;
  }

  get(patient: PatientId, id: string, actor: Pick<TransmitActor, 'sendAs'>): Authorization {
    const a = this.authorizations.get(id);
    if (!a || a.patientKey !== patientKey(patient.patientRef, patient.assigningAuthority) || !addressInScopes(actor.sendAs, a.from)) {
      throw new HispError('HISP_TRANSMIT_UNKNOWN_AUTHORIZATION', `no authorization ${id.slice(0, 60)} for this patient`);
    }
    return a;
  }

  /** Revokes it, prospectively (R-BB-1): what was sent stays on record. Revoking again changes nothing. */
  async revoke(patient: PatientId, id: string, actor: TransmitActor): Promise<Authorization> {
    const a = this.get(patient, id, actor);
    if (a.revokedAt !== null) return a;
    const now = this.deps.now();
    await this.deps.db.batch(() => {
      if (!this.authorizations.revoke(a.id, now, actor.keyId)) return;
      this.deps.audit.append(patientEntry(actor.keyId, 'authorization.revoked', a.id, a.patientKey, now, { from: a.from }));
    });
    return this.authorizations.get(a.id)!;
  }

  /**
   * Sends a record to every destination of every authorization that sends now: active on-update
   * ones, and once-authorizations not yet fulfilled (or fulfilled by this very document, so that a
   * retried push reaches the destinations a crash left out). One message per destination; a
   * destination that had this document (SHA-256 of its octets) is `skipped: duplicate`, one sent to
   * within its authorization's interval `skipped: interval`.
   */
  async push(patient: PatientId, input: RecordInput, actor: TransmitActor, log: Pick<Logger, 'info'>): Promise<PushOutcome> {
    const key = patientKey(patient.patientRef, patient.assigningAuthority);
    const now = this.deps.now();
    const sha256 = createHash('sha256').update(input.document.content).digest('hex');
    const visible = this.visible(patient, actor);
    const sending = visible.filter((a) => {
      const status = authorizationStatus(a, now);
      return status === 'active' || (status === 'fulfilled' && a.fulfilledSha256 === sha256);
    });
    if (sending.length === 0) await this.refuse(key, visible, sha256, input, actor, now);

    const record = {
      id: newId('rec'),
      patientKey: key,
      sha256,
      filename: input.document.filename,
      contentType: input.document.contentType,
      kind: input.document.kind,
      trigger: input.trigger,
      madeAt: input.madeAt,
      receivedAt: now,
      receivedBy: actor.keyId,
    };
    const storeRecord = () => {
      if (!this.transmissions.insertRecord(record)) return;
      this.deps.audit.append(patientEntry(actor.keyId, 'record.received', record.id, key, now, { sha256, trigger: input.trigger, kind: input.document.kind, contentType: input.document.contentType, madeAt: new Date(input.madeAt).toISOString() }));
    };
    // Each destination once, under the first authorization that names it.
    const targets = new Map<string, { authorization: Authorization; destination: TransmitDestination }>();
    for (const a of sending) for (const d of a.destinations) if (!targets.has(d.address)) targets.set(d.address, { authorization: a, destination: d });
    const onceFor = (address: string) => sending.filter((a) => a.frequency === 'once' && a.destinations.some((d) => d.address === address));

    // Up to PUSH_CONCURRENCY destinations at once: each message commits on its own (with its
    // transmission row and audit entry), so concurrent ones share group commits; a fan-out to 50
    // destinations one at a time waited for 50 commits in a row (bench/transmit-bench.ts).
    const list = [...targets.values()];
    const slots: (Transmission | undefined)[] = new Array<Transmission | undefined>(list.length);
    const skipped: Transmission[] = [];
    let recordStored = false;
    const toOne = async (i: number): Promise<void> => {
      const { authorization: a, destination: d } = list[i]!;
      const base = { id: newId('tx'), patientKey: key, recordId: record.id, authorizationId: a.id, destination: d.address, sha256, trigger: input.trigger, createdAt: now };
      const skip = (reason: 'duplicate' | 'interval') => {
        const t: Transmission = { ...base, status: 'skipped', reason, queueId: null, messageId: null };
        skipped.push(t);
        slots[i] = t;
      };
      if (this.transmissions.sentBefore(key, d.address, sha256)) {
        skip('duplicate');
        return;
      }
      const last = a.intervalMinutes === null ? undefined : this.transmissions.lastSent(a.id, d.address);
      if (last !== undefined && a.intervalMinutes !== null && now - last < a.intervalMinutes * 60_000) {
        skip('interval');
        return;
      }
      let sent: Transmission | undefined;
      try {
        await this.deps.sender.send(
          {
            from: a.from,
            to: [d.address],
            subject: input.subject ?? `Health information from ${a.dataHolder.name}`,
            text: contextSentence(a.dataHolder.name, a.patient.name),
            documents: [input.document],
            package: d.package,
            humanReadable: d.humanReadable,
            clientRef: base.id,
            parts: d.requestTxt
              ? [{ filename: 'request.txt', contentType: 'text/plain; charset=utf-8', kind: 'other', content: requestTxt({ destination: d.address, patient: a.patient.name, dataHolder: a.dataHolder.name, recurring: a.frequency === 'on-update' }) }]
              : undefined,
            // The relay's Blue Button+ trust exception (decision 5, gateway/policy/trust-decision.ts).
            meta: { patientDirected: true, transmission: base.id, authorization: a.id },
            context: transmissionContext({ patientRef: a.patientRef, assigningAuthority: a.assigningAuthority, birthDate: a.patient.birthDate }, input.trigger),
            // The XDM package (a destination that asked for one) names the patient when the authority is an OID.
            xdm: { patientId: a.assigningAuthority === null ? undefined : patientCx(a.patientRef, a.assigningAuthority), title: input.subject ?? `Health information from ${a.dataHolder.name}` },
          },
          { apiKeyId: actor.keyId, client: actor.client },
          log,
          undefined,
          (queueId, messageId) => {
            // Checked again in the commit: another push of the same document may have reached it while this one composed.
            if (this.transmissions.sentBefore(key, d.address, sha256)) throw new AlreadySent();
            storeRecord();
            sent = { ...base, status: 'queued', reason: null, queueId, messageId };
            this.transmissions.insert(sent);
            this.deps.audit.append(patientEntry(actor.keyId, 'transmission.queued', base.id, key, now, { authorization: a.id, record: record.id, destination: d.address, sha256, trigger: input.trigger, queueId, messageId }));
            for (const once of onceFor(d.address)) this.authorizations.fulfil(once.id, now, sha256);
          },
        );
      } catch (err) {
        // Another push of the same document reached this destination first: its message is rolled back.
        if (err instanceof AlreadySent) {
          skip('duplicate');
          return;
        }
        throw err;
      }
      slots[i] = sent!;
      // That commit stored the record too (storeRecord in withinCommit).
      recordStored = true;
    };
    let failure: { err: unknown } | undefined;
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(PUSH_CONCURRENCY, list.length) }, async () => {
        // A failure stops the others taking more; what is in flight finishes, so that every message
        // sent is on record before the push answers (a retry then skips those as duplicates).
        while (failure === undefined && next < list.length) {
          const i = next++;
          try {
            await toOne(i);
          } catch (err) {
            failure ??= { err };
          }
        }
      }),
    );
    if (failure !== undefined) throw failure.err;
    const results = slots.filter((t): t is Transmission => t !== undefined);

    // What is left to write: the record if no message stored it, the skipped destinations, the
    // once-authorizations. Nothing, for the usual push whose messages all went: no commit more.
    const onceAuthorizations = sending.filter((a) => a.frequency === 'once');
    if (recordStored && skipped.length === 0 && onceAuthorizations.length === 0) return { recordId: record.id, sha256, transmissions: results };
    await this.deps.db.batch(() => {
      storeRecord();
      for (const t of skipped) {
        this.transmissions.insert(t);
        this.deps.audit.append(patientEntry(actor.keyId, 'transmission.skipped', t.id, key, now, { authorization: t.authorizationId, record: record.id, destination: t.destination, sha256, reason: t.reason }));
      }
      // A once-authorization whose destinations all had the document is fulfilled all the same.
      for (const a of onceAuthorizations) this.authorizations.fulfil(a.id, now, sha256);
    });
    return { recordId: record.id, sha256, transmissions: results };
  }

  /** The patient's transmissions (under the authorizations the key sees), each with its delivery as tracked now. */
  async history(patient: PatientId, actor: Pick<TransmitActor, 'sendAs'>, after: number, limit: number): Promise<{ transmissions: TransmissionView[]; nextCursor: number | null }> {
    const visible = this.list(patient, actor);
    const page = this.transmissions.list(
      patientKey(patient.patientRef, patient.assigningAuthority),
      visible.map((a) => a.id),
      after,
      limit,
    );
    const transmissions = await Promise.all(
      page.transmissions.map(async (t): Promise<TransmissionView> => {
        if (t.queueId === null) return { ...t, delivery: null };
        try {
          const view = await this.deps.tracker.get(t.queueId, actor.sendAs);
          return { ...t, delivery: view.recipients.find((r) => r.address.toLowerCase() === t.destination) ?? null };
        } catch {
          // The message is gone from the store (purged after its retention): its row stays, its state is no longer known.
          return { ...t, delivery: null };
        }
      }),
    );
    return { transmissions, nextCursor: page.nextCursor };
  }

  private visible(patient: PatientId, actor: Pick<TransmitActor, 'sendAs'>): Authorization[] {
    return this.authorizations.listByPatient(patientKey(patient.patientRef, patient.assigningAuthority)).filter((a) => addressInScopes(actor.sendAs, a.from));
  }

  /** A push nothing may send: audited as a failure, then refused (404 unknown patient, 409 revoked, 409 none sending). */
  private async refuse(key: string, visible: readonly Authorization[], sha256: string, input: RecordInput, actor: TransmitActor, now: number): Promise<never> {
    const revokedAt = visible.length > 0 && visible.every((a) => a.revokedAt !== null) ? Math.max(...visible.map((a) => a.revokedAt!)) : undefined;
    const err =
      visible.length === 0
        ? unknownPatient()
        : revokedAt !== undefined
          ? new HispError('HISP_TRANSMIT_REVOKED', `every authorization of this patient is revoked, the latest at ${new Date(revokedAt).toISOString()}: nothing is sent`, {
              details: { revokedAt: new Date(revokedAt).toISOString() },
            })
          : new HispError('HISP_TRANSMIT_NOT_AUTHORIZED', 'no authorization of this patient sends now: each has expired or, sent once, is fulfilled');
    const detail = { code: err.code, sha256, trigger: input.trigger, ...(revokedAt !== undefined ? { revokedAt: new Date(revokedAt).toISOString() } : {}) };
    await this.deps.db.batch(() => this.deps.audit.append(patientEntry(actor.keyId, 'record.refused', sha256, key, now, detail, 'failure')));
    throw err;
  }
}

/** Thrown in a send's commit when the destination has the document already: the message is not stored. */
class AlreadySent extends Error {}

function unknownPatient(): HispError {
  return new HispError('HISP_TRANSMIT_UNKNOWN_PATIENT', 'no authorization of this patient: an unknown patient for this API key');
}

function parseAddress(value: string, field: string): DirectAddress {
  try {
    return DirectAddress.parse(value);
  } catch {
    throw new HispError('HISP_API_INVALID_REQUEST', `body /${field}: not a Direct address`, { details: { errors: [{ in: 'body', path: `/${field}`, message: 'not a Direct address' }] } });
  }
}

/** An audit entry of the transmit service: done by an API key, about a patient, its object named by the action's family (audit/audit-log.ts). */
function patientEntry(keyId: string, action: string, objectId: string, patientRef: string, at: number, detail: Record<string, unknown>, outcome: AuditOutcome = 'success'): AuditRecord {
  return { actor: { kind: 'api-key', id: keyId }, action, object: { kind: action.slice(0, action.indexOf('.')), id: objectId }, outcome, patientRef, at, detail };
}

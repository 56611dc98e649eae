import { patientCx } from '../documents/xdm-pack.js';
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { AuditLog, AuditOutcome, AuditRecord } from '../audit/audit-log.js';
import { addressInScopes } from '../core/address-scope.js';
import { DirectAddress } from '../core/direct-address.js';
import { HispError } from '../core/errors.js';
import type { MessageTracker } from '../events/message-tracker.js';
import { provesNonDelivery, type RecipientStatus } from '../events/message-status.js';
import type { RecipientCheckServices } from '../flows/recipient-check.js';
import type { MessageSender } from '../flows/send-message.js';
import { validateRecipients } from '../flows/validate-recipients.js';
import type { DocumentKind } from '../mime/message-composer.js';
import type { HispDatabase } from '../store/database.js';
import { AuthorizationStore, authorizationStatus, patientKey, type Authorization, type AuthorizationStatus, type GrantedBy, type TransmitDestination, type TransmitFrequency } from './authorization-store.js';
import { contextSentence, requestTxt, transmissionContext } from './bluebutton-payload.js';
import { TransmissionStore, type RecordTrigger, type SkipReason, type Transmission } from './transmission-store.js';
import { randomHexId } from '../core/random-id.js';

/** Destinations a push sends to at once (see push). */
export const PUSH_CONCURRENCY = 16;

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

const newId = (prefix: string) => `${prefix}_${randomHexId(24)}`;

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
 * backs it), so that "never twice" holds under concurrent pushes too; so is the authorization
 * (notSending), so that a revocation landing mid-push stops what is not yet committed (R-BB-1:
 * "revoke prospectively") and a once-authorization sends one document under concurrent pushes.
 * A destination whose message surely did not arrive (priorSend) has not had the document: the next
 * push sends it again, superseding the old transmission (migration 14).
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
   * retried push reaches the destinations a crash left out). One message per destination, under
   * the first of its authorizations that may send to it now (see notSending); a destination that
   * had this document (SHA-256 of its octets) is `skipped: duplicate`; one that none of its
   * authorizations may send to is skipped with the first one's reason (`interval`, or `revoked`,
   * `expired`, `fulfilled` when that changed while the push ran).
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
    // Each destination once: the authorizations naming it, oldest first (the first that may send now sends).
    const targets = new Map<string, Target[]>();
    for (const a of sending) {
      for (const d of a.destinations) {
        const named = targets.get(d.address);
        if (named) named.push({ authorization: a, destination: d });
        else targets.set(d.address, [{ authorization: a, destination: d }]);
      }
    }
    const onceFor = (address: string) => sending.filter((a) => a.frequency === 'once' && a.destinations.some((d) => d.address === address));

    // Up to PUSH_CONCURRENCY destinations at once: each message commits on its own (with its
    // transmission row and audit entry), so concurrent ones share group commits; a fan-out to 50
    // destinations one at a time waited for 50 commits in a row (bench/transmit-bench.ts).
    const list = [...targets.values()];
    const slots: (Transmission | undefined)[] = new Array<Transmission | undefined>(list.length);
    const skipped: Transmission[] = [];
    let recordStored = false;
    const toOne = async (i: number): Promise<void> => {
      const named = list[i]!;
      const address = named[0]!.destination.address;
      const base = { id: newId('tx'), patientKey: key, recordId: record.id, destination: address, sha256, trigger: input.trigger, createdAt: now };
      const skip = (a: Authorization, reason: SkipReason) => {
        const t: Transmission = { ...base, authorizationId: a.id, status: 'skipped', reason, queueId: null, messageId: null, resentBy: null };
        skipped.push(t);
        slots[i] = t;
      };
      if (this.sentBefore(key, address, sha256)) {
        skip(named[0]!.authorization, 'duplicate');
        return;
      }
      let heldBack: { authorization: Authorization; reason: SkipReason } | undefined;
      for (const { authorization: a, destination: d } of named) {
        // Checked before composing (a revocation since the push began stops what is not yet sent),
        // then again in the commit (one landing while this message composed).
        const reason = this.notSending(a.id, address, sha256, now) ?? (await this.sendOne(a, d, { ...base, authorizationId: a.id }, input, actor, log, storeRecord, onceFor(address)));
        if (typeof reason === 'object') {
          slots[i] = reason;
          // That commit stored the record too (storeRecord in withinCommit).
          recordStored = true;
          return;
        }
        // Another push of the same document reached this destination first: its message was rolled back.
        if (reason === 'duplicate') {
          skip(a, 'duplicate');
          return;
        }
        heldBack ??= { authorization: a, reason };
      }
      skip(heldBack!.authorization, heldBack!.reason);
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
    // once-authorizations not yet fulfilled. Nothing, for the usual push whose messages all went: no commit more.
    const onceLeft = sending.filter((a) => a.frequency === 'once' && this.authorizations.get(a.id)?.fulfilledAt === null);
    if (recordStored && skipped.length === 0 && onceLeft.length === 0) return { recordId: record.id, sha256, transmissions: results };
    await this.deps.db.batch(() => {
      storeRecord();
      for (const t of skipped) {
        this.transmissions.insert(t);
        this.deps.audit.append(patientEntry(actor.keyId, 'transmission.skipped', t.id, key, now, { authorization: t.authorizationId, record: record.id, destination: t.destination, sha256, reason: t.reason }));
      }
      // A once-authorization whose destinations all have the document (each had it before: a
      // duplicate) is fulfilled all the same; one with a destination that did not get it (held back
      // under another authorization, or revoked meanwhile) is not: it waits for a push that sends.
      for (const a of onceLeft) {
        if (authorizationStatus(this.authorizations.get(a.id)!, this.deps.now()) !== 'active') continue;
        if (a.destinations.every((d) => this.sentBefore(key, d.address, sha256))) this.authorizations.fulfil(a.id, now, sha256);
      }
    });
    return { recordId: record.id, sha256, transmissions: results };
  }

  /**
   * The transmission that gave this destination this document, not superseded: `sent` when its
   * message may have arrived; `failed` (with its id, for the re-send to supersede) when its
   * delivery to the destination surely failed (events/message-status.ts provesNonDelivery: no
   * certificate, untrusted, refused, expired, a failed MDN or DSN; never after a time-out, when the
   * message was relayed and may be there); undefined when it never had it. A message purged since
   * has no state any more: sent. Synchronous: run again inside each send's commit.
   */
  private priorSend(key: string, address: string, sha256: string): { sent: true } | { sent: false; id: string } | undefined {
    const prior = this.transmissions.lastQueued(key, address, sha256);
    if (prior === undefined) return undefined;
    const delivery = prior.queueId === null ? undefined : this.deps.tracker.recipientNow(prior.queueId, address);
    return delivery !== undefined && provesNonDelivery(delivery) ? { sent: false, id: prior.id } : { sent: true };
  }

  /** This destination had this document, or may have (see priorSend). */
  private sentBefore(key: string, address: string, sha256: string): boolean {
    return this.priorSend(key, address, sha256)?.sent === true;
  }

  /**
   * Why authorization `id` may not send this document to `address` now, read from the store (so
   * that a revocation, an expiry, or another push's fulfilment since the push began is seen), or
   * undefined when it may. Run before composing and again inside the message's commit, where
   * commits are serialized: what it answers there holds for the commit.
   */
  private notSending(id: string, address: string, sha256: string, pushedAt: number): Exclude<SkipReason, 'duplicate'> | undefined {
    const a = this.authorizations.get(id)!;
    const status = authorizationStatus(a, this.deps.now());
    if (status === 'revoked' || status === 'expired') return status;
    // A once-authorization sends one document: the first commit that fulfils it wins (issue 16).
    if (status === 'fulfilled' && a.fulfilledSha256 !== sha256) return 'fulfilled';
    if (a.intervalMinutes !== null) {
      const last = this.transmissions.lastSent(a.id, address);
      if (last !== undefined && pushedAt - last < a.intervalMinutes * 60_000) return 'interval';
    }
    return undefined;
  }

  /**
   * One destination's message under authorization `a`: the transmission queued, or why its commit
   * was rolled back (the destination had the document by then, or `a` may no longer send to it).
   */
  private async sendOne(
    a: Authorization,
    d: TransmitDestination,
    base: Omit<Transmission, 'status' | 'reason' | 'queueId' | 'messageId' | 'resentBy'>,
    input: RecordInput,
    actor: TransmitActor,
    log: Pick<Logger, 'info'>,
    storeRecord: () => void,
    once: readonly Authorization[],
  ): Promise<Transmission | SkipReason> {
    const { patientKey: key, sha256, createdAt: now } = base;
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
          // Checked again in the commit: another push of the same document may have reached the
          // destination, or a revocation (R-BB-1: nothing is sent after it), an expiry or another
          // push's fulfilment may have landed, while this one composed. Throwing rolls the message back.
          const prior = this.priorSend(key, d.address, sha256);
          if (prior?.sent === true) throw new NotSent('duplicate');
          const reason = this.notSending(a.id, d.address, sha256, now);
          if (reason !== undefined) throw new NotSent(reason);
          storeRecord();
          sent = { ...base, status: 'queued', reason: null, queueId, messageId, resentBy: null };
          // A re-send after a failed delivery: the old row is superseded first (the unique index
          // covers the rows not superseded), in this commit, and stays in the history.
          if (prior !== undefined) this.transmissions.supersede(prior.id, base.id);
          this.transmissions.insert(sent);
          this.deps.audit.append(
            patientEntry(actor.keyId, 'transmission.queued', base.id, key, now, {
              authorization: a.id,
              record: base.recordId,
              destination: d.address,
              sha256,
              trigger: input.trigger,
              queueId,
              messageId,
              ...(prior !== undefined ? { resends: prior.id } : {}),
            }),
          );
          // The once-authorizations naming this destination have had their send (a itself, or
          // others sent under an older authorization): fulfilled by this document if not yet.
          for (const o of once) this.authorizations.fulfil(o.id, now, sha256);
        },
      );
    } catch (err) {
      if (err instanceof NotSent) return err.reason;
      throw err;
    }
    return sent!;
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

  /**
   * A push nothing may send: audited as a failure, then refused. 404 unknown patient; 409
   * HISP_TRANSMIT_REVOKED as soon as one of the authorizations was revoked (the patient said stop:
   * what the EHR must show), with the latest revocation and, when some other one has expired, the
   * latest expiry; 409 HISP_TRANSMIT_NOT_AUTHORIZED when each has expired or is fulfilled (with the
   * latest expiry when one has).
   */
  private async refuse(key: string, visible: readonly Authorization[], sha256: string, input: RecordInput, actor: TransmitActor, now: number): Promise<never> {
    const byStatus = (status: AuthorizationStatus) => visible.filter((a) => authorizationStatus(a, now) === status);
    const latest = (times: readonly number[]) => (times.length === 0 ? undefined : new Date(Math.max(...times)).toISOString());
    const revoked = byStatus('revoked');
    const expired = byStatus('expired');
    const fulfilled = byStatus('fulfilled');
    const revokedAt = latest(revoked.map((a) => a.revokedAt!));
    const expiredAt = latest(expired.map((a) => a.expiresAt!));
    const times = { ...(revokedAt !== undefined ? { revokedAt } : {}), ...(expiredAt !== undefined ? { expiredAt } : {}) };
    const why = [
      revoked.length > 0 ? `${revoked.length} revoked (the latest at ${revokedAt})` : '',
      expired.length > 0 ? `${expired.length} expired (the latest at ${expiredAt})` : '',
      fulfilled.length > 0 ? `${fulfilled.length} sent once already (fulfilled)` : '',
    ].filter(Boolean).join(', ');
    const err =
      visible.length === 0
        ? unknownPatient()
        : revoked.length > 0
          ? new HispError('HISP_TRANSMIT_REVOKED', `no authorization of this patient sends now: ${why}; nothing is sent after a revocation`, { details: times })
          : new HispError('HISP_TRANSMIT_NOT_AUTHORIZED', `no authorization of this patient sends now: ${why}`, { details: times });
    const detail = { code: err.code, sha256, trigger: input.trigger, ...times };
    await this.deps.db.batch(() => this.deps.audit.append(patientEntry(actor.keyId, 'record.refused', sha256, key, now, detail, 'failure')));
    throw err;
  }
}

/** Thrown in a send's commit when the message may not go (see push): it is not stored. */
class NotSent extends Error {
  constructor(readonly reason: SkipReason) {
    super(`not sent: ${reason}`);
  }
}

/** A destination as one authorization names it. */
interface Target {
  authorization: Authorization;
  destination: TransmitDestination;
}

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

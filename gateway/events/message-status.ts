import type { DeliveryStatus } from '../queue/outbound-queue.js';
import { NON_DELIVERY_REASONS, type FailureReason } from './failure-reason.js';
import type { EventData, HispEvent } from './event-outbox.js';

/** A recipient's state (issue 15): `queued → relayed → processed → dispatched`, or `failed` with a reason. */
export type RecipientState = 'queued' | 'relayed' | 'processed' | 'dispatched' | 'failed';

/** One step of a recipient's timeline. */
export interface Transition {
  state: RecipientState;
  at: string;
  reason?: string;
  detail?: string;
  evidence?: Record<string, string | null>;
  /** An MDN after its time-out: recorded, but the state stays failed. */
  late?: boolean;
}

export interface RecipientStatus {
  address: string;
  state: RecipientState;
  /** For `failed`: why (events/failure-reason.ts). */
  reason?: FailureReason;
  detail?: string;
  updatedAt: string;
  transitions: Transition[];
}

const RANK: Readonly<Record<RecipientState, number>> = { queued: 0, relayed: 1, processed: 2, dispatched: 3, failed: 4 };

/**
 * Each recipient's state from the events of its message (the outbox is the record of every
 * transition, each with its time and evidence). Failed is final: a late MDN after a time-out is
 * shown in the timeline, flagged late, and leaves the state as it is (the sender was told of the
 * failure: R-MDN-7, decision 6). Positive states only move forward (MDNs can overtake each other on
 * the way: a processed MDN after the dispatched one changes nothing). Recipients that have no
 * events (messages stored before the outbox existed) are read from their delivery rows.
 */
export function recipientStatuses(envelopeRecipients: readonly string[], events: readonly HispEvent[], deliveries: readonly DeliveryStatus[]): RecipientStatus[] {
  const byRecipient = new Map<string, HispEvent[]>();
  for (const e of events) {
    if (e.type === 'message.received') continue;
    const key = e.data.recipient.toLowerCase();
    const list = byRecipient.get(key) ?? [];
    list.push(e);
    byRecipient.set(key, list);
  }
  return envelopeRecipients.map((address) => {
    const own = byRecipient.get(address.toLowerCase());
    if (own && own.length > 0) return fold(address, own);
    return fromDelivery(address, deliveries.find((d) => d.recipient.toLowerCase() === address.toLowerCase()));
  });
}

/**
 * The recipient surely did not get the message: its state is failed for a reason that proves it
 * (NON_DELIVERY_REASONS), and no dispatched MDN ever came for it, not even a late one (a
 * dispatched MDN says the message reached the recipient, whatever else was reported).
 */
export function provesNonDelivery(status: RecipientStatus): boolean {
  return status.state === 'failed' && status.reason !== undefined && NON_DELIVERY_REASONS.includes(status.reason) && !status.transitions.some((t) => t.state === 'dispatched');
}

function fold(address: string, events: readonly HispEvent[]): RecipientStatus {
  let current: Transition | undefined;
  const transitions: Transition[] = [];
  for (const e of events) {
    const t = transitionOf(e.data, e.timestamp);
    if (current?.state === 'failed' || (current && t.state !== 'failed' && RANK[t.state] <= RANK[current.state])) {
      transitions.push({ ...t, late: true });
      continue;
    }
    transitions.push(t);
    current = t;
  }
  const last = current ?? transitions[0]!;
  return {
    address,
    state: last.state,
    ...(last.reason !== undefined ? { reason: last.reason as FailureReason } : {}),
    ...(last.detail !== undefined ? { detail: last.detail } : {}),
    updatedAt: last.at,
    transitions,
  };
}

function transitionOf(data: EventData, at: string): Transition {
  const state = data.state === 'received' ? 'relayed' : data.state;
  return {
    state,
    at,
    ...(data.reason !== undefined ? { reason: data.reason } : {}),
    ...(data.detail !== undefined ? { detail: data.detail } : {}),
    ...(data.evidence !== undefined ? { evidence: data.evidence } : {}),
    ...(data.late ? { late: true } : {}),
  };
}

function fromDelivery(address: string, d: DeliveryStatus | undefined): RecipientStatus {
  const at = (d?.finishedAt ?? d?.lastAttemptAt ?? new Date(0)).toISOString();
  const state: RecipientState = d?.state === 'delivered' ? 'relayed' : d?.state === 'failed' ? 'failed' : 'queued';
  const detail = d?.lastReply ? `${d.lastReply.code} ${d.lastReply.enhanced ?? ''} ${d.lastReply.text}`.replace(/\s+/g, ' ').trim() : undefined;
  const t: Transition = { state, at, ...(state === 'failed' ? { reason: d?.failureReason ?? 'rejected' } : {}), ...(detail ? { detail } : {}) };
  return { address, state, ...(t.reason ? { reason: t.reason as FailureReason } : {}), ...(detail ? { detail } : {}), updatedAt: at, transitions: [t] };
}

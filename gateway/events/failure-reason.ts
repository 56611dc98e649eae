import { isHispError, type HispErrorCode } from '../core/errors.js';

/**
 * Why a recipient's message failed, in the words of the API (issue 15: `failed` with a reason
 * code), so that an EHR can act on it without reading reply texts:
 * - `no-certificate`: no certificate published for the address or its domain (DNS CERT, LDAP);
 * - `untrusted`: certificates found, none valid and trusted under the sending domain's anchors;
 * - `no-route`: the recipient domain has no mail exchanger (RFC 7505 null MX, NXDOMAIN);
 * - `rejected`: the remote HISP refused it (5xx) or a local check refused it;
 * - `expired`: every try failed for now until the give-up time passed (queue.giveUpHours);
 * - `bounced`: the operator ended it (`hisp queue bounce`);
 * - `processed-timeout`, `dispatched-timeout`: no MDN came in time (R-MDN-7, decision 6);
 * - `failure-mdn`: the recipient's HISP sent a signed MDN with a failed disposition;
 * - `dsn`: a delivery status notification reported the failure (RFC 3464).
 * The first six are set on the delivery row; the last four come from the MDN tracking (the
 * triggers of schema migration 6 put them in the event).
 */
export type FailureReason =
  | 'no-certificate'
  | 'untrusted'
  | 'no-route'
  | 'rejected'
  | 'expired'
  | 'bounced'
  | 'processed-timeout'
  | 'dispatched-timeout'
  | 'failure-mdn'
  | 'dsn';

export const FAILURE_REASONS: readonly FailureReason[] = [
  'no-certificate',
  'untrusted',
  'no-route',
  'rejected',
  'expired',
  'bounced',
  'processed-timeout',
  'dispatched-timeout',
  'failure-mdn',
  'dsn',
];

/** The reason for a failure hisp itself decided (discovery, trust, routing); a remote refusal is `rejected`. */
export function failureReasonForError(err: unknown): FailureReason {
  if (!isHispError(err)) return 'rejected';
  return reasonOfCode(err.code);
}

function reasonOfCode(code: HispErrorCode): FailureReason {
  if (code === 'HISP_DISCOVERY_NO_CERT') return 'no-certificate';
  if (code === 'HISP_DISCOVERY_NO_VALID_CERT' || code.startsWith('HISP_TRUST_')) return 'untrusted';
  if (code === 'HISP_RELAY_NO_ROUTE') return 'no-route';
  return 'rejected';
}

/**
 * The failures that prove the message did not reach the recipient: nothing left hisp for it (no
 * certificate, untrusted, no mail exchanger, the remote HISP refused it with a 5xx, the queue gave
 * up), or the recipient's HISP said it could not deliver it (a failed MDN or a failure DSN:
 * R-MDN-5, Implementation Guide for Delivery Notification; RFC 3464 §2.3.3 Action "failed"). Not the two time-outs: the message was relayed and may well
 * have arrived, only its MDN did not come in time (R-MDN-7). Not `bounced`: the operator ended
 * that message on purpose (`hisp queue bounce`), a decision hisp does not undo on its own.
 */
export const NON_DELIVERY_REASONS: readonly FailureReason[] = ['no-certificate', 'untrusted', 'no-route', 'rejected', 'expired', 'failure-mdn', 'dsn'];

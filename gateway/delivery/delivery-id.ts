import { createHash } from 'node:crypto';

/**
 * The id of one final delivery: one message (queue id) to one local recipient. It is derived, not
 * drawn: every try of the same delivery, in this process or after a crash and restart, has the same
 * one, which is what makes the final delivery idempotent (issue 14, item 7):
 * - a Maildir names the file after it (`<receivedAt seconds>.<id>.<host>`), so a try after a crash
 *   finds the copy an earlier try wrote and records success instead of writing a second one;
 * - a webhook sends it as `deliveryId` (in the signed body) and as the `X-Hisp-Delivery-Id` and
 *   `Idempotency-Key` headers, so that the receiver de-duplicates a retry whose first answer was lost
 *   (the semantics of Standard Webhooks' `webhook-id`).
 *
 * 128 bits of SHA-256 over the queue id and the recipient, in lowercase hex (32 characters: safe in
 * a file name and an HTTP header); recipients compare case-insensitively, as the queue does.
 */
export function deliveryId(queueId: string, recipient: string): string {
  return createHash('sha256').update(queueId, 'utf8').update('\n').update(recipient.toLowerCase(), 'utf8').digest('hex').slice(0, 32);
}

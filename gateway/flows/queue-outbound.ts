import type { BodySource, MessageEnvelope, StoredMessage } from '../store/message-store.js';
import type { GatewayContext } from './gateway-context.js';

/**
 * Stores an outbound message with one delivery per recipient, durable when this resolves (the
 * 250 of the submission port and the 202 of the API wait for it), and hands it to a relay
 * worker: an idle one takes it as it is stored, its deliveries leased to it in the same commit (no
 * lease query, no wake-up of every idle worker); with none idle it is queued for the next.
 * `withinCommit` writes with the message (the API's idempotency key); if it throws, nothing is
 * stored and this rejects with its error. Resolves with the queue id.
 */
export async function queueOutbound(
  ctx: GatewayContext,
  envelope: MessageEnvelope,
  body: BodySource,
  withinCommit?: (message: StoredMessage) => void,
): Promise<string> {
  const options = withinCommit ? { withinCommit } : {};
  const claim = ctx.claimRelay?.();
  if (!claim) {
    const queueId = await ctx.queue.enqueue(envelope, body, options);
    ctx.wake('outbound');
    return queueId;
  }
  // The worker waits for exactly one give() or cancel(), whatever happens here.
  let settled = false;
  try {
    const stored = await ctx.queue.enqueueLeased(envelope, body, claim.owner, claim.leaseMs, options);
    claim.give(stored.message, stored.deliveries);
    settled = true;
    return stored.message.queueId;
  } finally {
    if (!settled) claim.cancel();
  }
}

import { MimeEntity } from '../mime/mime-entity.js';
import { HispError } from '../core/errors.js';
import type { GatewayContext } from '../flows/gateway-context.js';
import type { BodySource } from '../store/message-store.js';
import { headerOf } from './mail-data.js';
import type { SmtpEdgeHandlers, SmtpTransaction } from './smtp-listener.js';

export interface InboundEnvelope {
  mailFrom: string;
  recipients: readonly string[];
  /** Facts kept with the message: client, HELO, TLS, or `handoff: 'local'` for the internal path. */
  meta: Record<string, unknown>;
}

export interface StoredInbound {
  /** Undefined when every recipient had already received this message (nothing stored). */
  queueId: string | undefined;
  duplicates: string[];
}

/**
 * Stores a message received for local recipients: the raw bytes as they came (the signature is
 * checked on them later), one delivery per recipient not seen with this (envelope sender,
 * Message-ID) within the de-duplication window. The sighting and the message commit together: a
 * sender that retries after a lost 250 gets a 250 again and no second delivery (issue 5).
 */
export async function storeInbound(ctx: GatewayContext, envelope: InboundEnvelope, body: BodySource, parsed?: MimeEntity): Promise<StoredInbound> {
  let messageId: string | null = null;
  try {
    messageId = (parsed ?? (body instanceof Uint8Array ? MimeEntity.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength)) : undefined))?.header('message-id')?.trim() ?? null;
  } catch {
    messageId = null;
  }
  const windowMs = ctx.config.dedupe.windowHours * 3_600_000;
  const duplicates: string[] = [];
  const queueId = await ctx.queue.enqueueWhen(
    { direction: 'inbound', mailFrom: envelope.mailFrom, recipients: envelope.recipients, messageId, receivedAt: new Date(ctx.now()), meta: envelope.meta },
    body,
    () => {
      duplicates.length = 0;
      return envelope.recipients.filter((r) => {
        const dup = ctx.dedupe.seen(envelope.mailFrom, messageId, r, windowMs);
        if (dup) duplicates.push(r);
        return !dup;
      });
    },
  );
  if (queueId !== undefined) ctx.wake('inbound');
  return { queueId, duplicates };
}

/**
 * The port other HISPs send to (RFC 5321 relay-in): recipients of local domains only (550 5.7.1
 * otherwise, 550 5.1.1 for an unknown address of a local domain), the message stored raw and
 * acknowledged; decryption, trust and delivery follow in the receive worker. Only a message whose
 * header section cannot be read is refused here (554 5.6.0): anything else that is not a trusted
 * Direct message is kept in quarantine with its reason, where the operator sees it.
 */
export function inboundHandlers(ctx: GatewayContext): SmtpEdgeHandlers {
  return {
    mailFrom() {
      // Any reverse-path, the null one included (MDNs and DSNs of other HISPs).
    },
    rcptTo(address) {
      switch (ctx.registry.acceptance(address)) {
        case 'accept':
          return;
        case 'unknown-address':
          throw new HispError('HISP_SMTP_UNKNOWN_RECIPIENT', `no such recipient here: ${address.slice(0, 100)}`);
        case 'not-local':
          throw new HispError('HISP_SMTP_RELAY_DENIED', `relaying denied: ${address.slice(0, 100)} is not in a domain of this HISP`);
      }
    },
    async message(tx: SmtpTransaction): Promise<string> {
      const { data } = tx;
      const entity = headerOf(data);
      if (entity.headers.length === 0) throw new HispError('HISP_MIME_MALFORMED', 'the message has no header section');
      const stored = await storeInbound(
        ctx,
        {
          mailFrom: tx.mailFrom,
          recipients: tx.recipients,
          meta: { client: tx.session.remoteAddress, helo: tx.session.hostNameAppearsAs, tls: tx.session.secure },
        },
        // A large message stays in its file, which the store takes as it is.
        data.whole ? data.head : { file: data.file!, size: data.size },
        entity,
      );
      tx.log.info({ queueId: stored.queueId, duplicates: stored.duplicates.length, recipients: tx.recipients.length, size: data.size }, 'received');
      if (stored.queueId === undefined) return '2.0.0 Ok: already received, not delivered again';
      return `2.0.0 Ok: queued as ${stored.queueId}`;
    },
  };
}

import { AuditLog } from '../audit/audit-log.js';
import { documentTools } from '../documents/document-tools.js';
import { EventOutbox, type EventScope } from '../events/event-outbox.js';
import { MessageTracker } from '../events/message-tracker.js';
import { WebhookDispatcher } from '../events/webhook-dispatcher.js';
import type { GatewayContext } from '../flows/gateway-context.js';
import { MessageSender } from '../flows/send-message.js';
import { MailboxService } from '../mailbox/mailbox-service.js';
import { MailboxStore } from '../mailbox/mailbox-store.js';
import { keyMay, type ApiKey, type ApiKeyStore } from '../store/api-key-store.js';
import { FetchAddressPolicy } from '../trust/fetch-address-policy.js';
import { TransmitService } from '../transmit/transmit-service.js';
import { FhirTaskStore } from '../fhir/fhir-task-store.js';

/**
 * The services behind the API's routes (one service, several doors: the CLI and the SMTP edges
 * call the same ones): sending, the status of sent messages, the event outbox and its webhooks,
 * the API mailboxes.
 */
export interface ApiServices {
  readonly sender: MessageSender;
  readonly tracker: MessageTracker;
  readonly outbox: EventOutbox;
  readonly webhooks: WebhookDispatcher;
  readonly mailboxes: MailboxService;
  /** The audit log (gateway/audit/): appended to by the services, read by GET /v1/audit. */
  readonly audit: AuditLog;
  /** Blue Button+ transmit: patients' authorizations, records pushed and their transmissions (gateway/transmit/). */
  readonly transmit: TransmitService;
  /** The messages sent for FHIR ITI-65 submissions, as Tasks (gateway/fhir/). */
  readonly fhirTasks: FhirTaskStore;
}

/** How long a webhook POST may take (connect, send, the status line). */
const WEBHOOK_TIMEOUT_MS = 10_000;

/**
 * The events a key sees: those of the addresses it may send as, when it may send or read status
 * (its messages' states), and of the mailboxes it may read, when it may receive (messages received).
 */
export function eventScope(key: ApiKey): EventScope {
  return { sent: keyMay(key, 'send') || keyMay(key, 'status') ? key.sendAs : [], received: keyMay(key, 'receive') ? key.mailboxes : [] };
}

/** The services of a gateway: `incomingDir` is where the send service composes messages (the store's file system). */
export function createApiServices(ctx: GatewayContext, apiKeys: ApiKeyStore, incomingDir: string): ApiServices {
  const tools = documentTools();
  const outbox = new EventOutbox(ctx.db);
  const mailboxStore = ctx.mailboxes ?? new MailboxStore(ctx.db, ctx.now);
  const sender = new MessageSender(ctx, tools, incomingDir);
  const tracker = new MessageTracker(ctx.db, ctx.queue, outbox);
  const audit = new AuditLog(ctx.db.sqlite, ctx.now);
  return {
    sender,
    tracker,
    outbox,
    webhooks: new WebhookDispatcher(ctx.db, outbox, {
      scopeOf: (id) => {
        const key = apiKeys.get(id);
        return key && key.revokedAt === undefined ? eventScope(key) : undefined;
      },
      // The subscriber's URL is the key holder's: fetched as hostile, under [fetch] allowAddresses.
      post: { policy: new FetchAddressPolicy(ctx.config.fetch.allowAddresses), timeoutMs: WEBHOOK_TIMEOUT_MS },
      logger: ctx.logger.child({ component: 'webhooks' }),
      now: ctx.now,
    }),
    mailboxes: new MailboxService(ctx, mailboxStore, tools),
    audit,
    transmit: new TransmitService({ db: ctx.db, sender, tracker, audit, checks: ctx, now: ctx.now }),
    fhirTasks: new FhirTaskStore(ctx.db.sqlite),
  };
}

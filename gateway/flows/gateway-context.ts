import type { ConnectionOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { MemoryGate } from './memory-gate.js';
import type { WrapPool } from '../agent/wrap-pool.js';
import type { DomainRegistry } from '../admin/domain-registry.js';
import type { HispConfig } from '../config/schema.js';
import type { CertificateDiscovery } from '../discovery/certificate-discovery.js';
import type { DnsClient } from '../discovery/dns-client.js';
import type { SmtpConnectionCache } from '../delivery/smtp-relay.js';
import type { RetrySchedule } from '../queue/retry-schedule.js';
import type { Delivery } from '../queue/outbound-queue.js';
import type { SqliteQueue } from '../queue/sqlite-queue.js';
import type { MailboxStore } from '../mailbox/mailbox-store.js';
import type { HispDatabase } from '../store/database.js';
import type { InboundDedupe } from '../store/inbound-dedupe.js';
import type { StoredMessage } from '../store/message-store.js';
import type { QuarantineStore } from '../store/quarantine-store.js';
import type { TrackingStore } from '../store/tracking-store.js';
import type { TrustValidator } from '../trust/trust-validator.js';

/**
 * Everything the running gateway's parts share: one database and queue, one DNS client (with its
 * cache), one TrustValidator (CRL and AIA caches), the local domains. Built once by HispGateway.
 */
export interface GatewayContext {
  readonly config: HispConfig;
  readonly registry: DomainRegistry;
  readonly db: HispDatabase;
  readonly queue: SqliteQueue;
  readonly tracking: TrackingStore;
  readonly quarantine: QuarantineStore;
  readonly dedupe: InboundDedupe;
  readonly dns: DnsClient;
  readonly discovery: CertificateDiscovery;
  readonly validator: TrustValidator;
  readonly schedule: RetrySchedule;
  /** Open connections to next hops, reused by the relay workers. */
  readonly relayConnections: SmtpConnectionCache;
  /** Large messages held in memory by the workers at once (queue.largeMessageMemoryBytes); none: no limit. */
  readonly memoryGate?: MemoryGate;
  /** The API mailboxes (delivery type `api`). */
  readonly mailboxes?: MailboxStore;
  /** Threads that sign and encrypt for the relay workers (none: on the event loop). */
  readonly wrapPool?: WrapPool;
  readonly logger: Logger;
  /** TLS settings of the relay when a domain requires TLS (trust roots for tests, pinning). */
  readonly relayTls?: ConnectionOptions;
  /** The clock (ms), shared with the queue. */
  readonly now: () => number;
  /** Wakes the workers of a direction: new work was queued. */
  readonly wake: (direction: 'outbound' | 'inbound') => void;
  /**
   * Reserves an idle relay worker for a message about to be stored (undefined when none is idle):
   * store its deliveries leased to `owner` (SqliteQueue.enqueueLeased), then `give` them once that
   * is durable, or `cancel` when storing failed.
   */
  readonly claimRelay?: () => RelayClaim | undefined;
}

/** An idle relay worker reserved for one message (GatewayContext.claimRelay). */
export interface RelayClaim {
  /** The worker's id: the lease owner of the deliveries. */
  readonly owner: string;
  /** How long the lease runs (the relay's, RELAY_LEASE_MS). */
  readonly leaseMs: number;
  give(message: StoredMessage, deliveries: Delivery[]): void;
  cancel(): void;
}

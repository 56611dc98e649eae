import { mkdir, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { HispConfig } from '../config/schema.js';
import { createLogger } from '../core/logger.js';
import { WrapPool } from '../agent/wrap-pool.js';
import { createApiServices, type ApiServices } from '../api/api-services.js';
import { ApiListener } from '../api/api-listener.js';
import { SmtpConnectionCache } from '../delivery/smtp-relay.js';
import { RetrySchedule } from '../queue/retry-schedule.js';
import { SqliteQueue } from '../queue/sqlite-queue.js';
import { inboundHandlers } from '../smtp/inbound-edge.js';
import { SmtpListener } from '../smtp/smtp-listener.js';
import { submissionHandlers } from '../smtp/submission-edge.js';
import { ApiKeyStore } from '../store/api-key-store.js';
import { DataFolderLock } from '../store/data-folder-lock.js';
import { openDatabase } from '../store/database.js';
import { DiskReserve } from '../store/disk-reserve.js';
import { InboundDedupe } from '../store/inbound-dedupe.js';
import { MailboxStore } from '../mailbox/mailbox-store.js';
import { QuarantineStore } from '../store/quarantine-store.js';
import { HISP_MIGRATIONS } from '../store/schema.js';
import { TrackingStore } from '../store/tracking-store.js';
import type { Delivery } from '../queue/outbound-queue.js';
import type { StoredMessage } from '../store/message-store.js';
import type { GatewayContext, RelayClaim } from './gateway-context.js';
import { describeError } from './notices.js';
import { Notifier } from './notifier.js';
import { ReceiveWorker } from './receive-worker.js';
import { RELAY_LEASE_MS, RelayWorker } from './relay-worker.js';
import { MemoryGate } from './memory-gate.js';
import { createTrustServices } from './trust-services.js';

export interface HispGatewayOptions {
  config: HispConfig;
  logger?: Logger;
  /** TLS settings of the relay to other HISPs (trust roots when a domain requires TLS). */
  relayTls?: ConnectionOptions;
  /** How often idle workers look for due work (deferred deliveries, MDN time-outs); default 1000 ms. */
  pollIntervalMs?: number;
  /** How long stop() lets open SMTP sessions and API requests finish; default 30 s. */
  closeTimeoutMs?: number;
  /** Retry jitter (tests: `(ms) => ms`). */
  jitter?: (delayMs: number) => number;
}

type Direction = 'outbound' | 'inbound';

/** A message handed to a relay worker as it was stored, its deliveries leased to that worker. */
interface HandedWork {
  message: StoredMessage;
  deliveries: Delivery[];
}

/** A relay worker waiting for work (HispGateway.idleRelay). */
interface IdleRelay {
  owner: string;
  /** Reserves it: no longer woken, claimed or timed out, it waits for hand(). */
  claim(): void;
  hand(work: HandedWork | undefined): void;
}

/** Messages above this size pass the memory gate (queue.largeMessageMemoryBytes). */
const LARGE_MESSAGE_BYTES = 1024 * 1024;

/** How soon after new work the notifier looks for failures (its wake-ups are coalesced). */
const NOTIFIER_WAKE_MS = 50;

/**
 * A running HISP: the submission and inbound SMTP listeners, the relay and receive workers, the
 * notifier (DSNs, MDN time-outs) and housekeeping, on one SQLite store. `stop()` (SIGTERM) stops
 * accepting, lets open SMTP transactions and the work in hand finish, then closes the store; work
 * not started stays queued for the next start (leases of a killed process expire and are retried).
 */
export class HispGateway {
  readonly ctx: GatewayContext;
  private readonly listeners: { submission?: SmtpListener; inbound?: SmtpListener } = {};
  private readonly addresses: { submission?: AddressInfo; inbound?: AddressInfo } = {};
  /** The HTTP API, when `[api] enabled`. */
  private api: ApiListener | undefined;
  private readonly waiters: Record<Direction | 'notifier' | 'webhooks', (() => void)[]> = { outbound: [], inbound: [], notifier: [], webhooks: [] };
  /** Relay workers waiting for work, the one idle last at the end: each can be handed a message (claimRelay). */
  private readonly idleRelays: IdleRelay[] = [];
  /** Times outbound work was queued without a hand-over: a busy relay worker looks for it when it is free. */
  private outboundWakes = 0;
  private readonly loops: Promise<void>[] = [];
  private stopping = false;
  private housekeeping: NodeJS.Timeout | undefined;
  private notifierWake: NodeJS.Timeout | undefined;
  /**
   * Rounds run and items handled per loop since start (the notifier's items: failed deliveries and
   * due time-outs it looked at). Tests count on them that nothing spins; operators may read them.
   */
  readonly loopStats: Record<Direction | 'notifier' | 'webhooks', { rounds: number; items: number }> = {
    outbound: { rounds: 0, items: 0 },
    inbound: { rounds: 0, items: 0 },
    notifier: { rounds: 0, items: 0 },
    webhooks: { rounds: 0, items: 0 },
  };
  /** The services of the HTTP API, when it runs. */
  private apiServices: ApiServices | undefined;
  /** Pauses to end at once when the gateway stops. */
  private readonly stopWaiters: (() => void)[] = [];
  /** Why the gateway stopped itself (a failed WAL sync), if it did. */
  fatalError: Error | undefined;
  private markStopped: () => void = () => undefined;
  /** Resolves once stop() has finished, whoever called it. */
  readonly stopped: Promise<void> = new Promise((resolve) => (this.markStopped = resolve));
  private readonly pollIntervalMs: number;

  private constructor(
    private readonly options: HispGatewayOptions,
    ctx: Omit<GatewayContext, 'wake' | 'claimRelay'>,
    private readonly lock: DataFolderLock,
  ) {
    this.ctx = { ...ctx, wake: (d) => this.wake(d), claimRelay: () => this.claimRelay() };
    this.pollIntervalMs = options.pollIntervalMs ?? 1000;
  }

  static async start(options: HispGatewayOptions): Promise<HispGateway> {
    const { config } = options;
    const logger = options.logger ?? createLogger({ level: config.log.level });
    // The DNS client, fetcher, discovery, validator and domains, as `hisp discover --config` sees them.
    const { dns, discovery, validator, registry } = createTrustServices(config, { logger });
    const lock = DataFolderLock.acquire(config.dataDir);
    let onSyncFailure = (err: Error): void => void logger.fatal({ err: describeError(err) }, 'the store could not make its writes durable (WAL or body spool)');
    let db;
    try {
      // Fail-stop when the WAL cannot be synced (see CommitBatcherOptions.onSyncFailure).
      db = openDatabase({ dataDir: config.dataDir, migrations: HISP_MIGRATIONS, batch: { onSyncFailure: (err) => onSyncFailure(err) } });
    } catch (err) {
      lock.release();
      throw err;
    }
    const queue = new SqliteQueue(db, {
      onEraseFailure: (err) => logger.warn({ err: describeError(err) }, 'could not overwrite the stored body of a deleted message: it stays until its spool segment is removed'),
    });
    const ctx: Omit<GatewayContext, 'wake' | 'claimRelay'> = {
      config,
      registry,
      db,
      queue,
      tracking: new TrackingStore(db),
      quarantine: new QuarantineStore(db, queue.messages, {
        limits: config.quarantine,
        reserve: new DiskReserve(db.dataDir, config.quarantine.reserveBytes),
        logger: logger.child({ component: 'quarantine' }),
      }),
      dedupe: new InboundDedupe(db),
      mailboxes: new MailboxStore(db),
      dns,
      discovery,
      validator,
      schedule: new RetrySchedule({
        retrySchedule: config.queue.retrySchedule,
        giveUpHours: config.queue.giveUpHours,
        ...(options.jitter ? { jitter: options.jitter } : {}),
      }),
      relayConnections: new SmtpConnectionCache(),
      memoryGate: new MemoryGate(config.queue.largeMessageMemoryBytes, LARGE_MESSAGE_BYTES),
      ...(config.queue.wrapThreads > 0
        ? { wrapPool: new WrapPool(config.queue.wrapThreads, (err) => logger.error({ err: describeError(err) }, 'a wrap thread ended: going on without it')) }
        : {}),
      logger,
      ...(options.relayTls ? { relayTls: options.relayTls } : {}),
      now: Date.now,
    };
    const gateway = new HispGateway(options, ctx, lock);
    onSyncFailure = (err) => gateway.fatal(err);
    try {
      await gateway.run();
    } catch (err) {
      await gateway.stop();
      throw err;
    }
    return gateway;
  }

  private async run(): Promise<void> {
    const { config, logger } = this.ctx;
    await this.ctx.registry.startBundles();
    const released = await this.ctx.db.batch(() => this.ctx.queue.deliveries.releaseAll(this.ctx.now()));
    if (released > 0) logger.info({ released }, 'deliveries held by the previous process are due again');
    const orphans = await this.ctx.queue.messages.sweepOrphans();
    if (orphans > 0) logger.info({ orphans }, 'removed message files of transactions that never committed');
    const segments = await this.ctx.queue.messages.reclaimSpool();
    if (segments > 0) logger.info({ segments }, 'removed spool segments no message refers to');
    await this.ctx.quarantine.housekeeping(); // retention, size cap, disk reserve (logs; never throws)
    const strays = (await this.ctx.mailboxes?.sweep()) ?? 0;
    if (strays > 0) logger.info({ strays }, 'removed API mailbox files of deliveries that never committed');
    for (let i = 0; i < config.queue.workers; i++) {
      const relay = new RelayWorker(this.ctx, `relay-${process.pid}-${i}`);
      const receive = new ReceiveWorker(this.ctx, `receive-${process.pid}-${i}`);
      this.loops.push(this.relayLoop(relay));
      this.loops.push(this.loop('inbound', () => receive.runOnce()));
    }
    const notifier = new Notifier(this.ctx);
    this.loops.push(this.loop('notifier', () => notifier.runOnce()));
    this.housekeeping = setInterval(() => void this.tidy(), 3_600_000);
    this.housekeeping.unref();
    // Large messages are written here as they arrive (mail-data.ts), on the store's file system so
    // that it can take them by linking. Nothing here is referenced: what a crash left is removed.
    const incomingDir = join(config.dataDir, 'incoming');
    await rm(incomingDir, { recursive: true, force: true });
    await mkdir(incomingDir, { recursive: true, mode: 0o700 });
    const common = {
      hostname: config.hostname,
      logger,
      incomingDir,
      ...(this.options.closeTimeoutMs !== undefined ? { closeTimeoutMs: this.options.closeTimeoutMs } : {}),
    };
    if (config.submission.enabled) {
      this.listeners.submission = new SmtpListener(config.submission, submissionHandlers(this.ctx), { ...common, name: 'submission', auth: true, authLimits: config.submission.authLimits });
      this.addresses.submission = await this.listeners.submission.listen();
    }
    if (config.inbound.enabled) {
      this.listeners.inbound = new SmtpListener(config.inbound, inboundHandlers(this.ctx), { ...common, name: 'inbound', auth: false });
      this.addresses.inbound = await this.listeners.inbound.listen();
    }
    if (config.api.enabled) {
      const apiKeys = new ApiKeyStore(this.ctx.db, { onTouchFailure: (err) => logger.warn({ err: describeError(err) }, "could not record an API key's last use") });
      const services = createApiServices(this.ctx, apiKeys, incomingDir);
      this.apiServices = services;
      // The outbox to the keys' webhooks: each subscriber on its own back-off (events/webhook-dispatcher.ts).
      this.loops.push(this.loop('webhooks', () => services.webhooks.runOnce()));
      this.api = await ApiListener.start({ ...this.ctx, apiKeys, services }, this.options.closeTimeoutMs !== undefined ? { closeTimeoutMs: this.options.closeTimeoutMs } : {});
      logger.info({ url: this.api.url }, 'HTTP API listening');
    }
    logger.info({ domains: this.ctx.registry.names, workers: config.queue.workers, dataDir: config.dataDir }, 'hisp gateway started');
  }

  /** Where the HTTP API listens (`http://127.0.0.1:5580`), when it does. */
  get apiUrl(): string | undefined {
    return this.api?.url;
  }

  get apiPort(): number | undefined {
    return this.api?.port;
  }

  get submissionPort(): number | undefined {
    return this.addresses.submission?.port;
  }

  get inboundPort(): number | undefined {
    return this.addresses.inbound?.port;
  }

  /**
   * Work is queued for a direction: wake its idle workers, and soon the notifier, which follows
   * failures. The notifier's wake-ups are coalesced (one per NOTIFIER_WAKE_MS): under load every
   * enqueue would otherwise run its two queries, and a DSN 50 ms later is as prompt.
   */
  private wake(direction: Direction): void {
    if (direction === 'outbound') this.outboundWakes++;
    for (const w of this.waiters[direction].splice(0)) w();
    this.notifierWake ??= setTimeout(() => {
      this.notifierWake = undefined;
      for (const w of this.waiters.notifier.splice(0)) w();
    }, NOTIFIER_WAKE_MS);
  }

  private idle(key: Direction | 'notifier' | 'webhooks'): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.pollIntervalMs);
      const list = this.waiters[key];
      function done() {
        clearTimeout(timer);
        const i = list.indexOf(done);
        if (i !== -1) list.splice(i, 1);
        resolve();
      }
      list.push(done);
    });
  }

  /**
   * A relay worker: rounds of leasing due deliveries; when there are none, it waits to be woken
   * (new work queued, or the poll interval) or handed a message as it is stored (claimRelay).
   */
  private async relayLoop(relay: RelayWorker): Promise<void> {
    // When this worker last looked for due deliveries, and how many times work had been queued
    // without a hand-over (wake) by then.
    let polledAt = Number.NEGATIVE_INFINITY;
    let wakesSeen = -1;
    while (!this.stopping) {
      // A worker handed message after message looks for due work once per poll interval, or when
      // work was queued meanwhile for want of an idle worker, not after each message: that lease
      // query found nothing almost every time and was ≈ 4 % of the hop's event loop.
      if (this.outboundWakes !== wakesSeen || Date.now() - polledAt >= this.pollIntervalMs) {
        polledAt = Date.now();
        wakesSeen = this.outboundWakes;
        let n = 0;
        try {
          n = await relay.runOnce();
        } catch (err) {
          this.ctx.logger.error({ worker: 'outbound', err: describeError(err) }, 'worker round failed');
        }
        if (n > 0 || this.stopping) {
          polledAt = Number.NEGATIVE_INFINITY; // more may be due: look again at once
          continue;
        }
      }
      const handed = await this.idleRelay(relay.id);
      if (handed === undefined) {
        polledAt = Number.NEGATIVE_INFINITY; // woken (new work queued) or timed out: look now
        continue;
      }
      try {
        await relay.process(handed.deliveries, handed.message);
      } catch (err) {
        this.ctx.logger.error({ worker: 'outbound', err: describeError(err) }, 'worker round failed');
      }
    }
  }

  /**
   * Waits like idle('outbound') (woken, or the poll interval), and can be claimed meanwhile: then it
   * is neither woken nor timed out but waits for what it is handed (undefined: nothing after all).
   */
  private idleRelay(owner: string): Promise<HandedWork | undefined> {
    return new Promise((resolve) => {
      const wakers = this.waiters.outbound;
      const idle = this.idleRelays;
      // No longer idle: not woken, not claimable, no time-out.
      const leave = (): void => {
        clearTimeout(timer);
        const i = wakers.indexOf(wake);
        if (i !== -1) wakers.splice(i, 1);
        const j = idle.indexOf(entry);
        if (j !== -1) idle.splice(j, 1);
      };
      const wake = (): void => {
        leave();
        resolve(undefined);
      };
      const entry: IdleRelay = {
        owner,
        claim: leave,
        hand: (work) => {
          leave();
          resolve(work);
        },
      };
      const timer = setTimeout(wake, this.pollIntervalMs);
      wakers.push(wake);
      idle.push(entry);
    });
  }

  /**
   * An idle relay worker, reserved for a message about to be stored (GatewayContext.claimRelay): no
   * longer woken or timed out; it waits for the message to be given (or cancelled). The one idle
   * last is taken: its code and data are the warmest.
   */
  private claimRelay(): RelayClaim | undefined {
    if (this.stopping) return undefined;
    const entry = this.idleRelays.at(-1);
    if (entry === undefined) return undefined;
    entry.claim();
    return {
      owner: entry.owner,
      leaseMs: RELAY_LEASE_MS,
      give: (message, deliveries) => entry.hand({ message, deliveries }),
      cancel: () => entry.hand(undefined),
    };
  }

  private async loop(key: Direction | 'notifier' | 'webhooks', round: () => Promise<number>): Promise<void> {
    const stats = this.loopStats[key];
    let failures = 0;
    while (!this.stopping) {
      let n = 0;
      stats.rounds++;
      try {
        n = await round();
        failures = 0;
      } catch (err) {
        failures++;
        this.ctx.logger.error({ worker: key, err: describeError(err), failures }, 'worker round failed');
      }
      stats.items += n;
      if (this.stopping) break;
      // A round that fails (the store refusing writes, a bug) waits longer each time, up to a
      // minute: no loop spins on what keeps failing (issue 14, item 1).
      if (failures > 0) await this.pause(Math.min(60_000, this.pollIntervalMs * 2 ** Math.min(failures, 10)));
      else if (n === 0) await this.idle(key);
    }
  }

  /** Waits `ms`, or less when the gateway stops. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        const i = this.stopWaiters.indexOf(done);
        if (i !== -1) this.stopWaiters.splice(i, 1);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.stopWaiters.push(done);
    });
  }

  private async tidy(): Promise<void> {
    try {
      const now = this.ctx.now();
      const week = 7 * 86_400_000;
      const purged = await this.ctx.queue.purge(new Date(now - week));
      const pruned = await this.ctx.db.batch(() => this.ctx.dedupe.prune(this.ctx.config.dedupe.windowHours * 3_600_000, now) + this.ctx.tracking.purge(new Date(now - week)));
      const segments = await this.ctx.queue.messages.reclaimSpool();
      // The API's Idempotency-Keys answer for 24 h; events are kept 30 days for replay (GET /v1/events).
      const api = this.apiServices;
      const expired = api ? await this.ctx.db.batch(() => api.sender.purge() + api.outbox.purge(new Date(now - 30 * 86_400_000))) : 0;
      if (purged + pruned + segments + expired > 0) this.ctx.logger.info({ purged, pruned, segments, expired }, 'housekeeping');
    } catch (err) {
      this.ctx.logger.warn({ err: describeError(err) }, 'housekeeping failed');
    }
    await this.ctx.quarantine.housekeeping(); // logs; never throws
  }

  /**
   * The store could not make its writes durable (the WAL or the body spool): nothing may be
   * acknowledged any more (the store already refuses every write, so SMTP clients hear 451), so the
   * gateway stops; a restart recovers from what is on disk. `stopped` resolves and `fatalError` tells why.
   */
  fatal(err: Error): void {
    if (this.fatalError) return;
    this.fatalError = err;
    this.ctx.logger.fatal({ err: describeError(err) }, 'the store could not make its writes durable (WAL or body spool): stopping, restart hisp');
    void this.stop();
  }

  /** Stops accepting, drains open SMTP transactions and the workers' current rounds, closes the store. */
  async stop(): Promise<void> {
    if (this.stopping) return this.stopped;
    this.stopping = true;
    try {
      if (this.housekeeping) clearInterval(this.housekeeping);
      clearTimeout(this.notifierWake);
      // No new sessions or requests; those in progress finish (bounded by closeTimeoutMs) before the store closes.
      await Promise.all([this.listeners.submission?.close(), this.listeners.inbound?.close(), this.api?.close()]);
      for (const key of ['outbound', 'inbound', 'notifier', 'webhooks'] as const) for (const w of this.waiters[key].splice(0)) w();
      for (const w of this.stopWaiters.splice(0)) w();
      await Promise.all(this.loops);
      this.ctx.relayConnections.close();
      await this.ctx.wrapPool?.close();
      this.ctx.registry.stopBundles();
      if (this.ctx.db.isOpen) await this.ctx.db.close();
      await this.ctx.queue.messages.close();
      this.lock.release();
      this.ctx.logger.info('hisp gateway stopped');
    } finally {
      this.markStopped();
    }
  }
}

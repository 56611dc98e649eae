// An ApiContext for unit tests of the HTTP API (app.inject, no sockets): a configuration with one
// local domain from the test PKI (hospital.test, anchoring the test root CA), a real key store on a
// temporary database, discovery on a scripted DNS, and a logger whose lines the test can read.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DomainRegistry } from '../../gateway/admin/domain-registry.js';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { createApiServices } from '../../gateway/api/api-services.js';
import type { GatewayContext } from '../../gateway/flows/gateway-context.js';
import { SqliteQueue } from '../../gateway/queue/sqlite-queue.js';
import { TrackingStore } from '../../gateway/store/tracking-store.js';
import { buildApiServer, type ApiApp, type ApiContext, type ApiRoutes } from '../../gateway/api/api-server.js';
import { buildConfig } from '../../gateway/config/load-config.js';
import { createLogger } from '../../gateway/core/logger.js';
import { CertificateDiscovery, type DiscoveryDns } from '../../gateway/discovery/certificate-discovery.js';
import { ApiKeyStore, type NewApiKey } from '../../gateway/store/api-key-store.js';
import { openDatabase, type HispDatabase } from '../../gateway/store/database.js';
import { TrustValidator } from '../../gateway/trust/trust-validator.js';
import { credentialPaths } from './pki.js';
import { ApiClient } from './api-client.js';
import { scriptedDns } from './scripted-dns.js';

/** The local domain of the test context. */
export const TEST_DOMAIN = 'hospital.test';

export interface ApiTestContext {
  ctx: ApiContext;
  /** The queue the send service stores into (no workers take from it). */
  queue: SqliteQueue;
  db: HispDatabase;
  /** Every log line so far (JSON, one per line). */
  logs(): string;
  /** A new key in the store; its token. */
  key(input?: Partial<NewApiKey>): Promise<{ id: string; token: string }>;
  close(): Promise<void>;
}

export interface ApiTestContextOptions {
  /** `[api]` keys (rateLimit, bodyLimitBytes…) merged over the defaults. */
  api?: Record<string, unknown>;
  dns?: DiscoveryDns;
  /** Keys of the local domain merged over the test's (policy, anchors…). */
  domain?: Record<string, unknown>;
  /** The clock of the context (validation time, key use); default Date.now. */
  now?: () => number;
}

export function apiTestContext(options: ApiTestContextOptions = {}): Promise<ApiTestContext> {
  const dataDir = mkdtempSync(join(tmpdir(), 'hisp-api-'));
  const domain = credentialPaths('sender-domain');
  const { config } = buildConfig(
    {
      dataDir,
      submission: { enabled: false },
      inbound: { enabled: false },
      api: { enabled: true, ...(options.api ?? {}) },
      domains: [{ name: TEST_DOMAIN, catchAll: false, addresses: [{ address: `patient@${TEST_DOMAIN}` }], credentials: [{ key: domain.key, cert: domain.chain }], anchors: { incoming: [credentialPaths('root-ca').cert], outgoing: [credentialPaths('root-ca').cert] }, ...(options.domain ?? {}) }],
    },
    { baseDir: dataDir, env: {} },
  );
  const db = openDatabase({ dataDir });
  let text = '';
  const logger = createLogger({ level: 'info', destination: { write: (line: string) => void (text += line) } });
  const apiKeys = new ApiKeyStore(db);
  const now = options.now ?? Date.now;
  const registry = DomainRegistry.load(config);
  const discovery = new CertificateDiscovery({ dns: options.dns ?? scriptedDns({}) });
  const validator = new TrustValidator();
  const queue = new SqliteQueue(db, { now });
  // What the services need of a running gateway: its store and queue (no workers: what is sent
  // stays queued, for the test to look at), its domains and clock.
  const gateway = { config, registry, db, queue, tracking: new TrackingStore(db), discovery, validator, logger, now, wake: () => undefined } as unknown as GatewayContext;
  const incoming = join(dataDir, 'incoming');
  mkdirSync(incoming, { recursive: true });
  const ctx: ApiContext = {
    config,
    registry,
    discovery,
    validator,
    logger,
    now,
    apiKeys,
    services: createApiServices(gateway, apiKeys, incoming),
  };
  return Promise.resolve({
    ctx,
    queue,
    db,
    logs: () => text,
    key: async (input = {}) => {
      const { key, token } = await apiKeys.create(
        { name: 'test', actions: ['send', 'status', 'receive', 'validate'], sendAs: [`@${TEST_DOMAIN}`], mailboxes: [`@${TEST_DOMAIN}`], ...input },
        Date.now(),
      );
      return { id: key.id, token };
    },
    close: async () => {
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  });
}

/** One server for a whole test file (property tests: thousands of requests), built before its tests and closed after them. */
export interface ApiFileServer {
  readonly t: ApiTestContext;
  readonly app: ApiApp;
  readonly client: ApiClient;
  /** A key with every action, for the test domain. */
  readonly token: string;
}

/**
 * A server per test file: the returned object's members are there once the file's tests run (the
 * beforeAll this registers builds them; the afterAll closes them).
 */
export function apiServerPerFile(options: ApiTestContextOptions = {}): ApiFileServer {
  let state: { t: ApiTestContext; app: ApiApp; client: ApiClient; token: string } | undefined;
  beforeAll(async () => {
    const t = await apiTestContext(options);
    const app = await buildApiServer(t.ctx);
    state = { t, app, client: await ApiClient.forApp(app), token: (await t.key()).token };
  });
  afterAll(async () => {
    await state?.app.close();
    await state?.t.close();
    state = undefined;
  });
  const get = () => {
    if (!state) throw new Error('apiServerPerFile: its server exists only while the file’s tests run');
    return state;
  };
  return {
    get t() {
      return get().t;
    },
    get app() {
      return get().app;
    },
    get client() {
      return get().client;
    },
    get token() {
      return get().token;
    },
  };
}

/**
 * A server per test: `start()` builds one on a fresh context (with its ApiClient), closed after
 * the test by the afterEach this registers.
 */
export function apiServerPerTest(): {
  start(options?: ApiTestContextOptions & { routes?: readonly ApiRoutes[] }): Promise<{ client: ApiClient; t: ApiTestContext; app: ApiApp }>;
} {
  let running: { t: ApiTestContext; app?: ApiApp } | undefined;
  afterEach(async () => {
    await running?.app?.close();
    await running?.t.close();
    running = undefined;
  });
  return {
    async start(options = {}) {
      const t = await apiTestContext(options);
      running = { t };
      const app = await buildApiServer(t.ctx, options.routes ? { routes: options.routes } : {});
      running.app = app;
      return { client: await ApiClient.forApp(app), t, app };
    },
  };
}

import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { HispError } from '../core/errors.js';
import { buildApiServer, type ApiApp, type ApiContext, type ApiRoutes } from './api-server.js';

export interface ApiListenerOptions {
  /** How long close() lets requests in progress finish before cutting their connections; default 30 s. */
  closeTimeoutMs?: number;
  /** Default every area of the API (API_ROUTES). */
  routes?: readonly ApiRoutes[];
}

/** 127.0.0.0/8, ::1 and localhost: the hosts plain HTTP may be served on. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * The `[api]` listener of a running gateway (HispGateway): HTTPS with the configured certificate,
 * or plain HTTP on a loopback host only (the configuration refuses anything else, and so does this,
 * for callers that build a configuration by other means). `close()` takes no new request (503) and
 * lets those in progress finish, at most `closeTimeoutMs`.
 */
export class ApiListener {
  private constructor(
    readonly app: ApiApp,
    private readonly address: AddressInfo,
    readonly secure: boolean,
    private readonly closeTimeoutMs: number,
  ) {}

  static async start(ctx: ApiContext, options: ApiListenerOptions = {}): Promise<ApiListener> {
    const { api } = ctx.config;
    const secure = api.tlsCert !== undefined && api.tlsKey !== undefined;
    if (!secure && !isLoopbackHost(api.host)) {
      throw new HispError('HISP_CONFIG_INVALID', `api.host: ${api.host} is not a loopback address: plain HTTP is served on loopback only; give tlsCert and tlsKey`);
    }
    let https: { key: Buffer; cert: Buffer } | undefined;
    if (secure) {
      try {
        https = { key: readFileSync(api.tlsKey), cert: readFileSync(api.tlsCert) };
      } catch (cause) {
        throw new HispError('HISP_IO', `cannot read the API's TLS certificate or key: ${(cause as Error).message}`, { cause });
      }
    }
    const app = await buildApiServer(ctx, { ...(https ? { https } : {}), ...(options.routes ? { routes: options.routes } : {}) });
    try {
      await app.listen({ host: api.host, port: api.port });
    } catch (cause) {
      await app.close();
      throw new HispError('HISP_IO', `the API cannot listen on ${api.host}:${api.port}: ${(cause as Error).message}`, { cause });
    }
    return new ApiListener(app, app.server.address() as AddressInfo, secure, options.closeTimeoutMs ?? 30_000);
  }

  get port(): number {
    return this.address.port;
  }

  /** `https://127.0.0.1:5580`: where clients reach it. */
  get url(): string {
    const host = this.address.family === 'IPv6' ? `[${this.address.address}]` : this.address.address;
    return `${this.secure ? 'https' : 'http'}://${host}:${this.port}`;
  }

  /** No new request (503 with Retry-After); those in progress finish, cut after closeTimeoutMs. */
  async close(): Promise<void> {
    const timer = setTimeout(() => this.app.server.closeAllConnections(), this.closeTimeoutMs);
    try {
      await this.app.close();
    } finally {
      clearTimeout(timer);
    }
  }
}

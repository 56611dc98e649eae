import type { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { ApiKeyStore } from '../../gateway/store/api-key-store.js';
import { ApiClient } from './api-client.js';
import { gatewayConfigObject, startDirectNetwork, startGateway, toConfig, type DirectNetwork } from './direct-network.js';

export interface ApiGatewayPair {
  net: DirectNetwork;
  /** The EHR's HISP: a.test, the HTTP API on. */
  a: HispGateway;
  /** The PHR's HISP: b.test, the HTTP API on, phr@b.test delivered to its API mailbox. */
  b: HispGateway;
  ehr: ApiClient;
  phr: ApiClient;
  /** A's key: send and status, as @a.test. */
  ehrKey: string;
  /** B's key: receive, phr@b.test's mailbox. */
  phrKey: string;
}

/**
 * Two gateways that speak to each other only through Direct (knotd publishing their certificates,
 * as startDirectNetwork sets it up), each with its HTTP API, and the keys an EHR at A and a PHR at
 * B use: what the end-to-end tests of the API, Blue Button+ transmit and FHIR start from.
 * `aExtra`: more configuration for A (e.g. `fetch` to let its webhooks reach loopback).
 */
export async function startApiGatewayPair(options: { aExtra?: Record<string, unknown> } = {}): Promise<ApiGatewayPair> {
  const net = await startDirectNetwork(['a.test', 'b.test']);
  const aRaw = await gatewayConfigObject(net.spec('a.test', { extra: { api: { enabled: true, port: 0 }, ...options.aExtra } }), net.dns.address);
  const bRaw = await gatewayConfigObject(
    net.spec('b.test', { extra: { api: { enabled: true, port: 0 } }, domainExtra: { addresses: [{ address: 'phr@b.test', delivery: { type: 'api' } }] } }),
    net.dns.address,
  );
  const a = await startGateway(toConfig(aRaw, net.dir));
  const b = await startGateway(toConfig(bRaw, net.dir));
  const ehrKey = (await new ApiKeyStore(a.ctx.db).create({ name: 'ehr', actions: ['send', 'status'], sendAs: ['@a.test'], mailboxes: [] }, Date.now())).token;
  const phrKey = (await new ApiKeyStore(b.ctx.db).create({ name: 'phr', actions: ['receive'], sendAs: [], mailboxes: ['phr@b.test'] }, Date.now())).token;
  return { net, a, b, ehr: await ApiClient.forUrl(a.apiUrl!), phr: await ApiClient.forUrl(b.apiUrl!), ehrKey, phrKey };
}

/** What phr@b.test's API mailbox at B lists now (GET /v1/mailboxes/phr@b.test/messages with the PHR's key). */
export async function phrMailbox<M = { id: string; from: string }>(pair: Pick<ApiGatewayPair, 'phr' | 'phrKey'>): Promise<M[]> {
  const r = await pair.phr.request('GET', '/v1/mailboxes/phr@b.test/messages', { key: pair.phrKey });
  return (r.body as { messages: M[] }).messages;
}

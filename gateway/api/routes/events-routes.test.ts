// GET /v1/events and PUT|GET|DELETE /v1/webhook in process (issue 15, "Events"): the events the
// database's triggers write as messages are queued, relayed and received, read after a cursor, a
// page at a time, by type, and only those of the key's scopes (sent: its send-as addresses and
// domains; received: its mailboxes); the key's webhook (https, or http to loopback only; its
// secret shown once). Responses are checked against /openapi.json by the ApiClient.
import { describe, expect, it } from 'vitest';
import { apiServerPerTest, TEST_DOMAIN, type ApiTestContext } from '../../../test/helpers/api-context.js';
import type { ApiClient } from '../../../test/helpers/api-client.js';

const server = apiServerPerTest();
const body = Buffer.from('Subject: results\r\n\r\nhello\r\n');

interface Event {
  id: string;
  cursor: string;
  type: string;
  data: { id: string; recipient: string; state: string; from?: string };
}
interface Events {
  events: Event[];
  nextCursor: string;
}

/** A message sent by `from`, queued (one message.queued event per recipient), and relayed when asked. */
async function sent(t: ApiTestContext, from: string, recipients: string[], relay = false): Promise<string> {
  const id = await t.queue.enqueue({ direction: 'outbound', mailFrom: from, recipients, messageId: `<${from.split('@')[0]}.${Date.now()}@${TEST_DOMAIN}>` }, body);
  if (relay) for (const d of await t.queue.lease(10, 'w1', 60_000)) await t.queue.complete(d, { code: 250, enhanced: '2.0.0', text: 'queued as 1' });
  return id;
}

/** A message received into the mailbox of `mailbox` (a message.received event). */
async function received(t: ApiTestContext, mailbox: string): Promise<string> {
  const id = await t.queue.enqueue({ direction: 'inbound', mailFrom: 'doctor@clinic.example', recipients: [mailbox], messageId: `<in.${Date.now()}@clinic.example>` }, body);
  for (const d of await t.queue.lease(10, 'r1', 60_000, 'inbound')) await t.queue.complete(d, { code: 250, text: 'delivered' });
  return id;
}

async function events(client: ApiClient, key: string, query = ''): Promise<Events> {
  const r = await client.request('GET', `/v1/events${query}`, { key });
  expect(r.status, r.text).toBe(200);
  return r.body as Events;
}

const summary = (e: Events) => e.events.map((x) => [x.type, x.data.recipient]);

describe('GET /v1/events', () => {
  it('reads the events after a cursor, oldest first, a page at a time; the type filter keeps one kind', async () => {
    const { client, t } = await server.start();
    const token = (await t.key()).token;
    const doctor = await sent(t, `doctor@${TEST_DOMAIN}`, ['patient@phr.example', 'nurse@clinic.example'], true);
    const inbound = await received(t, `patient@${TEST_DOMAIN}`);

    const all = await events(client, token);
    expect(summary(all)).toEqual([
      ['message.queued', 'patient@phr.example'],
      ['message.queued', 'nurse@clinic.example'],
      ['message.relayed', 'patient@phr.example'],
      ['message.relayed', 'nurse@clinic.example'],
      ['message.received', `patient@${TEST_DOMAIN}`],
    ]);
    expect(all.events.slice(0, 4).map((e) => e.data.id)).toEqual([doctor, doctor, doctor, doctor]);
    expect(all.events[4]?.data).toMatchObject({ id: inbound, state: 'received', from: 'doctor@clinic.example' });
    expect(new Set(all.events.map((e) => e.id)).size).toBe(5);
    expect(all.nextCursor).toBe(all.events[4]?.cursor);

    // Pages: limit, then after the page's nextCursor; after the last, nothing and the same cursor.
    const first = await events(client, token, '?limit=2');
    expect(first.events.map((e) => e.id)).toEqual(all.events.slice(0, 2).map((e) => e.id));
    const rest = await events(client, token, `?after=${first.nextCursor}&limit=100`);
    expect(rest.events.map((e) => e.id)).toEqual(all.events.slice(2).map((e) => e.id));
    const none = await events(client, token, `?after=${rest.nextCursor}`);
    expect(none).toEqual({ events: [], nextCursor: rest.nextCursor });
    // A replay from 0 gives the same events again, the same ids (de-duplication by id).
    expect((await events(client, token, '?after=0')).events).toEqual(all.events);

    // What comes later is read after the cursor held.
    await sent(t, `nurse@${TEST_DOMAIN}`, ['patient@phr.example']);
    expect(summary(await events(client, token, `?after=${all.nextCursor}`))).toEqual([['message.queued', 'patient@phr.example']]);

    expect(summary(await events(client, token, '?type=message.received'))).toEqual([['message.received', `patient@${TEST_DOMAIN}`]]);
    expect((await events(client, token, '?type=message.relayed&limit=1')).events.map((e) => e.type)).toEqual(['message.relayed']);
    expect((await events(client, token, '?type=message.failed')).events).toEqual([]);
  });

  it('a key sees the sent events of its send-as scopes and the received ones of its mailboxes only; a key with neither is 403', async () => {
    const { client, t } = await server.start();
    await sent(t, `doctor@${TEST_DOMAIN}`, ['p1@phr.example']);
    await sent(t, `nurse@${TEST_DOMAIN}`, ['p2@phr.example']);
    await sent(t, 'doctor@other.example', ['p3@phr.example']);
    await received(t, `patient@${TEST_DOMAIN}`);
    await received(t, `frontdesk@${TEST_DOMAIN}`);

    const everything = (await t.key()).token;
    expect(summary(await events(client, everything))).toEqual([
      ['message.queued', 'p1@phr.example'],
      ['message.queued', 'p2@phr.example'],
      ['message.received', `patient@${TEST_DOMAIN}`],
      ['message.received', `frontdesk@${TEST_DOMAIN}`],
    ]);
    // Sending as one address (in another case): that sender's events, none received.
    const doctor = (await t.key({ actions: ['send'], sendAs: [`Doctor@${TEST_DOMAIN.toUpperCase()}`], mailboxes: [] })).token;
    expect(summary(await events(client, doctor))).toEqual([['message.queued', 'p1@phr.example']]);
    // Reading status is enough to follow what was sent.
    const status = (await t.key({ actions: ['status'], sendAs: [`nurse@${TEST_DOMAIN}`], mailboxes: [] })).token;
    expect(summary(await events(client, status))).toEqual([['message.queued', 'p2@phr.example']]);
    // Receiving from one mailbox: its received events, none of the messages sent from the same domain.
    const phr = (await t.key({ actions: ['receive'], sendAs: [], mailboxes: [`patient@${TEST_DOMAIN}`] })).token;
    expect(summary(await events(client, phr))).toEqual([['message.received', `patient@${TEST_DOMAIN}`]]);
    expect((await events(client, phr, '?type=message.queued')).events).toEqual([]);
    // Mailboxes without receive, send-as with only validate: no events to see.
    for (const input of [
      { actions: ['validate'], sendAs: [`@${TEST_DOMAIN}`], mailboxes: [`@${TEST_DOMAIN}`] },
      { actions: ['status'], sendAs: [], mailboxes: [`@${TEST_DOMAIN}`] },
    ]) {
      const key = (await t.key(input)).token;
      const r = await client.request('GET', '/v1/events', { key });
      expect(r.status).toBe(403);
      expect(r.body).toMatchObject({ code: 'HISP_API_FORBIDDEN' });
    }
    expect((await client.request('GET', '/v1/events')).status).toBe(401);
  });

  it('a bad query is a 400 problem naming the parameter', async () => {
    const { client, t } = await server.start();
    const token = (await t.key()).token;
    for (const query of ['?after=-1', '?after=abc', '?limit=1000', '?limit=x', '?type=message.sent', '?cursor=1', `?after=${'9'.repeat(16)}`]) {
      const r = await client.request('GET', `/v1/events${query}`, { key: token });
      expect({ query, status: r.status, code: (r.body as { code: string }).code }).toEqual({ query, status: 400, code: 'HISP_API_INVALID_REQUEST' });
      expect((r.body as { errors: { in: string }[] }).errors[0]?.in).toBe('querystring');
    }
  });
});

interface Webhook {
  url: string;
  cursor: string;
  failures: number;
  nextAttemptAt: string | null;
  lastError: string | null;
  lastSuccessAt: string | null;
}

describe('PUT|GET|DELETE /v1/webhook', () => {
  it('subscribes an https URL (or http to loopback), shows the secret once, GET never shows it, DELETE 204 then 404', async () => {
    const { client, t } = await server.start();
    const token = (await t.key()).token;
    expect((await client.request('GET', '/v1/webhook', { key: token })).body).toMatchObject({ status: 404, code: 'HISP_NOT_FOUND' });
    await sent(t, `doctor@${TEST_DOMAIN}`, ['p1@phr.example']);
    const last = (await events(client, token)).nextCursor;

    const put = await client.request('PUT', '/v1/webhook', { key: token, json: { url: 'https://ehr.example/hooks/hisp' } });
    expect(put.status).toBe(200);
    const { secret, webhook } = put.body as { secret: string; webhook: Webhook };
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    // Events from now on: the subscription starts after the newest event.
    expect(webhook).toEqual({ url: 'https://ehr.example/hooks/hisp', cursor: last, failures: 0, nextAttemptAt: null, lastError: null, lastSuccessAt: null });

    const got = await client.request('GET', '/v1/webhook', { key: token });
    expect(got.status).toBe(200);
    expect(got.body).toEqual(webhook);
    expect(got.text).not.toContain(secret.slice('whsec_'.length, 20));
    expect(got.text).not.toContain('whsec_');
    expect(t.logs()).not.toContain(secret);

    // Subscribing again replaces it, with a new secret.
    const again = await client.request('PUT', '/v1/webhook', { key: token, json: { url: 'http://127.0.0.1:8089/hook' } });
    expect(again.status).toBe(200);
    expect((again.body as { secret: string }).secret).not.toBe(secret);
    expect((await client.request('GET', '/v1/webhook', { key: token })).body).toMatchObject({ url: 'http://127.0.0.1:8089/hook' });

    // Another key has its own (none).
    const other = (await t.key()).token;
    expect((await client.request('GET', '/v1/webhook', { key: other })).status).toBe(404);
    expect((await client.request('DELETE', '/v1/webhook', { key: other })).status).toBe(404);

    const deleted = await client.request('DELETE', '/v1/webhook', { key: token });
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe('');
    expect((await client.request('GET', '/v1/webhook', { key: token })).status).toBe(404);
    expect((await client.request('DELETE', '/v1/webhook', { key: token })).body).toMatchObject({ status: 404, code: 'HISP_NOT_FOUND' });
  });

  it('refuses plain http to anything but loopback, credentials in the URL, other schemes, not a URL; a key that sees no events', async () => {
    const { client, t } = await server.start();
    const token = (await t.key()).token;
    for (const url of ['http://ehr.example/hook', 'http://10.0.0.5/hook', 'ftp://ehr.example/hook', 'https://user:pw@ehr.example/hook', 'not a url at all', 'javascript:alert(1)']) {
      const r = await client.request('PUT', '/v1/webhook', { key: token, json: { url } });
      expect({ url, status: r.status, code: (r.body as { code: string }).code }).toEqual({ url, status: 400, code: 'HISP_API_INVALID_REQUEST' });
    }
    for (const url of ['http://localhost:9000/hook', 'http://[::1]:9000/hook', 'https://10.0.0.5/hook']) {
      expect((await client.request('PUT', '/v1/webhook', { key: token, json: { url } })).status, url).toBe(200);
    }
    // The body is closed and typed.
    expect((await client.request('PUT', '/v1/webhook', { key: token, json: { url: 'https://ehr.example/hook', secret: 'mine' } })).status).toBe(400);
    expect((await client.request('PUT', '/v1/webhook', { key: token, json: {} })).status).toBe(400);
    expect((await client.request('PUT', '/v1/webhook', { key: token, json: { url: 'https://ehr.example/' + 'x'.repeat(2000) } })).status).toBe(400);

    const blind = (await t.key({ actions: ['validate'], sendAs: [`@${TEST_DOMAIN}`], mailboxes: [] })).token;
    const r = await client.request('PUT', '/v1/webhook', { key: blind, json: { url: 'https://ehr.example/hook' } });
    expect(r.body).toMatchObject({ status: 403, code: 'HISP_API_FORBIDDEN' });
    expect((await client.request('GET', '/v1/webhook', { key: blind })).status).toBe(404);
  });
});

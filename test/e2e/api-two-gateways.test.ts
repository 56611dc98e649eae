/**
 * Two gateways end to end through the HTTP API only (issue 15, "Proven"): an EHR sends an ETT
 * C-CDA sample with `POST /v1/messages` to gateway A (a.test); gateway B (b.test) keeps it in the
 * API mailbox of phr@b.test, where the PHR lists it with its signer, parts, rendered C-CDA and XDM
 * documents, takes a part and acknowledges it; A's status becomes `dispatched` and the EHR's
 * webhook receives the events in order, each signature verified with the standardwebhooks library.
 * Real peers on loopback: knotd publishes both domains' certificates (DNS CERT) and MX records.
 */
import { phrMailbox, startApiGatewayPair } from '../helpers/api-gateway-pair.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import type { ApiClient } from '../helpers/api-client.js';
import { waitFor, type DirectNetwork } from '../helpers/direct-network.js';
import { missingExecutable, requirePeer } from '../helpers/require-peer.js';
import { vectorGroup } from '../helpers/vectors.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

const knot = requirePeer(missingExecutable('knotd'));
const ett = vectorGroup('ett', ['cda-samples/CCDA_Ambulatory.xml']);
const WAIT_MS = 30_000;

interface Event {
  id: string;
  cursor: string;
  type: string;
  data: { id: string; recipient: string; state: string; evidence?: Record<string, string> };
}

describe.skipIf(knot.skip || !ett.present)(knot.title(ett.title('two gateways through the HTTP API only (issue 15)')), () => {
  let net: DirectNetwork;
  let a: HispGateway;
  let b: HispGateway;
  let ehr: ApiClient;
  let phr: ApiClient;
  let ehrKey = '';
  let phrKey = '';
  let hooks: WebhookReceiver<Event>;

  beforeAll(async () => {
    hooks = await startWebhookReceiver<Event>();
    // The EHR's webhook listens on loopback: A's fetch policy must allow it ([fetch] allowAddresses).
    ({ net, a, b, ehr, phr, ehrKey, phrKey } = await startApiGatewayPair({ aExtra: { fetch: { allowAddresses: ['127.0.0.1/32'] } } }));
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await net?.stop();
    await hooks?.close();
  });

  it('EHR → A → B’s API mailbox → PHR reads and acknowledges → A says dispatched, and the webhook told the EHR every step, in order, signed', async () => {
    const hook = await ehr.request('PUT', '/v1/webhook', { key: ehrKey, json: { url: hooks.url } });
    expect(hook.status).toBe(200);
    hooks.secret((hook.body as { secret: string }).secret);

    const ccda = ett.read('cda-samples/CCDA_Ambulatory.xml');
    const sent = await ehr.request('POST', '/v1/messages', {
      key: ehrKey,
      json: {
        from: 'provider@a.test',
        to: ['phr@b.test'],
        subject: 'Summary of care',
        text: 'This message was sent by Example Hospital at the request of Isabella Jones.',
        package: 'both',
        finalDelivery: true,
        documents: [{ filename: 'CCDA_Ambulatory.xml', contentType: 'application/xml', kind: 'ccda', content: ccda.toString('base64') }],
      },
    });
    expect(sent.status).toBe(202);
    const { id } = sent.body as { id: string };

    // B: the message waits in the mailbox of phr@b.test.
    const listed = await waitFor(
      'the message in B’s API mailbox',
      async () => {
        const messages = await phrMailbox({ phr, phrKey });
        return messages.length > 0 ? messages : undefined;
      },
      WAIT_MS,
    );
    expect(listed).toHaveLength(1);
    expect(listed[0]?.from).toBe('provider@a.test');
    const messageId = listed[0]!.id;
    const read = await phr.request('GET', `/v1/mailboxes/phr@b.test/messages/${messageId}`, { key: phrKey });
    expect(read.status).toBe(200);
    const view = read.body as {
      from: string;
      subject: string;
      security: { signer: string; fingerprint: string; binding: string; anchor: { subject: string }; algorithms: Record<string, string> };
      parts: { id: string; contentType: string; filename: string | null; sha256: string }[];
      ccda?: { title: string | null; patient: { name: string | null } };
      xdm?: { documents: { hashMatches: boolean; size: number }[] };
    };
    expect(view.from).toBe('provider@a.test');
    expect(view.subject).toBe('Summary of care XDM/1.0/DDM');
    expect(view.security).toMatchObject({ binding: 'domain', anchor: { subject: expect.stringContaining('e2e trusted CA') as string }, algorithms: { cipher: expect.any(String) as string } });
    expect(view.security.signer).toContain('a.test');
    expect(view.security.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(view.parts.map((p) => [p.contentType, p.filename])).toEqual([
      ['text/plain', null],
      ['application/xml', 'CCDA_Ambulatory.xml'],
      ['text/html', 'CCDA_Ambulatory.html'],
      ['application/zip', 'XDM.zip'],
    ]);
    expect(view.ccda?.patient.name).toEqual(expect.any(String));
    expect(view.xdm?.documents).toEqual([expect.objectContaining({ hashMatches: true, size: ccda.length })]);

    const xml = view.parts.find((p) => p.contentType === 'application/xml')!;
    const bytes = await phr.request('GET', `/v1/mailboxes/phr@b.test/messages/${messageId}/parts/${xml.id}`, { key: phrKey });
    expect(bytes.status).toBe(200);
    expect(bytes.headers['x-content-type-options']).toBe('nosniff');
    expect(Buffer.from(bytes.text, 'utf8').equals(ccda)).toBe(true);
    const page = await phr.request('GET', `/v1/mailboxes/phr@b.test/messages/${messageId}/parts/${xml.id}/rendered`, { key: phrKey });
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.text).toMatch(/<meta http-equiv="Content-Security-Policy"/i);

    // Before the PHR takes it, A has the processed MDN, not the dispatched one.
    await waitFor('processed at A', async () => {
      const s = await ehr.request('GET', `/v1/messages/${id}`, { key: ehrKey });
      return (s.body as { recipients: { state: string }[] }).recipients[0]?.state === 'processed';
    }, WAIT_MS);
    const ack = await phr.request('POST', `/v1/mailboxes/phr@b.test/messages/${messageId}/ack`, { key: phrKey });
    expect(ack.body).toMatchObject({ id: messageId, dispatchedMdn: true });
    const again = await phr.request('POST', `/v1/mailboxes/phr@b.test/messages/${messageId}/ack`, { key: phrKey });
    expect(again.body).toMatchObject({ dispatchedMdn: false });
    expect(await phrMailbox({ phr, phrKey })).toEqual([]);

    const status = await waitFor('dispatched at A', async () => {
      const s = await ehr.request('GET', `/v1/messages/${id}`, { key: ehrKey });
      const r = (s.body as { recipients: { state: string; transitions: { state: string; evidence?: Record<string, string> }[] }[] }).recipients[0];
      return r?.state === 'dispatched' ? r : undefined;
    }, WAIT_MS);
    expect(status.transitions.map((t) => t.state)).toEqual(['queued', 'relayed', 'processed', 'dispatched']);
    expect(status.transitions[3]?.evidence?.mdnMessageId).toEqual(expect.any(String));

    const delivered = await waitFor('four webhook events', () => (hooks.received.length >= 4 ? hooks.received : undefined), WAIT_MS);
    expect(delivered.map((h) => [h.event.type, h.event.data.id, h.verified])).toEqual([
      ['message.queued', id, true],
      ['message.relayed', id, true],
      ['message.processed', id, true],
      ['message.dispatched', id, true],
    ]);
    // The same events by polling, from the start.
    const polled = await ehr.request('GET', '/v1/events?after=0', { key: ehrKey });
    expect((polled.body as { events: Event[] }).events.map((e) => e.id)).toEqual(delivered.map((h) => h.event.id));
    // B's side: the received message is an event of the PHR's mailbox.
    const received = await phr.request('GET', '/v1/events', { key: phrKey });
    expect((received.body as { events: Event[] }).events.map((e) => [e.type, e.data.recipient])).toEqual([['message.received', 'phr@b.test']]);
  }, 90_000);
});

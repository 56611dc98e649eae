/**
 * FHIR end to end on two gateways (issue 16, "Proven": "the same transmission through POST
 * /fhir/Bundle, its Task reaching completed on the dispatched MDN"): an EHR POSTs an IHE MHD
 * ITI-65 Provide Document Bundle to gateway A (a.test) for phr@b.test; B keeps the message in its
 * API mailbox, where the PHR finds it as a FHIR Communication and acknowledges it; A's Task goes
 * requested → in-progress (processed MDN) → completed (dispatched MDN). Real peers on loopback:
 * knotd publishes both domains' certificates (DNS CERT) and MX records.
 */
import { phrMailbox, startApiGatewayPair } from '../helpers/api-gateway-pair.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import type { ApiClient } from '../helpers/api-client.js';
import { cdaDocument, section } from '../helpers/ccda-documents.js';
import { waitFor, type DirectNetwork } from '../helpers/direct-network.js';
import { CCDA_FORMAT, mhdBundle } from '../helpers/mhd-bundles.js';
import { missingExecutable, requirePeer } from '../helpers/require-peer.js';

const knot = requirePeer(missingExecutable('knotd'));
const WAIT_MS = 30_000;
const FHIR = 'application/fhir+json';
const CCDA = Buffer.from(cdaDocument({ title: 'Discharge summary for Isabella', sections: [section('<paragraph>Allergies: penicillin.</paragraph>', 'Allergies')] }));

interface TaskJson {
  id: string;
  status: string;
  businessStatus: { coding: { code: string }[] };
  owner: { display: string };
}

describe.skipIf(knot.skip)(knot.title('FHIR MHD ITI-65 on two gateways (issue 16)'), () => {
  let net: DirectNetwork;
  let a: HispGateway;
  let b: HispGateway;
  let ehr: ApiClient;
  let phr: ApiClient;
  let ehrKey = '';
  let phrKey = '';

  beforeAll(async () => {
    ({ net, a, b, ehr, phr, ehrKey, phrKey } = await startApiGatewayPair());
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await net?.stop();
  });

  it('Bundle at A → B’s mailbox and /fhir/Communication → the PHR acknowledges → A’s Task completed', async () => {
    const bundle = mhdBundle({ recipients: ['phr@b.test'], author: 'provider@a.test', documents: [{ content: CCDA, format: CCDA_FORMAT, title: 'discharge.xml', reference: { type: { coding: [{ system: 'http://loinc.org', code: '18842-5', display: 'Discharge summary' }] } } }], patientResource: { identifier: [{ system: 'urn:oid:2.16.840.1.113883.19.5', value: 'MRN-42' }], name: [{ family: 'Jones', given: ['Isabella'] }] } });
    const sent = await ehr.request('POST', '/fhir/Bundle', { key: ehrKey, body: JSON.stringify(bundle), contentType: FHIR });
    expect(sent.status, sent.text).toBe(200);
    const list = (sent.body as { entry: { response: { location: string } }[] }).entry[0]!.response.location;
    const task = async () => {
      const r = await ehr.request('GET', `/fhir/Task?focus=${list}`, { key: ehrKey });
      const tasks = (r.body as { entry: { resource: TaskJson }[] }).entry.map((e) => e.resource);
      expect(tasks).toHaveLength(1);
      return tasks[0]!;
    };
    expect((await task()).owner.display).toBe('phr@b.test');

    // B: the message waits in phr@b.test's mailbox, and is a Communication there.
    const listed = await waitFor(
      'the message in B’s API mailbox',
      async () => {
        const messages = await phrMailbox({ phr, phrKey });
        return messages.length > 0 ? messages : undefined;
      },
      WAIT_MS,
    );
    expect(listed.map((m) => m.from)).toEqual(['provider@a.test']);
    const comms = await phr.request('GET', '/fhir/Communication?recipient=phr@b.test', { key: phrKey });
    const c = (comms.body as { entry: { resource: { id: string; status: string; sender: { display: string }; contained: { content: { attachment: { title?: string; url: string } }[] }[] } }[] }).entry.map((e) => e.resource);
    expect(c).toHaveLength(1);
    // The patient went along as the Direct Context, and is the Communication's subject at B.
    expect(c[0]).toMatchObject({
      id: listed[0]!.id.replace('msg_', 'msg-'),
      status: 'in-progress',
      sender: { display: 'provider@a.test' },
      subject: { identifier: { system: 'urn:oid:2.16.840.1.113883.19.5', value: 'MRN-42' }, display: 'Isabella Jones' },
    });
    const titles = c[0]!.contained.map((d) => d.content[0]!.attachment.title);
    expect(titles).toEqual(expect.arrayContaining(['discharge.xml', 'XDM.zip']));
    const xml = c[0]!.contained.find((d) => d.content[0]!.attachment.title === 'discharge.xml')!;
    const bytes = await phr.request('GET', new URL(xml.content[0]!.attachment.url).pathname, { key: phrKey });
    expect(Buffer.from(bytes.text, 'utf8').equals(CCDA)).toBe(true);
    // The XDM package B received was built from the Bundle's metadata: the DocumentReference's type and title.
    const one = await phr.request('GET', `/v1/mailboxes/phr@b.test/messages/${listed[0]!.id}`, { key: phrKey });
    const entry = (one.body as { xdm?: { documents: { entry?: Record<string, unknown> }[] } }).xdm?.documents[0]?.entry;
    expect(entry).toMatchObject({ title: 'discharge.xml', typeCode: { code: '18842-5', codingScheme: '2.16.840.1.113883.6.1', displayName: 'Discharge summary' } });

    // A: in progress once B's processed MDN came; completed on the dispatched one, after the PHR's ack.
    await waitFor('the Task in progress at A', async () => (await task()).status === 'in-progress', WAIT_MS);
    const ack = await phr.request('POST', `/v1/mailboxes/phr@b.test/messages/${listed[0]!.id}/ack`, { key: phrKey });
    expect(ack.body).toMatchObject({ dispatchedMdn: true });
    const done = await waitFor('the Task completed at A', async () => {
      const t = await task();
      return t.status === 'completed' ? t : undefined;
    }, WAIT_MS);
    expect(done.businessStatus.coding[0]!.code).toBe('dispatched');
    const byId = await ehr.request('GET', `/fhir/Task/${done.id}`, { key: ehrKey });
    expect(byId.body).toMatchObject({ id: done.id, status: 'completed', for: { identifier: { system: 'urn:oid:2.16.840.1.113883.19.5', value: 'MRN-42' }, display: 'Isabella Jones' } });
    expect((await phr.request('GET', `/fhir/Communication/${c[0]!.id}`, { key: phrKey })).body).toMatchObject({ status: 'completed' });
  });
});

/**
 * Blue Button+ transmit end to end on two gateways, through the HTTP API only (issue 16, "Proven"):
 * a patient's ongoing authorization at the data holder's gateway A (a.test) to the PHR address
 * phr@b.test, kept in B's API mailbox; a discharge C-CDA pushed reaches the mailbox with the BB+
 * sentence, its rendering and request.txt; the same C-CDA pushed again is not sent; a new result
 * is; after revocation a push is 409 and nothing goes; the patient's history and the audit log
 * (GET /v1/audit, a compliance key) show all of it, in order, the deliveries' outcomes among it;
 * and once the gateway has stopped, `hisp audit verify` (the built CLI on A's data folder) finds the
 * chain intact, then an entry edited in the database file. Real peers on loopback: knotd publishes
 * both domains' certificates and MX.
 */
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { phrMailbox, startApiGatewayPair } from '../helpers/api-gateway-pair.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { ApiKeyStore } from '../../gateway/store/api-key-store.js';
import type { ApiClient } from '../helpers/api-client.js';
import { waitFor, type DirectNetwork } from '../helpers/direct-network.js';
import { runHisp } from '../helpers/hisp-cli.js';
import { ensureBuilt } from '../helpers/openssl.js';
import { missingExecutable, requirePeer } from '../helpers/require-peer.js';
import { vectorGroup } from '../helpers/vectors.js';

const knot = requirePeer(missingExecutable('knotd'));
const ett = vectorGroup('ett', ['cda-samples/CCDA_Ambulatory.xml']);
const WAIT_MS = 30_000;

interface MailboxMessage {
  id: string;
  from: string;
}
interface Pushed {
  sha256: string;
  transmissions: { id: string; destination: string; status: string; reason?: string; queueId?: string }[];
}
interface AuditPage {
  entries: { seq: number; action: string; outcome: string; patientRef: string | null; object: { kind: string; id: string }; detail: { transmission?: string } }[];
  nextCursor: string | null;
}

describe.skipIf(knot.skip || !ett.present)(knot.title(ett.title('Blue Button+ transmit on two gateways (issue 16)')), () => {
  let net: DirectNetwork;
  let a: HispGateway;
  let b: HispGateway;
  let ehr: ApiClient;
  let phr: ApiClient;
  let ehrKey = '';
  let phrKey = '';
  let complianceKey = '';

  beforeAll(async () => {
    // The CLI the story ends with runs built (bin/hisp.js), as an operator runs it.
    ensureBuilt();
    ({ net, a, b, ehr, phr, ehrKey, phrKey } = await startApiGatewayPair());
    // A's compliance staff: a key with the `audit` action only (created as the operator creates one).
    complianceKey = (await new ApiKeyStore(a.ctx.db).create({ name: 'compliance', actions: ['audit'], sendAs: [], mailboxes: [] }, Date.now())).token;
  }, 240_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await net?.stop();
  });

  const mailbox = () => phrMailbox<MailboxMessage>({ phr, phrKey });
  const part = async (messageId: string, partId: string) => (await phr.request('GET', `/v1/mailboxes/phr@b.test/messages/${messageId}/parts/${partId}`, { key: phrKey })).text;

  it('authorize → discharge sent with the sentence, rendering and request.txt → duplicate not sent → new result sent → revoked: 409, nothing sent; history and audit', async () => {
    const granted = await ehr.request('POST', '/v1/patients/MRN-7/authorizations', {
      key: ehrKey,
      json: {
        patient: { name: 'Isabella Jones', birthDate: '1970-05-01' },
        from: 'records@a.test',
        dataHolder: { name: 'Example Hospital' },
        destinations: [{ address: 'phr@b.test', requestTxt: true }],
        frequency: 'on-update',
        grantedBy: { kind: 'patient' },
        method: 'portal',
        consent: { version: '2026-01', sha256: 'cd'.repeat(32) },
      },
    });
    expect(granted.status).toBe(201);
    const authorizationId = (granted.body as { id: string }).id;

    // 1. A discharge summary.
    const ccda = ett.read('cda-samples/CCDA_Ambulatory.xml');
    const discharge = { document: { filename: 'discharge.xml', contentType: 'application/xml', kind: 'ccda', content: ccda.toString('base64') }, trigger: 'discharge', madeAt: new Date().toISOString() };
    const first = await ehr.request('POST', '/v1/patients/MRN-7/records', { key: ehrKey, json: discharge });
    expect(first.status).toBe(202);
    const firstBody = first.body as Pushed;
    expect(firstBody.transmissions).toMatchObject([{ destination: 'phr@b.test', status: 'queued' }]);

    const [arrived] = await waitFor('the discharge in B’s mailbox', async () => ((await mailbox()).length > 0 ? mailbox() : undefined), WAIT_MS);
    expect(arrived?.from).toBe('records@a.test');
    const view = (await phr.request('GET', `/v1/mailboxes/phr@b.test/messages/${arrived!.id}`, { key: phrKey })).body as { parts: { id: string; contentType: string; filename: string | null }[]; context?: unknown };
    expect(view.parts.map((p) => [p.contentType, p.filename])).toEqual([
      ['text/plain', null],
      ['application/xml', 'discharge.xml'],
      ['text/html', 'discharge.html'],
      ['text/plain', 'request.txt'],
      ['text/plain', 'metadata.txt'],
    ]);
    // The Direct Context written from the authorization (X-Direct-Context), read by B.
    expect(view.context).toEqual({ valid: true, version: '1.1', id: expect.stringMatching(/^[0-9a-f-]{36}$/) as unknown, type: { category: 'general', action: 'report' }, patient: { dateOfBirth: '1970-05-01' } });
    expect((await part(arrived!.id, view.parts[0]!.id)).trim()).toBe('This message was sent by Example Hospital at the request of Isabella Jones.');
    expect(await part(arrived!.id, view.parts[3]!.id)).toBe('Destination: phr@b.test\r\nPatient: Isabella Jones\r\nData-holder: Example Hospital\r\nRecurring: Yes\r\n');
    expect((await phr.request('POST', `/v1/mailboxes/phr@b.test/messages/${arrived!.id}/ack`, { key: phrKey })).body).toMatchObject({ dispatchedMdn: true });

    // 2. The same C-CDA again: not sent.
    const again = (await ehr.request('POST', '/v1/patients/MRN-7/records', { key: ehrKey, json: { ...discharge, trigger: 'manual' } })).body as Pushed;
    expect(again).toMatchObject({ sha256: firstBody.sha256, transmissions: [{ status: 'skipped', reason: 'duplicate' }] });

    // 3. A new result: sent.
    const result = { document: { filename: 'result.txt', contentType: 'text/plain', kind: 'other', content: Buffer.from('HbA1c 6.1 %\n').toString('base64') }, trigger: 'new-result', madeAt: new Date().toISOString() };
    const third = (await ehr.request('POST', '/v1/patients/MRN-7/records', { key: ehrKey, json: result })).body as Pushed;
    expect(third.transmissions).toMatchObject([{ status: 'queued' }]);
    const [second] = await waitFor('the new result in B’s mailbox', async () => ((await mailbox()).length > 0 ? mailbox() : undefined), WAIT_MS);
    const secondView = (await phr.request('GET', `/v1/mailboxes/phr@b.test/messages/${second!.id}`, { key: phrKey })).body as { parts: { contentType: string; filename: string | null }[] };
    expect(secondView.parts.map((p) => p.filename)).toEqual([null, 'result.txt', 'request.txt', 'metadata.txt']);
    await phr.request('POST', `/v1/mailboxes/phr@b.test/messages/${second!.id}/ack`, { key: phrKey });

    // 4. Revoked: the next push is refused with the revocation time, and nothing goes.
    const revoked = (await ehr.request('DELETE', `/v1/patients/MRN-7/authorizations/${authorizationId}`, { key: ehrKey })).body as { revokedAt: string };
    const refused = await ehr.request('POST', '/v1/patients/MRN-7/records', { key: ehrKey, json: { ...result, document: { ...result.document, content: Buffer.from('HbA1c 5.9 %\n').toString('base64') } } });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ code: 'HISP_TRANSMIT_REVOKED', revokedAt: revoked.revokedAt });

    // The history: both sends dispatched (the PHR acknowledged them), the duplicate skipped.
    const history = await waitFor(
      'both transmissions dispatched',
      async () => {
        const h = (await ehr.request('GET', '/v1/patients/MRN-7/transmissions', { key: ehrKey })).body as {
          transmissions: { id: string; queueId: string | null; status: string; trigger: string; reason?: string; sha256: string; authorizationId: string; delivery: { state: string } | null }[];
        };
        return h.transmissions.filter((t) => t.delivery?.state === 'dispatched').length === 2 ? h.transmissions : undefined;
      },
      WAIT_MS,
    );
    expect(history.map((t) => [t.trigger, t.status, t.reason ?? null, t.delivery?.state ?? null, t.authorizationId])).toEqual([
      ['discharge', 'queued', null, 'dispatched', authorizationId],
      ['manual', 'skipped', 'duplicate', null, authorizationId],
      ['new-result', 'queued', null, 'dispatched', authorizationId],
    ]);
    expect(history[0]!.sha256).toBe(firstBody.sha256);
    expect(await mailbox()).toEqual([]);

    // The audit log of the patient, through the API: what the application did, in order…
    const audit = await ehr.request('GET', '/v1/audit?patientRef=MRN-7&limit=500', { key: complianceKey });
    expect(audit.status).toBe(200);
    const entries = (audit.body as AuditPage).entries;
    expect(entries.every((e) => e.patientRef === 'MRN-7')).toBe(true);
    expect(entries.filter((e) => !e.action.startsWith('message.')).map((e) => [e.action, e.outcome])).toEqual([
      ['authorization.granted', 'success'],
      ['record.received', 'success'],
      ['transmission.queued', 'success'],
      ['record.received', 'success'],
      ['transmission.skipped', 'success'],
      ['record.received', 'success'],
      ['transmission.queued', 'success'],
      ['authorization.revoked', 'success'],
      ['record.refused', 'failure'],
    ]);
    // …and each message sent, from its queueing to the PHR's dispatched MDN, under the transmission
    // it went for (the MDNs come back at their own pace: processed and dispatched in either order).
    const sent = history.filter((t) => t.status === 'queued');
    expect(sent).toHaveLength(2);
    for (const t of sent) {
      const outcomes = entries.filter((e) => e.object.kind === 'message' && e.object.id === t.queueId);
      expect(outcomes.every((e) => e.detail.transmission === t.id && e.outcome === 'success')).toBe(true);
      expect(outcomes.map((e) => e.action).slice(0, 2)).toEqual(['message.queued', 'message.relayed']);
      expect(outcomes.map((e) => e.action).sort()).toEqual(['message.dispatched', 'message.processed', 'message.queued', 'message.relayed']);
    }
    expect(entries.filter((e) => e.action.startsWith('message.'))).toHaveLength(8);
    // Only the `audit` action reads it.
    expect((await ehr.request('GET', '/v1/audit?patientRef=MRN-7', { key: ehrKey })).status).toBe(403);

    // `hisp audit verify` on A's data folder once A has stopped: intact; then the revocation
    // backdated in the database file, as someone with the file would (past the append-only
    // trigger): exit 1, HISP_AUDIT_BROKEN naming that entry.
    const dataDir = a.ctx.config.dataDir;
    await a.stop();
    const verify = (...args: string[]) => runHisp(['audit', 'verify', '--data-dir', dataDir, ...args], { cwd: dataDir });
    const intact = await verify('--json');
    expect(intact.status, intact.stderr).toBe(0);
    // Every entry, the patient's and the others (the keys, the MDNs received as messages).
    const chain = JSON.parse(intact.stdout) as { ok: boolean; entries: number; head: { seq: number } };
    expect(chain).toMatchObject({ ok: true, head: { seq: chain.entries } });
    expect(chain.entries).toBeGreaterThanOrEqual(entries[entries.length - 1]!.seq);
    const revokedSeq = entries.find((e) => e.action === 'authorization.revoked')!.seq;
    const raw = new BetterSqlite3(join(dataDir, 'hisp.sqlite'));
    try {
      raw.exec(`DROP TRIGGER audit_log_append_only_update; UPDATE audit_log SET at = at - 86400000 WHERE seq = ${revokedSeq}`);
    } finally {
      raw.close();
    }
    const broken = await verify();
    expect(broken.status).toBe(1);
    expect(broken.stderr).toMatch(new RegExp(`HISP_AUDIT_BROKEN: entry ${revokedSeq}: its content does not match its hash`));
  }, 180_000);
});

import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { gatewayConfigObject, maildirMessages, startDirectNetwork, startGateway, toConfig, waitFor, type DirectNetwork } from '../helpers/direct-network.js';
import { missingExecutable, requirePeer } from '../helpers/require-peer.js';

/** knotd serves the test zones: with CI=true its absence fails the run (test/helpers/require-peer.ts). */
const knot = requirePeer(missingExecutable('knotd'));

// A message handed to an idle relay worker as it is stored (GatewayContext.claimRelay,
// SqliteQueue.enqueueLeased): relayed once, by that worker; a claim holds the worker until it is
// given or cancelled, stop() included.
describe.skipIf(knot.skip)(knot.title('relay hand-over (issue 5, the sending hop)'), () => {
  let net: DirectNetwork;
  let gw: HispGateway;

  beforeAll(async () => {
    net = await startDirectNetwork(['b.test']);
    gw = await startGateway(toConfig(await gatewayConfigObject(net.spec('b.test'), net.dns.address), net.dir));
  }, 60_000);

  afterAll(async () => {
    await gw?.stop();
    await net?.stop();
  });

  const message = (subject: string) =>
    Buffer.from(`From: provider@b.test\r\nTo: patient@b.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@b.test>\r\n\r\nbody\r\n`);

  it('relays a handed message once, by the worker it was handed to, without another lease', async () => {
    const claim = await waitFor('an idle relay worker', () => gw.ctx.claimRelay?.());
    const stored = await gw.ctx.queue.enqueueLeased(
      { direction: 'outbound', mailFrom: 'provider@b.test', recipients: ['patient@b.test'], messageId: '<handed@b.test>' },
      message('handed'),
      claim.owner,
      claim.leaseMs,
    );
    expect(stored.deliveries).toEqual([expect.objectContaining({ recipient: 'patient@b.test', leaseOwner: claim.owner, attempt: 1 })]);
    claim.give(stored.message, stored.deliveries);
    const status = await waitFor('delivered', async () => {
      const s = await gw.ctx.queue.get(stored.message.queueId);
      return s?.deliveries.every((d) => d.state === 'delivered') ? s : undefined;
    });
    // Leased once: at its insertion, by the worker it went to.
    expect(status.deliveries[0]).toMatchObject({ state: 'delivered', leases: 1, attempts: 1 });
    const inbox = path.join(net.dir, 'data-b.test', 'maildir', 'patient@b.test');
    await waitFor('in the maildir', () => maildirMessages(inbox).some((m) => m.includes('Subject: handed')));
    await new Promise((r) => setTimeout(r, 300));
    expect(maildirMessages(inbox).filter((m) => m.includes('Subject: handed'))).toHaveLength(1);
  });

  it('a cancelled claim gives the worker back; stop() waits for a claim outstanding', async () => {
    const claim = await waitFor('an idle relay worker', () => gw.ctx.claimRelay?.());
    claim.cancel();
    const again = await waitFor('an idle relay worker', () => gw.ctx.claimRelay?.());
    let stopped = false;
    const stopping = gw.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 300));
    // The claimed worker waits for its message: the submission that claimed it is still in its transaction.
    expect(stopped).toBe(false);
    expect(gw.ctx.claimRelay?.()).toBeUndefined(); // no new claims while stopping
    again.cancel();
    await stopping;
    expect(stopped).toBe(true);
  });
});

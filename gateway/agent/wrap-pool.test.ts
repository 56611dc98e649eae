import { afterAll, describe, expect, it } from 'vitest';
import { credentialPaths } from '../../test/helpers/pki.js';
import { isHispError } from '../core/errors.js';
import { loadCredential } from './key-material.js';
import { unwrapMessage } from './unwrap-message.js';
import { wrapMessage } from './wrap-message.js';
import { SLOT_BYTES, WrapPool } from './wrap-pool.js';

const p = credentialPaths('recipient-rsa');
const credential = loadCredential(p.key, p.chain);
const signingTime = new Date(Date.UTC(2026, 0, 2));
const options = { signers: [credential], recipients: [credential.certificate], signingTime, messageIdDomain: 'hisp.test' };
const message = (body: string) =>
  Buffer.from(`From: patient@recipient.test\r\nTo: patient@recipient.test\r\nSubject: pool\r\nMessage-ID: <m1@hisp.test>\r\nDate: Fri, 02 Jan 2026 00:00:00 +0000\r\n\r\n${body}`, 'latin1');

describe('WrapPool: signing and encrypting in worker threads', () => {
  const pool = new WrapPool(2);
  afterAll(() => pool.close());

  it('wraps what wrapMessage wraps: it opens and verifies to the same message, with the same notes and header length', async () => {
    // A small body (a slice of Buffer's shared pool) and a large one (memory of its own): both copied, the copy moved.
    for (const body of ['small body\r\n', `${'A'.repeat(76)}\r\n`.repeat(1500)]) {
      const original = message(body);
      const inThread = await pool.wrap(original, options);
      expect(original.equals(message(body))).toBe(true); // the caller's buffer is left whole
      const onLoop = wrapMessage(message(body), options);
      expect(inThread.notes).toEqual(onLoop.notes);
      expect(inThread.messageId).toBe('<m1@hisp.test>');
      expect(inThread.headerLength).toBe(onLoop.headerLength);
      // The envelope's key and IV are random, so the bytes differ; what it carries does not.
      const opened = unwrapMessage(inThread.message, { credentials: [credential] });
      expect(opened.message.equals(message(body))).toBe(true);
    }
  });

  it('passes a body through a shared slot, free again with the answer; the message comes back in memory of its own', async () => {
    const body = `${'C'.repeat(76)}\r\n`.repeat(1300); // ≈ 100 KB
    const original = message(body);
    const free = pool.freeSlots();
    const pending = pool.wrap(original, options, true);
    expect(pool.freeSlots().reduce((a, b) => a + b)).toBe(free.reduce((a, b) => a + b) - 1);
    const r = await pending;
    expect(original.equals(message(body))).toBe(true); // copied into the slot, not moved
    expect(pool.freeSlots()).toEqual(free);
    // Not a view of shared memory: the relay's socket may hold on to it after the transaction.
    expect(r.message.buffer).toBeInstanceOf(ArrayBuffer);
    expect(unwrapMessage(r.message, { credentials: [credential] }).message.equals(message(body))).toBe(true);
  });

  it('moves a given body too large for a slot without a copy; a given view is copied and left whole', async () => {
    const body = `${'D'.repeat(76)}\r\n`.repeat(Math.ceil((SLOT_BYTES + 1) / 78));
    const own = Buffer.allocUnsafeSlow(message(body).length);
    message(body).copy(own);
    const given = await pool.wrap(own, options, true);
    expect(own.length).toBe(0); // its memory went to the thread
    expect(unwrapMessage(given.message, { credentials: [credential] }).message.equals(message(body))).toBe(true);
    // A view into a larger buffer (or Node's pool of small ones) must not take the rest with it.
    const larger = Buffer.concat([Buffer.from('other data:'), message(body)]);
    const view = larger.subarray(11);
    const copied = await pool.wrap(view, options, true);
    expect(view.equals(message(body))).toBe(true);
    expect(larger.subarray(0, 11).toString()).toBe('other data:');
    expect(unwrapMessage(copied.message, { credentials: [credential] }).message.equals(message(body))).toBe(true);
  });

  it('goes on without a slot when all are taken (a copy moves instead), and gives every slot back', async () => {
    const free = pool.freeSlots();
    const all = Array.from({ length: 60 }, (_, i) => pool.wrap(message(`held ${i}\r\n`.repeat(50)), options));
    expect(pool.freeSlots()).toEqual(free.map(() => 0));
    const done = await Promise.all(all);
    done.forEach((r, i) => expect(unwrapMessage(r.message, { credentials: [credential] }).message.equals(message(`held ${i}\r\n`.repeat(50)))).toBe(true));
    expect(pool.freeSlots()).toEqual(free);
  });

  it('spreads concurrent messages over its threads and answers each one', async () => {
    const before = pool.threads().map((t) => t.wrapped);
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => pool.wrap(message(`message ${i}\r\n`.repeat(2000)), options)));
    results.forEach((r, i) => expect(unwrapMessage(r.message, { credentials: [credential] }).message.equals(message(`message ${i}\r\n`.repeat(2000)))).toBe(true));
    // Both threads ran and took a share (the least busy one gets each message).
    const done = pool.threads().map((t, i) => t.wrapped - before[i]!);
    expect(pool.threads().every((t) => t.alive)).toBe(true);
    expect(done.reduce((a, b) => a + b, 0)).toBe(12);
    expect(Math.min(...done)).toBeGreaterThanOrEqual(5);
  });

  it('rejects with the HispError the wrap raised (a message without From)', async () => {
    const err = await pool.wrap(Buffer.from('To: a@b.test\r\n\r\nbody\r\n'), options).catch((e: unknown) => e);
    expect(isHispError(err) && err.code).toBe('HISP_MIME_MALFORMED');
  });

  it('wraps on the event loop when its thread has died, rather than hang', async () => {
    const lost: Error[] = [];
    const lonely = new WrapPool(1, (err) => lost.push(err));
    const { worker } = (lonely as unknown as { workers: { worker: { terminate(): Promise<number> } }[] }).workers[0]!;
    await worker.terminate();
    await new Promise((r) => setImmediate(r));
    expect(lonely.threads()).toEqual([{ alive: false, wrapped: 0 }]);
    expect(lost.map((e) => e.message)).toEqual([expect.stringMatching(/wrap thread exited/)]);
    const r = await lonely.wrap(message('after the thread\r\n'), options);
    expect(unwrapMessage(r.message, { credentials: [credential] }).message.equals(message('after the thread\r\n'))).toBe(true);
    await lonely.close();
  });

  it('answers a wrap in flight when its thread dies: a transient error (the relay retries), never a hang', async () => {
    const dying = new WrapPool(1);
    const { worker } = (dying as unknown as { workers: { worker: { terminate(): Promise<number> } }[] }).workers[0]!;
    const inFlight = dying.wrap(message(`${'B'.repeat(76)}\r\n`.repeat(3000)), options).then(
      () => 'wrapped',
      (err: unknown) => (isHispError(err) && err.transient ? err.code : `unexpected: ${String(err)}`),
    );
    await worker.terminate();
    expect(['wrapped', 'HISP_IO']).toContain(await inFlight);
    await dying.close();
  });

  it('refuses work once closed', async () => {
    const closed = new WrapPool(1);
    await closed.close();
    await expect(closed.wrap(message('x\r\n'), options)).rejects.toThrow(/closed/);
  });
});

import { Worker } from 'node:worker_threads';
import { HispError, type HispErrorCode } from '../core/errors.js';
import { wrapMessageAsync, type WrapOptions, type WrapResult } from './wrap-message.js';
import type { WrapReply, WrapRequest } from './wrap-thread.js';

/**
 * Worker threads that wrap (sign, encrypt, base64) messages off the event loop. The event loop of
 * a gateway carries every SMTP session, the store and the relay; on the sending hop the wrap was a
 * quarter of its work, so with a thread doing it the second CPU takes part. A copy of the body is
 * moved to the thread and the wrapped message's memory moved back (transfer lists, no structured
 * clone); the thread keeps the few certificates it sees parsed. Same output as wrapMessage (it
 * runs it).
 */
export class WrapPool {
  private readonly workers: { worker: Worker; inFlight: number; alive: boolean }[] = [];
  private readonly pending = new Map<number, { resolve: (r: WrapResult) => void; reject: (e: unknown) => void; worker: number }>();
  private nextId = 0;
  private closed = false;

  constructor(readonly size: number) {
    const here = new URL(import.meta.url);
    for (let i = 0; i < size; i++) {
      // Compiled: wrap-thread.js beside this file. From the TypeScript sources (the tests), the
      // thread registers tsx first, as the test runner's own process has it.
      const worker = here.pathname.endsWith('.ts')
        ? new Worker(
            `import('tsx/esm/api').then((api) => { api.register(); return import(${JSON.stringify(new URL('./wrap-thread.ts', here).href)}); });`,
            { eval: true },
          )
        : new Worker(new URL('./wrap-thread.js', here));
      const entry = { worker, inFlight: 0, alive: true };
      worker.unref();
      worker.on('message', (reply: WrapReply) => this.settle(reply));
      // A thread that fails takes no more work (wrap() falls back to the event loop when none is
      // left); what it held is rejected, and the relay retries those deliveries.
      worker.on('error', (err) => {
        entry.alive = false;
        this.failAll(i, new HispError('HISP_IO', `wrap thread failed: ${err.message}`, { transient: true, cause: err }));
      });
      worker.on('exit', (code) => {
        entry.alive = false;
        if (!this.closed) this.failAll(i, new HispError('HISP_IO', `wrap thread exited (${code})`, { transient: true }));
      });
      this.workers.push(entry);
    }
  }

  /** Wraps `original` in the least busy thread; `original` is left as it is. */
  wrap(original: Buffer, options: WrapOptions): Promise<WrapResult> {
    if (this.closed) return Promise.reject(new HispError('HISP_IO', 'the wrap threads are closed', { transient: true }));
    let w = -1;
    for (let i = 0; i < this.workers.length; i++) {
      const c = this.workers[i]!;
      if (c.alive && (w === -1 || c.inFlight < this.workers[w]!.inFlight)) w = i;
    }
    if (w === -1) return wrapMessageAsync(original, options);
    const entry = this.workers[w]!;
    const id = ++this.nextId;
    // A copy of its own is moved to the thread (one memcpy, ≈ 10 µs for 100 KB): moving the
    // caller's memory would empty `original` and every view of it (a parsed MimeEntity's headers).
    const body = Buffer.allocUnsafeSlow(original.length);
    original.copy(body);
    const request: WrapRequest = {
      id,
      body,
      signers: options.signers.map((s) => ({ key: s.key, certificate: s.certificate.der, chain: s.chain.map((c) => c.der) })),
      recipients: options.recipients.map((c) => c.der),
      options: {
        ...(options.digest !== undefined ? { digest: options.digest } : {}),
        ...(options.cipher !== undefined ? { cipher: options.cipher } : {}),
        ...(options.keyTransport !== undefined ? { keyTransport: options.keyTransport } : {}),
        ...(options.recipientIdentifier !== undefined ? { recipientIdentifier: options.recipientIdentifier } : {}),
        ...(options.genericSubject !== undefined ? { genericSubject: options.genericSubject } : {}),
        ...(options.signingTime !== undefined ? { signingTime: options.signingTime } : {}),
        ...(options.messageIdDomain !== undefined ? { messageIdDomain: options.messageIdDomain } : {}),
      },
    };
    return new Promise<WrapResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker: w });
      entry.inFlight++;
      entry.worker.postMessage(request, [body.buffer]);
    });
  }

  private settle(reply: WrapReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    this.workers[p.worker]!.inFlight--;
    if (reply.ok) {
      const m = reply.message;
      p.resolve({ message: Buffer.from(m.buffer, m.byteOffset, m.byteLength), messageId: reply.messageId, notes: reply.notes, headerLength: reply.headerLength });
    } else {
      p.reject(reply.code ? new HispError(reply.code as HispErrorCode, reply.message, { transient: reply.transient ?? false }) : new Error(reply.message));
    }
  }

  private failAll(worker: number, err: unknown): void {
    for (const [id, p] of this.pending) {
      if (p.worker !== worker) continue;
      this.pending.delete(id);
      p.reject(err);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}

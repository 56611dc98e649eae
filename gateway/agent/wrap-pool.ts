import { Worker } from 'node:worker_threads';
import { HispError, type HispErrorCode } from '../core/errors.js';
import { wrapMessageAsync, type WrapOptions, type WrapResult } from './wrap-message.js';
import type { WrapReply, WrapRequest } from './wrap-thread.js';

/** A body up to this size goes to the thread through a shared slot. */
export const SLOT_BYTES = 256 * 1024;
/** Slots per thread: the relay's workers (20 by default) may all be waiting for a wrap. */
const SLOTS = 24;

/** What a wrap thread is started with: its slots (see WrapPool). */
export interface WrapThreadData {
  arena: SharedArrayBuffer;
  slotBytes: number;
}

/**
 * Worker threads that wrap (sign, encrypt, base64) messages off the event loop. The event loop of
 * a gateway carries every SMTP session, the store and the relay; on the sending hop the wrap was a
 * quarter of its work, so with a thread doing it the second CPU takes part. Same output as
 * wrapMessage (it runs it). A thread that fails is reported through `onThreadLost` and not
 * replaced: the pool goes on with the others, and wraps on the event loop when none is left.
 *
 * The body goes to the thread through a slot of memory shared with it (a SharedArrayBuffer of
 * SLOTS × 256 KiB, touched only where used): copied into a free slot, read there by the thread,
 * the slot free again with the thread's answer. No buffer is allocated, transferred or cloned for
 * it on either side (V8 collects garbage in proportion to the ArrayBuffer bytes allocated: a
 * scavenge per 32 MB of young ones, a full GC per 64 MB of external memory). The wrapped message
 * comes back in memory of its own, moved (transfer list), because the relay writes it to a socket
 * that may hold on to it after the SMTP transaction ended (a peer that answers before the end of
 * the data): a shared slot reused meanwhile would send another patient's message there. A body
 * too large for a slot, or one that comes while every slot is taken, is moved too: a copy of it,
 * or, given (`give`), its own memory. The keys and certificate DER are cloned, a few KB.
 */
export class WrapPool {
  private readonly workers: { worker: Worker; inFlight: number; alive: boolean; wrapped: number; arena: SharedArrayBuffer; free: number[] }[] = [];
  private readonly pending = new Map<number, { resolve: (r: WrapResult) => void; reject: (e: unknown) => void; worker: number; slot: number | undefined }>();
  private nextId = 0;
  private closed = false;

  constructor(
    readonly size: number,
    private readonly onThreadLost: (err: Error) => void = () => undefined,
  ) {
    const here = new URL(import.meta.url);
    for (let i = 0; i < size; i++) {
      const arena = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
      const workerData: WrapThreadData = { arena, slotBytes: SLOT_BYTES };
      // Compiled: wrap-thread.js beside this file. From the TypeScript sources (the tests), the
      // thread registers tsx first, as the test runner's own process has it.
      const worker = here.pathname.endsWith('.ts')
        ? new Worker(
            `import('tsx/esm/api').then((api) => { api.register(); return import(${JSON.stringify(new URL('./wrap-thread.ts', here).href)}); });`,
            { eval: true, workerData },
          )
        : new Worker(new URL('./wrap-thread.js', here), { workerData });
      const entry = { worker, inFlight: 0, alive: true, wrapped: 0, arena, free: Array.from({ length: SLOTS }, (_, k) => SLOTS - 1 - k) };
      worker.unref();
      worker.on('message', (reply: WrapReply) => this.settle(reply));
      // A thread that fails takes no more work (wrap() falls back to the event loop when none is
      // left); what it held is rejected, and the relay retries those deliveries.
      worker.on('error', (err: Error) => this.lose(i, new HispError('HISP_IO', `wrap thread failed: ${err.message}`, { transient: true, cause: err })));
      worker.on('exit', (code) => this.lose(i, new HispError('HISP_IO', `wrap thread ${this.closed ? 'closed' : `exited (${code})`}`, { transient: true })));
      this.workers.push(entry);
    }
  }

  /**
   * Wraps `original` in the least busy thread; `original` is left as it is, unless given (`give`)
   * and not passed through a slot: then, when it is the whole of its memory, that memory moves to
   * the thread without a copy and `original` (and every view of it) is empty afterwards.
   */
  wrap(original: Buffer, options: WrapOptions, give = false): Promise<WrapResult> {
    if (this.closed) return Promise.reject(new HispError('HISP_IO', 'the wrap threads are closed', { transient: true }));
    let w = -1;
    for (let i = 0; i < this.workers.length; i++) {
      const c = this.workers[i]!;
      if (c.alive && (w === -1 || c.inFlight < this.workers[w]!.inFlight)) w = i;
    }
    if (w === -1) return wrapMessageAsync(original, options);
    const entry = this.workers[w]!;
    const id = ++this.nextId;
    // The options besides keys and certificates are plain values (strings, a Date): cloned as they are.
    const { signers, recipients, ...rest } = options;
    const credentials = {
      signers: signers.map((s) => ({ key: s.key, certificate: s.certificate.der, chain: s.chain.map((c) => c.der) })),
      recipients: recipients.map((c) => c.der),
      options: rest,
    };
    const slot = original.length <= SLOT_BYTES ? entry.free.pop() : undefined;
    let request: WrapRequest;
    const transfer: ArrayBuffer[] = [];
    if (slot !== undefined) {
      original.copy(new Uint8Array(entry.arena, slot * SLOT_BYTES, original.length));
      request = { id, slot, length: original.length, ...credentials };
    } else {
      // A buffer that is a view into memory shared with others (Node's pool of small buffers, a
      // parsed entity's headers…) must not move: those others would find it empty. One of its own
      // is moved as it is; anything else as a copy of its own (one memcpy, ≈ 10 µs for 100 KB).
      let body: Buffer;
      if (give && original.buffer instanceof ArrayBuffer && original.byteOffset === 0 && original.byteLength === original.buffer.byteLength) {
        body = original;
        transfer.push(original.buffer);
      } else {
        body = Buffer.allocUnsafeSlow(original.length);
        original.copy(body);
        transfer.push(body.buffer as ArrayBuffer);
      }
      request = { id, body, ...credentials };
    }
    return new Promise<WrapResult>((resolve, reject) => {
      try {
        entry.worker.postMessage(request, transfer);
      } catch (err) {
        if (slot !== undefined) entry.free.push(slot);
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      this.pending.set(id, { resolve, reject, worker: w, slot });
      entry.inFlight++;
    });
  }

  /** Per thread: whether it is running, and how many messages it wrapped (for tests and metrics). */
  threads(): { alive: boolean; wrapped: number }[] {
    return this.workers.map((w) => ({ alive: w.alive, wrapped: w.wrapped }));
  }

  /** A thread ended: it takes no more work; what it held is answered with `err` (transient). */
  private lose(worker: number, err: HispError): void {
    const entry = this.workers[worker]!;
    const wasAlive = entry.alive;
    entry.alive = false;
    this.failAll(worker, err);
    if (wasAlive && !this.closed) this.onThreadLost(err);
  }

  private settle(reply: WrapReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    const entry = this.workers[p.worker]!;
    entry.inFlight--;
    // The thread has read the body: its slot is free for the next one.
    if (p.slot !== undefined) entry.free.push(p.slot);
    if (reply.ok) {
      entry.wrapped++;
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

  /** Free slots per thread (for tests: every answer gives its slot back). */
  freeSlots(): number[] {
    return this.workers.map((w) => w.free.length);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}

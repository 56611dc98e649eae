import { Worker } from 'node:worker_threads';
import { HispError, type HispErrorCode } from '../core/errors.js';
import { wrapMessageAsync, type WrapOptions, type WrapResult } from './wrap-message.js';
import type { WrapReply, WrapRequest } from './wrap-thread.js';

/** A body up to this size goes to the thread through a shared slot. */
export const SLOT_INPUT_BYTES = 256 * 1024;
/** Room for its wrapped message (the base64 of the envelope is ≈ 1.37 × the body, plus headers). */
export const SLOT_OUTPUT_BYTES = 512 * 1024;
const SLOT_BYTES = SLOT_INPUT_BYTES + SLOT_OUTPUT_BYTES;
/** Slots per thread: the relay's workers (20 by default) each hold one from the wrap until the relay ends. */
const SLOTS = 24;

/** What a wrap thread is started with: its slots (see WrapPool). */
export interface WrapThreadData {
  arena: SharedArrayBuffer;
  slotBytes: number;
  inputBytes: number;
}

/** A wrapped message; `release` gives its memory back to the pool once the caller is done with it. */
export interface PooledWrapResult extends WrapResult {
  /** Call once `message` is no longer used (sent, or copied): it may be a view of a slot the pool reuses. */
  release(): void;
}

/**
 * Worker threads that wrap (sign, encrypt, base64) messages off the event loop. The event loop of
 * a gateway carries every SMTP session, the store and the relay; on the sending hop the wrap was a
 * quarter of its work, so with a thread doing it the second CPU takes part. Same output as
 * wrapMessage (it runs it). A thread that fails is reported through `onThreadLost` and not
 * replaced: the pool goes on with the others, and wraps on the event loop when none is left.
 *
 * The bytes travel through slots of memory shared with each thread (a SharedArrayBuffer of
 * SLOTS × 768 KiB, touched only where used): the body is copied into a slot, the thread reads it
 * there and writes the wrapped message into the same slot, and the caller sends it from there and
 * releases the slot. No buffer is allocated, transferred or cloned for a message on either side:
 * each 100 KB message used to allocate ≈ 240 KB of ArrayBuffers on the two threads (body in,
 * message out), and V8 collects garbage in proportion to the ArrayBuffer bytes allocated (a
 * scavenge per 32 MB of young ones, a full GC per 64 MB of external memory). A body too large for
 * a slot, or one that comes while every slot is held, goes the old way: a copy of it (or, given, its
 * own memory) moved to the thread and the wrapped message's memory moved back (transfer lists);
 * the keys and certificate DER are cloned, a few KB.
 */
export class WrapPool {
  private readonly workers: { worker: Worker; inFlight: number; alive: boolean; wrapped: number; arena: SharedArrayBuffer; free: number[] }[] = [];
  private readonly pending = new Map<number, { resolve: (r: PooledWrapResult) => void; reject: (e: unknown) => void; worker: number; slot: number | undefined }>();
  private nextId = 0;
  private closed = false;

  constructor(
    readonly size: number,
    private readonly onThreadLost: (err: Error) => void = () => undefined,
  ) {
    const here = new URL(import.meta.url);
    for (let i = 0; i < size; i++) {
      const arena = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
      const workerData: WrapThreadData = { arena, slotBytes: SLOT_BYTES, inputBytes: SLOT_INPUT_BYTES };
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
      worker.on('error', (err) => this.lose(i, new HispError('HISP_IO', `wrap thread failed: ${err.message}`, { transient: true, cause: err })));
      worker.on('exit', (code) => this.lose(i, new HispError('HISP_IO', `wrap thread ${this.closed ? 'closed' : `exited (${code})`}`, { transient: true })));
      this.workers.push(entry);
    }
  }

  /**
   * Wraps `original` in the least busy thread; `original` is left as it is, unless given (`give`)
   * and too large for a slot: then, when it is the whole of its memory, that memory moves to the
   * thread without a copy and `original` (and every view of it) is empty afterwards. The result's
   * `release()` must be called once its message is no longer used.
   */
  wrap(original: Buffer, options: WrapOptions, give = false): Promise<PooledWrapResult> {
    if (this.closed) return Promise.reject(new HispError('HISP_IO', 'the wrap threads are closed', { transient: true }));
    let w = -1;
    for (let i = 0; i < this.workers.length; i++) {
      const c = this.workers[i]!;
      if (c.alive && (w === -1 || c.inFlight < this.workers[w]!.inFlight)) w = i;
    }
    if (w === -1) return wrapMessageAsync(original, options).then((r) => ({ ...r, release: () => undefined }));
    const entry = this.workers[w]!;
    const id = ++this.nextId;
    // The options besides keys and certificates are plain values (strings, a Date): cloned as they are.
    const { signers, recipients, ...rest } = options;
    const credentials = {
      signers: signers.map((s) => ({ key: s.key, certificate: s.certificate.der, chain: s.chain.map((c) => c.der) })),
      recipients: recipients.map((c) => c.der),
      options: rest,
    };
    const slot = original.length <= SLOT_INPUT_BYTES ? entry.free.pop() : undefined;
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
    return new Promise<PooledWrapResult>((resolve, reject) => {
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
    let held = p.slot;
    const release = (): void => {
      if (held === undefined) return;
      entry.free.push(held);
      held = undefined;
    };
    if (reply.ok) {
      entry.wrapped++;
      // In the slot (`length`), or in memory of its own moved back (a message too large for the slot).
      const message =
        reply.message === undefined
          ? Buffer.from(entry.arena, p.slot! * SLOT_BYTES + SLOT_INPUT_BYTES, reply.length)
          : Buffer.from(reply.message.buffer, reply.message.byteOffset, reply.message.byteLength);
      if (reply.message !== undefined) release();
      p.resolve({ message, messageId: reply.messageId, notes: reply.notes, headerLength: reply.headerLength, release });
    } else {
      release();
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

  /** Free slots per thread (for tests: every wrap's release gives its slot back). */
  freeSlots(): number[] {
    return this.workers.map((w) => w.free.length);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}

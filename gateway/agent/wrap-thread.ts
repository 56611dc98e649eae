import { parentPort, workerData } from 'node:worker_threads';
import type { KeyObject } from 'node:crypto';
import { Certificate } from '../core/certificate.js';
import { isHispError } from '../core/errors.js';
import { wrapMessage, type WrapOptions } from './wrap-message.js';
import type { WrapThreadData } from './wrap-pool.js';

/**
 * What the pool sends: the body in its slot of the shared memory (`slot`, `length`), or a copy of
 * it whose memory is transferred (`body`); the options with certificates as DER.
 */
export type WrapRequest = {
  id: number;
  signers: { key: KeyObject; certificate: Uint8Array; chain: Uint8Array[] }[];
  recipients: Uint8Array[];
  options: Omit<WrapOptions, 'signers' | 'recipients'>;
} & ({ slot: number; length: number } | { body: Uint8Array });

/** The wrapped message, its memory transferred. */
export type WrapReply =
  | { id: number; ok: true; message: Uint8Array; messageId: string; notes: string[]; headerLength: number }
  | { id: number; ok: false; code?: string; message: string; transient?: boolean };

/** The shared slots (WrapPool): absent when the thread is started without them. */
const slots = workerData as WrapThreadData | undefined;

/** Certificate.fromDer keeps an LRU of parsed certificates (per thread): the same few come with every message. */
const certificate = (der: Uint8Array): Certificate => Certificate.fromDer(der);

parentPort?.on('message', (r: WrapRequest) => {
  try {
    let body: Buffer;
    if ('slot' in r) {
      if (slots === undefined) throw new Error('a slot request reached a wrap thread without slots');
      body = Buffer.from(slots.arena, r.slot * slots.slotBytes, r.length);
    } else {
      body = Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength);
    }
    const result = wrapMessage(body, {
      ...r.options,
      signers: r.signers.map((s) => ({ key: s.key, certificate: certificate(s.certificate), chain: s.chain.map(certificate) })),
      recipients: r.recipients.map(certificate),
    });
    const m = result.message;
    const reply: WrapReply = { id: r.id, ok: true, message: m, messageId: result.messageId, notes: result.notes, headerLength: result.headerLength };
    // The output is one allocation of its own (Buffer.allocUnsafe above the pool size): moved, not copied.
    parentPort!.postMessage(reply, m.byteOffset === 0 && m.byteLength === m.buffer.byteLength ? [m.buffer as ArrayBuffer] : []);
  } catch (err) {
    const reply: WrapReply = isHispError(err)
      ? { id: r.id, ok: false, code: err.code, message: err.message, transient: err.transient }
      : { id: r.id, ok: false, message: err instanceof Error ? err.message : String(err) };
    parentPort!.postMessage(reply);
  }
});

import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import type { Logger } from 'pino';
import { DirectAddress } from '../core/direct-address.js';
import { HispError } from '../core/errors.js';
import { newContextId, type DirectContext } from '../documents/direct-context.js';
import type { XdmPackDocument } from '../documents/xdm-pack.js';
import type { XdmPatient } from '../documents/xdm-metadata-writer.js';
import { composeMessageToBuffer, composeMessageToFile, subjectFor, type ComposeInput, type ComposedDocument, type DocumentKind } from '../mime/message-composer.js';
import type { GatewayContext } from './gateway-context.js';
import { queueOutbound } from './queue-outbound.js';
import { randomHexId } from '../core/random-id.js';

/** A document of a send: its octets in memory (JSON, base64) or in a file (multipart, streamed to disk). */
export interface SendDocument {
  filename: string;
  contentType: string;
  kind: DocumentKind;
  content: Buffer | { path: string };
  /** For a file: its octets are 7bit data, checked as it was written (see ComposedDocument). */
  sevenBit?: boolean | undefined;
  /** Its DocumentEntry in the XDM package (package xdm or both), beyond what packing derives. */
  entry?: XdmEntryDescription | undefined;
}

/** What a document's XDS DocumentEntry says that its octets do not (IHE ITI TF-3 4.2.3.2; xdm-pack.ts): absent is left out. */
export type XdmEntryDescription = Pick<XdmPackDocument, 'title' | 'comments' | 'creationTime' | 'languageCode' | 'codes'>;

/** `POST /v1/messages` (issue 15, "Send"), as the service takes it. */
export interface SendRequest {
  from: string;
  to: readonly string[];
  cc?: readonly string[] | undefined;
  subject: string;
  text: string;
  html?: string | undefined;
  documents?: readonly SendDocument[] | undefined;
  /** `mime` (default): each document attached; `xdm`: one XDM zip holding them; `both`. */
  package?: 'mime' | 'xdm' | 'both' | undefined;
  /** The C-CDA's rendering goes along as text/html (R-BB-6); default true when a C-CDA is attached. */
  humanReadable?: boolean | undefined;
  /** Ask for the dispatched MDN (timely and reliable delivery); default: the sending domain's setting. */
  finalDelivery?: boolean | undefined;
  /** The EHR's own reference, returned in the status and the events' message. */
  clientRef?: string | undefined;
  /** Direct Context of the message (X-Direct-Context and its metadata.txt part): version and id are hisp's when not given. */
  context?: Omit<DirectContext, 'version' | 'id'> & { id?: string | undefined } | undefined;
  /** Parts attached as they are whatever the package (Blue Button+'s request.txt, R-FMT-7): never packed in XDM, never rendered. */
  parts?: readonly SendDocument[] | undefined;
  /** Facts kept with the stored message for the relay (e.g. `patientDirected: true`, decision 5); they cannot replace the send's own. */
  meta?: Readonly<Record<string, unknown>> | undefined;
  /** The XDM package's SubmissionSet (package xdm or both): the patient, a title; the recipients are the message's. */
  xdm?: Omit<XdmSubmission, 'intendedRecipients'> | undefined;
}

/** Who sends: the API key, and the client's address (kept with the message as the SMTP edge keeps its client's). */
export interface SendActor {
  apiKeyId: string;
  client: string;
}

/** The 202 body (a contract of issue 15). */
export interface SendResult {
  id: string;
  messageId: string;
  recipients: { address: string; state: 'queued' }[];
}

/** The document tools a send uses: rendering a C-CDA for people, packing documents as XDM. */
export interface DocumentTools {
  /** The C-CDA as a safe HTML page; throws HISP_XML_MALFORMED / HISP_CDA_INVALID. */
  renderCcda(document: Buffer): string;
  /** Writes an XDM zip of `documents` into `file`, its SubmissionSet described by `submission`. */
  packXdm(documents: readonly SendDocument[], file: string, submission?: XdmSubmission): Promise<void>;
}

/** What the XDM package's SubmissionSet says beyond the documents (IHE ITI TF-3 4.2.3.3; xdm-pack.ts). */
export interface XdmSubmission {
  /** The patient, HL7 CX `id^^^&OID&ISO` (XDS patientId). */
  patientId?: string | undefined;
  title?: string | undefined;
  /** The message's recipients (SubmissionSet.intendedRecipient, XDM for Direct §3.1). */
  intendedRecipients?: readonly string[] | undefined;
  /** The patient's demographics (the send's Direct Context patient), for each DocumentEntry's sourcePatientInfo. */
  patient?: XdmPatient | undefined;
}

/** Bounds of one send: what an EHR sends to a patient or a practice, with room to spare. */
export const SEND_LIMITS = Object.freeze({ recipients: 100, documents: 20 });

/**
 * A message whose parts are all in memory (a JSON send: its body is in memory already) and add up
 * to at most this is composed in memory and stored as an SMTP submission's body is: appended to
 * the spool below 128 KiB, and kept for the relay, which then reads nothing back. Composing into a
 * file and storing that (synced, linked, its folder synced, read back by the relay, unlinked) cost
 * the API gateway a tenth of its main thread per 100 KB C-CDA in bench/api-bench.ts. A larger
 * message, or one with a file part (multipart), is composed into a file: never whole in memory.
 */
const COMPOSE_IN_MEMORY_BYTES = 1024 * 1024;

/** How long an Idempotency-Key answers with its first response (issue 15: 24 h). */
export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;

/** Thrown inside the commit when the key is taken: the stored message is rolled back, the first response returned. */
class KeyTaken extends Error {}

interface IdempotencyRow {
  request_hash: string;
  response: string;
  created_at: number;
}

/**
 * Sends a message for an EHR through the API: the same queue, signing, discovery and tracking as
 * a message submitted over SMTP (the relay worker cannot tell them apart). The message is composed
 * (gateway/mime/message-composer.ts) into a file of the data folder's incoming directory, stored
 * with one delivery per recipient and, when given, the Idempotency-Key in the same commit; the
 * result (the 202) is returned only after that commit is durable.
 *
 * Idempotency (issue 15): the same key and the same request (a SHA-256 of it) return the first
 * response for 24 h; the same key with another request is HISP_API_IDEMPOTENCY_CONFLICT (422).
 * Two requests with the same key at once each compose their message, and the commit decides: the
 * key is inserted in the commit that stores the message, so only one commits, and the other
 * returns the first one's response (its body is discarded).
 */
export class MessageSender {
  private readonly lookup;
  private readonly insertKey;
  private readonly expireKey;
  private readonly purgeKeys;

  constructor(
    private readonly ctx: GatewayContext,
    private readonly tools: DocumentTools,
    private readonly incomingDir: string,
  ) {
    const sql = ctx.db.sqlite;
    this.lookup = sql.prepare<[string, string], IdempotencyRow>('SELECT request_hash, response, created_at FROM idempotency_keys WHERE api_key_id = ? AND key = ?');
    this.insertKey = sql.prepare<[string, string, string, string, string, number]>(
      'INSERT INTO idempotency_keys (api_key_id, key, request_hash, queue_id, response, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
    );
    this.expireKey = sql.prepare<[string, string, number]>('DELETE FROM idempotency_keys WHERE api_key_id = ? AND key = ? AND created_at < ?');
    this.purgeKeys = sql.prepare<[number]>('DELETE FROM idempotency_keys WHERE created_at < ?');
  }

  /**
   * `requestHash`: a SHA-256 of the request as received (the route computes it over the body and
   * the documents' octets), compared when the Idempotency-Key is used again.
   * `withinCommit` writes with the message, in its commit (a transmission's row and audit entry):
   * if it throws, nothing is stored and the send rejects with its error.
   */
  async send(
    request: SendRequest,
    actor: SendActor,
    log: Pick<Logger, 'info'>,
    idempotency?: { key: string; requestHash: string },
    withinCommit?: (queueId: string, messageId: string) => void,
  ): Promise<SendResult> {
    if (idempotency) {
      const earlier = this.replay(actor.apiKeyId, idempotency);
      if (earlier) return earlier;
    }
    const from = this.sender(request.from);
    const to = (request.to ?? []).map((a) => recipient(a, 'to'));
    const cc = (request.cc ?? []).map((a) => recipient(a, 'cc'));
    const recipients = unique([...to, ...cc]);
    if (recipients.length === 0) throw new HispError('HISP_API_INVALID_REQUEST', 'at least one recipient (to or cc) is required');
    if (recipients.length > SEND_LIMITS.recipients) throw new HispError('HISP_API_INVALID_REQUEST', `at most ${SEND_LIMITS.recipients} recipients`);
    const documents = request.documents ?? [];
    if (documents.length > SEND_LIMITS.documents) throw new HispError('HISP_API_INVALID_REQUEST', `at most ${SEND_LIMITS.documents} documents`);

    const temp: string[] = [];
    try {
      const attached = await this.attachments(request, documents, temp, recipients);
      const domain = this.ctx.registry.domainConfig(from.domain);
      const finalDelivery = request.finalDelivery ?? domain.mdn.requestFinalDelivery;
      const messageId = `<${randomHexId(30)}@${this.ctx.config.hostname}>`;
      const now = new Date(this.ctx.now());
      const compose: ComposeInput = {
        from: from.toString(),
        to,
        cc,
        subject: request.subject,
        text: request.text,
        html: request.html,
        documents: attached,
        messageId,
        date: now,
        finalDelivery,
        ...(request.clientRef !== undefined ? { headers: { 'X-Hisp-Client-Ref': request.clientRef } } : {}),
        // Direct Context 1.1 (documents/direct-context.ts); its id unique to the transaction (§3.2).
        ...(request.context !== undefined ? { directContext: { ...request.context, version: '1.1', id: request.context.id ?? newContextId() } } : {}),
      };
      const parts = attached.reduce((n, d) => (Buffer.isBuffer(d.content) ? n + d.content.length : Infinity), Buffer.byteLength(request.text) + Buffer.byteLength(request.html ?? ''));
      let body: Buffer | { file: string; size: number };
      if (parts <= COMPOSE_IN_MEMORY_BYTES) {
        body = await composeMessageToBuffer(compose);
      } else {
        const file = join(this.incomingDir, `api-${randomBytes(12).toString('hex')}.eml`);
        temp.push(file);
        body = { file, size: await composeMessageToFile(compose, file) };
      }
      const size = Buffer.isBuffer(body) ? body.length : body.size;
      const result: SendResult = { id: '', messageId: messageId.slice(1, -1), recipients: recipients.map((address) => ({ address, state: 'queued' })) };
      let queueId: string;
      try {
        queueId = await queueOutbound(
          this.ctx,
          {
            direction: 'outbound',
            mailFrom: from.toString(),
            recipients,
            submittedBy: `api:${actor.apiKeyId}`,
            messageId,
            receivedAt: now,
            meta: { ...(request.meta ?? {}), client: actor.client, api: true, apiKey: actor.apiKeyId, from: from.toString(), finalDelivery, subject: subjectFor(request.subject, attached).slice(0, 200), ...(request.clientRef !== undefined ? { clientRef: request.clientRef } : {}) },
          },
          body,
          idempotency || withinCommit
            ? (message) => {
                if (idempotency) {
                  const t = this.ctx.now();
                  this.expireKey.run(actor.apiKeyId, idempotency.key, t - IDEMPOTENCY_TTL_MS);
                  const response = JSON.stringify({ ...result, id: message.queueId });
                  if (this.insertKey.run(actor.apiKeyId, idempotency.key, idempotency.requestHash, message.queueId, response, t).changes === 0) throw new KeyTaken();
                }
                withinCommit?.(message.queueId, result.messageId);
              }
            : undefined,
        );
      } catch (err) {
        if (err instanceof KeyTaken && idempotency) {
          const earlier = this.replay(actor.apiKeyId, idempotency);
          if (earlier) return earlier;
        }
        throw err;
      }
      log.info({ queueId, messageId, apiKey: actor.apiKeyId, recipients: recipients.length, size }, 'submitted');
      return { ...result, id: queueId };
    } finally {
      await Promise.all(temp.map((f) => rm(f, { force: true })));
    }
  }

  /** Drops Idempotency-Keys older than 24 h (housekeeping). */
  purge(): number {
    return this.purgeKeys.run(this.ctx.now() - IDEMPOTENCY_TTL_MS).changes;
  }

  /** The first response to this key, or undefined when the key is new (or expired); a conflict when the request differs. */
  private replay(apiKeyId: string, idempotency: { key: string; requestHash: string }): SendResult | undefined {
    const row = this.lookup.get(apiKeyId, idempotency.key);
    if (!row || row.created_at < this.ctx.now() - IDEMPOTENCY_TTL_MS) return undefined;
    if (row.request_hash !== idempotency.requestHash) {
      throw new HispError('HISP_API_IDEMPOTENCY_CONFLICT', 'this Idempotency-Key was used with another request in the last 24 hours');
    }
    return JSON.parse(row.response) as SendResult;
  }

  private sender(address: string): DirectAddress {
    let from: DirectAddress;
    try {
      from = DirectAddress.parse(address);
    } catch {
      throw new HispError('HISP_API_INVALID_REQUEST', `from is not a valid address: ${JSON.stringify(address.slice(0, 100))}`);
    }
    if (!this.ctx.registry.isLocalDomain(from.domain)) throw new HispError('HISP_SMTP_SENDER_NOT_ALLOWED', `${from.toString()} is not in a local domain of this HISP`);
    return from;
  }

  /** The parts the message carries: documents as given (package mime or both), renderings of C-CDAs (R-BB-6), the XDM zip. */
  private async attachments(request: SendRequest, documents: readonly SendDocument[], temp: string[], recipients: readonly string[]): Promise<ComposedDocument[]> {
    const pack = request.package ?? 'mime';
    const out: ComposedDocument[] = [];
    if (pack === 'mime' || pack === 'both') out.push(...documents);
    const ccdas = documents.filter((d) => d.kind === 'ccda');
    if (request.humanReadable ?? ccdas.length > 0) {
      for (const d of ccdas) {
        const bytes = Buffer.isBuffer(d.content) ? d.content : await readSmall(d.content.path);
        const html = this.tools.renderCcda(bytes);
        out.push({ filename: `${basename(d.filename, extname(d.filename))}.html`, contentType: 'text/html; charset=utf-8', kind: 'other', content: Buffer.from(html, 'utf8') });
      }
    }
    if ((pack === 'xdm' || pack === 'both') && documents.length > 0) {
      const zip = join(this.incomingDir, `xdm-${randomBytes(12).toString('hex')}.zip`);
      temp.push(zip);
      // The patient's name, birth date and sex as the Direct Context gives them: the same patient, in XDS's words.
      await this.tools.packXdm(documents, zip, { ...request.xdm, intendedRecipients: recipients, ...(request.context?.patient ? { patient: request.context.patient } : {}) });
      out.push({ filename: 'XDM.zip', contentType: 'application/zip', kind: 'xdm', content: { path: zip } });
    }
    out.push(...(request.parts ?? []));
    return out;
  }
}

/** A C-CDA to render is read into memory (the renderer needs the whole DOM); the API bounds its size. */
async function readSmall(path: string): Promise<Buffer> {
  return readFile(path);
}

function recipient(address: string, field: string): string {
  try {
    return DirectAddress.parse(address).toString();
  } catch {
    throw new HispError('HISP_API_INVALID_REQUEST', `${field} holds an address that is not valid: ${JSON.stringify(String(address).slice(0, 100))}`);
  }
}

function unique(addresses: readonly string[]): string[] {
  const seen = new Set<string>();
  return addresses.filter((a) => {
    const k = a.toLowerCase();
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** The SHA-256 of a request, over its canonical JSON and the octets of its documents, for Idempotency-Key comparison. */
export function requestHash(parts: readonly (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) {
    const b = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
    h.update(`${b.length}:`);
    h.update(b);
  }
  return h.digest('hex');
}

import { connect, type Socket } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type SMTPConnection from 'nodemailer/lib/smtp-connection';
import { TLS_PROFILE } from '../core/tls-profile.js';
import { RelayConnection } from './relay-connection.js';

/** The reply of a remote server, as the queue keeps it (RFC 5321 §4.2, RFC 3463). */
export interface RelayReply {
  code: number;
  enhanced?: string;
  text: string;
}

export interface RelayRecipientResult {
  recipient: string;
  /** delivered: 250 to the DATA; transient: try again later (4xx, connection); permanent: 5xx. */
  outcome: 'delivered' | 'transient' | 'permanent';
  reply: RelayReply;
}

export interface RelayResult {
  recipients: RelayRecipientResult[];
  /** The session ran over TLS (STARTTLS or implicit). */
  tls: boolean;
}

export interface SmtpRelayOptions {
  /** Host name announced in EHLO. */
  name: string;
  /** Refuse to send without STARTTLS (the per-domain "TLS required" switch); default opportunistic. */
  tlsRequired?: boolean;
  /** TLS settings (trust roots, servername); certificates are verified when TLS is required. */
  tls?: ConnectionOptions;
  /**
   * The next hop's name when `host` is an address the caller resolved through hisp's resolver (the
   * MX exchange): used for TLS SNI and certificate verification.
   */
  servername?: string;
  connectTimeoutMs?: number;
  /** Time-out of each command and of the data transfer (RFC 5321 §4.5.3.2 suggests minutes). */
  socketTimeoutMs?: number;
  /** Speak LMTP (RFC 2033) instead of SMTP: per-recipient replies after DATA. */
  lmtp?: boolean;
  /**
   * A Unix socket to speak over instead of host and port (Dovecot's /run/dovecot/lmtp, Cyrus's
   * lmtp socket); no TLS is offered over it.
   */
  socketPath?: string;
}

/**
 * Open SMTP connections kept between transactions to the same next hop, as Postfix's connection
 * cache does (smtp_connection_cache_on_demand): under load, a relay that opens a TCP connection,
 * EHLO and STARTTLS per message spends more on them than on the message. A connection is reused
 * for at most `maxMessages` transactions (Postfix: smtp_connection_reuse_count_limit) and closed
 * after `idleMs` unused (Postfix: smtp_connection_cache_time_limit, 2 s).
 */
export class SmtpConnectionCache {
  private readonly idle = new Map<string, { connection: SMTPConnection; messages: number; timer: NodeJS.Timeout }[]>();
  private closed = false;

  constructor(private readonly options: { idleMs?: number; maxMessages?: number; maxIdlePerHop?: number } = {}) {}

  /** An idle, still open connection to `key`, removed from the cache. */
  take(key: string): { connection: SMTPConnection; messages: number } | undefined {
    const list = this.idle.get(key);
    while (list && list.length > 0) {
      const entry = list.pop()!;
      clearTimeout(entry.timer);
      if (!entry.connection.destroyed) return { connection: entry.connection, messages: entry.messages };
    }
    return undefined;
  }

  /** Keeps a connection that just ended a transaction cleanly, or closes it (limits, shutdown). */
  give(key: string, connection: SMTPConnection, messages: number): void {
    const list = this.idle.get(key) ?? [];
    if (this.closed || connection.destroyed || messages >= (this.options.maxMessages ?? 100) || list.length >= (this.options.maxIdlePerHop ?? 32)) {
      connection.quit();
      return;
    }
    const entry = {
      connection,
      messages,
      timer: setTimeout(() => {
        const i = list.indexOf(entry);
        if (i !== -1) list.splice(i, 1);
        connection.quit();
      }, this.options.idleMs ?? 2000),
    };
    entry.timer.unref();
    list.push(entry);
    this.idle.set(key, list);
  }

  /** Quits every idle connection; later ones are not kept. */
  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) {
      for (const e of list.splice(0)) {
        clearTimeout(e.timer);
        e.connection.quit();
      }
    }
  }
}

/**
 * One SMTP (or LMTP) transaction that hands a message to a next hop: the recipient's HISP found by
 * MX, or a downstream mail server. STARTTLS is used whenever offered (opportunistic, RFC 3207) and
 * required when the domain says so; S/MIME stays the security layer either way (R-SMTP-3). Every
 * outcome is per recipient, classified the way the queue needs it: 2xx delivered, 4xx and any
 * connection failure transient (retry with back-off), 5xx permanent (a DSN to the sender). With a
 * `cache`, the connection of an earlier transaction to the same hop is reused (RFC 5321 §3.3: a
 * session carries any number of transactions) and kept for the next one.
 */
export async function relayMessage(
  host: string,
  port: number,
  envelope: { from: string; to: readonly string[] },
  message: Buffer,
  options: SmtpRelayOptions & { cache?: SmtpConnectionCache },
): Promise<RelayResult> {
  const cache = options.cache;
  const key = `${options.socketPath ?? `${host}|${port}`}|${options.servername ?? ''}|${options.tlsRequired ? 1 : 0}|${options.lmtp ? 1 : 0}|${options.name}`;
  const cached = cache?.take(key);
  if (cached) {
    const outcome = await transaction(cached.connection, envelope, message);
    // A cached connection the server closed meanwhile (its idle time-out): nothing was sent, so try
    // once more on a fresh one rather than count a failure.
    if (!outcome.connectionFailed) return finish(outcome, cached.connection, cached.messages + 1);
    cached.connection.close();
  }
  let unixSocket: Socket | undefined;
  if (options.socketPath !== undefined) {
    try {
      unixSocket = await connectUnix(options.socketPath, options.connectTimeoutMs ?? 30_000);
    } catch (err) {
      return everyone(envelope, 'transient', errorReply(err, 421, '4.4.1'), false);
    }
  }
  // SMTPConnection dials host and port itself; an already open Unix socket goes in as `connection`.
  const where = unixSocket ? { connection: unixSocket, ignoreTLS: true } : { host, port };
  const connection = new RelayConnection({
    ...where,
    name: options.name,
    lmtp: options.lmtp ?? false,
    requireTLS: options.tlsRequired ?? false,
    opportunisticTLS: !(options.tlsRequired ?? false),
    // Opportunistic TLS to an MX cannot verify a name the DNS gave us (no DANE here): encrypt anyway;
    // when TLS is required, the certificate is verified. TLS_PROFILE last, so that no caller's
    // options weaken it: TLS 1.2+ with forward-secret AEAD suites only (Mozilla intermediate,
    // issue 14 item 11). A next hop that offers nothing better fails the handshake: a transient
    // failure, retried on the schedule, then a DSN; no second try in clear text after a failed
    // handshake (RFC 3207 §4.1: the client decides whether the privacy achieved is enough to go on).
    tls: { rejectUnauthorized: options.tlsRequired ?? false, ...(options.tls ?? {}), ...TLS_PROFILE },
    connectionTimeout: options.connectTimeoutMs ?? 30_000,
    greetingTimeout: options.connectTimeoutMs ?? 30_000,
    socketTimeout: options.socketTimeoutMs ?? 300_000,
    // Loopback and private next hops are legitimate here (downstream servers, tests).
    allowInternalNetworkInterfaces: true,
    ...(options.servername ? { servername: options.servername } : {}),
  });
  // For the connection's whole life, before anything can fail: an error after the transaction (a
  // peer resetting during QUIT, or while the connection sits in the cache) must not become an
  // uncaught exception; the ones during connect and send are handled by their own listeners.
  connection.on('error', () => undefined);
  try {
    await new Promise<void>((resolve, reject) => {
      connection.once('error', reject);
      connection.connect(() => {
        connection.removeListener('error', reject);
        resolve();
      });
    });
  } catch (err) {
    connection.close();
    return everyone(envelope, 'transient', errorReply(err, 421, '4.4.1'), false);
  }
  return finish(await transaction(connection, envelope, message), connection, 1);

  function finish(outcome: Transaction, c: SMTPConnection, messages: number): RelayResult {
    if (outcome.reusable && cache) cache.give(key, c, messages);
    else if (outcome.reusable) c.quit();
    else c.close();
    return outcome.result;
  }
}

interface Transaction {
  result: RelayResult;
  /** The session is fine for another transaction (the last one ended with a reply, not a failure of the connection). */
  reusable: boolean;
  /** The connection failed before the server answered anything about this message. */
  connectionFailed: boolean;
}

function everyone(envelope: { to: readonly string[] }, outcome: RelayRecipientResult['outcome'], reply: RelayReply, tls: boolean): RelayResult {
  return { recipients: envelope.to.map((recipient) => ({ recipient, outcome, reply })), tls };
}

async function transaction(connection: SMTPConnection, envelope: { from: string; to: readonly string[] }, message: Buffer): Promise<Transaction> {
  try {
    const info = await new Promise<{ accepted: string[]; rejected: string[]; rejectedErrors?: unknown[]; response: string }>(
      (resolve, reject) => {
        connection.once('error', reject);
        connection.send({ from: envelope.from, to: [...envelope.to] }, message, (err, result) => {
          connection.removeListener('error', reject);
          if (err) reject(err);
          else resolve(result);
        });
      },
    );
    const tls = connection.secure;
    const rejected = new Map<string, unknown>();
    info.rejected.forEach((r, i) => rejected.set(r.toLowerCase(), info.rejectedErrors?.[i]));
    const accepted = parseReply(info.response, 250, '2.0.0');
    return {
      reusable: true,
      connectionFailed: false,
      result: {
        tls,
        recipients: envelope.to.map((recipient) => {
          const err = rejected.get(recipient.toLowerCase());
          if (!rejected.has(recipient.toLowerCase())) return { recipient, outcome: 'delivered', reply: accepted };
          const reply = errorReply(err, 450, '4.0.0');
          return { recipient, outcome: reply.code >= 500 ? 'permanent' : 'transient', reply };
        }),
      },
    };
  } catch (err) {
    const reply = errorReply(err, 451, '4.4.2');
    const e = err as { code?: string; responseCode?: number };
    // EENVELOPE / EMESSAGE with a reply: the server refused this message; the session goes on after RSET.
    const refused = (e.code === 'EENVELOPE' || e.code === 'EMESSAGE') && typeof e.responseCode === 'number' && e.responseCode !== 421;
    const connectionFailed = !refused && typeof e.responseCode !== 'number';
    let reusable = false;
    if (refused && !connection.destroyed) {
      reusable = await new Promise<boolean>((resolve) => connection.reset((resetErr) => resolve(!resetErr)));
    }
    return {
      reusable,
      connectionFailed,
      result: everyone(envelope, reply.code >= 500 && reply.code !== 503 ? 'permanent' : 'transient', reply, connection.secure),
    };
  }
}

/** A reply from a nodemailer error: its SMTP response when there is one, else a local 4xx. */
function errorReply(err: unknown, code: number, enhanced: string): RelayReply {
  const e = err as { responseCode?: number; response?: string; message?: string };
  if (typeof e?.responseCode === 'number' && typeof e.response === 'string') return parseReply(e.response, e.responseCode, undefined);
  return { code, enhanced, text: e?.message ?? String(err) };
}

/** "550 5.1.1 No such user" → { code: 550, enhanced: '5.1.1', text: 'No such user' }. */
export function parseReply(response: string, fallbackCode: number, fallbackEnhanced: string | undefined): RelayReply {
  const m = /^(\d{3})[ -](?:(\d\.\d{1,3}\.\d{1,3}) )?([\s\S]*)$/.exec(response.trim());
  if (!m) return { code: fallbackCode, ...(fallbackEnhanced ? { enhanced: fallbackEnhanced } : {}), text: response.trim() };
  return { code: Number(m[1]), ...(m[2] ? { enhanced: m[2] } : {}), text: m[3]!.trim() };
}

/** Connects to a Unix socket, or fails after `timeoutMs`. */
function connectUnix(path: string, timeoutMs: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const s = connect({ path });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no connection to ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

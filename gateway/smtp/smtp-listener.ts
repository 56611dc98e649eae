import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerSession } from 'smtp-server';
import { HispError, isHispError } from '../core/errors.js';
import { TLS_PROFILE } from '../core/tls-profile.js';
import { DEFAULTS, type AuthLimitsConfig, type SmtpListenerConfig } from '../config/schema.js';
import { AuthLimiter } from './auth-limiter.js';
import { clientKey } from './client-key.js';
import { connectionOf, guardConnection, type ConnectionGuard } from './connection-guard.js';
import { installDataFastPath } from './data-fast-path.js';
import { MailData, type MailDataFault, type ReceivedMessage } from './mail-data.js';
import { RateLimiter } from './rate-limiter.js';
import { isInternalError, publicReplyForError } from './reply-mapping.js';

/** One accepted SMTP transaction, handed over after the end of DATA. */
export interface SmtpTransaction {
  session: SMTPServerSession;
  /** '' for the null reverse-path. */
  mailFrom: string;
  recipients: string[];
  /**
   * The message as received (dot-unstuffed), bare line ends and NUL already refused: in memory, or
   * in a file when large. The file is removed once message() has settled: keep it by linking it.
   */
  data: ReceivedMessage;
  log: Logger;
}

/** What a listener does at each step; a step refuses by throwing a HispError (mapped in reply-mapping.ts). */
export interface SmtpEdgeHandlers {
  /** Submission only: true when the credentials are good; the user name becomes session.user. `client`: client-key.ts. */
  authenticate?(username: string, password: string, session: SMTPServerSession, client: string): Promise<boolean>;
  mailFrom(address: string, session: SMTPServerSession): void | Promise<void>;
  rcptTo(address: string, session: SMTPServerSession): void | Promise<void>;
  /** Stores the message durably and returns the text of the 250 reply. */
  message(tx: SmtpTransaction): Promise<string>;
}

export interface SmtpListenerOptions {
  /** 'submission' or 'inbound': the log's component, the banner. */
  name: string;
  hostname: string;
  logger: Logger;
  /** Require AUTH (PLAIN/LOGIN) before MAIL (the submission port, RFC 6409 §4.3). */
  auth: boolean;
  /** Failed-AUTH caps and lock-outs (with `auth`); default: the configuration's defaults. */
  authLimits?: AuthLimitsConfig;
  /**
   * Where large messages are written as they arrive (mode 0700; the gateway gives
   * `<dataDir>/incoming`, on the file system of the store, which then takes the file by linking
   * it). Default: a new folder under the system's temporary folder.
   */
  incomingDir?: string;
  /** Time smtp-server gives open sessions to finish on close before it cuts them; default 30 s. */
  closeTimeoutMs?: number;
  now?: () => number;
}

/** What a listener keeps of one session besides smtp-server's own state. */
interface SessionState {
  log: Logger;
  /** The client's key (client-key.ts); undefined when the session was refused at connect. */
  client: string | undefined;
  authFailures: number;
  /** The adaptations of smtp-server's connection (connection-guard.ts). */
  guard?: ConnectionGuard;
}

/**
 * One SMTP listener on smtp-server: STARTTLS when a certificate is configured (RFC 3207; refused
 * 454 4.7.0 otherwise), AUTH PLAIN/LOGIN on the submission port (RFC 4954), announced and taken
 * only after STARTTLS when there is a certificate, SIZE announced and enforced (RFC 1870), bare
 * CR or LF and NUL refused before the 250 (RFC 5321 §2.3.8; smtp-server passes them into the data
 * stream, and relaying such bytes to a lax peer is how a second message is smuggled,
 * CVE-2023-51764), and the 250 given only once the handler has stored the message durably.
 *
 * Hostile clients (issue 14): connections are capped per client (an IPv4 address or an IPv6 /64)
 * below `maxClients`; messages and octets a minute per client; failed AUTH per connection (then
 * 421), per client and per user name (then locked out for a while: 454); every reply carries an
 * enhanced status code (RFC 2034, RFC 3463) and names nothing internal: an internal failure is
 * logged with a trace id, and the reply carries only that id.
 *
 * Time-outs: smtp-server's socket idle time-out is `commandTimeoutMs` in every state (RFC 5321
 * §4.5.3.2.7: at least 5 minutes), and one command line must be complete within
 * `commandTimeoutMs` of its first byte (a client that dribbles a byte at a time is cut, 421);
 * `dataTimeoutMs` bounds the whole DATA transfer (§4.5.3.2.6 asks 3 minutes per block and 10 for
 * the terminator): when it has passed, the client hears 421 4.4.2 and the connection is closed,
 * however steadily it trickles bytes; nothing of the message is stored.
 *
 * Memory: a message is held in memory up to 256 KiB; a larger one is written to a file in
 * `incomingDir` as it arrives (mail-data.ts), so a session holds at most that much of it.
 */
export class SmtpListener {
  readonly server: SMTPServer;
  private address: AddressInfo | undefined;
  private readonly sessions = new WeakMap<SMTPServerSession, SessionState>();
  /** Open connections per client key. */
  private readonly perClient = new Map<string, number>();
  private readonly rates: RateLimiter;
  private readonly authByClient: AuthLimiter;
  private readonly authByUser: AuthLimiter;
  private readonly authLimits: AuthLimitsConfig | undefined;
  private readonly incomingDir: string;
  private readonly log: Logger;

  constructor(
    private readonly config: SmtpListenerConfig,
    private readonly handlers: SmtpEdgeHandlers,
    private readonly options: SmtpListenerOptions,
  ) {
    const tls = config.tlsCert && config.tlsKey ? { cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey) } : undefined;
    const log = (this.log = options.logger.child({ component: options.name }));
    this.incomingDir = options.incomingDir ?? mkdtempSync(join(tmpdir(), 'hisp-incoming-'));
    const now = options.now ?? Date.now;
    this.rates = new RateLimiter({ messagesPerMinute: config.perClient.messagesPerMinute, bytesPerMinute: config.perClient.bytesPerMinute, now });
    this.authLimits = options.auth ? (options.authLimits ?? DEFAULTS.submission.authLimits) : undefined;
    const limits = this.authLimits;
    const window = (minutes: number) => Math.round(minutes * 60_000);
    this.authByClient = new AuthLimiter({ maxFailures: limits?.maxFailuresPerClient ?? 0, windowMs: window(limits?.windowMinutes ?? 15), lockoutMs: window(limits?.lockoutMinutes ?? 15), now });
    this.authByUser = new AuthLimiter({ maxFailures: limits?.maxFailuresPerUser ?? 0, windowMs: window(limits?.windowMinutes ?? 15), lockoutMs: window(limits?.lockoutMinutes ?? 15), now });
    // The DATA scan with memchr instead of a JavaScript loop over every byte (data-fast-path.ts);
    // another smtp-server release keeps its own, slower but correct.
    if (!installDataFastPath()) log.warn('smtp-server is not the release the DATA fast path was ported from: its own DATA scan is used');
    const guard = {
      tlsAvailable: tls !== undefined,
      // With a certificate, AUTH only after STARTTLS (never a password in clear on the network);
      // without one (a loopback development set-up), allowed in clear.
      authAfterTlsOnly: options.auth && tls !== undefined,
      commandLineTimeoutMs: config.commandTimeoutMs,
    };
    this.server = new SMTPServer({
      name: options.hostname,
      banner: `hisp ${options.name} ready`,
      size: config.maxMessageBytes,
      ...(tls ? { ...tls, ...TLS_PROFILE } : {}),
      hideSTARTTLS: tls === undefined,
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: !options.auth,
      ...(options.auth ? {} : { disabledCommands: ['AUTH'] }),
      allowInsecureAuth: tls === undefined,
      authRequiredMessage: '5.7.0 Authentication required',
      // RFC 2034: ENHANCEDSTATUSCODES announced, and every reply but the greeting and EHLO's
      // carries one (hisp's from its reply table; smtp-server's own from its RFC 3463 table).
      hideENHANCEDSTATUSCODES: false,
      disableReverseLookup: true,
      hideDSN: true,
      hideREQUIRETLS: true,
      socketTimeout: config.commandTimeoutMs,
      closeTimeout: options.closeTimeoutMs ?? 30_000,
      // maxClients is enforced in onConnect, where the refusal carries its enhanced code; this is
      // smtp-server's backstop (it answers without one).
      maxClients: config.maxClients * 2 + 10,
      // RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted.
      maxRecipients: 1000,
      logger: false,
      onConnect: (session, callback) => {
        const state: SessionState = { log: log.child({ session: session.id, remote: session.remoteAddress }), client: undefined, authFailures: 0 };
        this.sessions.set(session, state);
        const refusal = this.admit(session, state);
        if (refusal) {
          state.log.info({ code: refusal.code }, 'connection refused');
          callback(this.smtpError(refusal, state.log));
          return;
        }
        const conn = connectionOf(this.server, session);
        if (conn) {
          state.guard = guardConnection(conn, {
            ...guard,
            onLineTimeout: () => state.log.warn({ commandTimeoutMs: config.commandTimeoutMs }, 'command line not completed in time: connection closed'),
            onLimit: (which) => state.log.warn({ limit: which }, 'too many commands or errors without a message: connection closed'),
          });
        }
        state.log.debug('connected');
        callback();
      },
      onSecure: (socket, session, callback) => {
        this.sessions.get(session)?.guard?.secured(socket);
        callback();
      },
      onClose: (session) => this.release(session),
      onAuth: (auth: SMTPServerAuthentication, session, callback) => {
        this.authenticate(auth, session).then(
          (user) => callback(null, { user }),
          (err: unknown) => callback(this.smtpError(err, this.stateOf(session).log)),
        );
      },
      onMailFrom: (address: SMTPServerAddress, session, callback) => {
        this.step(session, () => {
          if (config.requireTls && !session.secure) throw new HispError('HISP_SMTP_TLS_REQUIRED', 'must issue a STARTTLS command first');
          const state = this.stateOf(session);
          const over = state.client === undefined ? undefined : this.rates.check(state.client);
          if (over) {
            state.log.info({ limit: over }, 'rate limit: MAIL deferred');
            throw new HispError('HISP_SMTP_RATE_LIMITED', `too many ${over === 'messages' ? 'messages' : 'octets'} from your address within the last minute: try again later`, { transient: true });
          }
          return this.handlers.mailFrom(address.address, session);
        }, callback);
      },
      onRcptTo: (address: SMTPServerAddress, session, callback) => {
        this.step(session, () => this.handlers.rcptTo(address.address, session), callback);
      },
      onData: (stream, session, callback) => {
        const l = this.stateOf(session).log;
        this.receive(stream, session, l).then(
          (text) => {
            this.stateOf(session).guard?.messageAccepted();
            callback(null, text);
          },
          (err: unknown) => {
            if (!isHispError(err) || !err.transient) l.warn({ err: err instanceof Error ? err.message : String(err) }, 'message refused');
            else l.warn({ err: err.message }, 'message deferred');
            callback(err instanceof AnsweredError ? err.answer : this.smtpError(err, l));
          },
        );
      },
    });
    this.server.on('error', (err) => log.warn({ err: err.message }, 'smtp listener error'));
  }

  /** The session's state (a session smtp-server opened before onConnect ran gets a fresh one). */
  private stateOf(session: SMTPServerSession): SessionState {
    let state = this.sessions.get(session);
    if (!state) {
      state = { log: this.log.child({ session: session.id, remote: session.remoteAddress }), client: undefined, authFailures: 0 };
      this.sessions.set(session, state);
    }
    return state;
  }

  /** The refusal of a new connection, or undefined when it is taken (and counted for its client). */
  private admit(session: SMTPServerSession, state: SessionState): HispError | undefined {
    // Open connections, this one included.
    if (this.server.connections.size > this.config.maxClients) {
      return new HispError('HISP_SMTP_BUSY', 'too many connections: try again in a moment', { transient: true });
    }
    const key = clientKey(session.remoteAddress);
    const open = this.perClient.get(key) ?? 0;
    if (open >= this.config.perClient.maxConnections) {
      return new HispError('HISP_SMTP_TOO_MANY_CONNECTIONS', `too many connections from your address (at most ${this.config.perClient.maxConnections})`, { transient: true });
    }
    this.perClient.set(key, open + 1);
    state.client = key;
    return undefined;
  }

  private release(session: SMTPServerSession): void {
    const state = this.sessions.get(session);
    const key = state?.client;
    if (key === undefined || state === undefined) return;
    state.client = undefined;
    const open = (this.perClient.get(key) ?? 1) - 1;
    if (open <= 0) this.perClient.delete(key);
    else this.perClient.set(key, open);
  }

  /**
   * SMTP AUTH (RFC 4954) with the failure limits: a client or user name locked out is answered 454
   * 4.7.0 without a password check; a failure counts for the connection (the last one allowed is
   * answered 421 and the connection closed), the client and the user name.
   */
  private async authenticate(auth: SMTPServerAuthentication, session: SMTPServerSession): Promise<string> {
    const state = this.stateOf(session);
    const username = auth.username ?? '';
    const limits = this.authLimits;
    if (!this.handlers.authenticate || (auth.method !== 'PLAIN' && auth.method !== 'LOGIN')) {
      throw new HispError('HISP_SMTP_AUTH_FAILED', 'authentication mechanism not supported');
    }
    const client = state.client ?? clientKey(session.remoteAddress);
    const user = `user:${username.toLowerCase()}`;
    const locked = Math.max(this.authByClient.lockedFor(client), this.authByUser.lockedFor(user));
    let failure: HispError;
    if (locked > 0) {
      failure = new HispError('HISP_SMTP_AUTH_TEMPORARY', `too many failed authentications: try again in ${Math.ceil(locked / 60_000)} minutes`, { transient: true });
      state.log.warn({ user: username, lockedForMs: locked }, 'authentication refused: locked out');
    } else {
      const ok = await this.handlers.authenticate(username, auth.password ?? '', session, client);
      state.log.info({ user: username, ok }, 'authentication');
      if (ok) {
        // The user name's failures are forgotten (its owner is back); the client's are not: an
        // account of its own must not let a client reset its count between guesses at others.
        this.authByUser.succeed(user);
        return username;
      }
      failure = new HispError('HISP_SMTP_AUTH_FAILED', 'authentication credentials invalid');
      if (this.authByClient.fail(client)) state.log.warn({ client, lockoutMinutes: limits?.lockoutMinutes }, 'too many failed authentications from this client: locked out');
      if (this.authByUser.fail(user)) state.log.warn({ user: username, lockoutMinutes: limits?.lockoutMinutes }, 'too many failed authentications for this user name: locked out');
    }
    state.authFailures++;
    if (limits && state.authFailures >= limits.maxFailuresPerConnection) {
      state.log.warn({ failures: state.authFailures }, 'too many failed authentications on this connection: closed');
      throw new HispError('HISP_SMTP_AUTH_TOO_MANY_FAILURES', 'too many failed authentications: closing the connection', { transient: true });
    }
    throw failure;
  }

  private step(session: SMTPServerSession, fn: () => void | Promise<void>, callback: (err?: Error | null) => void): void {
    Promise.resolve()
      .then(fn)
      .then(
        () => callback(),
        (err: unknown) => callback(this.smtpError(err, this.stateOf(session).log)),
      );
  }

  /**
   * An SMTP reply carried by an Error, as smtp-server sends it: code, then the enhanced status
   * code in the text (connection-guard.ts keeps smtp-server from adding a second). An internal
   * failure is logged under a trace id, which is all its reply tells (issue 14, item 10).
   */
  private smtpError(err: unknown, log: Logger): Error & { responseCode: number } {
    let trace = '';
    if (isInternalError(err)) {
      trace = randomBytes(6).toString('hex');
      log.error({ trace, code: isHispError(err) ? err.code : undefined, err: err instanceof Error ? err.message : String(err) }, 'local error');
    }
    const reply = publicReplyForError(err, trace);
    const e = new Error(`${reply.enhanced} ${reply.text}`) as Error & { responseCode: number };
    e.responseCode = reply.code;
    return e;
  }

  private async receive(stream: Readable & { sizeExceeded?: boolean }, session: SMTPServerSession, log: Logger): Promise<string> {
    const started = Date.now();
    const data = new MailData({ dir: this.incomingDir, maxBytes: this.config.maxMessageBytes });
    // A client that trickles its data (each byte within the idle time-out) is cut when the whole
    // transfer has taken dataTimeoutMs: 421 and the connection closed (RFC 5321 §3.8, §4.5.3.2.6).
    let cut = false;
    const timer = setTimeout(() => {
      cut = true;
      log.warn({ dataTimeoutMs: this.config.dataTimeoutMs, size: data.received }, 'DATA transfer too slow: connection closed');
      // The table's reply for the time-out, as 421: the server closes the channel (RFC 5321 §3.8).
      const reply = publicReplyForError(new HispError('HISP_SMTP_TIMEOUT', `the message took longer than ${this.config.dataTimeoutMs} ms to transfer: closing the connection`, { transient: true }), '');
      this.closeSession(session.id, `${reply.enhanced} ${reply.text}`);
    }, this.config.dataTimeoutMs);
    const client = this.stateOf(session).client;
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        // Octets count as they arrive: parallel transfers of one client cannot run up an
        // unbounded debt before any of them ends (item 5).
        if (client !== undefined) {
          this.rates.consume(client, chunk.length);
          if (this.rates.overdrawn(client)) await data.refuse({ kind: 'rate' });
        }
        await data.write(chunk);
      }
    } catch (err) {
      await data.discard();
      if (!cut) {
        // A failed write (ENOSPC, EMFILE): the client is still sending and nothing would bound the
        // rest of its DATA but the idle time-out: answered now and closed.
        const answer = this.smtpError(err, log);
        this.closeSession(session.id, answer.message);
        throw new AnsweredError(answer);
      }
    } finally {
      clearTimeout(timer);
      if (client !== undefined) this.rates.countMessage(client);
    }
    if (cut || Date.now() - started > this.config.dataTimeoutMs) {
      await data.discard();
      throw new HispError('HISP_SMTP_TIMEOUT', 'the message took too long to transfer', { transient: true });
    }
    if (stream.sizeExceeded) {
      await data.discard();
      throw faultError({ kind: 'too-big' }, this.config.maxMessageBytes);
    }
    const end = await data.end();
    if ('fault' in end) throw faultError(end.fault, this.config.maxMessageBytes);
    const tx: SmtpTransaction = {
      session,
      mailFrom: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
      recipients: session.envelope.rcptTo.map((r) => r.address),
      data: end.message,
      log,
    };
    try {
      return await this.handlers.message(tx);
    } finally {
      // Kept by the store (linked under its own name), or not kept at all.
      if (end.message.file !== undefined) await unlink(end.message.file).catch(() => undefined);
    }
  }

  /** Answers `421 text` on the session's connection, which smtp-server then closes (its public `connections`). */
  private closeSession(id: string, text: string): void {
    for (const c of this.server.connections) if (c.id === id) c.send(421, text);
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(new HispError('HISP_IO', `${this.options.name} listener: cannot listen on ${this.config.host}:${this.config.port}: ${err.message}`, { cause: err }));
      this.server.server.once('error', onError);
      this.server.listen(this.config.port, this.config.host, () => {
        this.server.server.removeListener('error', onError);
        resolve();
      });
    });
    this.address = this.server.server.address() as AddressInfo;
    this.options.logger.info({ component: this.options.name, host: this.address.address, port: this.address.port }, 'listening');
    return this.address;
  }

  get port(): number {
    return this.address?.port ?? this.config.port;
  }

  /** Stops accepting connections and waits for open sessions to end (smtp-server closes them after closeTimeout). */
  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** A failure already answered (and the session closed): its reply, not to be logged twice. */
class AnsweredError extends Error {
  constructor(readonly answer: Error & { responseCode: number }) {
    super(answer.message);
  }
}

function faultError(fault: MailDataFault, maxBytes: number): HispError {
  switch (fault.kind) {
    case 'storage':
      return new HispError('HISP_SMTP_STORAGE_FULL', 'insufficient system storage: try again later', { transient: true });
    case 'rate':
      return new HispError('HISP_SMTP_RATE_LIMITED', 'too many octets from your address within the last minute: try again later', { transient: true });
    case 'too-big':
      return new HispError('HISP_SMTP_MESSAGE_TOO_BIG', `message exceeds the fixed maximum size of ${maxBytes} bytes`);
    case 'bare-line-end':
      return new HispError('HISP_SMTP_BARE_LINE_END', `bare ${fault.octet} at octet ${fault.at}: lines must end with CRLF (RFC 5321 section 2.3.8)`);
    case 'nul':
      return new HispError('HISP_SMTP_NUL_OCTET', `NUL at octet ${fault.at}: not allowed in a message (RFC 5322 section 2.3)`);
  }
}

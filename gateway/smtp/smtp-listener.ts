import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerSession } from 'smtp-server';
import { findBareLineEnd } from '../agent/mime-entity.js';
import { HispError, isHispError } from '../core/errors.js';
import type { SmtpListenerConfig } from '../config/schema.js';
import { installDataFastPath } from './data-fast-path.js';
import { replyForError } from './reply-mapping.js';

/** One accepted SMTP transaction, handed over after the end of DATA. */
export interface SmtpTransaction {
  session: SMTPServerSession;
  /** '' for the null reverse-path. */
  mailFrom: string;
  recipients: string[];
  /** The message as received (dot-unstuffed), bare line ends already refused. */
  body: Buffer;
  log: Logger;
}

/** What a listener does at each step; a step refuses by throwing a HispError (mapped in reply-mapping.ts). */
export interface SmtpEdgeHandlers {
  /** Submission only: true when the credentials are good; the user name becomes session.user. */
  authenticate?(username: string, password: string, session: SMTPServerSession): Promise<boolean>;
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
  /** Time smtp-server gives open sessions to finish on close before it cuts them; default 30 s. */
  closeTimeoutMs?: number;
}

/** An SMTP reply carried by an Error, as smtp-server sends it: code, then our RFC 3463 code in the text. */
function smtpError(err: unknown): Error & { responseCode: number } {
  const reply = replyForError(err);
  const e = new Error(`${reply.enhanced} ${reply.text.replace(/[\r\n]+/g, ' ')}`) as Error & { responseCode: number };
  e.responseCode = reply.code;
  return e;
}

/**
 * One SMTP listener on smtp-server: STARTTLS when a certificate is configured (RFC 3207), AUTH
 * PLAIN/LOGIN on the submission port (RFC 4954), SIZE announced and enforced (RFC 1870), bare CR or
 * LF refused before the 250 (RFC 5321 §2.3.8; smtp-server passes them into the data stream, and
 * relaying such bytes to a lax peer is how a second message is smuggled, CVE-2023-51764), and the
 * 250 given only once the handler has stored the message durably.
 *
 * Time-outs: smtp-server's socket idle time-out is `commandTimeoutMs` in every state (RFC 5321
 * §4.5.3.2.7: at least 5 minutes); `dataTimeoutMs` bounds the whole DATA transfer (§4.5.3.2.6 asks
 * 3 minutes per block and 10 for the terminator): when it has passed, the client hears 421 4.4.2 and
 * the connection is closed, however steadily it trickles bytes; nothing of the message is stored.
 */
export class SmtpListener {
  readonly server: SMTPServer;
  private address: AddressInfo | undefined;

  constructor(
    private readonly config: SmtpListenerConfig,
    private readonly handlers: SmtpEdgeHandlers,
    private readonly options: SmtpListenerOptions,
  ) {
    const tls = config.tlsCert && config.tlsKey ? { cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey) } : undefined;
    const log = options.logger.child({ component: options.name });
    // The DATA scan with memchr instead of a JavaScript loop over every byte (data-fast-path.ts);
    // another smtp-server release keeps its own, slower but correct.
    if (!installDataFastPath()) log.warn('smtp-server is not the release the DATA fast path was ported from: its own DATA scan is used');
    // One child logger per SMTP session (not one per command).
    const sessionLogs = new WeakMap<SMTPServerSession, Logger>();
    const sessionLog = (session: SMTPServerSession): Logger => {
      let l = sessionLogs.get(session);
      if (!l) {
        l = log.child({ session: session.id, remote: session.remoteAddress });
        sessionLogs.set(session, l);
      }
      return l;
    };
    this.server = new SMTPServer({
      name: options.hostname,
      banner: `hisp ${options.name} ready`,
      size: config.maxMessageBytes,
      ...(tls ?? {}),
      hideSTARTTLS: tls === undefined,
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: !options.auth,
      ...(options.auth ? {} : { disabledCommands: ['AUTH'] }),
      // With a certificate, AUTH only after STARTTLS; without one (a loopback development set-up), allowed in clear.
      allowInsecureAuth: tls === undefined,
      authRequiredMessage: '5.7.0 Authentication required',
      disableReverseLookup: true,
      hideDSN: true,
      hideREQUIRETLS: true,
      socketTimeout: config.commandTimeoutMs,
      closeTimeout: options.closeTimeoutMs ?? 30_000,
      maxClients: config.maxClients,
      // RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted.
      maxRecipients: 1000,
      logger: false,
      onConnect: (session, callback) => {
        sessionLog(session).debug('connected');
        callback();
      },
      onAuth: (auth: SMTPServerAuthentication, session, callback) => {
        const handlers = this.handlers;
        const username = auth.username ?? '';
        if (!handlers.authenticate || (auth.method !== 'PLAIN' && auth.method !== 'LOGIN')) {
          callback(smtpError(new HispError('HISP_SMTP_AUTH_FAILED', 'authentication mechanism not supported')));
          return;
        }
        handlers.authenticate(username, auth.password ?? '', session).then(
          (ok) => {
            sessionLog(session).info({ user: username, ok }, 'authentication');
            if (ok) callback(null, { user: username });
            else callback(smtpError(new HispError('HISP_SMTP_AUTH_FAILED', 'authentication credentials invalid')));
          },
          (err: unknown) => callback(smtpError(err)),
        );
      },
      onMailFrom: (address: SMTPServerAddress, session, callback) => {
        this.step(() => {
          if (config.requireTls && !session.secure) throw new HispError('HISP_SMTP_TLS_REQUIRED', 'must issue a STARTTLS command first');
          return this.handlers.mailFrom(address.address, session);
        }, callback);
      },
      onRcptTo: (address: SMTPServerAddress, session, callback) => {
        this.step(() => this.handlers.rcptTo(address.address, session), callback);
      },
      onData: (stream, session, callback) => {
        const l = sessionLog(session);
        this.receive(stream, session, l).then(
          (text) => callback(null, text),
          (err: unknown) => {
            if (!isHispError(err) || !err.transient) l.warn({ err: err instanceof Error ? err.message : String(err) }, 'message refused');
            else l.warn({ err: err.message }, 'message deferred');
            callback(smtpError(err));
          },
        );
      },
    });
    this.server.on('error', (err) => log.warn({ err: err.message }, 'smtp listener error'));
  }

  private step(fn: () => void | Promise<void>, callback: (err?: Error | null) => void): void {
    Promise.resolve()
      .then(fn)
      .then(
        () => callback(),
        (err: unknown) => callback(smtpError(err)),
      );
  }

  private async receive(stream: Readable & { sizeExceeded?: boolean }, session: SMTPServerSession, log: Logger): Promise<string> {
    const started = Date.now();
    const chunks: Buffer[] = [];
    let size = 0;
    // A client that trickles its data (each byte within the idle time-out) is cut when the whole
    // transfer has taken dataTimeoutMs: 421 and the connection closed (RFC 5321 §3.8, §4.5.3.2.6).
    let cut = false;
    const timer = setTimeout(() => {
      cut = true;
      log.warn({ dataTimeoutMs: this.config.dataTimeoutMs, size }, 'DATA transfer too slow: connection closed');
      // The table's reply for the time-out, as 421: the server closes the channel (RFC 5321 §3.8).
      const reply = replyForError(new HispError('HISP_SMTP_TIMEOUT', `the message took longer than ${this.config.dataTimeoutMs} ms to transfer: closing the connection`, { transient: true }));
      this.closeSession(session.id, `${reply.enhanced} ${reply.text}`);
    }, this.config.dataTimeoutMs);
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        size += chunk.length;
        // Past the limit, keep reading (the client is still sending) but keep nothing.
        if (size <= this.config.maxMessageBytes) chunks.push(chunk);
      }
    } catch (err) {
      if (!cut) throw err;
    } finally {
      clearTimeout(timer);
    }
    if (cut || Date.now() - started > this.config.dataTimeoutMs) {
      throw new HispError('HISP_SMTP_TIMEOUT', 'the message took too long to transfer', { transient: true });
    }
    if (stream.sizeExceeded || size > this.config.maxMessageBytes) {
      throw new HispError('HISP_SMTP_MESSAGE_TOO_BIG', `message exceeds the fixed maximum size of ${this.config.maxMessageBytes} bytes`);
    }
    const body = Buffer.concat(chunks, size);
    const bare = findBareLineEnd(body);
    if (bare !== -1) {
      throw new HispError('HISP_SMTP_BARE_LINE_END', `bare ${body[bare] === 0x0d ? 'CR' : 'LF'} at octet ${bare}: lines must end with CRLF (RFC 5321 §2.3.8)`);
    }
    const tx: SmtpTransaction = {
      session,
      mailFrom: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
      recipients: session.envelope.rcptTo.map((r) => r.address),
      body,
      log,
    };
    return this.handlers.message(tx);
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

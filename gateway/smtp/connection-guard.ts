import type { Socket } from 'node:net';
import type { SMTPServer, SMTPServerSession } from 'smtp-server';

/**
 * The parts of smtp-server's SMTPConnection (3.21.x) that {@link guardConnection} adapts. They are
 * not in its public typings; connection-guard.test.ts fails if a release renames them.
 */
export interface SmtpConnectionInternals {
  readonly session: SMTPServerSession;
  readonly secure: boolean;
  _socket: Socket;
  _parser: { _dataMode?: boolean } | false | null;
  send(code: number, data?: string | string[], context?: string | false): void;
  close(): void;
  handler_EHLO(command: Buffer, callback: () => void): void;
  handler_HELO(command: Buffer, callback: () => void): void;
  handler_AUTH(command: Buffer, callback: () => void): void;
  handler_STARTTLS(command: Buffer, callback: () => void): void;
  _onCommand(command: Buffer, callback?: () => void): void;
}

export interface ConnectionGuardOptions {
  /** A certificate is configured: STARTTLS works; without one it is refused (454 4.7.0). */
  tlsAvailable: boolean;
  /**
   * AUTH is neither announced nor accepted before STARTTLS (RFC 4954 §4: a server should not
   * advertise mechanisms that would send a password in the clear; RFC 3207 §4: 530 5.7.0).
   */
  authAfterTlsOnly: boolean;
  /**
   * The whole of one command line must arrive within this time of its first byte: a client that
   * dribbles a byte at a time otherwise outlives any idle time-out (RFC 5321 §4.5.3.2.7 gives the
   * server 5 minutes for a command; it does not oblige it to wait longer for a single line).
   */
  commandLineTimeoutMs: number;
  /** Told when a line took too long (the connection is then answered 421 and closed). */
  onLineTimeout?: () => void;
  /**
   * A session that sends no message is not kept forever (Postfix's smtpd_junk_command_limit and
   * smtpd_hard_error_limit): more than `maxJunkCommands` (NOOP, RSET, VRFY, EXPN, HELP) or more
   * than `maxErrors` refusals since the last message taken end it with 421 4.7.0. Defaults 100, 20.
   */
  maxJunkCommands?: number;
  maxErrors?: number;
  /** Told when the session is ended for either limit. */
  onLimit?: (which: 'junk commands' | 'errors') => void;
}

/** What the listener tells a guarded connection, and what it holds. */
export interface ConnectionGuard {
  /** A message was taken: the counts of junk commands and errors start again. */
  messageAccepted(): void;
  /** The socket is now the TLS one (after STARTTLS): the command-line deadline follows it. */
  secured(socket: Socket): void;
}

const JUNK = new Set(['NOOP', 'RSET', 'VRFY', 'EXPN', 'HELP']);

/** An RFC 3463 enhanced status code at the start of a reply text (class.subject.detail). */
const ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3}(?: |$)/;

/** smtp-server's own connection object for a session (its public `connections` set). */
export function connectionOf(server: SMTPServer, session: SMTPServerSession): SmtpConnectionInternals | undefined {
  for (const c of server.connections as Set<unknown>) {
    const conn = c as SmtpConnectionInternals;
    if (conn.session === session) return conn;
  }
  return undefined;
}

/**
 * Adapts one smtp-server connection to hisp's rules, in the few places its options cannot:
 *
 * - A reply text that already starts with an enhanced status code (hisp's replies carry the code
 *   of the reply table, gateway/smtp/reply-mapping.ts) is sent as it is; smtp-server adds its own
 *   RFC 3463 code only to the replies it makes itself (RFC 2034 §3: every reply but the greeting
 *   and the EHLO response carries one once ENHANCEDSTATUSCODES is announced).
 * - STARTTLS without a configured certificate is refused with 454 4.7.0 (RFC 3207 §4) instead of
 *   being served with smtp-server's bundled, publicly known key.
 * - AUTH is hidden from EHLO and refused with 530 5.7.0 before TLS when it may only follow it.
 * - A command line that has not been completed within commandLineTimeoutMs of its first byte
 *   ends the session (421 4.4.2).
 */
export function guardConnection(conn: SmtpConnectionInternals, options: ConnectionGuardOptions): ConnectionGuard {
  const maxJunk = options.maxJunkCommands ?? 100;
  const maxErrors = options.maxErrors ?? 20;
  let junk = 0;
  let errors = 0;
  let ended = false;
  const end = (which: 'junk commands' | 'errors'): void => {
    ended = true;
    options.onLimit?.(which);
    send(421, `4.7.0 too many ${which} without a message: closing the connection`, false);
  };
  const send = conn.send.bind(conn);
  conn.send = (code, data, context) => {
    if (typeof data === 'string' && ENHANCED_CODE.test(data)) send(code, data, false);
    else send(code, data, context);
    if (code >= 400 && code !== 421 && !ended && ++errors > maxErrors) end('errors');
  };
  const onCommand = conn._onCommand.bind(conn);
  conn._onCommand = (command, callback) => {
    if (ended) return;
    const name = command.toString('latin1', 0, Math.min(command.length, 8)).split(' ')[0]!.trim().toUpperCase();
    if (JUNK.has(name) && ++junk > maxJunk) {
      end('junk commands');
      return;
    }
    onCommand(command, callback);
  };

  if (!options.tlsAvailable) {
    conn.handler_STARTTLS = (_command, callback) => {
      conn.send(454, '4.7.0 TLS not available: this listener has no certificate');
      callback();
    };
  }

  if (options.authAfterTlsOnly) {
    const authBeforeTls = (): boolean => !conn.secure;
    for (const verb of ['handler_EHLO', 'handler_HELO'] as const) {
      const handler = conn[verb].bind(conn);
      conn[verb] = (command, callback) => {
        if (!authBeforeTls()) {
          handler(command, callback);
          return;
        }
        // Only for the EHLO reply's feature list: smtp-server leaves AUTH out of it when the
        // command is disabled for the session; the handler below still answers an AUTH.
        const session = conn.session as SMTPServerSession & { disabledCommands?: string[] };
        const saved = session.disabledCommands;
        session.disabledCommands = [...(saved ?? []), 'AUTH'];
        try {
          handler(command, callback);
        } finally {
          if (saved === undefined) delete session.disabledCommands;
          else session.disabledCommands = saved;
        }
      };
    }
    const auth = conn.handler_AUTH.bind(conn);
    conn.handler_AUTH = (command, callback) => {
      if (authBeforeTls()) {
        conn.send(530, '5.7.0 Must issue a STARTTLS command first');
        callback();
        return;
      }
      auth(command, callback);
    };
  }

  let stopLines = watchCommandLines(conn, conn._socket, options);
  return {
    messageAccepted: () => {
      junk = 0;
      errors = 0;
    },
    secured: (socket) => {
      // The plain socket's clock must not run on: STARTTLS completed its last line.
      stopLines();
      stopLines = watchCommandLines(conn, socket, options);
    },
  };
}

/**
 * Starts the command-line deadline on a socket of the connection: the plain one at connect, the
 * TLS one after STARTTLS (ConnectionGuard.secured). Bytes of a message (DATA mode) do not count
 * here: the DATA transfer has its own deadline (SmtpListener). Returns what stops it.
 */
export function watchCommandLines(conn: SmtpConnectionInternals, socket: Socket, options: Pick<ConnectionGuardOptions, 'commandLineTimeoutMs' | 'onLineTimeout'>): () => void {
  let timer: NodeJS.Timeout | undefined;
  const stop = (): void => {
    clearTimeout(timer);
    timer = undefined;
  };
  const expire = (): void => {
    timer = undefined;
    const parser = conn._parser;
    if (!parser || parser._dataMode || socket.destroyed) return;
    options.onLineTimeout?.();
    conn.send(421, `4.4.2 command line not completed within ${Math.round(options.commandLineTimeoutMs / 1000)} s: closing the connection`);
  };
  socket.on('data', (chunk: Buffer) => {
    const parser = conn._parser;
    if (!parser || parser._dataMode) {
      stop();
      return;
    }
    const lastLf = chunk.lastIndexOf(0x0a);
    if (lastLf === chunk.length - 1) {
      stop(); // every line of this chunk is complete
      return;
    }
    // A line is still open: its clock starts at its first byte (this chunk's, when the chunk
    // also completed an earlier line).
    if (lastLf !== -1) stop();
    timer ??= setTimeout(expire, options.commandLineTimeoutMs);
    timer.unref();
  });
  socket.once('close', stop);
  return stop;
}

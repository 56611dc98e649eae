/**
 * A byte-exact SMTP client for tests that must send what real clients would not (bare LF, bare CR,
 * lines a library would fix): every command is written as given, every reply read whole.
 */
import net from 'node:net';
import tls from 'node:tls';

export interface RawSmtp {
  /** Sends bytes (a command with its CRLF, or DATA content) and reads the next complete reply. */
  send(bytes: string | Buffer): Promise<string>;
  /** Reads the next reply without sending (the greeting). */
  read(): Promise<string>;
  /** Writes bytes and reads nothing (a client that dribbles a command). */
  write(bytes: string | Buffer): void;
  /** STARTTLS, then EHLO again over TLS. */
  startTls(ehloName?: string): Promise<void>;
  /** The TLS handshake and EHLO, when STARTTLS was written already (its 220 not yet read). */
  startTlsAfterReply(ehloName?: string): Promise<void>;
  close(): void;
}

export async function rawSmtp(port: number, host = '127.0.0.1'): Promise<RawSmtp> {
  let socket: net.Socket | tls.TLSSocket = net.connect(port, host);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let buffer = '';
  let waiting: (() => void) | undefined;
  const attach = (s: net.Socket | tls.TLSSocket) => {
    s.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      waiting?.();
    });
    s.on('error', () => waiting?.());
    s.on('close', () => waiting?.());
  };
  attach(socket);
  const read = async (): Promise<string> => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      // A complete reply: lines `ddd-…` then a last `ddd …` line (RFC 5321 §4.2.1).
      const m = /^(?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n/.exec(buffer);
      if (m) {
        buffer = buffer.slice(m[0].length);
        return m[0].trimEnd();
      }
      if (socket.destroyed || Date.now() > deadline) return `closed: ${buffer}`;
      await new Promise<void>((resolve) => {
        waiting = resolve;
        setTimeout(resolve, 100);
      });
    }
  };
  const client: RawSmtp = {
    read,
    write(bytes) {
      socket.write(bytes);
    },
    async send(bytes) {
      socket.write(bytes);
      return read();
    },
    async startTls(ehloName = 'raw.test') {
      socket.write('STARTTLS\r\n');
      await client.startTlsAfterReply(ehloName);
    },
    async startTlsAfterReply(ehloName = 'raw.test') {
      const r = await read();
      if (!r.startsWith('220')) throw new Error(`STARTTLS refused: ${r}`);
      socket.removeAllListeners('data');
      const secure = tls.connect({ socket, rejectUnauthorized: false });
      await new Promise<void>((resolve, reject) => {
        secure.once('secureConnect', resolve);
        secure.once('error', reject);
      });
      socket = secure;
      attach(secure);
      await client.send(`EHLO ${ehloName}\r\n`);
    },
    close() {
      socket.destroy();
    },
  };
  return client;
}

/** AUTH PLAIN's initial response (RFC 4616): NUL user NUL password, base64. */
export function authPlain(user: string, password: string): string {
  return Buffer.from(`\u0000${user}\u0000${password}`).toString('base64');
}

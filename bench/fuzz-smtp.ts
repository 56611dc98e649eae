import net from 'node:net';
import { pino } from 'pino';
import { DEFAULTS } from '../gateway/config/schema.js';
import { HispError } from '../gateway/core/errors.js';
import { SmtpListener, type SmtpEdgeHandlers } from '../gateway/smtp/smtp-listener.js';
import { NASTY_TEXT } from '../test/helpers/mutations.js';
import { mutateSeeds, type FuzzTarget, type Outcome, type Rng } from './fuzz-core.js';

/**
 * SMTP command lines against smtp-server with hisp's listener options (the inbound listener, and the
 * submission listener with AUTH required), over loopback sockets, many lines per connection: every
 * reply must be a well-formed SMTP reply (RFC 5321 §4.2: a three-digit code 2xx–5xx, one code per
 * reply, ASCII text, CRLF, at most 512 octets a line, §4.5.3.1.5), the process must survive.
 * One input is one line; a line is answered unless it is message data (after 354, until ".").
 */
export function smtpCommandTarget(): FuzzTarget {
  return {
    description: "SMTP command lines into smtp-server with hisp's inbound and submission listener options, many lines per connection",
    inputs: 100_000,
    setup: async () => {
      const handlers: SmtpEdgeHandlers = {
        authenticate: (username, password) => Promise.resolve(username === 'fuzz' && password === 'secret'),
        mailFrom: (address) => {
          if (address !== '' && !address.includes('@')) throw new HispError('HISP_SMTP_BAD_ADDRESS', 'not a mailbox');
        },
        rcptTo: (address) => {
          if (!/@fuzz\.test$/i.test(address)) throw new HispError('HISP_SMTP_RELAY_DENIED', 'relay denied');
        },
        message: (tx) => Promise.resolve(`queued (${tx.data.size} octets)`),
      };
      const logger = pino({ level: 'silent' });
      const common = { hostname: 'fuzz.hisp.test', logger, closeTimeoutMs: 100 };
      // Every connection comes from 127.0.0.1: the per-client caps and AUTH lock-outs, which would
      // only shut the fuzzer out, are lifted; the per-session limits stay (they answer 421).
      const unlimited = { maxClients: 1000, perClient: { maxConnections: 500, messagesPerMinute: 0, bytesPerMinute: 0 } };
      const authLimits = { ...DEFAULTS.submission.authLimits, maxFailuresPerClient: 0, maxFailuresPerUser: 0 };
      const listeners = [
        new SmtpListener({ ...DEFAULTS.inbound, host: '127.0.0.1', port: 0, ...unlimited }, handlers, { ...common, name: 'inbound', auth: false }),
        new SmtpListener({ ...DEFAULTS.submission, host: '127.0.0.1', port: 0, ...unlimited }, handlers, { ...common, name: 'submission', auth: true, authLimits }),
      ];
      const ports: number[] = [];
      for (const l of listeners) ports.push((await l.listen()).port);
      // smtp-server greets 100 ms after the connection (its early-talker check), and closes one after 10
      // unrecognized commands: connections are opened ahead, several at a time, so that no line waits.
      let connections = 0;
      const open = (): Promise<SmtpClient> => {
        const c = SmtpClient.open(ports[connections++ % ports.length]!);
        c.catch(() => undefined);
        return c;
      };
      const spares = Array.from({ length: 16 }, open);
      let client: SmtpClient | undefined;
      return {
        generate: commandLine,
        run: async (line: Buffer): Promise<Outcome> => {
          if (client === undefined || client.closed || client.lines >= 250) {
            client?.destroy();
            spares.push(open());
            client = await spares.shift()!;
          }
          return client.send(line);
        },
        close: async () => {
          client?.destroy();
          for (const c of spares) (await c.catch(() => undefined))?.destroy();
          await Promise.all(listeners.map((l) => l.close()));
        },
      };
    },
  };
}

const SCRIPT = ['EHLO client.fuzz.test', 'MAIL FROM:<a@fuzz.test> SIZE=100 BODY=8BITMIME', 'RCPT TO:<b@fuzz.test>', 'DATA', 'From: a@fuzz.test', 'Subject: x', '', '.'];
const VERBS = ['EHLO', 'HELO', 'LHLO', 'MAIL FROM:', 'RCPT TO:', 'DATA', 'RSET', 'NOOP', 'VRFY', 'EXPN', 'HELP', 'AUTH PLAIN', 'AUTH LOGIN', 'AUTH CRAM-MD5', 'AUTH XOAUTH2', 'STARTTLS', 'BDAT', 'QUIT', 'XCLIENT', 'ETRN', 'mail from:', 'rcpt to:', ''];
const ARGS = [
  '<a@fuzz.test>', '<>', '<a@other.test>', '<"q u"@fuzz.test>', '<@r1,@r2:a@fuzz.test>', 'a@fuzz.test', '<a@[127.0.0.1]>', '<a@[IPv6:::1]>',
  'SIZE=100', 'SIZE=99999999999999999999', 'BODY=8BITMIME', 'BODY=BINARYMIME', 'SMTPUTF8', 'RET=HDRS', 'ENVID=x+2Bz', 'NOTIFY=SUCCESS,FAILURE', 'ORCPT=rfc822;a@b',
  'AGZ1enoAc2VjcmV0', 'ZnV6eg==', 'c2VjcmV0', '=', '*', 'client.fuzz.test', '[127.0.0.1]', 'é@fuzz.test', '\u0000', '\r', ':', '<', '>', ' ',
];

/** One line (no LF: smtp-server ends a line at LF, CR stays in it): a step of a transaction, a command, or random text. */
function commandLine(rng: Rng): Buffer {
  const step = rng.index % 40;
  let line: Buffer;
  if (step < SCRIPT.length) {
    line = Buffer.from(SCRIPT[step]!, 'utf8');
    if (rng.chance(30)) line = mutateSeeds(rng, [line], NASTY_TEXT, 64);
  } else if (rng.chance(85)) {
    const parts = [rng.pick(VERBS)];
    for (let n = rng.int(4); n > 0; n--) parts.push(rng.chance(85) ? rng.pick(ARGS) : 'x'.repeat(rng.int(1200)));
    line = Buffer.from(parts.join(rng.chance(90) ? ' ' : ''), 'utf8');
    if (rng.chance(40)) line = mutateSeeds(rng, [line], NASTY_TEXT, 64);
  } else {
    line = rng.bytes(rng.int(200));
  }
  for (let i = 0; i < line.length; i++) if (line[i] === 0x0a) line[i] = 0x20;
  return line;
}

/** A byte-exact SMTP client that checks every reply line. */
class SmtpClient {
  closed = false;
  lines = 0;
  private mode: 'command' | 'data' = 'command';
  private text = '';
  private waiter: ((reply: string[] | Error) => void) | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.text += chunk.toString('latin1');
      this.deliver();
    });
    socket.on('close', () => {
      this.closed = true;
      const w = this.waiter;
      this.waiter = undefined;
      w?.(new Error(`connection closed without a (complete) reply${this.text === '' ? '' : `: ${JSON.stringify(this.text.slice(0, 200))}`}`));
    });
    socket.on('error', () => undefined);
  }

  static async open(port: number): Promise<SmtpClient> {
    const socket = net.connect({ host: '127.0.0.1', port });
    const c = new SmtpClient(socket);
    const greeting = await c.reply();
    if (greeting[0]!.slice(0, 3) !== '220') throw new Error(`greeting ${JSON.stringify(greeting)}`);
    return c;
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Sends one line; the outcome of its reply ('typed' for 4xx and 5xx), or 'ok' for a data line. */
  async send(line: Buffer): Promise<Outcome> {
    this.lines++;
    this.socket.write(Buffer.concat([line, Buffer.from('\r\n')]));
    if (this.mode === 'data' && !(line.length === 1 && line[0] === 0x2e)) return 'ok';
    const reply = await this.reply();
    const code = Number(reply[0]!.slice(0, 3));
    if (code === 354) this.mode = 'data';
    else this.mode = 'command';
    // 220 to a command is STARTTLS accepted: the server now waits for a TLS handshake this client does not make.
    if (code === 220 || code === 221 || code === 421) {
      this.closed = true;
      this.socket.destroy();
    }
    return code >= 400 ? 'typed' : 'ok';
  }

  private reply(): Promise<string[]> {
    return new Promise((resolve, reject) => {
      this.waiter = (r) => (r instanceof Error ? reject(r) : resolve(r));
      if (this.closed) {
        this.waiter = undefined;
        reject(new Error('connection closed'));
        return;
      }
      this.deliver();
    });
  }

  /** Hands a complete reply to the waiter; throws (rejects) on a malformed one. */
  private deliver(): void {
    if (this.waiter === undefined) return;
    const lines: string[] = [];
    let at = 0;
    for (;;) {
      const end = this.text.indexOf('\r\n', at);
      if (end < 0) return;
      const line = this.text.slice(at, end);
      at = end + 2;
      lines.push(line);
      const problem = replyLineProblem(line, lines[0]!);
      const w = this.waiter;
      if (problem !== undefined) {
        this.waiter = undefined;
        this.closed = true;
        this.socket.destroy();
        w(new Error(`malformed reply line ${JSON.stringify(line.slice(0, 200))}: ${problem}`));
        return;
      }
      if (line.length === 3 || line[3] === ' ') {
        this.text = this.text.slice(at);
        this.waiter = undefined;
        w(lines);
        return;
      }
    }
  }
}

/** RFC 5321 §4.2: Reply-code [SP / "-" textstring], codes 2xx–5xx, one code per reply; §4.5.3.1.5: 512 octets with CRLF. */
function replyLineProblem(line: string, first: string): string | undefined {
  if (!/^[2-5][0-9]{2}([ -]|$)/.test(line)) return 'not a reply code 2xx–5xx';
  if (line.slice(0, 3) !== first.slice(0, 3)) return 'another code inside a multi-line reply';
  if (/[^\x20-\x7e\t]/.test(line)) return 'not printable ASCII (RFC 5321 §2.4)';
  if (line.length + 2 > 512) return 'longer than 512 octets';
  return undefined;
}

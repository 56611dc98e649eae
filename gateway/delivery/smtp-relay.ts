import type { ConnectionOptions } from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection';

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
}

/**
 * One SMTP (or LMTP) transaction that hands a message to a next hop: the recipient's HISP found by
 * MX, or a downstream mail server. STARTTLS is used whenever offered (opportunistic, RFC 3207) and
 * required when the domain says so; S/MIME stays the security layer either way (R-SMTP-3). Every
 * outcome is per recipient, classified the way the queue needs it: 2xx delivered, 4xx and any
 * connection failure transient (retry with back-off), 5xx permanent (a DSN to the sender).
 */
export async function relayMessage(
  host: string,
  port: number,
  envelope: { from: string; to: readonly string[] },
  message: Buffer,
  options: SmtpRelayOptions,
): Promise<RelayResult> {
  const connection = new SMTPConnection({
    host,
    port,
    name: options.name,
    lmtp: options.lmtp ?? false,
    requireTLS: options.tlsRequired ?? false,
    opportunisticTLS: !(options.tlsRequired ?? false),
    // Opportunistic TLS to an MX cannot verify a name the DNS gave us (no DANE here): encrypt anyway;
    // when TLS is required, the certificate is verified.
    tls: { rejectUnauthorized: options.tlsRequired ?? false, ...(options.tls ?? {}) },
    connectionTimeout: options.connectTimeoutMs ?? 30_000,
    greetingTimeout: options.connectTimeoutMs ?? 30_000,
    socketTimeout: options.socketTimeoutMs ?? 300_000,
    // Loopback and private next hops are legitimate here (downstream servers, tests).
    allowInternalNetworkInterfaces: true,
    ...(options.servername ? { servername: options.servername } : {}),
  });
  const all = (outcome: RelayRecipientResult['outcome'], reply: RelayReply): RelayResult => ({
    recipients: envelope.to.map((recipient) => ({ recipient, outcome, reply })),
    tls: connection.secure,
  });
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
    return all('transient', errorReply(err, 421, '4.4.1'));
  }
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
      tls,
      recipients: envelope.to.map((recipient) => {
        const err = rejected.get(recipient.toLowerCase());
        if (!rejected.has(recipient.toLowerCase())) return { recipient, outcome: 'delivered', reply: accepted };
        const reply = errorReply(err, 450, '4.0.0');
        return { recipient, outcome: reply.code >= 500 ? 'permanent' : 'transient', reply };
      }),
    };
  } catch (err) {
    const reply = errorReply(err, 451, '4.4.2');
    return all(reply.code >= 500 && reply.code !== 503 ? 'permanent' : 'transient', reply);
  } finally {
    connection.quit();
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

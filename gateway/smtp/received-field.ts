import { rfc5322Date } from '../core/rfc5322-date.js';

export interface ReceivedTrace {
  /** The EHLO/HELO name the client gave. */
  helo?: string;
  remoteAddress?: string;
  /** This gateway's host name. */
  by: string;
  /** RFC 3848 protocol: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, LMTP, or "local" for an internal hand-off. */
  protocol: string;
  id?: string;
  /** Added only for a single recipient (RFC 5321 §7.2: listing several discloses Bcc recipients). */
  recipient?: string;
  date: Date;
}

/** The protocol keyword of RFC 3848 §2 for a session: ESMTP + S (TLS) + A (authenticated). */
export function withProtocol(esmtp: boolean, tls: boolean, authenticated: boolean): string {
  if (!esmtp) return 'SMTP';
  return `ESMTP${tls ? 'S' : ''}${authenticated ? 'A' : ''}`;
}

/**
 * A Received trace field (RFC 5321 §4.4, RFC 5322 §3.6.7), CRLF-terminated, to prepend to a message:
 * the only header field hisp adds to what an edge system submitted, besides the notification request.
 */
export function receivedField(t: ReceivedTrace): Buffer {
  const clean = (s: string) => s.replace(/[^\x21-\x7e]/g, '').slice(0, 200);
  const from = t.helo !== undefined || t.remoteAddress !== undefined ? `from ${clean(t.helo ?? 'unknown')}${t.remoteAddress ? ` ([${clean(t.remoteAddress)}])` : ''}\r\n\t` : '';
  const id = t.id ? ` id ${clean(t.id)}` : '';
  const forPart = t.recipient ? `\r\n\tfor <${clean(t.recipient)}>` : '';
  return Buffer.from(`Received: ${from}by ${clean(t.by)} (hisp) with ${clean(t.protocol)}${id}${forPart};\r\n\t${rfc5322Date(t.date)}\r\n`, 'latin1');
}

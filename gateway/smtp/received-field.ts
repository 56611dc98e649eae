import { isIP } from 'node:net';
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
  // The HELO name is the client's text: no comment or clause delimiters may come through.
  const helo = clean(t.helo ?? '').replace(/[()<>;\\"[\]]/g, '') || 'unknown';
  const from = t.helo !== undefined || t.remoteAddress !== undefined ? `from ${helo}${t.remoteAddress ? ` (${addressLiteral(t.remoteAddress)})` : ''}\r\n\t` : '';
  const id = t.id ? ` id ${clean(t.id)}` : '';
  const forPart = t.recipient ? `\r\n\tfor <${clean(t.recipient)}>` : '';
  return Buffer.from(`Received: ${from}by ${clean(t.by)} (hisp) with ${clean(t.protocol)}${id}${forPart};\r\n\t${rfc5322Date(t.date)}\r\n`, 'latin1');
}

/**
 * A client address as an RFC 5321 §4.1.3 address literal: `[192.0.2.1]`, `[IPv6:2001:db8::1]`; an
 * IPv4-mapped IPv6 address (a dual-stack listener) as the IPv4 it is.
 */
export function addressLiteral(address: string): string {
  const a = address.replace(/[^0-9A-Fa-f:.]/g, '');
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(a);
  if (mapped) return `[${mapped[1]}]`;
  return isIP(a) === 6 ? `[IPv6:${a}]` : `[${a}]`;
}

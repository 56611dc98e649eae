import type { AcceptedSigner } from './process-incoming.js';

/**
 * The Authentication-Results header field (RFC 8601) that hisp puts on every message it delivers to
 * a local endpoint, with the `smime` method of RFC 7281, so that the system behind the endpoint (a
 * PHR, an EHR, a mail store) sees who signed the message and that hisp verified it:
 *
 *     Authentication-Results: hisp.direct.example.org;
 *     	smime=pass (address-bound signer, trusted)
 *     	body.smime-identifier=dr.jones@direct.other.org
 *     	body.smime-serial=0a1b2c
 *     	body.smime-issuer="CN=Other HISP CA,O=Other"
 *
 * - authserv-id: the gateway's host name (`hostname` of the configuration), a token (RFC 8601 §2.5);
 * - one `smime=pass` resinfo per trusted signer (a message is delivered only when at least one signer
 *   verified, chains to an incoming anchor of the recipient and is bound to the From address: that
 *   is RFC 7281 §2's "pass"); the properties are RFC 7281 §3's (ptype `body`): `smime-identifier`,
 *   the identity the certificate is bound to (R-CRT-1: the rfc822Name address, or for a
 *   domain-bound certificate the domain), and `smime-serial` with `smime-issuer`, which name the
 *   certificate and go together (§3.2.3). `smime-part` is left out: the delivered message is the
 *   content hisp took out of the signature, not a message with the signed part still in it;
 * - `none` (RFC 8601 §2.2) for what nobody signed: the notices hisp makes itself (DSNs to a local
 *   sender).
 *
 * The field is folded with a tab before each property (RFC 5322 §2.2.3); it is ASCII: a value that is
 * not is left out (a signer identity), or has its other bytes written `\XX` (RFC 4514 §2.4, in the
 * issuer's distinguished name).
 */
export function authenticationResultsField(authservId: string, signers: readonly AcceptedSigner[] | undefined, sender?: string): Buffer {
  const id = authservId.toLowerCase();
  if (signers === undefined || signers.length === 0) return Buffer.from(`Authentication-Results: ${id}; none\r\n`, 'latin1');
  const resinfos = signers.map((s) => {
    const lines = [`smime=pass (${s.binding}-bound signer, trusted)`];
    const identity = identityOf(s, sender);
    if (identity !== undefined) lines.push(`body.smime-identifier=${identity}`);
    const issuer = quotedString(rfc4514Ascii(s.certificate.issuer));
    // RFC 5322 §2.1.1: a line of at most 998 characters; an issuer that long is left out, with its
    // serial (RFC 7281 §3.2.3: the two go together).
    if (/^[0-9a-f]+$/.test(s.certificate.serialHex) && issuer.length < 900) {
      lines.push(`body.smime-serial=${s.certificate.serialHex}`, `body.smime-issuer=${issuer}`);
    }
    return lines.join('\r\n\t');
  });
  return Buffer.from(`Authentication-Results: ${id};\r\n\t${resinfos.join(';\r\n\t')}\r\n`, 'latin1');
}

/**
 * The message without the Authentication-Results fields that claim `authservId` (compared without
 * regard to case), as slices of it (nothing copied): RFC 8601 §5 says a border MTA "MUST remove or
 * rename" such fields that arrive from outside, since a sender could otherwise forge a verdict in our
 * name. Fields of other authserv-ids stay (they may be the sender's own, and say so). The header
 * section ends at the first empty line (CRLF or bare LF); a message with none is all header.
 */
export function withoutOwnResults(message: Buffer, authservId: string): Buffer[] {
  const own = authservId.toLowerCase();
  const parts: Buffer[] = [];
  let keptFrom = 0;
  let pos = 0;
  for (;;) {
    if (pos >= message.length) break;
    const eol = message.indexOf(0x0a, pos);
    const lineEnd = eol === -1 ? message.length : eol + 1;
    const first = message[pos];
    if (first === 0x0d || first === 0x0a) break; // the empty line: the body follows
    // A field is its first line and every continuation line (starting with SP or HTAB) after it.
    let fieldEnd = lineEnd;
    while (fieldEnd < message.length && (message[fieldEnd] === 0x20 || message[fieldEnd] === 0x09)) {
      const next = message.indexOf(0x0a, fieldEnd);
      fieldEnd = next === -1 ? message.length : next + 1;
    }
    if (claims(message.subarray(pos, fieldEnd), own)) {
      if (pos > keptFrom) parts.push(message.subarray(keptFrom, pos));
      keptFrom = fieldEnd;
    }
    pos = fieldEnd;
  }
  if (keptFrom < message.length) parts.push(message.subarray(keptFrom));
  return parts;
}

/** True when `field` (raw, folded) is an Authentication-Results field whose authserv-id is `own`. */
function claims(field: Buffer, own: string): boolean {
  const text = field.toString('latin1');
  const colon = text.indexOf(':');
  if (colon <= 0 || text.slice(0, colon).trim().toLowerCase() !== 'authentication-results') return false;
  return authservIdOf(text.slice(colon + 1))?.toLowerCase() === own;
}

/**
 * The authserv-id of a field body (RFC 8601 §2.2: `[CFWS] authserv-id`, a token or a quoted-string),
 * after any folding white space and comments; undefined when there is none.
 */
function authservIdOf(body: string): string | undefined {
  let i = 0;
  // CFWS: white space, line breaks and (possibly nested) comments with quoted-pairs (RFC 5322 §3.2.2).
  for (;;) {
    while (i < body.length && /[ \t\r\n]/.test(body[i]!)) i++;
    if (body[i] !== '(') break;
    let depth = 0;
    for (; i < body.length; i++) {
      const c = body[i];
      if (c === '\\') i++;
      else if (c === '(') depth++;
      else if (c === ')' && --depth === 0) {
        i++;
        break;
      }
    }
  }
  if (body[i] === '"') {
    let out = '';
    for (i++; i < body.length && body[i] !== '"'; i++) out += body[i] === '\\' ? (body[++i] ?? '') : body[i];
    return out.replace(/\r?\n/g, '');
  }
  const token = /^[^\s;()"]+/.exec(body.slice(i))?.[0];
  return token === undefined || token === '' ? undefined : token;
}

/** The identity the certificate is bound to, as an RFC 8601 pvalue; undefined when it cannot be one. */
function identityOf(s: AcceptedSigner, sender: string | undefined): string | undefined {
  const candidates =
    s.binding === 'address'
      ? s.certificate.rfc822Names.filter((n) => sender === undefined || n.toLowerCase() === sender.toLowerCase())
      : s.certificate.dnsNames.filter((n) => sender === undefined || n.toLowerCase().replace(/\.$/, '') === sender.slice(sender.lastIndexOf('@') + 1).toLowerCase());
  const name = candidates[0] ?? (s.binding === 'address' ? s.certificate.rfc822Names[0] : s.certificate.dnsNames[0]);
  if (name === undefined) return undefined;
  // pvalue = value / [[local-part] "@"] domain-name: a dot-atom address or a domain as they are.
  if (/^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+(@[A-Za-z0-9.-]+)?$/.test(name)) return name;
  return undefined; // non-ASCII (an internationalized address) or not a name at all
}

/** An RFC 4514 string with every byte outside printable ASCII written `\XX` (RFC 4514 §2.4). */
function rfc4514Ascii(dn: string): string {
  return [...Buffer.from(dn, 'utf8')].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\${b.toString(16).padStart(2, '0')}`)).join('');
}

/** An RFC 5322 quoted-string of printable ASCII: `\` and `"` as quoted-pairs. */
function quotedString(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

import type { SMTPServerSession } from 'smtp-server';
import { MimeEntity } from '../mime/mime-entity.js';
import libmime from 'libmime';
import addressparser from 'nodemailer/lib/addressparser';
import type { SubmissionUser } from '../config/schema.js';
import { addressInScopes } from '../core/address-scope.js';
import { DirectAddress, MAX_ADDRESS_FIELD } from '../core/direct-address.js';
import { HispError } from '../core/errors.js';
import { rfc5322Date } from '../core/rfc5322-date.js';
import type { GatewayContext } from '../flows/gateway-context.js';
import { queueOutbound } from '../flows/queue-outbound.js';
import type { BodySource, MessageEnvelope } from '../store/message-store.js';
import { notificationOptionsOf, requestHeaderPieces } from '../mdn/notification-options.js';
import { receivedField, withProtocol } from './received-field.js';
import { headerOf } from './mail-data.js';
import { PasswordVerifier } from './password-verifier.js';
import type { SmtpEdgeHandlers, SmtpTransaction } from './smtp-listener.js';
import { randomHexId } from '../core/random-id.js';

/** True when `user` may send as `address`: listed as such, or `@domain` of its domain (case-insensitive). */
export function mayUse(user: SubmissionUser, address: string): boolean {
  return addressInScopes(user.mayUseAddresses, address);
}

/** A scrypt hash to verify against for unknown users, so that the reply time does not tell which user names exist. */
const UNKNOWN_USER_HASH = 'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

/**
 * The submission port (RFC 6409) for edge systems (EHRs): AUTH PLAIN/LOGIN against the configured
 * accounts, each allowed to send as its addresses or domains (envelope sender and From field); any
 * recipient (the relay is the point). The message is stored with a Received field, a Message-ID and
 * Date when it had none (RFC 6409 §8.3), and the MDN request of R-MDN-4 (Disposition-Notification-To,
 * Disposition-Notification-Options with X-DIRECT-FINAL-DESTINATION-DELIVERY unless the domain turns it
 * off); nothing else of what was submitted changes. 250 only after the commit.
 */
export function submissionHandlers(ctx: GatewayContext): SmtpEdgeHandlers {
  const users = new Map(ctx.config.submission.users.map((u) => [u.username.toLowerCase(), u]));
  const limits = ctx.config.submission.authLimits;
  // scrypt never holds more than concurrentChecks of libuv's threads, which the store's fdatasyncs need.
  const passwords = new PasswordVerifier({ concurrency: limits.concurrentChecks, rememberMs: Math.round(limits.rememberSuccessMinutes * 60_000) });
  const userOf = (session: SMTPServerSession): SubmissionUser => {
    const name = typeof session.user === 'string' ? session.user : '';
    const user = users.get(name.toLowerCase());
    if (!user) throw new HispError('HISP_SMTP_AUTH_REQUIRED', 'authentication required');
    return user;
  };
  return {
    async authenticate(username, password, _session, client) {
      const user = users.get(username.toLowerCase());
      const ok = await passwords.verify(username, password, user?.passwordHash ?? UNKNOWN_USER_HASH, client);
      return ok && user !== undefined;
    },
    mailFrom(address, session) {
      const user = userOf(session);
      if (address === '') throw new HispError('HISP_SMTP_SENDER_NOT_ALLOWED', 'the null sender cannot submit messages');
      if (!mayUse(user, address)) throw new HispError('HISP_SMTP_SENDER_NOT_ALLOWED', `sender ${address} is not allowed for user ${user.username}`);
    },
    rcptTo(address) {
      try {
        DirectAddress.parse(address);
      } catch {
        throw new HispError('HISP_SMTP_BAD_ADDRESS', `not a valid recipient address: ${address.slice(0, 100)}`);
      }
    },
    async message(tx: SmtpTransaction): Promise<string> {
      const user = userOf(tx.session);
      const { data } = tx;
      const entity = headerOf(data);
      const from = checkOriginators(entity, user, (domain) => ctx.registry.isLocalDomain(domain));
      if (!entity.header('to') && !entity.header('cc') && !entity.header('bcc')) {
        throw new HispError('HISP_MIME_MALFORMED', 'the message has no To, Cc or Bcc field');
      }
      const now = new Date(ctx.now());
      let added = '';
      let messageId = entity.header('message-id')?.trim();
      if (!messageId) {
        messageId = `<${randomHexId(30)}@${ctx.config.hostname}>`;
        added += `Message-ID: ${messageId}\r\n`;
      }
      if (!entity.header('date')) added += `Date: ${rfc5322Date(now)}\r\n`;
      const domain = ctx.registry.domainConfig(from.domain);
      // The notification request (R-MDN-4) goes to the envelope sender: the edge system hears back there.
      const requested = requestHeaderPieces(data.head, tx.mailFrom, { finalDelivery: domain.mdn.requestFinalDelivery }, entity);
      // What the relay will need of the header section (relay-worker.ts headerFacts): the stored
      // message asks for final delivery when we added the request or it had a valid one already.
      const finalDelivery = domain.mdn.requestFinalDelivery || notificationOptionsOf(entity).finalDeliveryRequested;
      const trace = receivedField({
        helo: tx.session.hostNameAppearsAs,
        remoteAddress: tx.session.remoteAddress,
        by: ctx.config.hostname,
        protocol: withProtocol(true, tx.session.secure, true),
        ...(tx.recipients.length === 1 && tx.recipients[0] ? { recipient: tx.recipients[0] } : {}),
        date: now,
      });
      // One copy of the body: the trace field, what was added and the message with its request
      // fields; a message received into a file keeps the rest of it there.
      const head = Buffer.concat([trace, Buffer.from(added, 'latin1'), ...requested]);
      // What the relay (and a failure notice) will parse is the stored form, not what was sent: it
      // is judged here, so that what is acknowledged can be sent (issue 14, item 1).
      judgeStoredHeader(head);
      const body: BodySource = data.whole ? head : { file: data.file!, size: data.size, prefix: [head], from: data.head.length };
      // The queue keeps `body` for the relay, which may hand its memory to a wrap thread: not read after.
      const size = data.whole ? head.length : head.length + data.size - data.head.length;
      const envelope: MessageEnvelope = {
        direction: 'outbound',
        mailFrom: tx.mailFrom,
        recipients: tx.recipients,
        submittedBy: user.username,
        messageId,
        receivedAt: now,
        meta: { client: tx.session.remoteAddress, helo: tx.session.hostNameAppearsAs, tls: tx.session.secure, from: from.toString(), finalDelivery },
      };
      const queueId = await queueOutbound(ctx, envelope, body);
      tx.log.info({ queueId, messageId, user: user.username, recipients: tx.recipients.length, size }, 'submitted');
      return `2.0.0 Ok: queued as ${queueId}`;
    },
  };
}

/** The octets that end an address-like token inside a display name (white space and RFC 5322 specials but `@` and `.`). */
const TOKEN_BREAK = /[\s<>(),;:"\\[\]]+/;

/**
 * The originator fields of a submitted message (RFC 5322 §3.6.2, issue 14, item 2): exactly one
 * From field (§3.6: it occurs once) and at most one Sender field; every mailbox of both is one the
 * user may use, in a local domain. The fields are read with the parser every receiving hisp uses
 * (DirectAddress.fromHeader: nodemailer's addressparser, linear), and an address-like token in a
 * display name or comment (after RFC 2047 decoding) counts as a mailbox too: `From: <alice@x>
 * <bob@x>`, `From: bob@x <alice@x>` or `From: "bob@x" <alice@x>` would let a reader's software
 * show bob. Returns the first From mailbox (the one the relay signs as). Refusals are 553 5.7.1
 * (HISP_SMTP_SENDER_NOT_ALLOWED).
 */
export function checkOriginators(entity: MimeEntity, user: SubmissionUser, isLocalDomain: (domain: string) => boolean): DirectAddress {
  const refuse = (why: string): never => {
    throw new HispError('HISP_SMTP_SENDER_NOT_ALLOWED', why);
  };
  const fields = (name: string) => entity.headers.filter((h) => h.name.toLowerCase() === name);
  const froms = fields('from');
  const senders = fields('sender');
  if (froms.length === 0) throw new HispError('HISP_MIME_MALFORMED', 'the message has no From field (RFC 5322 section 3.6)');
  if (froms.length > 1) refuse('the message has more than one From field (RFC 5322 section 3.6 allows one)');
  if (senders.length > 1) refuse('the message has more than one Sender field (RFC 5322 section 3.6 allows one)');
  let first: DirectAddress | undefined;
  for (const field of [...froms, ...senders]) {
    const name = field.name.toLowerCase() === 'from' ? 'From' : 'Sender';
    if (field.value.length > MAX_ADDRESS_FIELD) refuse(`the ${name} field is longer than ${MAX_ADDRESS_FIELD} characters`);
    const mailboxes = addressparser(field.value, { flatten: true });
    if (mailboxes.length === 0) refuse(`the ${name} field holds no address`);
    const tokens: string[] = [];
    for (const m of mailboxes) {
      tokens.push(m.address);
      const shown = m.name.includes('=?') ? decodeWords(m.name) : m.name;
      for (const t of shown.split(TOKEN_BREAK)) if (/[^@]@[^@]/.test(t)) tokens.push(t);
    }
    for (const token of tokens) {
      let address: DirectAddress;
      try {
        address = DirectAddress.parse(token);
      } catch {
        return refuse(`the ${name} field holds something that is not an address: ${JSON.stringify(token.slice(0, 80))}`);
      }
      if (!mayUse(user, address.toString())) refuse(`${name} address ${address.toString()} is not allowed for user ${user.username}`);
      if (!isLocalDomain(address.domain)) refuse(`${name} address ${address.toString()} is not in a local domain`);
      if (name === 'From') first ??= address;
    }
  }
  return first ?? refuse('the From field holds no address');
}

/** RFC 2047 encoded words decoded (libmime); what cannot be decoded stays as it is. */
function decodeWords(text: string): string {
  try {
    return libmime.decodeWords(text);
  } catch {
    return text;
  }
}

/**
 * Throws HISP_MIME_MALFORMED (554 5.6.0) unless `head`, the start of the message as it will be
 * stored, has a header section the relay and the failure notices can read: the same parser with
 * the same limits (a first line `From x` of an mbox file is a header here no longer, and fields
 * added by the edge count towards the 1,000).
 */
function judgeStoredHeader(head: Buffer): void {
  try {
    MimeEntity.parse(head);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new HispError('HISP_MIME_MALFORMED', `the message cannot be relayed as it would be stored: ${why}`);
  }
}

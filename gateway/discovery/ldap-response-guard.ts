import type { Socket } from 'node:net';
import { lengthOctets, readTlv, UNIVERSAL, type Tlv } from '../agent/der.js';
import { HispError, isHispError } from '../core/errors.js';

/**
 * What an LDAP server may send hisp on one connection (a bind, the rootDSE and at most
 * 2 × MAX_BASE_DNS searches of certificate discovery): a directory entry with a handful of
 * certificates is a few KB, so these are far above any real answer and far below harm.
 */
export const LDAP_RESPONSE_LIMITS = {
  maxMessageBytes: 1024 * 1024,
  maxConnectionBytes: 8 * 1024 * 1024,
  /** BER elements in one message (each becomes objects in ldapts). */
  maxElementsPerMessage: 4096,
} as const;

export type LdapResponseLimits = { readonly [K in keyof typeof LDAP_RESPONSE_LIMITS]: number };

const APPLICATION = 1;
const CONTEXT = 2;
/** protocolOp tags of the responses to what hisp sends (bind, search): RFC 4511 §4.2.2, §4.5.2, §4.5.3; §4.4.1 Notice of Disconnection is an ExtendedResponse. */
const BIND_RESPONSE = 1;
const SEARCH_RESULT_ENTRY = 4;
const SEARCH_RESULT_DONE = 5;
const SEARCH_RESULT_REFERENCE = 19;
const EXTENDED_RESPONSE = 24;
const U = { INTEGER: 2, OCTET_STRING: 4, ENUMERATED: 10, SEQUENCE: 16, SET: 17 } as const;

/**
 * The bytes an LDAP server sends, cut into whole LDAPMessages and checked against the response
 * grammar of RFC 4511 (§4.1.1 LDAPMessage, §4.1.9 LDAPResult, §4.2.2, §4.5.2, §4.5.3, §4.12; §5.1:
 * definite lengths only) before ldapts reads them. ldapts trusts the lengths it is given: an attribute
 * value that claims more octets than its message holds makes its parser loop forever, allocating
 * until the process dies, and many small messages in one TCP segment recurse once each. So ldapts
 * gets one checked message at a time, with its controls removed (hisp sends none, and ldapts's control
 * parser has the same kind of loop), and anything else, or anything over the limits, ends the
 * connection with HISP_DISCOVERY_TEMPORARY: a server that answers garbage is a failing server.
 */
export class LdapResponseFramer {
  private pending: Buffer = Buffer.alloc(0);
  private received = 0;

  constructor(
    /** host:port, for the error message. */
    private readonly server: string,
    private readonly limits: LdapResponseLimits = LDAP_RESPONSE_LIMITS,
  ) {}

  /** The messages `chunk` completes, in order, each checked (and without controls); throws a HispError. */
  push(chunk: Buffer): Buffer[] {
    this.received += chunk.length;
    if (this.received > this.limits.maxConnectionBytes) {
      throw this.refuse(`more than ${this.limits.maxConnectionBytes} bytes on one connection`);
    }
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: Buffer[] = [];
    for (;;) {
      const size = this.messageSize(buf);
      if (size === undefined || buf.length < size) break;
      out.push(this.check(buf.subarray(0, size)));
      buf = buf.subarray(size);
    }
    // A copy, so that a small remainder never keeps a large chunk alive.
    this.pending = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
    return out;
  }

  /** Octets of the message that starts `buf`, or undefined while its length octets are incomplete. */
  private messageSize(buf: Buffer): number | undefined {
    if (buf.length === 0) return undefined;
    if (buf[0] !== 0x30) throw this.refuse(`a message starts with 0x${buf[0]!.toString(16)}, not a SEQUENCE`);
    if (buf.length < 2) return undefined;
    const first = buf[1]!;
    if (first < 0x80) return 2 + first;
    const n = first & 0x7f;
    if (n === 0) throw this.refuse('indefinite length (RFC 4511 §5.1: definite lengths only)');
    if (n > 4) throw this.refuse(`${n} length octets`);
    if (buf.length < 2 + n) return undefined;
    let length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[2 + i]!;
    if (length > this.limits.maxMessageBytes) throw this.refuse(`a message of ${length} bytes (at most ${this.limits.maxMessageBytes})`);
    return 2 + n + length;
  }

  /** One whole LDAPMessage: checked, and re-framed without its controls when it has any. */
  private check(message: Buffer): Buffer {
    let elements = 0;
    const kids = (t: Tlv, what: string): Tlv[] => {
      if (!t.constructed) throw this.refuse(`${what} is not constructed`);
      let list: Tlv[];
      try {
        list = t.children();
      } catch (err) {
        throw this.refuse(`${what}: ${isHispError(err) ? err.message.replace(/^malformed CMS: /, '') : String(err)}`);
      }
      elements += list.length;
      if (elements > this.limits.maxElementsPerMessage) throw this.refuse(`more than ${this.limits.maxElementsPerMessage} elements in a message`);
      for (const c of list) {
        // Definite lengths only (RFC 4511 §5.1), and single-octet tags (every tag of the grammar).
        if (c.end !== c.contentEnd) throw this.refuse(`${what}: an indefinite length`);
        if (c.tagNumber >= 31) throw this.refuse(`${what}: a multi-octet tag`);
      }
      return list;
    };
    const is = (t: Tlv | undefined, tagClass: number, tag: number, constructed: boolean): t is Tlv =>
      t !== undefined && t.is(tagClass, tag) && t.constructed === constructed;
    const octetString = (t: Tlv | undefined, what: string): void => {
      if (!is(t, UNIVERSAL, U.OCTET_STRING, false)) throw this.refuse(`${what} is not an OCTET STRING`);
    };
    const smallInteger = (t: Tlv | undefined, tag: number, what: string): void => {
      // ldapts reads at most 4 octets; messageID and resultCode are non-negative (RFC 4511 §4.1.1, §4.1.9).
      if (!is(t, UNIVERSAL, tag, false) || t.content.length < 1 || t.content.length > 4 || (t.content[0]! & 0x80) !== 0) {
        throw this.refuse(`${what} is not a small non-negative ${tag === U.INTEGER ? 'INTEGER' : 'ENUMERATED'}`);
      }
    };
    /** LDAPResult (§4.1.9) from kids[0]; returns the index after it. */
    const ldapResult = (k: Tlv[], what: string): number => {
      smallInteger(k[0], U.ENUMERATED, `${what} resultCode`);
      octetString(k[1], `${what} matchedDN`);
      octetString(k[2], `${what} diagnosticMessage`);
      if (is(k[3], CONTEXT, 3, true)) {
        const uris = kids(k[3], `${what} referral`);
        if (uris.length === 0) throw this.refuse(`${what} referral is empty`);
        uris.forEach((u) => octetString(u, `${what} referral URI`));
        return 4;
      }
      return 3;
    };
    const nothingAfter = (k: Tlv[], i: number, what: string): void => {
      if (k.length > i) throw this.refuse(`${what} has ${k.length - i} element(s) too many`);
    };

    let top: Tlv;
    try {
      top = readTlv(message, 0, message.length);
    } catch (err) {
      throw this.refuse(isHispError(err) ? err.message.replace(/^malformed CMS: /, '') : String(err));
    }
    const [id, op, controls, ...extra] = kids(top, 'LDAPMessage');
    smallInteger(id, U.INTEGER, 'messageID');
    if (controls !== undefined && !is(controls, CONTEXT, 0, true)) throw this.refuse('LDAPMessage has an element that is not controls');
    if (extra.length > 0) throw this.refuse('LDAPMessage has elements after its controls');
    if (op === undefined || op.tagClass !== APPLICATION || !op.constructed) throw this.refuse('protocolOp is not a response');
    const k = kids(op, 'protocolOp');
    switch (op.tagNumber) {
      case BIND_RESPONSE: {
        let i = ldapResult(k, 'BindResponse');
        if (is(k[i], CONTEXT, 7, false)) i++; // serverSaslCreds
        nothingAfter(k, i, 'BindResponse');
        break;
      }
      case SEARCH_RESULT_DONE:
        nothingAfter(k, ldapResult(k, 'SearchResultDone'), 'SearchResultDone');
        break;
      case EXTENDED_RESPONSE: {
        let i = ldapResult(k, 'ExtendedResponse');
        if (is(k[i], CONTEXT, 10, false)) i++; // responseName
        if (is(k[i], CONTEXT, 11, false)) i++; // responseValue
        nothingAfter(k, i, 'ExtendedResponse');
        break;
      }
      case SEARCH_RESULT_ENTRY: {
        octetString(k[0], 'SearchResultEntry objectName');
        if (!is(k[1], UNIVERSAL, U.SEQUENCE, true)) throw this.refuse('SearchResultEntry attributes is not a SEQUENCE');
        nothingAfter(k, 2, 'SearchResultEntry');
        for (const attribute of kids(k[1], 'PartialAttributeList')) {
          if (!is(attribute, UNIVERSAL, U.SEQUENCE, true)) throw this.refuse('PartialAttribute is not a SEQUENCE');
          const [type, vals, ...more] = kids(attribute, 'PartialAttribute');
          octetString(type, 'PartialAttribute type');
          if (!is(vals, UNIVERSAL, U.SET, true)) throw this.refuse('PartialAttribute vals is not a SET');
          if (more.length > 0) throw this.refuse('PartialAttribute has elements after its values');
          for (const v of kids(vals, 'PartialAttribute vals')) octetString(v, 'attribute value');
        }
        break;
      }
      case SEARCH_RESULT_REFERENCE: {
        if (k.length === 0) throw this.refuse('SearchResultReference is empty');
        k.forEach((u) => octetString(u, 'SearchResultReference URI'));
        break;
      }
      default:
        throw this.refuse(`protocolOp [APPLICATION ${op.tagNumber}] answers nothing hisp asks`);
    }
    if (controls === undefined) return message;
    const body = Buffer.concat([id!.raw, op.raw]);
    return Buffer.concat([Buffer.from([0x30]), lengthOctets(body.length), body]);
  }

  private refuse(what: string): HispError {
    return new HispError('HISP_DISCOVERY_TEMPORARY', `malformed LDAP response from ${this.server}: ${what}`);
  }
}

/**
 * Puts a {@link LdapResponseFramer} between `socket` and its 'data' listeners (ldapts): each message
 * is delivered as a 'data' event of its own; a malformed one destroys the socket with the HispError,
 * which ldapts passes to every pending operation.
 */
export function guardLdapSocket(socket: Socket, server: string, limits: LdapResponseLimits = LDAP_RESPONSE_LIMITS): Socket {
  const framer = new LdapResponseFramer(server, limits);
  const emit = socket.emit.bind(socket);
  socket.emit = ((event: string | symbol, ...args: unknown[]): boolean => {
    if (event !== 'data') return emit(event, ...args);
    if (socket.destroyed) return false;
    let messages: Buffer[];
    try {
      messages = framer.push(args[0] as Buffer);
    } catch (err) {
      socket.destroy(err as Error);
      return false;
    }
    for (const m of messages) {
      if (socket.destroyed) break;
      emit('data', m);
    }
    return messages.length > 0;
  }) as typeof socket.emit;
  return socket;
}

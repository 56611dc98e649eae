// LDAP response messages (RFC 4511) built byte by byte, and a scripted LDAP server on 127.0.0.1 that
// answers hisp's certificate discovery with them: the property tests of gateway/discovery and the
// fuzz run (bench/fuzz.ts) play a hostile or broken directory with these.
import net from 'node:net';
import { MessageParser, SearchEntry } from 'ldapts';
import { ctxConstructed, encode, int, lengthOctets, oid, raw, readTlv, seq, set } from '../../gateway/agent/der.js';
import { OID } from '../../gateway/agent/algorithms.js';

/** One BER element: identifier octet, definite length, content. */
export function tlv(identifier: number, ...content: Buffer[]): Buffer {
  const c = Buffer.concat(content);
  return Buffer.concat([Buffer.from([identifier]), lengthOctets(c.length), c]);
}

/** A small non-negative INTEGER (0x02) or ENUMERATED (0x0a): der.ts's INTEGER, re-tagged. */
export function smallInt(identifier: number, value: number): Buffer {
  const b = encode(int(value));
  b[0] = identifier;
  return b;
}

const str = (s: string | Buffer): Buffer => tlv(0x04, typeof s === 'string' ? Buffer.from(s, 'utf8') : s);
const ldapResult = (code: number, diagnostic = ''): Buffer[] => [smallInt(0x0a, code), str(''), str(diagnostic)];

/** LDAPMessage (§4.1.1) around a protocolOp, with optional raw controls ([0]). */
export function ldapMessage(id: number, op: Buffer, controls?: Buffer): Buffer {
  return tlv(0x30, smallInt(0x02, id), op, ...(controls ? [controls] : []));
}
export const bindResponse = (code: number): Buffer => tlv(0x61, ...ldapResult(code));
export const searchResultDone = (code: number, diagnostic = ''): Buffer => tlv(0x65, ...ldapResult(code, diagnostic));
export const searchResultReference = (uris: readonly string[]): Buffer => tlv(0x73, ...uris.map((u) => str(u)));

export interface LdapAttribute {
  /** As the server spells it (any case). */
  name: string;
  values: readonly Buffer[];
}

/** SearchResultEntry (§4.5.2). */
export function searchResultEntry(dn: string, attributes: readonly LdapAttribute[]): Buffer {
  return tlv(0x64, str(dn), tlv(0x30, ...attributes.map((a) => tlv(0x30, str(a.name), tlv(0x31, ...a.values.map((v) => str(v)))))));
}

/** Controls ([0], §4.1.11) of one control of type `oid` with a value. */
export function controls(controlOid: string, value: Buffer): Buffer {
  return tlv(0xa0, tlv(0x30, str(controlOid), str(value)));
}

/** A degenerate PKCS#7 SignedData holding `certificates` (RFC 2798 §9.1.2 userSMIMECertificate; RFC 5652 §5.1). */
export function certsOnlySignedData(certificates: readonly Buffer[]): Buffer {
  const signedData = seq(int(1), set(), seq(oid(OID.data)), ctxConstructed(0, ...certificates.map((c) => raw(c))), set());
  return encode(seq(oid(OID.signedData), ctxConstructed(0, signedData)));
}

/** What a client request was: its messageID and protocolOp identifier (0x60 bind, 0x63 search, 0x42 unbind). */
export interface LdapRequest {
  id: number;
  op: number;
  /** 0 for the first request of the connection. */
  index: number;
}

export interface ScriptedLdapServer {
  port: number;
  /** Requests received, all connections. */
  readonly requests: LdapRequest[];
  close(): Promise<void>;
}

/**
 * An LDAP server on 127.0.0.1 that answers each request with the bytes `answer` returns (nothing for
 * unbind); `answer` may return `{ bytes, end: true }` to close the connection after writing them.
 */
export async function startScriptedLdapServer(answer: (req: LdapRequest) => Buffer | { bytes: Buffer; end: boolean } | undefined): Promise<ScriptedLdapServer> {
  const requests: LdapRequest[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let pending = Buffer.alloc(0);
    let index = 0;
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        let message;
        try {
          message = readTlv(pending, 0, pending.length);
        } catch {
          return; // incomplete: wait for more (hisp's requests are well-formed)
        }
        pending = pending.subarray(message.end);
        const [id, op] = message.children();
        const req: LdapRequest = { id: id!.content.reduce((v, b) => v * 256 + b, 0), op: message.buf[op!.start]!, index: index++ };
        requests.push(req);
        if (req.op === 0x42) {
          socket.end();
          return;
        }
        const a = answer(req);
        if (a === undefined) continue;
        if (Buffer.isBuffer(a)) socket.write(a);
        else {
          socket.end(a.bytes);
          return;
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Feeds `messages` to ldapts's own parser: events (messages or errors) and what it built of entries (attributes and values). */
export function ldaptsParse(messages: readonly Buffer[]): { events: number; parsedElements: number } {
  const parser = new MessageParser();
  let events = 0;
  let parsedElements = 0;
  parser.on('message', (m) => {
    events++;
    if (m instanceof SearchEntry) for (const a of m.attributes) parsedElements += 1 + a.parsedBuffers.length;
  });
  parser.on('error', () => events++);
  for (const m of messages) parser.read(m, new Map());
  return { events, parsedElements };
}

// Property tests of LDAP certificate discovery against what a directory sends back (R-DIS-8; the
// S&I Certificate Discovery IG): a scripted LDAP server on 127.0.0.1 answers searchLdapCertificates
// with random entries, attributes (names in any case, RFC 4512 §2.5), certificate values (DER,
// PKCS#7 certs-only, junk, empty), references (referrals), rootDSE namingContexts and result codes,
// and then with random mutations of those bytes. Any LDAP server can be made to answer: a domain's
// SRV record names it. So whatever it sends, discovery ends with a result (a failing server is an
// attempt `failed`, and a malformed message a HISP_DISCOVERY_TEMPORARY from the response guard), never
// a crash or a hang; the work is bounded by count (requests, parsed elements), not by a clock.
//
// The fast-check seed is fixed (FC_SEED=… to vary it), so that a failure reproduces.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTlv } from '../agent/der.js';
import { DirectAddress } from '../core/direct-address.js';
import { isHispError } from '../core/errors.js';
import { applyMutation, mutationArbitrary, NASTY_BER } from '../../test/helpers/mutations.js';
import { PKI_DIR } from '../../test/helpers/pki.js';
import {
  bindResponse,
  certsOnlySignedData,
  controls,
  ldapMessage,
  ldaptsParse,
  searchResultDone,
  searchResultEntry,
  searchResultReference,
  startScriptedLdapServer,
  tlv,
  type LdapRequest,
  type ScriptedLdapServer,
} from '../../test/helpers/ldap-messages.js';
import { MAX_BASE_DNS, MAX_LDAP_CERTIFICATES, searchLdapCertificates, type LdapSearchResult } from './ldap-cert-search.js';
import { LDAP_RESPONSE_LIMITS, LdapResponseFramer } from './ldap-response-guard.js';

const SEED = Number(process.env.FC_SEED ?? 20261207);
const params = (numRuns: number): fc.Parameters<unknown> => ({ seed: SEED, numRuns, endOnFailure: true });

const ADDRESS = DirectAddress.parse('patient@ldap.test');
const CERTS = ['recipient-rsa', 'recipient2-rsa', 'recipient-domain', 'sender-rsa'].map((n) => readFileSync(path.join(PKI_DIR, `${n}.cert.der`)));
const CERT_NAMES = ['userCertificate', 'userCertificate;binary', 'userSMIMECertificate', 'userSMIMECertificate;binary'];
const CERT_NAMES_LC = new Set(CERT_NAMES.map((n) => n.toLowerCase()));
/** Operations never decide here: every answer comes at once, or the server closes the connection. */
const NO_TIMEOUTS = { connectTimeoutMs: 600_000, timeoutMs: 600_000 };
/** bind + rootDSE + 2 levels × MAX_BASE_DNS searches + unbind. */
const MAX_REQUESTS = 3 + 2 * MAX_BASE_DNS;

// ------------------------------------------------------------------------------------------------
// The model of a directory's answers

type Value = { kind: 'cert'; cert: number } | { kind: 'smime'; certs: number[] } | { kind: 'junk'; bytes: Buffer } | { kind: 'empty' };
interface Attribute {
  name: string;
  values: Value[];
}
interface Answer {
  entries: Attribute[][];
  references: number;
  code: number;
}
interface Directory {
  bindCode: number;
  rootCode: number;
  contextsName: string;
  contexts: string[];
  answers: Answer[];
}

const EMPTY_ANSWER: Answer = { entries: [], references: 0, code: 0 };

/** Mostly success; else a failure a directory really sends (operationsError, sizeLimitExceeded, referral, noSuchObject, other). */
const resultCode = fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(1, 4, 10, 32, 80) });

/** A name in random case: attribute descriptions are case-insensitive (RFC 4512 §2.5). */
const anyCase = (names: readonly string[]): fc.Arbitrary<string> =>
  fc
    .tuple(fc.constantFrom(...names), fc.array(fc.boolean(), { minLength: 32, maxLength: 32 }), fc.boolean())
    .map(([n, flips, keep]) => (keep ? n : [...n].map((c, i) => (flips[i] ? c.toUpperCase() : c.toLowerCase())).join('')));

const value: fc.Arbitrary<Value> = fc.oneof(
  { weight: 4, arbitrary: fc.nat(CERTS.length - 1).map((cert) => ({ kind: 'cert' as const, cert })) },
  { weight: 2, arbitrary: fc.array(fc.nat(CERTS.length - 1), { minLength: 1, maxLength: 3 }).map((certs) => ({ kind: 'smime' as const, certs })) },
  // Junk starts with 0xff, which no UTF-8 text does: ldapts then hands it as octets whatever its name's case.
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 40 }).map((b) => ({ kind: 'junk' as const, bytes: Buffer.concat([Buffer.from([0xff]), b]) })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'empty' as const }) },
);
const attribute: fc.Arbitrary<Attribute> = fc.record({
  name: fc.oneof({ weight: 3, arbitrary: anyCase(CERT_NAMES) }, { weight: 1, arbitrary: fc.constantFrom('mail', 'cn', 'objectClass', 'userPassword') }),
  values: fc.array(value, { maxLength: 3 }),
});
const answer: fc.Arbitrary<Answer> = fc.record({
  entries: fc.array(fc.array(attribute, { maxLength: 4 }), { maxLength: 3 }),
  references: fc.nat(2),
  code: resultCode,
});
const directory: fc.Arbitrary<Directory> = fc.record({
  bindCode: fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(49, 53) }),
  rootCode: fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constant(1) }),
  contextsName: anyCase(['namingContexts']),
  // Up to 12 naming contexts: more than MAX_BASE_DNS now and then.
  contexts: fc.array(fc.integer({ min: 0, max: 99 }).map((i) => `dc=ctx${i},dc=test`), { maxLength: 12 }),
  answers: fc.array(answer, { maxLength: 2 * MAX_BASE_DNS }),
});

function bytesOf(v: Value): Buffer {
  switch (v.kind) {
    case 'cert':
      return CERTS[v.cert]!;
    case 'smime':
      return certsOnlySignedData(v.certs.map((i) => CERTS[i]!));
    case 'junk':
      return v.bytes;
    case 'empty':
      return Buffer.alloc(0);
  }
}

/** The certificates a value stands for: a certificate, those of a certs-only SignedData, the junk itself, nothing. */
function certificatesOf(v: Value): Buffer[] {
  if (v.kind === 'smime') return v.certs.map((i) => CERTS[i]!);
  const b = bytesOf(v);
  return b.length === 0 ? [] : [b];
}

/** The directory's response messages to request `req` (numbered per connection). */
function responses(d: Directory, req: LdapRequest): Buffer {
  if (req.op === 0x60) return ldapMessage(req.id, bindResponse(d.bindCode));
  if (req.index === 1) {
    const root = searchResultEntry('', [{ name: d.contextsName, values: d.contexts.map((c) => Buffer.from(c)) }]);
    return Buffer.concat([ldapMessage(req.id, root), ldapMessage(req.id, searchResultDone(d.rootCode))]);
  }
  const a = d.answers[req.index - 2] ?? EMPTY_ANSWER;
  return Buffer.concat([
    ...a.entries.map((attrs, i) => ldapMessage(req.id, searchResultEntry(`cn=e${i},dc=test`, attrs.map((at) => ({ name: at.name, values: at.values.map(bytesOf) }))))),
    ...Array.from({ length: a.references }, (_, i) => ldapMessage(req.id, searchResultReference([`ldap://other${i}.test/dc=test`]))),
    ldapMessage(req.id, searchResultDone(a.code)),
  ]);
}

/**
 * What discovery must conclude from `d` (R-DIS-8): a failing bind, rootDSE or search makes the
 * server unavailable; else the first level (address, then domain) with a certificate value in its
 * entries, searched under the first MAX_BASE_DNS naming contexts; at most MAX_LDAP_CERTIFICATES.
 */
function expected(d: Directory): Pick<LdapSearchResult, 'status' | 'binding' | 'certificates'> {
  const unavailable = { status: 'unavailable' as const, binding: undefined, certificates: [] };
  if (d.bindCode !== 0 || d.rootCode !== 0) return unavailable;
  const bases = d.contexts.slice(0, MAX_BASE_DNS);
  let next = 0;
  for (const binding of ['address', 'domain'] as const) {
    const certificates: Buffer[] = [];
    for (let b = 0; b < bases.length; b++) {
      const a = d.answers[next++] ?? EMPTY_ANSWER;
      if (a.code !== 0) return unavailable;
      for (const attrs of a.entries) {
        // One value list per name as spelled (ldapts keeps the last attribute of a name), in first-seen order.
        const byName = new Map<string, Value[]>();
        for (const at of attrs) byName.set(at.name, at.values);
        for (const [name, values] of byName) if (CERT_NAMES_LC.has(name.toLowerCase())) for (const v of values) certificates.push(...certificatesOf(v));
      }
      certificates.splice(MAX_LDAP_CERTIFICATES);
    }
    if (certificates.length > 0) return { status: 'found', binding, certificates };
  }
  return { status: 'none', binding: undefined, certificates: [] };
}

// ------------------------------------------------------------------------------------------------

let server: ScriptedLdapServer;
/** What the server answers the current case with. */
let answerWith: (req: LdapRequest) => Buffer | { bytes: Buffer; end: boolean } | undefined = () => undefined;

beforeAll(async () => {
  server = await startScriptedLdapServer((req) => answerWith(req));
});
afterAll(async () => {
  await server.close();
});

/** One discovery against the scripted server; the requests it made. */
async function discover(answer: typeof answerWith): Promise<{ result: LdapSearchResult; requests: LdapRequest[] }> {
  answerWith = answer;
  const before = server.requests.length;
  const result = await searchLdapCertificates([{ target: '127.0.0.1', port: server.port, priority: 0, weight: 0 }], ADDRESS, NO_TIMEOUTS);
  return { result, requests: server.requests.slice(before) };
}

describe('searchLdapCertificates against a random directory (R-DIS-8)', () => {
  it('concludes exactly what the answers say: found at the first level with certificates, none, or unavailable', async () => {
    await fc.assert(
      fc.asyncProperty(directory, async (d) => {
        const { result, requests } = await discover((req) => responses(d, req));
        const want = expected(d);
        expect(result.status).toBe(want.status);
        expect(result.binding).toBe(want.binding);
        expect(result.certificates.map((c) => c.toString('hex'))).toEqual(want.certificates.map((c) => c.toString('hex')));
        expect(result.attempts).toHaveLength(1);
        expect(result.attempts[0]!.status).toBe(want.status === 'unavailable' ? 'failed' : 'answered');
        if (want.status === 'unavailable') expect(result.transient).toBe(true);
        expect(requests.length).toBeLessThanOrEqual(MAX_REQUESTS);
      }),
      params(150),
    );
  });

  it('any mutation of any answer, then the connection closed: a result, never a crash or a hang, work bounded by count', async () => {
    const mutation = fc.array(mutationArbitrary(NASTY_BER), { minLength: 1, maxLength: 4 });
    await fc.assert(
      fc.asyncProperty(directory, fc.nat(MAX_REQUESTS), mutation, async (d, target, ms) => {
        const sent: Buffer[] = [];
        const { result, requests } = await discover((req) => {
          const bytes = responses(d, req);
          if (req.index !== target) {
            sent.push(bytes);
            return bytes;
          }
          const mutated = ms.reduce(applyMutation, bytes);
          sent.push(mutated);
          return { bytes: mutated, end: true };
        });
        expect(['found', 'none', 'unavailable']).toContain(result.status);
        expect(['answered', 'failed']).toContain(result.attempts[0]!.status);
        expect(requests.length).toBeLessThanOrEqual(MAX_REQUESTS);
        // Nothing invented: every certificate is octets the server sent.
        const all = Buffer.concat(sent);
        for (const c of result.certificates) expect(all.includes(c)).toBe(true);
        expect(result.certificates.length).toBeLessThanOrEqual(MAX_LDAP_CERTIFICATES);
      }),
      params(250),
    );
  });
});

// ------------------------------------------------------------------------------------------------
// The guard between the socket and ldapts

/** Splits `bytes` at the given cut points (TCP may deliver any segmentation). */
function chunks(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  return out;
}

/** Pushes the chunks; the messages passed, and the error that ended the connection if any. */
function frame(parts: readonly Buffer[]): { messages: Buffer[]; error: unknown } {
  const framer = new LdapResponseFramer('127.0.0.1:389');
  const messages: Buffer[] = [];
  try {
    for (const p of parts) messages.push(...framer.push(p));
  } catch (err) {
    return { messages, error: err };
  }
  return { messages, error: undefined };
}

const validStream = fc.tuple(directory, fc.nat(20), fc.boolean()).map(([d, index, withControls]) => {
  const bytes = responses(d, { id: 7, op: index === 0 ? 0x60 : 0x63, index });
  if (!withControls) return bytes;
  // The same messages with a (paged results) control each, which the guard drops.
  const paged = controls('1.2.840.113556.1.4.319', Buffer.from('300b020100040661626364656667', 'hex'));
  return Buffer.concat(new LdapResponseFramer('x').push(bytes).map((m) => tlv(0x30, readTlv(m, 0, m.length).content, paged)));
});

describe('LdapResponseFramer (what reaches ldapts)', () => {
  it('a well-formed stream, in any segmentation: every message passed whole and in order, ldapts reads each once', () => {
    fc.assert(
      fc.property(directory, fc.nat(20), fc.array(fc.nat(), { maxLength: 8 }), (d, index, cuts) => {
        const bytes = responses(d, { id: 3, op: index === 0 ? 0x60 : 0x63, index });
        const { messages, error } = frame(chunks(bytes, cuts));
        expect(error).toBeUndefined();
        expect(Buffer.concat(messages).equals(bytes)).toBe(true);
        expect(ldaptsParse(messages).events).toBe(messages.length);
      }),
      params(300),
    );
  });

  it('random bytes and mutated streams, in any segmentation: whole checked messages or HISP_DISCOVERY_TEMPORARY; ldapts builds at most one element per octet', () => {
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.concat([Buffer.from([0x30]), Buffer.from(b)])),
      fc.tuple(validStream, fc.array(mutationArbitrary(NASTY_BER), { minLength: 1, maxLength: 4 })).map(([s, ms]) => ms.reduce(applyMutation, s)),
    );
    fc.assert(
      fc.property(input, fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
        const { messages, error } = frame(chunks(bytes, cuts));
        if (error !== undefined) {
          if (!isHispError(error)) throw error instanceof Error ? error : new Error('a non-Error was thrown', { cause: error });
          expect(error.code).toBe('HISP_DISCOVERY_TEMPORARY');
          expect(error.message).toMatch(/^malformed LDAP response from 127\.0\.0\.1:389: /);
        }
        let octets = 0;
        for (const m of messages) {
          expect(m[0]).toBe(0x30);
          octets += m.length;
        }
        expect(octets).toBeLessThanOrEqual(bytes.length);
        // ldapts reads each passed message exactly once, and its work is bounded by the octets.
        const parsed = ldaptsParse(messages);
        expect(parsed.events).toBe(messages.length);
        expect(parsed.parsedElements).toBeLessThanOrEqual(octets);
      }),
      params(2000),
    );
  });

  it('drops the controls of a message (hisp asks for none; ldapts loops on some malformed ones)', () => {
    const entry = searchResultEntry('cn=a', [{ name: 'userCertificate', values: [CERTS[0]!] }]);
    const withControls = ldapMessage(5, entry, controls('1.2.840.113556.1.4.319', Buffer.from([0x30, 0x84, 0x7f])));
    const { messages, error } = frame([withControls]);
    expect(error).toBeUndefined();
    expect(messages).toEqual([ldapMessage(5, entry)]);
  });
});

// ------------------------------------------------------------------------------------------------
// Fixed cases: each found by these tests or by reading ldapts, each failing on the code before the guard

describe('hostile directories (fixed cases)', () => {
  const root = (id: number, contexts: readonly string[], name = 'namingContexts'): Buffer =>
    Buffer.concat([ldapMessage(id, searchResultEntry('', [{ name, values: contexts.map((c) => Buffer.from(c)) }])), ldapMessage(id, searchResultDone(0))]);

  it('a 25-octet entry whose value claims more octets than its message holds: the server fails, the process lives (ldapts looped, allocating until the heap ran out)', async () => {
    // 30 17 02 01 id 64 12 04 00 30 0e 30 0c 04 01 'a' 31 02 04 7f: the value's length 0x7f exceeds the message.
    const poison = (id: number): Buffer => Buffer.from([0x30, 0x13, 0x02, 0x01, id, 0x64, 0x0e, 0x04, 0x00, 0x30, 0x0a, 0x30, 0x08, 0x04, 0x01, 0x61, 0x31, 0x03, 0x04, 0x7f, 0x00]);
    const { result } = await discover((req) => (req.op === 0x60 ? ldapMessage(req.id, bindResponse(0)) : poison(req.id)));
    expect(result.status).toBe('unavailable');
    expect(result.transient).toBe(true);
    expect(result.attempts[0]).toMatchObject({ status: 'failed' });
    expect(result.attempts[0]!.detail).toMatch(/malformed LDAP response from 127\.0\.0\.1:\d+: /);
  });

  it('50,000 small messages in one segment before the certificate: found (ldapts recursed once per message, RangeError out of the socket handler)', async () => {
    const { result } = await discover((req) => {
      if (req.op === 0x60) return ldapMessage(req.id, bindResponse(0));
      if (req.index === 1) return root(req.id, ['dc=test']);
      const ref = ldapMessage(req.id, searchResultReference(['ldap://a']));
      const entry = ldapMessage(req.id, searchResultEntry('cn=p', [{ name: 'userCertificate', values: [CERTS[0]!] }]));
      return Buffer.concat([...Array<Buffer>(50_000).fill(ref), entry, ldapMessage(req.id, searchResultDone(0))]);
    });
    expect(result.status).toBe('found');
    expect(result.certificates).toEqual([CERTS[0]]);
  });

  it('attribute names in any case are the same attribute (RFC 4512 §2.5): USERCERTIFICATE;BINARY and namingcontexts', async () => {
    const { result } = await discover((req) => {
      if (req.op === 0x60) return ldapMessage(req.id, bindResponse(0));
      if (req.index === 1) return root(req.id, ['dc=test'], 'namingcontexts');
      return Buffer.concat([
        ldapMessage(req.id, searchResultEntry('cn=p', [{ name: 'USERCERTIFICATE;BINARY', values: [CERTS[1]!] }])),
        ldapMessage(req.id, searchResultDone(0)),
      ]);
    });
    expect(result).toMatchObject({ status: 'found', binding: 'address' });
    expect(result.certificates).toEqual([CERTS[1]]);
  });

  it(`searches at most ${MAX_BASE_DNS} naming contexts of a rootDSE that lists 1,000 (2 levels × ${MAX_BASE_DNS} searches, not 2,000)`, async () => {
    const contexts = Array.from({ length: 1000 }, (_, i) => `dc=c${i}`);
    const { result, requests } = await discover((req) => {
      if (req.op === 0x60) return ldapMessage(req.id, bindResponse(0));
      if (req.index === 1) return root(req.id, contexts);
      return ldapMessage(req.id, searchResultDone(0));
    });
    expect(result.status).toBe('none');
    expect(result.attempts[0]!.baseDns).toEqual(contexts.slice(0, MAX_BASE_DNS));
    expect(requests.filter((r) => r.op === 0x63)).toHaveLength(1 + 2 * MAX_BASE_DNS);
  });

  it('a message that announces more than the limit is refused on its length octets, before its content arrives', async () => {
    const huge = LDAP_RESPONSE_LIMITS.maxMessageBytes + 1;
    const { result } = await discover((req) => {
      if (req.op === 0x60) return ldapMessage(req.id, bindResponse(0));
      return Buffer.from([0x30, 0x84, (huge >>> 24) & 0xff, (huge >>> 16) & 0xff, (huge >>> 8) & 0xff, huge & 0xff, 0x02, 0x01, req.id]);
    });
    expect(result.status).toBe('unavailable');
    expect(result.attempts[0]!.detail).toMatch(new RegExp(`a message of ${huge} bytes`));
  });

  it(`a server that sends more than ${LDAP_RESPONSE_LIMITS.maxConnectionBytes} bytes on one connection is cut off`, async () => {
    const { result } = await discover((req) => {
      if (req.op === 0x60) return ldapMessage(req.id, bindResponse(0));
      if (req.index === 1) return root(req.id, ['dc=test']);
      // 9 entries of 1 MB - a little each, no certificate attribute: 9 MB in all.
      const entry = ldapMessage(req.id, searchResultEntry('cn=big', [{ name: 'description', values: [Buffer.alloc(1_000_000 - 100, 0x41)] }]));
      return Buffer.concat([...Array<Buffer>(9).fill(entry), ldapMessage(req.id, searchResultDone(0))]);
    });
    expect(result.status).toBe('unavailable');
    expect(result.attempts[0]!.detail).toMatch(/more than 8388608 bytes on one connection/);
  });
});

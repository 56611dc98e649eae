import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import dnsPacket from 'dns-packet';
import { decodeBer, decodeOid, type Tlv } from '../gateway/agent/der.js';
import { decodeBase64, MimeEntity, splitMultipart } from '../gateway/mime/mime-entity.js';
import { openEnvelope, type DecryptionCredential } from '../gateway/agent/open-envelope.js';
import { unwrapMessage } from '../gateway/agent/unwrap-message.js';
import { verifySignature } from '../gateway/agent/verify-signature.js';
import { wrapMessage } from '../gateway/agent/wrap-message.js';
import { Certificate } from '../gateway/core/certificate.js';
import { HispError } from '../gateway/core/errors.js';
import { DirectAddress } from '../gateway/core/direct-address.js';
import { certRecordUrl, decodeCertRdata, encodeCertRdata, CERT_TYPES } from '../gateway/discovery/cert-record.js';
import { decodeReply } from '../gateway/discovery/dns-client.js';
import { searchLdapCertificates } from '../gateway/discovery/ldap-cert-search.js';
import { LdapResponseFramer } from '../gateway/discovery/ldap-response-guard.js';
import { buildMdn } from '../gateway/mdn/mdn-builder.js';
import { parseMdn } from '../gateway/mdn/mdn-parser.js';
import { buildDsn, failedRecipient } from '../gateway/queue/dsn.js';
import { parseDsn } from '../gateway/queue/dsn-parser.js';
import { renderCcda } from '../gateway/documents/ccda-renderer.js';
import { unpackXdm } from '../gateway/documents/xdm-unpack.js';
import {
  bindResponse,
  certsOnlySignedData,
  controls,
  ldapMessage,
  ldaptsParse,
  searchResultDone,
  searchResultEntry,
  searchResultReference,
  smallInt,
  startScriptedLdapServer,
  tlv,
} from '../test/helpers/ldap-messages.js';
import { NASTY_BER, NASTY_TEXT } from '../test/helpers/mutations.js';
import { benchCredentials, pkiPath, REPO_ROOT } from './agent-workload.js';
import { mutateSeeds, type FuzzRunner, type FuzzTarget, type Outcome, type Rng } from './fuzz-core.js';
import { smtpCommandTarget } from './fuzz-smtp.js';

const VECTORS = join(REPO_ROOT, '..', 'shared', 'vectors');

/** Files of the shared vectors (when present beside the repository) whose text matches `pattern`. */
function vectorFiles(pattern: RegExp): Buffer[] {
  const out: Buffer[] = [];
  const walk = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const s = statSync(p);
      if (s.isDirectory()) walk(p);
      else if (s.size < 200_000) {
        const b = readFileSync(p);
        if (pattern.test(b.toString('latin1'))) out.push(b);
      }
    }
  };
  for (const group of ['java-ri', 'dotnet-ri']) walk(join(VECTORS, group, 'messages'));
  return out;
}

/** The wrapped messages, envelopes and signatures every CMS-reading target starts from. */
interface AgentSeeds {
  messages: Buffer[];
  envelopes: Buffer[];
  signedEntity: Buffer;
  signedContent: Buffer;
  signatures: Buffer[];
  certificates: Buffer[];
  decrypt: DecryptionCredential[];
}

/**
 * Wrapped messages are not reproducible (random content keys, IVs and RSA padding), and an input
 * must be made again from its number alone (--replay): the seeds are files, written once by
 * `node dist/bench/fuzz.js --write-seeds` (signer sender-rsa, recipient recipient-rsa of the test PKI).
 */
const AGENT_SEED_FILES = { cbc: 'wrapped-aes256-cbc.eml', gcm: 'wrapped-aes128-gcm.eml' } as const;
const SEED_DIR = join(REPO_ROOT, 'test', 'fixtures', 'fuzz');

/** A message that is always the same octets: headers and a base64 body of about 1.5 KB. */
function fixedMessage(): Buffer {
  const body = Buffer.alloc(1100);
  for (let i = 0; i < body.length; i++) body[i] = (i * 131 + 7) & 0xff;
  const lines = body.toString('base64').match(/.{1,76}/g)!.join('\r\n');
  return Buffer.from(
    'From: Sender <sender@sender.test>\r\nTo: patient@recipient.test\r\nSubject: Continuity of care document\r\n' +
      'Message-ID: <fuzz@sender.test>\r\nDate: Wed, 25 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n' +
      `Content-Type: application/xml; name=ccda.xml\r\nContent-Transfer-Encoding: base64\r\n\r\n${lines}\r\n`,
    'latin1',
  );
}

/** Writes the wrapped-message seeds (see AGENT_SEED_FILES). */
export function writeAgentSeeds(): string[] {
  const { signers, recipients } = benchCredentials();
  const signingTime = new Date(Date.UTC(2026, 0, 1));
  const made = {
    cbc: wrapMessage(fixedMessage(), { signers, recipients, signingTime }).message,
    gcm: wrapMessage(fixedMessage(), { signers, recipients, signingTime, cipher: 'aes128-gcm', keyTransport: 'rsa-pkcs1', recipientIdentifier: 'subjectKeyIdentifier' }).message,
  };
  mkdirSync(SEED_DIR, { recursive: true });
  return (Object.keys(made) as (keyof typeof made)[]).map((k) => {
    const p = join(SEED_DIR, AGENT_SEED_FILES[k]);
    writeFileSync(p, made[k]);
    return p;
  });
}

let agentSeeds: AgentSeeds | undefined;
function agent(): AgentSeeds {
  if (agentSeeds) return agentSeeds;
  const { decrypt } = benchCredentials();
  const messages = Object.values(AGENT_SEED_FILES).map((f) => readFileSync(join(SEED_DIR, f)));
  const envelopes = messages.map((m) => decodeBase64(MimeEntity.parse(m).body));
  const signedEntity = openEnvelope(envelopes[0]!, decrypt).content;
  const signed = MimeEntity.parse(signedEntity);
  const [signedContent, signaturePart] = splitMultipart(signed.body, signed.contentType().params.boundary!);
  const signatures = [decodeBase64(MimeEntity.parse(signaturePart!).body)];
  const certificates = ['sender-rsa', 'sender-ec256', 'intermediate-ca', 'recipient-domain'].map((n) => readFileSync(pkiPath(n, 'cert.der')));
  agentSeeds = { messages, envelopes, signedEntity, signedContent: signedContent!, signatures, certificates, decrypt };
  return agentSeeds;
}

/** Every element of a BER tree, children read: the walk a CMS reader does. */
function walk(t: Tlv): void {
  if (t.constructed) for (const c of t.children()) walk(c);
  else if (t.tagClass === 0 && t.tagNumber === 6) decodeOid(t.content);
}

const ok = (): Outcome => 'ok';

/** A synchronous target from seeds and a function that reads one input. */
function fromSeeds(description: string, inputs: number, seeds: () => Buffer[], read: (input: Buffer) => unknown, nasty = NASTY_BER, maxRandom = 512): FuzzTarget {
  return {
    description,
    inputs,
    setup: () => {
      const s = seeds();
      return Promise.resolve({
        generate: (rng: Rng) => mutateSeeds(rng, s, nasty, maxRandom),
        run: (input: Buffer) => {
          read(input);
          return ok();
        },
      });
    },
  };
}

// ------------------------------------------------------------------------------------------------ MIME

function readMime(input: Buffer): void {
  const e = MimeEntity.parse(input);
  e.header('from');
  const ct = e.contentType();
  const boundary = ct.params.boundary;
  if (ct.mediaType.startsWith('multipart/') && boundary !== undefined) {
    for (const part of splitMultipart(e.body, boundary)) MimeEntity.parse(part).contentType();
  }
  if (/base64/i.test(e.header('content-transfer-encoding') ?? '')) decodeBase64(e.body);
}

// ------------------------------------------------------------------------------------------------ DNS

function dnsSeeds(): Buffer[] {
  const cert = readFileSync(pkiPath('recipient-rsa', 'cert.der'));
  const pkix = encodeCertRdata({ certType: CERT_TYPES.PKIX, keyTag: 0, algorithm: 0, data: cert });
  const ipkix = encodeCertRdata({ certType: CERT_TYPES.IPKIX, keyTag: 0, algorithm: 0, data: Buffer.from('http://certs.example/p.cer') });
  const packets: dnsPacket.Packet[] = [
    {
      type: 'response',
      id: 1,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: [{ type: 'CERT', name: 'p.ldap.test' }],
      answers: [
        { type: 'CERT', name: 'p.ldap.test', ttl: 300, data: pkix },
        { type: 'CERT', name: 'p.ldap.test', ttl: 300, data: ipkix },
      ],
    },
    {
      type: 'response',
      id: 2,
      questions: [{ type: 'SRV', name: '_ldap._tcp.ldap.test' }],
      answers: [{ type: 'SRV', name: '_ldap._tcp.ldap.test', ttl: 60, data: { priority: 0, weight: 5, port: 389, target: 'ldap.ldap.test' } }],
      additionals: [{ type: 'A', name: 'ldap.ldap.test', ttl: 60, data: '192.0.2.7' }],
    },
    { type: 'response', id: 3, questions: [{ type: 'MX', name: 'ldap.test' }], answers: [{ type: 'MX', name: 'ldap.test', ttl: 60, data: { preference: 10, exchange: 'mx.ldap.test' } }] },
    {
      type: 'response',
      id: 4,
      questions: [{ type: 'AAAA', name: 'a.ldap.test' }],
      answers: [
        { type: 'CNAME', name: 'a.ldap.test', ttl: 60, data: 'b.ldap.test' },
        { type: 'AAAA', name: 'b.ldap.test', ttl: 60, data: '2001:db8::1' },
      ],
      authorities: [{ type: 'SOA', name: 'ldap.test', ttl: 60, data: { mname: 'ns.ldap.test', rname: 'h.ldap.test', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 60 } }],
    },
  ];
  const seeds = packets.map((p) => dnsPacket.encode(p));
  const vectors = join(VECTORS, 'dotnet-ri', 'dns');
  if (existsSync(vectors)) for (const f of readdirSync(vectors)) seeds.push(readFileSync(join(vectors, f)));
  return seeds;
}

function readCertRdata(input: Buffer): void {
  const rec = decodeCertRdata(input);
  certRecordUrl(rec);
  // What a CERT record carries is read as a certificate (HISP_CERT_… when it is none).
  if (rec.certType === CERT_TYPES.PKIX) Certificate.fromDer(rec.data);
}

// ------------------------------------------------------------------------------------------------ LDAP

function ldapSeeds(): Buffer[] {
  const certs = agent().certificates;
  const entry = searchResultEntry('cn=p,dc=test', [
    { name: 'mail', values: [Buffer.from('p@ldap.test')] },
    { name: 'userCertificate;binary', values: [certs[0]!, certs[1]!] },
    { name: 'userSMIMECertificate', values: [certsOnlySignedData([certs[2]!, certs[3]!])] },
  ]);
  // A Notice of Disconnection (RFC 4511 §4.4.1): unsolicited, messageID 0, an ExtendedResponse.
  const notice = tlv(0x78, smallInt(0x0a, 52), tlv(0x04), tlv(0x04), tlv(0x8a, Buffer.from('1.3.6.1.4.1.1466.20036')));
  const pagedControl = controls('1.2.840.113556.1.4.319', Buffer.from('30050201000400', 'hex'));
  return [
    ldapMessage(1, bindResponse(0)),
    Buffer.concat([ldapMessage(2, searchResultEntry('', [{ name: 'namingContexts', values: [Buffer.from('dc=test'), Buffer.from('o=other')] }])), ldapMessage(2, searchResultDone(0))]),
    Buffer.concat([ldapMessage(3, entry), ldapMessage(3, searchResultReference(['ldap://b.test/dc=test'])), ldapMessage(3, searchResultDone(0))]),
    Buffer.concat([ldapMessage(4, entry, pagedControl), ldapMessage(4, searchResultDone(10, 'referral'))]),
    ldapMessage(0, notice),
  ];
}

/** The guard, then ldapts on what it passes, in a random segmentation. */
function ldapTarget(): FuzzTarget {
  return {
    description: 'LDAP responses: LdapResponseFramer in random segments, then ldapts on each message passed',
    inputs: 150_000,
    setup: () => {
      const seeds = ldapSeeds();
      let cuts: number[] = [];
      return Promise.resolve({
        generate: (rng: Rng) => {
          const input = mutateSeeds(rng, seeds);
          cuts = Array.from({ length: rng.int(4) }, () => rng.int(input.length + 1)).sort((a, b) => a - b);
          return input;
        },
        run: (input: Buffer) => {
          const framer = new LdapResponseFramer('fuzz');
          const passed: Buffer[] = [];
          let from = 0;
          for (const at of [...cuts, input.length]) {
            passed.push(...framer.push(input.subarray(from, at)));
            from = at;
          }
          const parsed = ldaptsParse(passed);
          const octets = passed.reduce((n, m) => n + m.length, 0);
          // ldapts read each message once, and built no more elements than it was given octets.
          if (parsed.events !== passed.length) throw new Error(`ldapts gave ${parsed.events} events for ${passed.length} messages`);
          if (parsed.parsedElements > octets) throw new Error(`ldapts built ${parsed.parsedElements} elements from ${octets} octets`);
          return ok();
        },
      });
    },
  };
}

/**
 * Certificate discovery over a socket against a directory whose answer to one request is mutated,
 * the connection then closed. A new ldapts client numbers its requests 2, 3, 4…, so the answer to
 * request k (bind, rootDSE, searches) is known before it is asked: input = [k] + that answer, mutated.
 */
function ldapSearchTarget(): FuzzTarget {
  return {
    description: 'searchLdapCertificates against a scripted directory, one answer mutated, the connection then closed',
    inputs: 10_000,
    setup: async () => {
      const certs = agent().certificates;
      const answer = (index: number, id = index + 2): Buffer => {
        if (index === 0) return ldapMessage(id, bindResponse(0));
        if (index === 1) return Buffer.concat([ldapMessage(id, searchResultEntry('', [{ name: 'namingContexts', values: [Buffer.from('dc=test')] }])), ldapMessage(id, searchResultDone(0))]);
        const entry = searchResultEntry('cn=p', [{ name: 'userCertificate;binary', values: [certs[index % certs.length]!] }]);
        return Buffer.concat([ldapMessage(id, entry), ldapMessage(id, searchResultReference(['ldap://x'])), ldapMessage(id, searchResultDone(0))]);
      };
      let current: Buffer = Buffer.from([0]);
      const server = await startScriptedLdapServer((req) => (req.index === current[0] ? { bytes: current.subarray(1), end: true } : answer(req.index, req.id)));
      const address = DirectAddress.parse('p@ldap.test');
      const targets = [{ target: '127.0.0.1', port: server.port, priority: 0, weight: 0 }];
      return {
        generate: (rng: Rng) => {
          const k = rng.int(4);
          return Buffer.concat([Buffer.from([k]), mutateSeeds(rng, [answer(k)])]);
        },
        run: async (input: Buffer) => {
          current = input.length > 0 ? input : Buffer.from([0]);
          const r = await searchLdapCertificates(targets, address, { connectTimeoutMs: 600_000, timeoutMs: 600_000 });
          if (!['found', 'none', 'unavailable'].includes(r.status)) throw new Error(`status ${r.status}`);
          // A failing server is the typed outcome here (searchLdapCertificates reports, never throws).
          return r.status === 'unavailable' ? 'typed' : 'ok';
        },
        close: () => server.close(),
      };
    },
  };
}

// ------------------------------------------------------------------------------------------------ MDN, DSN

function mdnSeeds(): Buffer[] {
  const original = { messageId: '<o@s.example>', from: 'a@s.example', to: 'b@r.example', subject: 'S', headers: Buffer.from('From: a@s.example\r\nSubject: S\r\n\r\n') };
  const built = (['processed', 'dispatched', 'failed'] as const).map(
    (disposition) =>
      buildMdn({ original, disposition, reportingUa: { name: 'r.example', product: 'hisp' }, finalDeliveryExtension: disposition !== 'processed', messageId: '<m@r.example>', date: new Date(0), boundary: `mdn-${disposition}` }).message,
  );
  return [...built, ...vectorFiles(/disposition-notification/i)];
}

/** DSNs of every action (RFC 3464 §2.3.3), ORCPT and ENVID, retry dates, then the vectors' DSNs. */
function dsnSeeds(): Buffer[] {
  const built = buildDsn({
    reportingMta: 'relay.sender.example',
    originalEnvelopeId: 'QQ314159',
    arrivalDate: new Date(Date.UTC(2026, 0, 2)),
    recipients: [
      { finalRecipient: 'd@far.example', originalRecipient: 'rfc822;D@Far.Example', action: 'delayed', status: '4.4.1', willRetryUntil: new Date(Date.UTC(2026, 0, 3)), lastAttemptDate: new Date(Date.UTC(2026, 0, 2, 1)) },
      { finalRecipient: 'r@far.example', action: 'relayed', status: '2.0.0', remoteMta: 'mx.far.example' },
      { finalRecipient: 'x@far.example', action: 'delivered', status: '2.1.5' },
      failedRecipient('f@far.example', { kind: 'rejected', reply: { code: 554, enhanced: '5.7.1', text: 'refused' }, remoteMta: 'mx.far.example' }),
    ],
    originalMessageId: '<orig@sender.example>',
    originalSubject: 'Referral',
    to: 'edge@sender.example',
    from: 'postmaster@sender.example',
    date: new Date(Date.UTC(2026, 0, 2, 2)),
    messageId: '<dsn@sender.example>',
    boundary: 'dsn-boundary',
  }).message;
  return [built, ...vectorFiles(/delivery-status/i)];
}

// ------------------------------------------------------------------------------------------------ documents

const CDA_SAMPLES = join(REPO_ROOT, '..', 'shared', 'vectors', 'ett', 'cda-samples');

/** ETT's samples of one kind (absent vectors: none; the smoke test's seeds still run). */
function cdaSamples(pattern: RegExp): Buffer[] {
  if (!existsSync(CDA_SAMPLES)) return [];
  return readdirSync(CDA_SAMPLES)
    .filter((n) => pattern.test(n))
    .map((n) => readFileSync(join(CDA_SAMPLES, n)))
    .filter((b) => b.length < 400_000);
}

/** A small CDA with each kind of narrative markup, so that mutations reach the renderer's every branch. */
const SMALL_CDA = Buffer.from(
  '<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"><title>T</title><recordTarget><patientRole><patient><name><given>A</given><family>B</family></name></patient></patientRole></recordTarget>' +
    '<component><structuredBody><component><section><title>S</title><text><paragraph styleCode="Bold">p<content ID="c1">c</content><linkHtml href="#c1">l</linkHtml></paragraph>' +
    '<list><item>i</item></list><table><thead><tr><th>h</th></tr></thead><tbody><tr><td colspan="2">d<sub>s</sub><sup>u</sup><br/></td></tr></tbody></table>' +
    '<renderMultiMedia referencedObject="m1"/><footnote>f</footnote></text></section></component></structuredBody></component></ClinicalDocument>',
);

/** XDM packages: ETT's, unpacked with the streaming reader (bytes discarded, hashes kept). */
function xdmTarget(): FuzzTarget {
  return {
    description: 'XDM packages (documents/xdm-unpack.ts unpackXdm: zip entries, inflation caps, METADATA.XML)',
    inputs: 10_000,
    setup: () => {
      const seeds = cdaSamples(/\.zip$/i);
      return Promise.resolve({
        generate: (rng: Rng) => mutateSeeds(rng, seeds.length > 0 ? seeds : [SMALL_CDA], NASTY_BER, 512),
        run: async (input: Buffer) => {
          await unpackXdm(input, { onDocument: () => new Writable({ write: (_c, _e, done) => done() }) });
          return ok();
        },
      });
    },
  };
}

// ------------------------------------------------------------------------------------------------

/** The parsers of network bytes under `npm run fuzz`, with their default share of 10⁶ inputs. */
export const FUZZ_TARGETS: Readonly<Record<string, FuzzTarget>> = {
  mime: fromSeeds(
    'MIME (mime/mime-entity.ts): MimeEntity.parse, header, contentType, splitMultipart, decodeBase64',
    200_000,
    () => [...agent().messages, agent().signedEntity, ...mdnSeeds(), ...dsnSeeds(), fixedMessage()],
    readMime,
    NASTY_TEXT,
  ),
  der: fromSeeds('BER/DER (agent/der.ts): decodeBer and the whole tree walked, OIDs decoded', 200_000, () => [...agent().envelopes, ...agent().signatures, ...agent().certificates], (b) => walk(decodeBer(b, 'fuzz'))),
  cms: {
    description: 'CMS of the unwrap path: verifySignature (SignedData) and openEnvelope (EnvelopedData, AuthEnvelopedData)',
    inputs: 40_000,
    setup: () => {
      const a = agent();
      return Promise.resolve({
        generate: (rng: Rng) => (rng.chance(75) ? Buffer.concat([Buffer.from([0]), mutateSeeds(rng, a.signatures)]) : Buffer.concat([Buffer.from([1]), mutateSeeds(rng, a.envelopes)])),
        run: (input: Buffer) => {
          const body = input.subarray(1);
          if (input[0] === 0) verifySignature(body, a.signedContent, { allowSha1: false });
          else openEnvelope(body, a.decrypt);
          return ok();
        },
      });
    },
  },
  unwrap: fromSeeds('unwrapMessage on whole wrapped messages (MIME, base64, CMS, signature)', 10_000, () => agent().messages, (b) => unwrapMessage(b, { credentials: agent().decrypt })),
  dns: fromSeeds('DNS messages (discovery/dns-client.ts decodeReply)', 200_000, dnsSeeds, (b) => decodeReply(b)),
  'cert-record': fromSeeds('CERT rdata (discovery/cert-record.ts) and the certificate it carries', 60_000, () => {
    const cert = readFileSync(pkiPath('recipient-rsa', 'cert.der'));
    return [
      encodeCertRdata({ certType: CERT_TYPES.PKIX, keyTag: 0, algorithm: 0, data: cert }),
      encodeCertRdata({ certType: CERT_TYPES.IPKIX, keyTag: 0, algorithm: 0, data: Buffer.from('http://certs.example/p.cer') }),
    ];
  }, readCertRdata),
  ldap: ldapTarget(),
  'ldap-search': ldapSearchTarget(),
  mdn: fromSeeds('MDNs (mdn/mdn-parser.ts parseMdn)', 60_000, mdnSeeds, (b) => parseMdn(b), NASTY_TEXT),
  dsn: fromSeeds('DSNs (queue/dsn-parser.ts parseDsn)', 60_000, dsnSeeds, (b) => parseDsn(b), NASTY_TEXT),
  smtp: smtpCommandTarget(),
  ccda: fromSeeds('C-CDA (documents/xml-reader.ts readXml, then documents/ccda-renderer.ts renderCcda: the narrative walk)', 20_000, () => [SMALL_CDA, ...cdaSamples(/\.xml$/i)], (b) => renderCcda(b), NASTY_TEXT),
  xdm: xdmTarget(),
};

/** Only for the harness's own test (`--self-test`): a planted hang, crash and untyped error. */
export const SELF_TEST_TARGET: FuzzTarget = {
  description: 'the harness itself: input 3 hangs, input 5 kills its process, input 7 throws a TypeError',
  inputs: 10,
  setup: () =>
    Promise.resolve({
      generate: (rng: Rng) => Buffer.from([rng.index & 0xff]),
      run: (input: Buffer): Outcome | Promise<Outcome> => {
        const i = input[0]!;
        if (i === 3) for (;;);
        if (i === 5) {
          setImmediate(() => {
            throw new Error('planted crash');
          });
          return new Promise<Outcome>(() => undefined);
        }
        if (i === 7) throw new TypeError('planted untyped error');
        if (i % 2 === 1) throw new HispError('HISP_USAGE', 'planted typed error');
        return 'ok';
      },
    } satisfies FuzzRunner),
};

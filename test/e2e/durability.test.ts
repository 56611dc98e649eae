/**
 * Durability end to end (issue 5): while 500 messages are submitted and relayed, the sending
 * gateway (`hisp start --config`, a child process) is killed with SIGKILL several times and
 * restarted on the same data folder and ports. Every message that got a 250 ends up delivered
 * exactly once at the receiving gateway, or with a DSN at the sender; none is lost, none delivered
 * twice. The submitters behave like an EHR: a connection that dies (or a 4xx) means the message is
 * submitted again later on a new connection, and only a 250 counts as accepted. A message whose 250
 * was lost in a kill may thus be queued twice under two queue ids; the receiving side's
 * de-duplication (envelope sender, Message-ID, recipient) must still deliver it once.
 *
 * Leases: the deliveries a killed process held are due again as soon as the gateway restarts (it
 * holds the data folder alone, DataFolderLock, and releases every lease at start), so nothing waits
 * for a lease to expire.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { parseDsn } from '../../gateway/queue/dsn-parser.js';
import { SqliteQueue } from '../../gateway/queue/sqlite-queue.js';
import { openDatabase } from '../../gateway/store/database.js';
import {
  EDGE_PASSWORD,
  EDGE_USER,
  gatewayConfigObject,
  startDirectNetwork,
  startGateway,
  toConfig,
  waitFor,
  writeToml,
  type DirectNetwork,
} from '../helpers/direct-network.js';
import { missingExecutable, requirePeer } from '../helpers/require-peer.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const MESSAGES = 500;
const SUBMITTERS = 20;
const MIN_KILLS = 3;
const MAX_KILLS = 5;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** `npm run build` when a gateway source is newer than its compiled file (bin/hisp.js runs dist/). */
function buildIfStale(): void {
  const stale = (dir: string): boolean =>
    readdirSync(dir, { withFileTypes: true }).some((e) => {
      const file = path.join(dir, e.name);
      if (e.isDirectory()) return stale(file);
      if (!e.name.endsWith('.ts') || e.name.endsWith('.test.ts')) return false;
      const out = path.join(REPO, 'dist', path.relative(REPO, file).replace(/\.ts$/, '.js'));
      return !existsSync(out) || statSync(out).mtimeMs < statSync(file).mtimeMs;
    });
  if (stale(path.join(REPO, 'gateway'))) execFileSync('npm', ['run', 'build'], { cwd: REPO, stdio: 'pipe' });
}

/** True once the port answers with a 220 greeting. */
function greets(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    let settled = false;
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      if (ok) s.end('QUIT\r\n');
      else s.destroy();
      resolve(ok);
    };
    s.setTimeout(2000, () => done(false));
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      if (/^220 /m.test(buf)) done(true);
    });
    s.on('error', () => done(false));
    s.on('close', () => done(false));
  });
}

interface Child {
  proc: ChildProcess;
  exited: Promise<void>;
  output: string[];
}

/** The outcome of one SMTP transaction as the client saw it. */
type Outcome = { kind: 'accepted'; response: string } | { kind: 'reply'; code: number; response: string } | { kind: 'broken'; error: string };

/** A submission connection (STARTTLS + AUTH); `broken` settles when the connection errs or ends. */
interface Session {
  conn: SMTPConnection;
  broken: Promise<string>;
}

function openSession(port: number): Promise<Session> {
  return new Promise((resolve, reject) => {
    const conn = new SMTPConnection({
      host: '127.0.0.1',
      port,
      secure: false,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      connectionTimeout: 5000,
      greetingTimeout: 5000,
      socketTimeout: 20_000,
    });
    let failed: ((why: string) => void) | undefined;
    const broken = new Promise<string>((res) => (failed = res));
    conn.on('error', (err: Error) => failed?.(err.message));
    conn.on('end', () => failed?.('connection ended'));
    const timer = setTimeout(() => {
      conn.close();
      reject(new Error('connect/login timed out'));
    }, 10_000);
    void broken.then((why) => {
      clearTimeout(timer);
      reject(new Error(why));
    });
    conn.connect((err) => {
      if (err) {
        clearTimeout(timer);
        conn.close();
        reject(err);
        return;
      }
      conn.login({ user: EDGE_USER, pass: EDGE_PASSWORD }, (loginErr) => {
        clearTimeout(timer);
        if (loginErr) {
          conn.close();
          reject(loginErr);
        } else resolve({ conn, broken });
      });
    });
  });
}

function submit(session: Session, raw: Buffer): Promise<Outcome> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (o: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(o);
    };
    const timer = setTimeout(() => done({ kind: 'broken', error: 'no reply in 20 s' }), 20_000);
    void session.broken.then((why) => done({ kind: 'broken', error: why }));
    session.conn.send({ from: 'provider@a.test', to: ['patient@b.test'] }, raw, (err, info) => {
      if (err) {
        const code = (err as { responseCode?: number }).responseCode;
        done(code !== undefined ? { kind: 'reply', code, response: err.message } : { kind: 'broken', error: err.message });
      } else done({ kind: 'accepted', response: info?.response ?? '' });
    });
  });
}

interface Tracked {
  index: number;
  messageId: string;
  token: string;
  raw: Buffer;
  /** SMTP transactions started (MAIL FROM issued or about to be). */
  attempts: number;
  /** The 250 reply's queue id, once accepted. */
  queueId?: string;
  refusals: string[];
}

const headerValue = (m: Buffer, name: string): string | undefined => {
  const s = m.toString('latin1');
  const head = s.slice(0, s.indexOf('\r\n\r\n') + 2);
  return new RegExp(`^${name}:[ \\t]*(.*(?:\\r\\n[ \\t].*)*)`, 'im').exec(head)?.[1]?.replace(/\r\n[ \t]+/g, ' ').trim();
};

/** A Maildir's new/ read incrementally: `parse` runs once per file; returns file name → parsed, cumulative. */
function maildirScan<T>(dir: string, parse: (message: Buffer) => T): () => Map<string, T> {
  const seen = new Map<string, T>();
  return () => {
    const newDir = path.join(dir, 'new');
    if (!existsSync(newDir)) return seen;
    for (const f of readdirSync(newDir)) if (!seen.has(f)) seen.set(f, parse(readFileSync(path.join(newDir, f))));
    return seen;
  };
}

/** knotd serves the test zones: with CI=true its absence fails the run (test/helpers/require-peer.ts). */
const knot = requirePeer(missingExecutable('knotd'));

describe.skipIf(knot.skip)(knot.title('durability: the sending gateway killed with SIGKILL while 500 messages are submitted and relayed'), () => {
  let net_: DirectNetwork;
  let b: HispGateway;
  let a: Child | undefined;
  let configFile: string;
  let submissionPort: number;
  let dataDirA: string;

  beforeAll(async () => {
    buildIfStale();
    net_ = await startDirectNetwork(['a.test', 'b.test']);
    b = await startGateway(toConfig(await gatewayConfigObject(net_.spec('b.test'), net_.dns.address), net_.dir));
    const specA = net_.spec('a.test');
    submissionPort = specA.submissionPort;
    dataDirA = specA.dataDir;
    configFile = path.join(net_.dir, 'a.test.toml');
    writeToml(configFile, await gatewayConfigObject(specA, net_.dns.address));
  }, 180_000);

  afterAll(async () => {
    if (a && a.proc.exitCode === null && a.proc.signalCode === null) {
      a.proc.kill('SIGKILL');
      await a.exited;
    }
    await b?.stop();
    await net_?.stop();
  });

  async function startA(): Promise<Child> {
    const proc = spawn(process.execPath, [path.join(REPO, 'bin/hisp.js'), 'start', '--config', configFile], {
      cwd: net_.dir,
      env: { ...process.env, HISP_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output: string[] = [];
    const keep = (c: Buffer) => {
      output.push(c.toString());
      if (output.length > 200) output.splice(0, output.length - 200);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    const child = { proc, exited, output };
    a = child;
    await waitFor(
      'gateway A to greet on the submission port',
      async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) {
          throw new Error(`hisp start exited (${proc.exitCode ?? proc.signalCode}): ${output.join('').slice(-3000)}`);
        }
        return greets(submissionPort);
      },
      30_000,
    );
    return child;
  }

  it(
    'every message that got a 250 is delivered exactly once at b.test or has a DSN at a.test',
    async () => {
      const started = Date.now();
      const run = randomBytes(4).toString('hex');
      const tracked: Tracked[] = Array.from({ length: MESSAGES }, (_, i) => {
        const token = `${run}-${i}-${randomBytes(6).toString('hex')}`;
        const messageId = `<durability.${run}.${i}@a.test>`;
        const raw = Buffer.from(
          `From: Dr. Provider <provider@a.test>\r\nTo: patient@b.test\r\nSubject: Durability ${i}\r\n` +
            `Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nMessage-ID: ${messageId}\r\nMIME-Version: 1.0\r\n` +
            `Content-Type: text/plain; charset=utf-8\r\n\r\nSummary of care ${i}.\r\nToken: ${token}\r\n`,
        );
        return { index: i, messageId, token, raw, attempts: 0, refusals: [] };
      });
      const byMessageId = new Map(tracked.map((t) => [t.messageId, t]));

      await startA();

      // Submitters: each keeps one authenticated connection and sends one message per transaction.
      const pending = [...tracked];
      let retried = 0;
      let brokenConnections = 0;
      let aborted = false; // a submitter or the killer failed: stop the others
      const submitter = async (): Promise<void> => {
        let session: Session | undefined;
        for (let t = pending.shift(); t !== undefined && !aborted; t = pending.shift()) {
          while (session === undefined) {
            if (aborted) return;
            try {
              session = await openSession(submissionPort);
            } catch {
              await sleep(100); // A is down (refused) or died during the handshake
            }
          }
          t.attempts++;
          const outcome = await submit(session, t.raw);
          if (outcome.kind === 'accepted') {
            const queueId = /queued as (\S+)/.exec(outcome.response)?.[1];
            if (!queueId) throw new Error(`a 250 without a queue id: ${outcome.response}`);
            t.queueId = queueId;
            continue;
          }
          if (outcome.kind === 'reply') t.refusals.push(outcome.response);
          if (outcome.kind === 'reply' && outcome.code >= 500) continue; // refused for good: never accepted
          if (outcome.kind === 'broken') brokenConnections++;
          session.conn.close();
          session = undefined;
          retried++;
          pending.push(t); // later, on a new connection
        }
        session?.conn.quit();
      };

      let submitted = false;
      const submitting = Promise.all(Array.from({ length: SUBMITTERS }, submitter))
        .catch((err: unknown) => {
          aborted = true;
          throw err;
        })
        .finally(() => (submitted = true));

      // The killer: SIGKILL at random moments (the first while submitting, then every 1.5 to 3 s),
      // restart on the same data folder and ports.
      const kills: { atMs: number; accepted: number }[] = [];
      const killing = (async () => {
        while (kills.length < MAX_KILLS && (!submitted || kills.length < MIN_KILLS) && !aborted) {
          if (kills.length === 0) {
            // The first kill lands in the middle of the submissions, after a random number of 250s.
            const target = 20 + Math.floor(Math.random() * 280);
            while (!submitted && !aborted && tracked.filter((t) => t.queueId !== undefined).length < target) await sleep(20);
          } else await sleep(1500 + Math.random() * 1500);
          const victim = a!;
          victim.proc.kill('SIGKILL');
          await victim.exited;
          kills.push({ atMs: Date.now() - started, accepted: tracked.filter((t) => t.queueId !== undefined).length });
          await startA();
        }
      })().catch((err: unknown) => {
        aborted = true;
        throw err;
      });
      for (const r of await Promise.allSettled([submitting, killing])) if (r.status === 'rejected') throw r.reason;
      const submittedMs = Date.now() - started;

      const accepted = tracked.filter((t) => t.queueId !== undefined);
      const attempted = new Set(tracked.filter((t) => t.attempts > 0).map((t) => t.messageId));
      const maildirB = path.join(net_.dir, 'data-b.test', 'maildir', 'patient@b.test');
      const maildirA = path.join(net_.dir, 'data-a.test', 'maildir', 'provider@a.test');

      // Maildirs read incrementally: a delivered file never changes, so each is parsed once.
      const atBScan = maildirScan(maildirB, (m) => ({
        messageId: headerValue(m, 'Message-ID') ?? '(none)',
        token: /\r\nToken: (\S+)\r\n/.exec(m.toString('latin1'))?.[1],
        received: (m.toString('latin1').match(/^Received:.*(?:\r\n[ \t].*)*/gim) ?? []).join(' | '),
      }));
      const atAScan = maildirScan(maildirA, (m) => {
        try {
          return parseDsn(m).originalMessageId ?? '(none)';
        } catch {
          return undefined; // an MDN (or anything else that is not a DSN)
        }
      });
      const deliveredAtB = () => {
        const out = new Map<string, { file: string; token: string | undefined; received: string }[]>();
        for (const [file, x] of atBScan()) out.set(x.messageId, [...(out.get(x.messageId) ?? []), { file, token: x.token, received: x.received }]);
        return out;
      };
      const dsnsAtA = () => {
        const out = new Map<string, number>();
        for (const original of atAScan().values()) if (original !== undefined) out.set(original, (out.get(original) ?? 0) + 1);
        return out;
      };
      const queuedAtA = () => {
        try {
          const db = new BetterSqlite3(path.join(dataDirA, 'hisp.sqlite'), { readonly: true, fileMustExist: true });
          try {
            return db.prepare<[], { n: number }>("SELECT count(*) AS n FROM deliveries WHERE state = 'queued'").get()?.n ?? -1;
          } finally {
            db.close();
          }
        } catch {
          return -1; // busy: ask again
        }
      };

      // Drain: every accepted message at B or with a DSN, and nothing queued at A or B (MDNs included).
      const drainDeadline = Date.now() + 120_000;
      for (;;) {
        const atB = deliveredAtB();
        const dsns = dsnsAtA();
        const missing = accepted.filter((t) => !atB.has(t.messageId) && !dsns.has(t.messageId));
        // B first: once B has nothing queued, every MDN it sends is committed at A, so A's count is final.
        const queuedB = (await b.ctx.queue.list({ state: 'queued', limit: 1000 })).length;
        const queuedA = queuedAtA();
        if (process.env.HISP_E2E_DEBUG) console.log(`${((Date.now() - started) / 1000).toFixed(1)} s: at B ${atB.size}, queued at A ${queuedA}, at B ${queuedB}`);
        if (missing.length === 0 && queuedA === 0 && queuedB === 0) break;
        if (Date.now() > drainDeadline) {
          throw new Error(
            `the queues did not drain: ${missing.length} accepted messages neither delivered nor bounced ` +
              `(${missing.slice(0, 5).map((t) => `${t.messageId} ${t.queueId}`).join(', ')}); queued at A: ${queuedA}, at B: ${queuedB}`,
          );
        }
        await sleep(250);
      }
      const drainedMs = Date.now() - started;

      // Stop A cleanly (SIGTERM drains), then read its queue.
      const last = a!;
      const stopping = Date.now();
      last.proc.kill('SIGTERM');
      await Promise.race([last.exited, sleep(20_000).then(() => last.proc.kill('SIGKILL'))]);
      await last.exited;
      const stopMs = Date.now() - stopping;
      expect({ code: last.proc.exitCode, signal: last.proc.signalCode }, `hisp start after SIGTERM: ${last.output.join('').slice(-2000)}`).toEqual({ code: 0, signal: null });

      const atB = deliveredAtB();
      const dsns = dsnsAtA();
      const db = openDatabase({ dataDir: dataDirA });
      try {
        const queue = new SqliteQueue(db);
        // Nothing acknowledged was lost at A: every 250's queue id is stored, and final.
        for (const t of accepted) {
          const status = await queue.get(t.queueId!);
          expect(status, `${t.messageId} was acknowledged as ${t.queueId} but is not in A's queue`).toBeDefined();
          expect(status?.messageId).toBe(t.messageId.slice(1, -1));
          expect(status?.deliveries.map((d) => d.state).filter((s) => s === 'queued'), `${t.queueId} still queued`).toEqual([]);
        }
        const queued = db.sqlite.prepare<[], { queue_id: string; direction: string }>("SELECT queue_id, direction FROM deliveries WHERE state = 'queued'").all();
        expect(queued, 'deliveries left queued at A').toEqual([]);

        // Exactly once at B, or a DSN at A; never both, never neither; nothing twice; nothing unknown.
        const twice = [...atB].filter(([, copies]) => copies.length > 1);
        if (twice.length > 0) {
          const detail = twice.slice(0, 3).map(([id, copies]) => {
            const aRows = queue.messages.findByMessageId(id).map((m) => `${m.queueId}@A`);
            const bRows = b.ctx.queue.messages.findByMessageId(id).map((m) => `${m.queueId}@B`);
            return `${id}: ${copies.length} copies (${copies.map((c) => c.file).join(', ')}); A: ${aRows.join(', ')}; B: ${bRows.join(', ')}; Received: ${copies.map((c) => c.received).join(' || ')}`;
          });
          expect.fail(`delivered twice at B:\n${detail.join('\n')}`);
        }
        for (const [id, copies] of atB) {
          const t = byMessageId.get(id);
          expect(t, `B delivered ${id}, which was never submitted`).toBeDefined();
          expect(attempted.has(id), `B delivered ${id}, which was never attempted`).toBe(true);
          expect(copies[0]?.token, `the body of ${id} at B`).toBe(t!.token);
        }
        const notExactlyOnce = accepted
          .map((t) => ({ messageId: t.messageId, queueId: t.queueId, delivered: atB.get(t.messageId)?.length ?? 0, bounced: dsns.get(t.messageId) ?? 0 }))
          .filter((x) => x.delivered + x.bounced !== 1);
        expect(notExactlyOnce, 'accepted messages not delivered exactly once nor bounced exactly once').toEqual([]);
        const neverAccepted = tracked.filter((t) => t.queueId === undefined);
        expect(neverAccepted.map((t) => ({ messageId: t.messageId, refusals: t.refusals })), 'messages never accepted').toEqual([]);
        expect(kills.length).toBeGreaterThanOrEqual(MIN_KILLS);

        const duplicatesAtA = db.sqlite
          .prepare<[], { n: number }>("SELECT count(*) AS n FROM (SELECT message_id FROM messages WHERE direction = 'outbound' AND message_id LIKE 'durability.%' GROUP BY message_id HAVING count(*) > 1)")
          .get()?.n;
        const relay = db.sqlite
          .prepare<[], { released: number; dedupe: number }>(
            `SELECT sum(d.leases > 1) AS released, sum(d.reply_text LIKE '%already received%') AS dedupe
             FROM deliveries AS d JOIN messages AS m ON m.queue_id = d.queue_id WHERE m.direction = 'outbound' AND m.message_id LIKE 'durability.%'`,
          )
          .get();
        console.log(
          `durability: accepted ${accepted.length}/${MESSAGES}, retried ${retried} (broken connections ${brokenConnections}), ` +
            `kills ${kills.length} (${kills.map((k) => `${(k.atMs / 1000).toFixed(1)} s after ${k.accepted} accepted`).join('; ')}), ` +
            `queued twice at A ${duplicatesAtA}, leased again after a kill ${relay?.released}, answered "already received" by B ${relay?.dedupe}, delivered at B ${[...atB.values()].reduce((n, c) => n + c.length, 0)}, ` +
            `DSNs ${[...dsns.values()].reduce((n, c) => n + c, 0)}, submitted in ${(submittedMs / 1000).toFixed(1)} s, ` +
            `drained in ${(drainedMs / 1000).toFixed(1)} s, stopped by SIGTERM in ${(stopMs / 1000).toFixed(1)} s, elapsed ${((Date.now() - started) / 1000).toFixed(1)} s`,
        );
      } finally {
        await db.close();
      }
    },
    240_000,
  );
});

// Debian Postfix and smtp-sink as real SMTP/LMTP peers on 127.0.0.1, for the gateway's interop tests
// and the benchmark. Each Postfix is a private instance started from a temporary folder (its own
// config_directory, queue_directory and data_directory; /etc/postfix and port 25 are never touched)
// with master(8) running as a child process; smtp-sink(1) is a child process too. Nothing here uses
// the system services the Debian packages may install.
//
//   const mx = await startPostfix({ mode: 'mailbox', domains: ['dest.test'] });
//   try { …send to 127.0.0.1:mx.port…; const [m] = await mx.waitForMessages(1); } finally { await mx.stop(); }
//
// Postfix needs root (master(8) refuses to run otherwise; its daemons drop to the `postfix` user):
// gate the tests with `requirePeer(postfixUnavailableReason())` (test/helpers/require-peer.ts: skipped
// with the reason, or failed with CI=true). smtp-sink runs as any user.
//
// What a private instance needs (Postfix 3.7, Debian 12), found the hard way:
// - `postfix -c DIR check` (postfix-script check-fatal → `post-install create-missing`) creates the
//   queue directories with the owners postfix-files(5) wants; `postfix set-permissions` is avoided
//   because it would also chown/chmod the shared files under /usr and /etc/postfix. root may use
//   -c with any directory; only the set-gid commands (postdrop, postqueue run by others) want it in
//   the default instance's alternate_config_directories, and the default main.cf does not even
//   exist on a "No configuration" install.
// - `master -c DIR -s` stays in the foreground and keeps stdout, so that maillog_file = /dev/stdout
//   lands in our log file (master(8): -s "Do not redirect stdout to /dev/null, so that
//   maillog_file = /dev/stdout works", Postfix ≥ 3.4; -i would be the same but only for PID 1; this
//   is what `postfix start-fg` runs). master.cf needs the postlog service for maillog_file.
// - master.cf must say chroot = n for every service: Debian's own master.cf chroots most daemons
//   into /var/spool/postfix, which our queue_directory is not.
// - mkdtemp() makes the folder 0700 root: the daemons run as `postfix` and open absolute paths
//   under it (Maildirs, smtp-sink dumps), so it is made 0755; data_directory must belong to postfix.
// - virtual(8) refuses uid 0 and anything below virtual_minimum_uid (100): mail is stored as the
//   postfix user, and virtual_minimum_uid follows that uid.
// - myhostname is set explicitly and differs per instance: the SMTP client bounces mail whose
//   next hop greets with its own name ("mail for … loops back to myself"), and gethostname() would
//   make every peer on this machine share one.
// - alias_maps is emptied: its default hash:/etc/aliases does not exist on a "No configuration"
//   install and smtpd logs an error for each connection.
// - Configuration files are dated back a minute: Postfix does not trust a main.cf (or texthash:
//   table) modified within the last second and pauses 300 ms at a time until it is older
//   (dict_load_file(), "to let it cool down"), which cost 1.5 s of every start.
// - virtual(8) refuses "regular expression substitution" ($1) in virtual_mailbox_maps, so there is
//   one Maildir per domain and the recipient of each message is its Delivered-To: header.
// - master(8) reports its own fatal errors (a port already in use) to syslog only, before postlogd
//   runs; there is no /dev/log here, so the harness checks the port itself when master exits.
// - SMTP AUTH from the client: smtp_sasl_security_options defaults to "noplaintext, noanonymous"
//   and smtp_sasl_tls_security_options inherits it, so PLAIN and LOGIN are refused even over TLS
//   unless both are set to "noanonymous" (postconf(5)). The cyrus PLAIN/LOGIN plugins come from
//   libsasl2-modules. texthash: needs no postmap (DATABASE_README); the key is the relayhost exactly
//   as written, `[127.0.0.1]:PORT` (SASL_README, "Enabling SASL authentication in the Postfix SMTP
//   client").
import { errorCode, execFileText, findExecutable, INSTALL_HINT, isAlive, killGroup, requireExecutable, WatchedChild as Child } from './watched-child.js';
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const PEER_HOST = '127.0.0.1';

// ---------------------------------------------------------------------------------------------
// Availability

const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

/** Why startPostfix() cannot run here, or undefined when it can. */
export function postfixUnavailableReason(): string | undefined {
  for (const bin of ['postfix', 'postconf']) {
    if (findExecutable(bin) === undefined) return `${bin} is not installed: ${INSTALL_HINT}`;
  }
  // master(8) runs as root and drops privileges per daemon; there is no unprivileged mode.
  if (!isRoot()) return 'Postfix runs only as root (master(8) refuses other users)';
  return undefined;
}

/** /usr/sbin/smtp-sink (from the postfix package) is installed. */
export function smtpSinkAvailable(): boolean {
  return findExecutable('smtp-sink') !== undefined;
}

/** swaks, the SMTP test client the interop tests drive Postfix with. */
export function swaksPath(): string | undefined {
  return findExecutable('swaks');
}

// ---------------------------------------------------------------------------------------------
// Small tools

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));


/**
 * True while a process of group `pgid` runs, zombies not counted: when master(8) exits, its
 * children are reparented to init, which reaps them when it gets round to it. Linux (/proc); where
 * /proc cannot be read, any member counts.
 */
function groupRuns(pgid: number): boolean {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return killGroup(pgid, 0);
  }
  for (const pid of pids) {
    // /proc/PID/stat: "pid (comm) state ppid pgrp …"; comm may contain spaces and parentheses.
    const stat = readText(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[2] === String(pgid) && fields[0] !== 'Z' && fields[0] !== 'X') return true;
  }
  return false;
}

/**
 * Writes a configuration file dated a minute back. Postfix will not read a file modified within the
 * last second: dict_load_file() (main.cf, texthash: tables) pauses 300 ms at a time "to let it cool
 * down" (a half-written file), which cost 1.5 s per start.
 */
function writeConfigFile(file: string, text: string, mode = 0o644): void {
  writeFileSync(file, text, { mode });
  const past = new Date(Date.now() - 60_000);
  utimesSync(file, past, past);
}


async function runOk(file: string, args: readonly string[], timeoutMs?: number): Promise<string> {
  const r = await execFileText(file, args, timeoutMs ?? 30_000);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}:\n${r.err}${r.out}`);
  return r.out;
}

function tailOf(text: string, lines = 30): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** A TCP port free on 127.0.0.1 at the time of asking (the OS picks it). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host: PEER_HOST, exclusive: true }, () => {
      const a = server.address();
      resolve(typeof a === 'object' && a !== null ? a.port : 0);
    });
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (port === 0) throw new Error('no free TCP port on 127.0.0.1');
  return port;
}

/** Something listens on 127.0.0.1:port (binding it fails with EADDRINUSE). */
function portTaken(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', (e) => resolve(errorCode(e) === 'EADDRINUSE'));
    server.listen({ port, host: PEER_HOST, exclusive: true }, () => server.close(() => resolve(false)));
  });
}

/**
 * Connects, reads the first reply line and says QUIT: true for a 220 greeting (RFC 5321 §4.3.1;
 * LMTP greets the same way, RFC 2033 §4.1). False on refusal or anything else.
 */
export function smtpGreets(port: number, host = PEER_HOST, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    let buf = '';
    let settled = false;
    const done = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (ok) socket.end('QUIT\r\n');
      else socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl >= 0) done(/^220[ -]/.test(buf.slice(0, nl)));
    });
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
    // The QUIT reply and close are the server's business; errors after the greeting do not matter.
    socket.on('end', () => socket.destroy());
  });
}

/** uid and gid of a system account (`id`, so NSS is honoured). */
async function accountIds(name: string): Promise<{ uid: number; gid: number }> {
  const uid = Number((await runOk('id', ['-u', name])).trim());
  const gid = Number((await runOk('id', ['-g', name])).trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error(`cannot find the ${name} account`);
  return { uid, gid };
}

// ---------------------------------------------------------------------------------------------
// Child processes that cannot outlive the test process

/** Polls `check` until it resolves true; fails early when the child exits. */
async function waitUntil(
  child: Child,
  deadline: number,
  what: string,
  check: () => Promise<boolean>,
  diagnostics: () => string,
): Promise<void> {
  for (;;) {
    if (!child.running) throw new Error(`${child.name} exited (${String(child.exitCode)}) before ${what}:\n${diagnostics()}`);
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not ready in time:\n${diagnostics()}`);
    await sleep(25);
  }
}

/** Polls `get` until `done(value)`, returning the value; throws `describe(value)` on time-out. */
async function pollFor<T>(get: () => T, done: (value: T) => boolean, timeoutMs: number, describe: (value: T) => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = get();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(describe(value));
    await sleep(25);
  }
}

// Cleanup when the test process exits without stop() (a failed beforeAll, a forgotten afterAll).
interface Running {
  kill(): void;
  dir: string;
  keepTempDir: boolean;
}
const running = new Set<Running>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const r of running) {
      r.kill();
      if (!r.keepTempDir) rmSync(r.dir, { recursive: true, force: true });
    }
    running.clear();
  });
}

/** A temporary folder `hisp-<kind>-<pid>-XXXXXX`, after removing those of dead processes. */
function makeTempDir(kind: string): string {
  const prefix = `hisp-${kind}-`;
  let entries: string[] = [];
  try {
    entries = readdirSync(tmpdir());
  } catch {
    // nothing to clean
  }
  for (const name of entries) {
    const m = new RegExp(`^${prefix}(\\d+)-`).exec(name);
    if (m && Number(m[1]) !== process.pid && !isAlive(Number(m[1]))) {
      rmSync(path.join(tmpdir(), name), { recursive: true, force: true });
    }
  }
  const dir = mkdtempSync(path.join(tmpdir(), `${prefix}${process.pid}-`));
  // mkdtemp makes it 0700; daemons that dropped to another user open paths below it.
  chmodSync(dir, 0o755);
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Postfix

export interface PostfixCommonOptions {
  /** TCP port of smtpd on 127.0.0.1 (default: a free one, chosen again if another process takes it). */
  port?: number;
  /**
   * myhostname: the greeting, EHLO and Received name. Default `mailbox.postfix.test`,
   * `relay.postfix.test`, then `relay2.postfix.test`, … for later instances of this process.
   */
  myhostname?: string;
  /** Offer STARTTLS on smtpd (smtpd_tls_security_level = may) with this key and certificate (PEM files). */
  smtpdTls?: { keyFile: string; certFile: string };
  /** Extra main.cf settings, written last (so they win): `{ message_size_limit: '52428800' }`. */
  mainCf?: Readonly<Record<string, string>>;
  /** Give up when smtpd does not greet after this long (default 20 s). */
  startTimeoutMs?: number;
  /** Leave the temporary folder (configuration, queue, Maildirs, maillog) after stop(), for debugging. */
  keepTempDir?: boolean;
}

/** A downstream mail server: accepts mail for `domains` only and stores it in Maildirs. */
export interface PostfixMailboxOptions extends PostfixCommonOptions {
  mode: 'mailbox';
  /** virtual_mailbox_domains (lower case); every local part of them has a mailbox. */
  domains: readonly string[];
}

/** A plain MTA: accepts any recipient from 127.0.0.0/8 and relays everything to `relayhost`. */
export interface PostfixRelayOptions extends PostfixCommonOptions {
  mode: 'relay';
  /**
   * The next hop for all mail, written `[host]:port` (brackets: no MX lookup). The host must be a
   * 127.0.0.0/8 address (default 127.0.0.1): nothing leaves this machine.
   */
  relayhost: { host?: string; port: number };
  /** SMTP AUTH client credentials for the relayhost (used when it advertises AUTH). */
  auth?: {
    username: string;
    password: string;
    /** smtp_sasl_mechanism_filter (default: whatever the server and cyrus agree on). */
    mechanisms?: readonly ('PLAIN' | 'LOGIN')[];
  };
  /** smtp_tls_security_level (default `may`: STARTTLS when offered, certificate not verified). */
  tlsSecurityLevel?: 'none' | 'may' | 'encrypt';
}

export type PostfixOptions = PostfixMailboxOptions | PostfixRelayOptions;

/** An entry of `postqueue -j` (postqueue(1), "JSON object members"). */
export interface PostfixQueueEntry {
  queue_name: string;
  queue_id: string;
  arrival_time: number;
  message_size: number;
  sender: string;
  recipients: { address: string; delay_reason?: string }[];
}

export interface PostfixInstance {
  readonly mode: 'mailbox' | 'relay';
  readonly host: string;
  readonly port: number;
  readonly myhostname: string;
  /** The temporary folder: etc/ (main.cf, master.cf), spool/, data/, maillog, mailboxes/. */
  readonly tempDir: string;
  /** Its config_directory (for `postconf -c`, `postqueue -c`, …). */
  readonly configDir: string;
  /** The maillog (maillog_file = /dev/stdout of master, redirected here). */
  readonly logFile: string;
  /** Milliseconds from the call to the 220 greeting (including `postfix check`). */
  readonly startupMs: number;
  /** The maillog so far. */
  log(): string;
  /** Waits until a maillog line matches; returns that line. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** The messages in the queue (postqueue -j): deferred ones with their delay_reason. */
  queue(): Promise<PostfixQueueEntry[]>;
  /** postqueue -f: retry deferred mail now instead of after minimal_backoff_time (300 s). */
  flush(): Promise<void>;
  /** Stops master and every Postfix process, removes the temporary folder. Idempotent. */
  stop(): Promise<void>;
}

/** A message virtual(8) stored in a Maildir. */
export interface DeliveredMessage {
  /** The envelope recipient, from the Delivered-To: virtual(8) prepends. */
  recipient: string;
  file: string;
  /**
   * The file as stored: Return-Path:, X-Original-To: and Delivered-To: prepended by virtual(8),
   * the Received: of smtpd, then the message as sent, with LF line endings (Postfix stores lines,
   * not CRLF) and dot-stuffing undone. cleanup(8) adds Message-Id: and Date: when they are missing
   * (local_header_rewrite_clients covers 127.0.0.1 here, postconf(5)); the body is not touched.
   */
  raw: Buffer;
  /** The header section of `raw`, without the empty line. */
  header: string;
  /** Everything after the first empty line of `raw` (LF line endings). */
  body: Buffer;
}

export interface PostfixMailbox extends PostfixInstance {
  readonly mode: 'mailbox';
  readonly domains: readonly string[];
  /** virtual_mailbox_base: one Maildir per domain, `<domain>/new/…`. */
  readonly mailDir: string;
  /** Messages delivered so far, oldest first; only those of `recipient` when given. */
  messages(recipient?: string): DeliveredMessage[];
  /** Waits until at least `count` messages (of `recipient`) are delivered; returns them all. */
  waitForMessages(count: number, options?: { recipient?: string; timeoutMs?: number }): Promise<DeliveredMessage[]>;
}

export interface PostfixRelay extends PostfixInstance {
  readonly mode: 'relay';
  /** As written in main.cf: `[127.0.0.1]:2525`. */
  readonly relayhost: string;
}

/**
 * master.cf: the services Postfix needs (as Debian's master.cf.proto), chroot off everywhere (the
 * queue is not a chroot jail), smtpd on 127.0.0.1:port only. Fields: service type private unpriv
 * chroot wakeup maxproc command (master(5)).
 */
function masterCf(port: number): string {
  return [
    `${PEER_HOST}:${port} inet n - n - - smtpd`,
    'pickup     unix  n - n 60    1 pickup',
    'cleanup    unix  n - n -     0 cleanup',
    'qmgr       unix  n - n 300   1 qmgr',
    'tlsmgr     unix  - - n 1000? 1 tlsmgr',
    'rewrite    unix  - - n -     - trivial-rewrite',
    'bounce     unix  - - n -     0 bounce',
    'defer      unix  - - n -     0 bounce',
    'trace      unix  - - n -     0 bounce',
    'verify     unix  - - n -     1 verify',
    'flush      unix  n - n 1000? 0 flush',
    'proxymap   unix  - - n -     - proxymap',
    'proxywrite unix  - - n -     1 proxymap',
    'smtp       unix  - - n -     - smtp',
    'relay      unix  - - n -     - smtp',
    'showq      unix  n - n -     - showq',
    'error      unix  - - n -     - error',
    'retry      unix  - - n -     - error',
    'discard    unix  - - n -     - discard',
    'virtual    unix  - n n -     - virtual',
    'anvil      unix  - - n -     1 anvil',
    'scache     unix  - - n -     1 scache',
    // maillog_file needs postlogd (postlogd(8)); postfix check refuses to start without it.
    'postlog    unix-dgram n - n - 1 postlogd',
    '',
  ].join('\n');
}

/** `[host]:port`: the brackets turn off the MX lookup (postconf(5) relayhost). */
function relayhostOf(options: PostfixRelayOptions): string {
  return `[${options.relayhost.host ?? PEER_HOST}]:${options.relayhost.port}`;
}

const DOMAIN_RE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

function mainCf(
  options: PostfixOptions,
  dir: string,
  myhostname: string,
  mailbox: { base: string; uid: number; gid: number } | undefined,
): Record<string, string> {
  const etc = path.join(dir, 'etc');
  const cf: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: path.join(dir, 'spool'),
    data_directory: path.join(dir, 'data'),
    // master -s keeps stdout, which the harness points at tempDir/maillog.
    maillog_file: '/dev/stdout',
    inet_interfaces: PEER_HOST,
    inet_protocols: 'ipv4',
    myhostname,
    myorigin: '$myhostname',
    mydestination: '',
    mynetworks: '127.0.0.0/8',
    // Nothing is delivered locally; the default hash:/etc/aliases does not exist here.
    alias_maps: '',
    alias_database: '',
    local_recipient_maps: '',
    // No reverse DNS of 127.0.0.1: the tests must not depend on a resolver (none in CI containers).
    smtpd_peername_lookup: 'no',
    biff: 'no',
  };
  if (options.smtpdTls) {
    Object.assign(cf, {
      smtpd_tls_security_level: 'may',
      // One file list, key first (postconf(5) smtpd_tls_chain_files, Postfix ≥ 3.4).
      smtpd_tls_chain_files: `${options.smtpdTls.keyFile}, ${options.smtpdTls.certFile}`,
      smtpd_tls_loglevel: '1',
    });
  }
  if (options.mode === 'mailbox') {
    if (!mailbox) throw new Error('mailbox mode without a mailbox base');
    Object.assign(cf, {
      virtual_mailbox_domains: options.domains.join(', '),
      virtual_mailbox_base: mailbox.base,
      // `@domain domain/`: every local part of a domain has a mailbox, one Maildir per domain (the
      // trailing slash means Maildir, virtual(8)); messages() tells recipients apart by the
      // Delivered-To: virtual(8) prepends. Not regexp with ${1}: virtual(8) refuses "regular
      // expression substitution" in virtual_mailbox_maps, for security.
      virtual_mailbox_maps: `texthash:${path.join(etc, 'virtual_mailbox')}`,
      virtual_uid_maps: `static:${mailbox.uid}`,
      virtual_gid_maps: `static:${mailbox.gid}`,
      virtual_minimum_uid: String(mailbox.uid),
      // Only the mailbox domains are accepted, and nothing ever leaves (bounces to remote senders
      // included): no DNS, no traffic off this machine.
      smtpd_relay_restrictions: 'reject_unauth_destination',
      default_transport: 'error:mailbox mode delivers to its virtual_mailbox_domains only',
      relay_transport: 'error:mailbox mode delivers to its virtual_mailbox_domains only',
    });
  } else {
    Object.assign(cf, {
      relayhost: relayhostOf(options),
      // Open relay for loopback clients only (mynetworks).
      smtpd_relay_restrictions: 'permit_mynetworks, reject',
      smtp_tls_security_level: options.tlsSecurityLevel ?? 'may',
      smtp_tls_loglevel: '1',
    });
    if (options.auth) {
      Object.assign(cf, {
        smtp_sasl_auth_enable: 'yes',
        smtp_sasl_password_maps: `texthash:${path.join(etc, 'sasl_passwd')}`,
        smtp_sasl_security_options: 'noanonymous',
        smtp_sasl_tls_security_options: 'noanonymous',
        ...(options.auth.mechanisms?.length ? { smtp_sasl_mechanism_filter: options.auth.mechanisms.join(', ').toLowerCase() } : {}),
      });
    }
  }
  return { ...cf, ...(options.mainCf ?? {}) };
}

function writeMainCf(file: string, cf: Readonly<Record<string, string>>): void {
  for (const [k, v] of Object.entries(cf)) {
    if (!/^[a-z0-9_]+$/.test(k) || /[\r\n]/.test(v)) throw new Error(`main.cf: bad setting ${k} = ${v}`);
  }
  writeConfigFile(file, Object.entries(cf).map(([k, v]) => `${k} = ${v}\n`).join(''));
}

/** Reads `base/<domain>/{new,cur}/*`, oldest first. */
function readMaildirs(base: string, recipient?: string): DeliveredMessage[] {
  const want = recipient?.toLowerCase();
  const found: { m: DeliveredMessage; mtime: number }[] = [];
  const list = (d: string): string[] => {
    try {
      return readdirSync(d);
    } catch {
      return [];
    }
  };
  for (const domain of list(base)) {
    // new/ only ever, as nothing reads the mail; cur/ too in case a test moves files there.
    for (const sub of ['new', 'cur']) {
      const d = path.join(base, domain, sub);
      for (const name of list(d)) {
        const file = path.join(d, name);
        const raw = readFileSync(file);
        const sep = raw.indexOf('\n\n');
        const header = raw.subarray(0, sep < 0 ? raw.length : sep).toString('latin1');
        const rcpt = /^Delivered-To: (.*)$/m.exec(header)?.[1]?.trim() ?? '';
        if (want !== undefined && rcpt.toLowerCase() !== want) continue;
        found.push({
          mtime: statSync(file).mtimeMs,
          m: { recipient: rcpt, file, raw, header, body: sep < 0 ? Buffer.alloc(0) : raw.subarray(sep + 2) },
        });
      }
    }
  }
  return found.sort((a, b) => a.mtime - b.mtime || a.m.file.localeCompare(b.m.file)).map((x) => x.m);
}

/** Instances started by this process, per mode (for the default myhostname). */
const instances = { mailbox: 0, relay: 0 };

/** Starts a private Postfix; ready when smtpd on 127.0.0.1:port greets with 220. */
export function startPostfix(options: PostfixMailboxOptions): Promise<PostfixMailbox>;
export function startPostfix(options: PostfixRelayOptions): Promise<PostfixRelay>;
export async function startPostfix(options: PostfixOptions): Promise<PostfixMailbox | PostfixRelay> {
  const began = performance.now();
  const why = postfixUnavailableReason();
  if (why !== undefined) throw new Error(`cannot start Postfix: ${why}`);
  const postfix = requireExecutable('postfix');
  const postconf = requireExecutable('postconf');
  const postqueue = requireExecutable('postqueue');
  if (options.mode === 'mailbox') {
    if (options.domains.length === 0) throw new Error('mailbox mode needs at least one domain');
    for (const d of options.domains) if (!DOMAIN_RE.test(d)) throw new Error(`not a plain lower-case domain name: ${d}`);
  }
  if (options.mode === 'relay' && !/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(options.relayhost.host ?? PEER_HOST)) {
    throw new Error(`relayhost ${options.relayhost.host ?? ''}: only 127.0.0.0/8 addresses, the harness stays on loopback`);
  }
  if (options.mode === 'relay' && options.auth) {
    // texthash: `key value`; the value is username:password, split at the first colon (SASL_README).
    const { username, password } = options.auth;
    if (/[\s:]/.test(username) || username === '' || /[\r\n]/.test(password) || /^\s|\s$/.test(password)) {
      throw new Error('relay auth: the username must have no colon or white space, the password no line break or edge blanks');
    }
  }

  installExitHook();
  const dir = makeTempDir('postfix');
  const record: Running = { kill: () => {}, dir, keepTempDir: options.keepTempDir ?? false };
  running.add(record);
  let master: Child | undefined;
  let masterPid: number | undefined;
  let stopped = false;
  const etc = path.join(dir, 'etc');
  const logFile = path.join(dir, 'maillog');
  const pidFile = path.join(dir, 'spool', 'pid', 'master.pid');

  const readMasterPid = (): number | undefined => {
    const pid = Number.parseInt(readText(pidFile).trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  };
  record.kill = () => {
    // master(8) made itself a session and process group leader: its group is every Postfix process.
    const pid = masterPid ?? readMasterPid();
    if (pid !== undefined) killGroup(pid, 'SIGKILL');
    master?.killNow();
  };

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const pid = masterPid ?? readMasterPid();
    // The watchdog sends SIGTERM to master, which passes it on to its children and exits (master(8)).
    await master?.stop();
    if (pid !== undefined) {
      const deadline = Date.now() + 3000;
      while (groupRuns(pid) && Date.now() < deadline) await sleep(25);
      killGroup(pid, 'SIGKILL');
    }
    if (!record.keepTempDir) rmSync(dir, { recursive: true, force: true });
    running.delete(record);
  };

  try {
    const owner = await accountIds('postfix');
    mkdirSync(etc);
    mkdirSync(path.join(dir, 'spool'));
    // data_directory belongs to mail_owner, 0700 (postfix-files); postfix check only warns otherwise.
    mkdirSync(path.join(dir, 'data'), { mode: 0o700 });
    chownSync(path.join(dir, 'data'), owner.uid, owner.gid);
    writeFileSync(logFile, '');
    // Distinct per instance, so that two of the same mode can be chained without a mail loop.
    const nth = (instances[options.mode] += 1);
    const myhostname = options.myhostname ?? `${options.mode}${nth === 1 ? '' : nth}.postfix.test`;

    let mailbox: { base: string; uid: number; gid: number } | undefined;
    if (options.mode === 'mailbox') {
      mailbox = { base: path.join(dir, 'mailboxes'), ...owner };
      mkdirSync(mailbox.base, { mode: 0o755 });
      chownSync(mailbox.base, owner.uid, owner.gid);
      writeConfigFile(path.join(etc, 'virtual_mailbox'), options.domains.map((d) => `@${d} ${d}/\n`).join(''));
    } else if (options.auth) {
      writeConfigFile(path.join(etc, 'sasl_passwd'), `${relayhostOf(options)} ${options.auth.username}:${options.auth.password}\n`, 0o600);
    }

    const deadline = Date.now() + (options.startTimeoutMs ?? 20_000);
    let daemonDir: string | undefined;
    for (let attempt = 1; ; attempt++) {
      const port = options.port ?? (await freePort());
      writeMainCf(path.join(etc, 'main.cf'), mainCf(options, dir, myhostname, mailbox));
      writeConfigFile(path.join(etc, 'master.cf'), masterCf(port));
      if (attempt === 1) {
        // Creates the queue directories (post-install create-missing) and checks the configuration.
        await runOk(postfix, ['-c', etc, 'check']);
      }
      if (daemonDir === undefined) daemonDir = (await runOk(postconf, ['-c', etc, '-h', 'daemon_directory'])).trim();
      const logStart = readText(logFile).length;
      const newLog = (): string => readText(logFile).slice(logStart);
      master = new Child('postfix master', path.join(daemonDir, 'master'), ['-c', etc, '-s'], { logFile });
      const diagnostics = (): string => `last lines of ${logFile}:\n${tailOf(readText(logFile))}`;
      try {
        await waitUntil(
          master,
          deadline,
          `Postfix smtpd on ${PEER_HOST}:${port}`,
          async () => {
            // A daemon that dies at start-up (a bad setting) makes master throttle and retry, not
            // exit: fail at once rather than at the deadline.
            const fatal = /^.*\b(?:fatal|panic): .*$/m.exec(newLog());
            if (fatal) throw new Error(`Postfix did not start: ${fatal[0]}\n${diagnostics()}`);
            return smtpGreets(port, PEER_HOST, 1000);
          },
          diagnostics,
        );
      } catch (e) {
        await master.stop();
        const pid = readMasterPid();
        if (pid !== undefined) killGroup(pid, 'SIGKILL');
        // master logs its own fatal errors (bind() included) to syslog only, before postlogd runs:
        // the maillog stays silent, so look at the port ourselves.
        if (await portTaken(port)) {
          // Lost a race for the port we chose: try another one.
          if (options.port === undefined && attempt < 3) continue;
          throw new Error(`port ${port} on ${PEER_HOST} is already in use (ss -ltnp 'sport = :${port}')`, { cause: e });
        }
        throw e;
      }
      masterPid = readMasterPid();
      const startupMs = Math.round(performance.now() - began);

      const log = (): string => readText(logFile);
      const base = {
        host: PEER_HOST,
        port,
        myhostname,
        tempDir: dir,
        configDir: etc,
        logFile,
        startupMs,
        log,
        waitForLog: async (pattern: RegExp, timeoutMs = 10_000): Promise<string> => {
          const line = await pollFor(
            () => log().split('\n').find((l) => pattern.test(l)),
            (l) => l !== undefined,
            timeoutMs,
            () => `no maillog line matches ${String(pattern)} after ${timeoutMs} ms; last lines:\n${tailOf(log())}`,
          );
          return line ?? '';
        },
        queue: async (): Promise<PostfixQueueEntry[]> => {
          const out = await runOk(postqueue, ['-c', etc, '-j']);
          return out
            .split('\n')
            .filter((l) => l.trim() !== '')
            .map((l) => JSON.parse(l) as PostfixQueueEntry);
        },
        flush: async (): Promise<void> => {
          await runOk(postqueue, ['-c', etc, '-f']);
        },
        stop,
      };
      if (options.mode === 'mailbox') {
        const mailDir = mailbox?.base ?? '';
        const result: PostfixMailbox = {
          ...base,
          mode: 'mailbox',
          domains: [...options.domains],
          mailDir,
          messages: (recipient) => readMaildirs(mailDir, recipient),
          waitForMessages: (count, o = {}) => {
            const timeoutMs = o.timeoutMs ?? 10_000;
            return pollFor(
              () => readMaildirs(mailDir, o.recipient),
              (ms) => ms.length >= count,
              timeoutMs,
              (ms) =>
                `${ms.length} of ${count} messages${o.recipient ? ` for ${o.recipient}` : ''} delivered after ${timeoutMs} ms; ` +
                `last lines of ${logFile}:\n${tailOf(log())}`,
            );
          },
        };
        return result;
      }
      const result: PostfixRelay = { ...base, mode: 'relay', relayhost: relayhostOf(options) };
      return result;
    }
  } catch (e) {
    await stop(); // whatever started goes (the temporary folder stays with keepTempDir)
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// smtp-sink

export interface SmtpSinkOptions {
  /** TCP port on 127.0.0.1 (default: a free one). */
  port?: number;
  /** Speak LMTP (-L) instead of SMTP. */
  lmtp?: boolean;
  /** Write each transaction to a file in `dumpDir` (-d): slower, but dumps() can read them. */
  dump?: boolean;
  /** listen(2) backlog, the last argument (default 256). */
  backlog?: number;
  /** -m: connections handled at once (default 256; the excess waits in the backlog). */
  maxConnections?: number;
  /** -h: the name in the greeting and EHLO reply (default `smtp-sink`). */
  hostname?: string;
  /** More smtp-sink(1) options, e.g. ['-r', 'RCPT'] to reject recipients with 4xx. */
  extraArgs?: readonly string[];
  /** Give up when it does not greet after this long (default 10 s). */
  startTimeoutMs?: number;
  keepTempDir?: boolean;
}

/** The -c counters (smtp-sink(1)): updated when a session ends, at QUIT and at ".". */
export interface SmtpSinkCounters {
  /** Sessions ended. */
  sessions: number;
  /** QUIT commands. */
  quits: number;
  /** Messages received (one per "." however many recipients). */
  messages: number;
}

/** One dumped transaction (smtp-sink(1), "DUMP FILE FORMAT"). */
export interface SmtpSinkDump {
  file: string;
  /** X-Client-Proto: SMTP, ESMTP or LMTP. */
  proto: string;
  /** X-Helo-Args (the EHLO/LHLO argument), when the client sent one. */
  helo: string | undefined;
  /** X-Mail-Args: `<from@x> SIZE=…`. */
  mailArgs: string;
  /** X-Rcpt-Args, one per RCPT: `<to@x>`. */
  rcptArgs: string[];
  /** The message as received (dot-stuffing undone), LF line endings, smtp-sink's headers removed. */
  message: Buffer;
}

export interface SmtpSink {
  readonly host: string;
  readonly port: number;
  readonly lmtp: boolean;
  /** Where -d writes (only with `dump`). */
  readonly dumpDir: string | undefined;
  readonly startupMs: number;
  /** Its process group (for its CPU time: /proc of every member). */
  readonly pgid: number | undefined;
  /** Counters since the start, the readiness probe's session not included. */
  counters(): SmtpSinkCounters;
  /** Waits until `messages` reaches `count` (and, with `dump`, until as many dumps are complete). */
  waitForMessages(count: number, timeoutMs?: number): Promise<SmtpSinkCounters>;
  /** The complete dumps so far, oldest first. */
  dumps(): SmtpSinkDump[];
  /** What smtp-sink printed (the tail: counters, errors). */
  output(): string;
  /** Kills smtp-sink and removes its temporary folder. Idempotent. */
  stop(): Promise<void>;
}

/** Parses one dump file; undefined while it is still being written (no final empty line yet). */
export function parseSmtpSinkDump(file: string, raw: Buffer): SmtpSinkDump | undefined {
  // Generated headers, ending with the three-line Received: (smtp-sink(1)); then the message; then
  // one empty line.
  if (!raw.subarray(-2).equals(Buffer.from('\n\n'))) return undefined;
  let pos = 0;
  const fields: [string, string][] = [];
  for (;;) {
    const nl = raw.indexOf('\n', pos);
    if (nl < 0) return undefined;
    const line = raw.subarray(pos, nl).toString('latin1');
    pos = nl + 1;
    const m = /^(X-[A-Za-z-]+): (.*)$/.exec(line);
    if (m) {
      fields.push([m[1] ?? '', m[2] ?? '']);
      continue;
    }
    if (!line.startsWith('Received: ')) return undefined;
    // the two continuation lines (folded with a tab)
    while (raw[pos] === 0x09) {
      const next = raw.indexOf('\n', pos);
      if (next < 0) return undefined;
      pos = next + 1;
    }
    break;
  }
  const get = (name: string): string[] => fields.filter(([k]) => k === name).map(([, v]) => v);
  return {
    file,
    proto: get('X-Client-Proto')[0] ?? '',
    helo: get('X-Helo-Args')[0],
    mailArgs: get('X-Mail-Args')[0] ?? '',
    rcptArgs: get('X-Rcpt-Args'),
    message: raw.subarray(pos, raw.length - 1),
  };
}

function readDumps(dumpDir: string): SmtpSinkDump[] {
  let names: string[];
  try {
    names = readdirSync(dumpDir);
  } catch {
    return [];
  }
  const found: { d: SmtpSinkDump; mtime: number }[] = [];
  for (const name of names) {
    const file = path.join(dumpDir, name);
    const d = parseSmtpSinkDump(file, readFileSync(file));
    if (d) found.push({ d, mtime: statSync(file).mtimeMs });
  }
  return found.sort((a, b) => a.mtime - b.mtime || a.d.file.localeCompare(b.d.file)).map((x) => x.d);
}

/** Starts /usr/sbin/smtp-sink on 127.0.0.1; ready when it greets with 220. */
export async function startSmtpSink(options: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const began = performance.now();
  const bin = requireExecutable('smtp-sink');
  installExitHook();
  const dir = makeTempDir('smtp-sink');
  const record: Running = { kill: () => {}, dir, keepTempDir: options.keepTempDir ?? false };
  running.add(record);
  let child: Child | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await child?.stop();
    if (!record.keepTempDir) rmSync(dir, { recursive: true, force: true });
    running.delete(record);
  };
  record.kill = () => child?.killNow();

  // -c writes "sess=N quit=N mesg=N" and a carriage return at each update; keep the latest and a tail.
  let tail = '';
  let latest: SmtpSinkCounters = { sessions: 0, quits: 0, messages: 0 };
  const onOutput = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('latin1')).slice(-8192);
    const all = [...tail.matchAll(/sess=(\d+) quit=(\d+) mesg=(\d+)/g)];
    const last = all[all.length - 1];
    if (last) latest = { sessions: Number(last[1]), quits: Number(last[2]), messages: Number(last[3]) };
  };

  try {
    const dumpDir = options.dump ? path.join(dir, 'dump') : undefined;
    const args: string[] = ['-c'];
    if (isRoot()) {
      // smtp-sink(1): -u "is required when the process runs with super-user privileges".
      args.push('-u', 'postfix');
      if (dumpDir) {
        mkdirSync(dumpDir);
        const owner = await accountIds('postfix');
        chownSync(dumpDir, owner.uid, owner.gid);
      }
    } else if (dumpDir) {
      mkdirSync(dumpDir);
    }
    if (options.lmtp) args.push('-L');
    // strftime template, then smtp-sink appends a random hex number (smtp-sink(1), -d).
    if (dumpDir) args.push('-d', `${dumpDir}/%Y%m%d%H%M%S.`);
    if (options.maxConnections !== undefined) args.push('-m', String(options.maxConnections));
    if (options.hostname !== undefined) args.push('-h', options.hostname);
    args.push(...(options.extraArgs ?? []));
    const deadline = Date.now() + (options.startTimeoutMs ?? 10_000);
    for (let attempt = 1; ; attempt++) {
      const port = options.port ?? (await freePort());
      tail = '';
      latest = { sessions: 0, quits: 0, messages: 0 };
      child = new Child('smtp-sink', bin, [...args, `inet:${PEER_HOST}:${port}`, String(options.backlog ?? 256)], { onOutput });
      const sink = child;
      try {
        await waitUntil(sink, deadline, `smtp-sink on ${PEER_HOST}:${port}`, () => smtpGreets(port, PEER_HOST, 1000), () => `output:\n${tailOf(tail)}`);
        // The probe's session shows up in the counters: wait for it, then count from there.
        await waitUntil(sink, deadline, 'smtp-sink counters', () => Promise.resolve(latest.sessions >= 1), () => `output:\n${tailOf(tail)}`);
      } catch (e) {
        await sink.stop();
        if (options.port === undefined && attempt < 3 && /address already in use/i.test(tail)) continue;
        throw e;
      }
      const baseline = { ...latest };
      const counters = (): SmtpSinkCounters => ({
        sessions: latest.sessions - baseline.sessions,
        quits: latest.quits - baseline.quits,
        messages: latest.messages - baseline.messages,
      });
      return {
        host: PEER_HOST,
        port,
        lmtp: options.lmtp ?? false,
        dumpDir,
        startupMs: Math.round(performance.now() - began),
        pgid: sink.pid,
        counters,
        waitForMessages: async (count, timeoutMs = 10_000) => {
          await pollFor(
            () => ({ c: counters(), dumps: dumpDir ? readDumps(dumpDir).length : count }),
            ({ c, dumps }) => c.messages >= count && dumps >= count,
            timeoutMs,
            ({ c, dumps }) => `smtp-sink: ${c.messages} messages (${dumps} dumps) of ${count} after ${timeoutMs} ms; output:\n${tailOf(tail)}`,
          );
          return counters();
        },
        dumps: () => (dumpDir ? readDumps(dumpDir) : []),
        output: () => tail,
        stop,
      };
    }
  } catch (e) {
    await stop();
    throw e;
  }
}

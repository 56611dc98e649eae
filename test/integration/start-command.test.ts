/**
 * `hisp start` as a user runs it: the embedded default in a fresh data folder on free ports, one
 * message submitted over STARTTLS + AUTH, delivered to the Maildir with the processed and
 * dispatched MDNs back at the sender, then SIGTERM drains and exits 0. The two output streams
 * (issue 14, item 16): stdout is the log, JSON lines when it is not a terminal and readable lines
 * when it is; stderr the banner, which says where the password is kept and never prints it (item
 * 11). And the two ways a configuration file can stop the start: missing, or invalid (exit 1, the
 * key path named).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../gateway/cli/status-command.js';
import { parseMdn } from '../../gateway/mdn/mdn-parser.js';
import { ensureBuilt, REPO_ROOT } from '../helpers/openssl.js';
import { credentialPaths } from '../helpers/pki.js';
import { rawSmtp } from '../helpers/raw-smtp.js';
import { missingExecutable, requirePeer } from '../helpers/require-peer.js';

/** The banner's and the README's API examples are curl commands, run as a user pastes them. */
const curl = requirePeer(missingExecutable('curl'));

const HISP = path.join(REPO_ROOT, 'bin', 'hisp.js');
const work = mkdtempSync(path.join(tmpdir(), 'hisp-start-cmd-'));

/** The environment of a user who set none of hisp's variables. */
function cleanEnv(): NodeJS.ProcessEnv {
  const { HISP_CONFIG: _c, HISP_DATA_DIR: _d, HISP_LOG_LEVEL: _l, ...rest } = process.env;
  return { ...rest, HISP_LOG_LEVEL: 'info' };
}

/** Every line of a log stream, parsed: throws on the first line that is not a JSON object. */
function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const v = JSON.parse(l) as unknown;
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`not a JSON object: ${l}`);
      return v as Record<string, unknown>;
    });
}

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startHisp(args: string[]): Running {
  const child = spawn(process.execPath, [HISP, ...args], { cwd: work, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 20_000, context: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${context()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function maildirNew(dir: string): Buffer[] {
  const d = path.join(dir, 'new');
  if (!existsSync(d)) return [];
  return readdirSync(d)
    .sort()
    .map((f) => readFileSync(path.join(d, f)));
}

beforeAll(() => {
  ensureBuilt();
}, 180_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('hisp start (embedded default)', () => {
  const dataDir = path.join(work, 'data');
  let hisp: Running;
  let submissionPort = 0;
  let inboundPort = 0;

  beforeAll(async () => {
    hisp = startHisp(['start', '--data-dir', dataDir, '--submission-port', '0', '--inbound-port', '0', '--api-port', '0']);
    const m = await waitFor(
      'the "listening" line',
      () => {
        if (hisp.child.exitCode !== null) throw new Error(`hisp start exited ${hisp.child.exitCode}:\n${hisp.stdout()}\n${hisp.stderr()}`);
        return /^hisp: listening: submission (\d+), inbound (\d+)/m.exec(hisp.stderr()) ?? undefined;
      },
      60_000,
      () => `${hisp.stdout()}\n${hisp.stderr()}`,
    );
    submissionPort = Number(m[1]);
    inboundPort = Number(m[2]);
  }, 90_000);

  afterAll(async () => {
    if (hisp && hisp.child.exitCode === null && hisp.child.signalCode === null) {
      hisp.child.kill('SIGKILL');
      await hisp.exited;
    }
  });

  it('prints where it runs and listens on free ports', () => {
    expect(submissionPort).toBeGreaterThan(0);
    expect(hisp.stderr()).toMatch(/^hisp: embedded default in .* \(created\): development domain direct\.localhost/m);
    // The printed first-message command names the real port.
    expect(hisp.stderr()).toContain(`--server 127.0.0.1:${submissionPort} `);
    expect(existsSync(path.join(dataDir, 'private', 'submission-password'))).toBe(true);
  });

  it('offers STARTTLS on the inbound port with a certificate of its own, TLS 1.2 or later (issue 14, items 8 and 11)', async () => {
    const c = await rawSmtp(inboundPort);
    try {
      expect(await c.read()).toMatch(/^220 /);
      expect(await c.send('EHLO peer.test\r\n')).toMatch(/^250-STARTTLS$/m);
      await c.startTls('peer.test');
      expect(await c.send('NOOP\r\n')).toMatch(/^250 /);
    } finally {
      c.close();
    }
  });

  it('says where the submission password is kept and never prints it', () => {
    const password = readFileSync(path.join(dataDir, 'private', 'submission-password'), 'utf8').trim();
    expect(hisp.stderr()).toContain('its password in data/private/submission-password (mode 0600)');
    // The first-message command reads it from there.
    expect(hisp.stderr()).toContain('--auth-password "$(cat data/private/submission-password)"');
    expect(hisp.stdout() + hisp.stderr()).not.toContain(password);
  });

  it.skipIf(curl.skip)(curl.title('serves the HTTP API on loopback with the development key, whose file the banner names and whose curl command works'), async () => {
    const token = readFileSync(path.join(dataDir, 'private', 'api-key'), 'utf8').trim();
    const banner = hisp.stderr();
    const url = /^hisp: HTTP API at (http:\/\/127\.0\.0\.1:\d+), its development key \(id ([0-9a-f]{16})\) in data\/private\/api-key \(mode 0600\):$/m.exec(banner);
    expect(url, banner).not.toBeNull();
    expect(banner).toMatch(new RegExp(`^hisp: listening: submission ${submissionPort}, inbound ${inboundPort}, api ${new URL(url![1]!).port} `, 'm'));
    expect(banner + hisp.stdout()).not.toContain(token.slice(22));
    const me = await fetch(`${url![1]}/v1/me`, { headers: { authorization: `Bearer ${token}` } });
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ id: url![2], name: 'development', sendAs: ['@direct.localhost'], mailboxes: ['@direct.localhost'] });
    // The banner's command, as a user pastes it (from the folder hisp was started in).
    const command = /^ {2}(curl .*)$/m.exec(banner)![1]!;
    const curl = spawnSync('sh', ['-c', command], { cwd: work, env: cleanEnv() });
    expect(curl.status, curl.stderr.toString()).toBe(0);
    expect(JSON.parse(curl.stdout.toString())).toMatchObject({ id: url![2] });
    // Its requests are in the log with the key's id, never the key.
    await waitFor('the API request in the log', () => hisp.stdout().includes('"api request"'));
    expect(jsonLines(hisp.stdout()).filter((r) => r.msg === 'api request')).toContainEqual(expect.objectContaining({ keyId: url![2], route: '/v1/me', status: 200 }));
    expect(hisp.stdout()).not.toContain(token.slice(22));
  });

  it.skipIf(curl.skip)(curl.title("runs the README's curl examples of the HTTP API as written (the port and folder of this run put in)"), () => {
    const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    const block = /## HTTP API\n[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)![1]!;
    const port = /^hisp: HTTP API at http:\/\/127\.0\.0\.1:(\d+)/m.exec(hisp.stderr())![1]!;
    const script = block.replaceAll('127.0.0.1:5580', `127.0.0.1:${port}`).replaceAll('hisp-data/', 'data/');
    // Each curl on its own line of output, to check them one by one.
    const r = spawnSync('sh', ['-ec', script.replace(/^(curl (?:.*\\\n)*.*)$/gm, '$1; echo')], { cwd: work, env: cleanEnv() });
    expect(r.status, r.stderr.toString()).toBe(0);
    const [me, validated, document, sent] = r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(me).toMatchObject({ name: 'development' });
    expect(validated).toMatchObject({ from: 'direct.localhost', recipients: [{ address: 'patient@direct.localhost', verdict: 'trusted', local: true }] });
    expect(document).toMatchObject({ openapi: '3.1.0' });
    expect(sent).toMatchObject({ recipients: [{ address: 'jane.doe@direct.localhost', state: 'queued' }] });
  });

  it('keeps the log stream pure JSON lines on stdout (not a terminal) and the banner on stderr', async () => {
    // The two pipes are read independently: the log line may come in after the banner's.
    await waitFor('"hisp gateway started" in the log', () => hisp.stdout().includes('hisp gateway started'));
    const records = jsonLines(hisp.stdout());
    expect(records.map((r) => r.msg)).toContain('hisp gateway started');
    expect(hisp.stdout()).not.toContain('hisp: ');
    expect(hisp.stderr()).not.toMatch(/^\{/m);
  });

  it('delivers a message submitted over STARTTLS + AUTH, with processed and dispatched MDNs back', async () => {
    const password = readFileSync(path.join(dataDir, 'private', 'submission-password'), 'utf8').trim();
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: submissionPort,
      secure: false,
      requireTLS: true,
      auth: { user: 'dev', pass: password },
      tls: { rejectUnauthorized: false },
    });
    const messageId = `<start-command.${Date.now()}@direct.localhost>`;
    const raw =
      'From: provider@direct.localhost\r\nTo: patient@direct.localhost\r\nSubject: Hello Direct\r\n' +
      `Message-ID: ${messageId}\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\nFirst message.\r\n`;
    try {
      const info = await transport.sendMail({ envelope: { from: 'provider@direct.localhost', to: ['patient@direct.localhost'] }, raw });
      expect(info.response).toMatch(/^250 /);
    } finally {
      transport.close();
    }

    const context = () => `${hisp.stdout()}\n${hisp.stderr()}`;
    const [delivered] = await waitFor('the message in the patient Maildir', () => {
      const m = maildirNew(path.join(dataDir, 'maildir', 'patient@direct.localhost'));
      return m.length > 0 ? m : undefined;
    }, 30_000, context);
    expect(delivered!.toString()).toContain('Subject: Hello Direct');
    expect(delivered!.toString()).toContain('First message.');

    const mdns = await waitFor('processed and dispatched MDNs in the provider Maildir', () => {
      // The README's curl example sent a message of its own from the same provider: its MDNs are there too.
      const m = maildirNew(path.join(dataDir, 'maildir', 'provider@direct.localhost')).map((x) => parseMdn(x)).filter((x) => x.originalMessageId === messageId);
      return m.length >= 2 ? m : undefined;
    }, 30_000, context);
    expect(mdns.map((m) => m.disposition).sort()).toEqual(['dispatched', 'processed']);
    for (const m of mdns) expect(m.originalMessageId).toBe(messageId);
  }, 90_000);

  it('hisp status of that message shows both copies, the sent one first (issue 14, item 16)', () => {
    // A message to a local address is stored twice under its Message-ID: sent (relayed to the
    // domain), then received (delivered to the Maildir).
    const messageId = /^Message-ID: <([^>]+)>/m.exec(maildirNew(path.join(dataDir, 'maildir', 'patient@direct.localhost'))[0]!.toString())![1]!;
    const r = spawnSync(process.execPath, [HISP, 'status', messageId, '--json', '--data-dir', dataDir], { cwd: work, env: cleanEnv() });
    expect(r.status, r.stderr.toString()).toBe(0);
    const report = JSON.parse(r.stdout.toString()) as StatusReport;
    expect(report.messages.map((m) => [m.direction, m.deliveries.map((d) => [d.recipient, d.state])])).toEqual([
      ['outbound', [['patient@direct.localhost', 'delivered']]],
      ['inbound', [['patient@direct.localhost', 'delivered']]],
    ]);
    expect(report).toMatchObject({ direction: 'outbound', submittedBy: 'dev', queueId: report.messages[0]!.queueId });
    const text = spawnSync(process.execPath, [HISP, 'status', `<${messageId}>`, '--data-dir', dataDir], { cwd: work, env: cleanEnv() }).stdout.toString();
    expect(text).toMatch(/^2 messages carry this Message-ID/);
    expect(text.indexOf('direction     outbound')).toBeLessThan(text.indexOf('direction     inbound'));
  });

  it('drains and exits 0 on SIGTERM within a few seconds', async () => {
    const started = Date.now();
    hisp.child.kill('SIGTERM');
    const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 10_000).unref());
    const result = await Promise.race([hisp.exited, timeout]);
    expect(result, `${hisp.stdout()}\n${hisp.stderr()}`).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(10_000);
    const records = jsonLines(hisp.stdout());
    expect(records).toContainEqual(expect.objectContaining({ msg: 'draining and stopping', reason: 'SIGTERM' }));
    expect(records.at(-1)).toMatchObject({ msg: 'hisp gateway stopped' });
  }, 20_000);
});

describe('hisp start on a terminal', () => {
  it('writes readable log lines, not JSON, when stdout is a TTY', async () => {
    const dataDir = path.join(work, 'tty-data');
    // script(1) runs the command on a pseudo-terminal: stdout and stderr are TTYs.
    const command = [process.execPath, HISP, 'start', '--data-dir', dataDir, '--submission-port', '0', '--inbound-port', '0', '--api-port', '0'].map((a) => `'${a}'`).join(' ');
    const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd: work, env: cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    // Without the colours' escape sequences.
    // eslint-disable-next-line no-control-regex
    child.stdout.on('data', (c: Buffer) => (out += c.toString().replace(/\x1b\[[0-9;]*m/g, '')));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitFor('"hisp gateway started"', () => /hisp gateway started/.test(out) && /^hisp: listening/m.test(out), 60_000, () => out);
      // pino-pretty: `[time] INFO (hisp): message`, fields on the lines below.
      expect(out).toMatch(/INFO.*\(hisp\): hisp gateway started/);
      expect(out).not.toContain('"level":');
    } finally {
      const pid = Number(readFileSync(path.join(dataDir, 'hisp.pid'), 'utf8'));
      process.kill(pid, 'SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(out).toMatch(/INFO.*hisp gateway stopped/);
  }, 90_000);
});

/** A local domain for the configurations below: recipient.test, the test root CA anchored both ways. */
const RECIPIENT_DOMAIN_TOML = [
  '[[domains]]',
  'name = "recipient.test"',
  `anchors = { incoming = [${JSON.stringify(credentialPaths('root-ca').cert)}], outgoing = [${JSON.stringify(credentialPaths('root-ca').cert)}] }`,
  '[[domains.credentials]]',
  `key = ${JSON.stringify(credentialPaths('recipient-domain').key)}`,
  `cert = ${JSON.stringify(credentialPaths('recipient-domain').chain)}`,
  '',
];

describe('hisp start --config', () => {
  it('exits 1 with a clear message when the file does not exist', async () => {
    const r = startHisp(['start', '--config', '/nonexistent/hisp.toml']);
    const { code } = await r.exited;
    expect(code).toBe(1);
    expect(r.stderr()).toMatch(/cannot read configuration file \/nonexistent\/hisp\.toml \(ENOENT\)/);
    expect(r.stdout()).not.toMatch(/listening/);
  }, 30_000);

  it('exits 1 naming the key path of an unknown key, and does not start', async () => {
    const tls = credentialPaths('sender-domain');
    const file = path.join(work, 'bad.toml');
    writeFileSync(
      file,
      [
        `dataDir = ${JSON.stringify(path.join(work, 'bad-data'))}`,
        '[submission]',
        'port = 0',
        `tlsCert = ${JSON.stringify(tls.chain)}`,
        `tlsKey = ${JSON.stringify(tls.key)}`,
        '[inbound]',
        'port = 0',
        'maxClient = 5',
        ...RECIPIENT_DOMAIN_TOML,
      ].join('\n'),
    );
    const r = startHisp(['start', '--config', file]);
    const { code } = await r.exited;
    expect(code).toBe(1);
    expect(r.stderr()).toContain('HISP_CONFIG_INVALID');
    expect(r.stderr()).toMatch(/inbound\.maxClient: unknown key/);
    // The only error: the rest of the file is valid.
    expect(r.stderr()).toMatch(/\(1 error\)/);
    expect(r.stdout()).not.toMatch(/listening/);

    // [api] in plain HTTP on a public address: refused at start (an API key must not cross a network in clear).
    writeFileSync(file, readFileSync(file, 'utf8').replace('maxClient = 5\n', '[api]\nenabled = true\nhost = "0.0.0.0"\n'));
    const api = startHisp(['start', '--config', file]);
    expect((await api.exited).code).toBe(1);
    expect(api.stderr()).toMatch(/\(1 error\):\n {2}api\.host: 0\.0\.0\.0 is not a loopback address: plain HTTP/);
    expect(api.stdout()).not.toMatch(/listening/);
  }, 30_000);

  it.skipIf(curl.skip)(curl.title('with [api] enabled over HTTPS: the banner gives its URL, and a key made with hisp api-key works at once'), async () => {
    const tls = credentialPaths('sender-domain');
    const file = path.join(work, 'api.toml');
    const serverCert = path.join(REPO_ROOT, 'test/fixtures/trust/tls-server.cert.pem');
    writeFileSync(
      file,
      [
        `dataDir = ${JSON.stringify(path.join(work, 'api-data'))}`,
        '[submission]',
        'enabled = false',
        '[inbound]',
        'port = 0',
        `tlsCert = ${JSON.stringify(tls.chain)}`,
        `tlsKey = ${JSON.stringify(tls.key)}`,
        '[api]',
        'enabled = true',
        'port = 0',
        `tlsCert = ${JSON.stringify(serverCert)}`,
        `tlsKey = ${JSON.stringify(path.join(REPO_ROOT, 'test/fixtures/trust/tls-server.key.pem'))}`,
        ...RECIPIENT_DOMAIN_TOML,
      ].join('\n'),
    );
    const h = startHisp(['start', '--config', file]);
    try {
      const m = await waitFor('the "listening" line', () => /^hisp: listening: submission off, inbound \d+, api (\d+) /m.exec(h.stderr()) ?? undefined, 60_000, () => h.stderr());
      expect(h.stderr()).toContain(`hisp: HTTP API at https://127.0.0.1:${m[1]} (keys: hisp api-key create --config ${file})`);
      const created = spawnSync(process.execPath, [HISP, 'api-key', 'create', '--config', file, '--name', 'ehr', '--action', 'status'], { cwd: work, env: cleanEnv() });
      expect(created.status, created.stderr.toString()).toBe(0);
      const me = spawnSync('curl', ['-s', '--cacert', serverCert, '-H', `Authorization: Bearer ${created.stdout.toString().trim()}`, `https://127.0.0.1:${m[1]}/v1/me`], { cwd: work });
      expect(JSON.parse(me.stdout.toString())).toMatchObject({ name: 'ehr', actions: ['status'] });
    } finally {
      h.child.kill('SIGTERM');
    }
    expect((await h.exited).code).toBe(0);
  }, 60_000);
});

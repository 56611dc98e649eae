/**
 * Issue 14, item 11: every file and folder of the data folder is the gateway's alone (files 0600,
 * folders 0700), whatever the umask it was started with, including what SQLite creates beside the
 * database (`-wal`, `-shm`), the body spool's segments, the Maildirs, a quarantined message's file
 * and the lock file. Proved twice: `hisp start` under umask 022 and 000 (a shell's umask, as a user
 * or an init script leaves it), and the gateway as a library (HispGateway.start in this process,
 * umask 000, no CLI to set one).
 */
import { chmodSync, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import BetterSqlite3 from 'better-sqlite3';
import { ensureDevelopmentDomain } from '../../gateway/admin/development-domain.js';
import { embeddedDefault } from '../../gateway/admin/embedded-default.js';
import { createLogger } from '../../gateway/core/logger.js';
import { HispGateway } from '../../gateway/flows/hisp-gateway.js';
import { openDatabase } from '../../gateway/store/database.js';
import { ensureBuilt, makeTempDir } from '../helpers/openssl.js';
import { listening, maildirNew, modesUnder, spawnHisp, submitToEmbedded, waitFor } from '../helpers/hisp-start.js';

const tmp = makeTempDir('hisp-modes-');
afterAll(() => tmp.cleanup());

function message(id: string): string {
  return (
    'From: provider@direct.localhost\r\nTo: patient@direct.localhost\r\nSubject: modes\r\n' +
    `Message-ID: <${id}@direct.localhost>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\nBody.\r\n`
  );
}

/** A plain (unencrypted) message to the inbound port: accepted, then quarantined with its body set aside as a file. */
async function sendUnencrypted(port: number): Promise<void> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    await transport.sendMail({
      envelope: { from: 'someone@peer.test', to: ['patient@direct.localhost'] },
      raw: 'From: someone@peer.test\r\nTo: patient@direct.localhost\r\nSubject: not encrypted\r\n\r\nPlain text.\r\n',
    });
  } finally {
    transport.close();
  }
}

/** Waits until the data folder holds every kind of file the item names, so that the walk covers each. */
async function everyKindPresent(dataDir: string, context: () => string): Promise<void> {
  await waitFor('the message in the patient Maildir', () => maildirNew(path.join(dataDir, 'maildir', 'patient@direct.localhost')).length > 0, 30_000, context);
  await waitFor(
    'the quarantined message set aside as a file',
    () => existsSync(path.join(dataDir, 'messages')) && readdirSync(path.join(dataDir, 'messages')).some((f) => f.endsWith('.eml')),
    30_000,
    context,
  );
  for (const f of ['hisp.sqlite', 'hisp.sqlite-wal', 'hisp.sqlite-shm', 'hisp.pid', 'private/submission-password', 'anchors/development-ca.cert.pem']) {
    expect(existsSync(path.join(dataDir, f)), f).toBe(true);
  }
  expect(readdirSync(path.join(dataDir, 'spool')).some((f) => f.endsWith('.spool')), 'a spool segment').toBe(true);
}

/** Every folder 0700 and every file 0600 (and nothing else, such as a symlink or a socket). */
function expectOwnerOnly(dataDir: string): void {
  const entries = modesUnder(dataDir);
  const wrong = entries
    .filter((e) => e.mode !== (e.kind === 'dir' ? 0o700 : 0o600) || e.kind === 'other')
    .map((e) => `${e.mode.toString(8).padStart(4, '0')} ${e.kind} ${e.path}`);
  expect(wrong).toEqual([]);
  expect(entries.some((e) => e.kind === 'file')).toBe(true);
}

beforeAll(() => {
  ensureBuilt();
}, 180_000);

describe.each(['022', '000'])('hisp start under umask %s', (umask) => {
  const dataDir = path.join(tmp.dir, `data-${umask}`);

  it('keeps every file 0600 and every folder 0700, while running and after the stop', async () => {
    const hisp = spawnHisp(['start', '--data-dir', dataDir, '--submission-port', '0', '--inbound-port', '0', '--api-port', '0'], { cwd: tmp.dir, how: { umask } });
    const context = () => `${hisp.stdout().slice(-3000)}\n${hisp.stderr()}`;
    try {
      const ports = await listening(hisp);
      expect(await submitToEmbedded(dataDir, ports.submission, message(`modes-${umask}`))).toMatch(/^250 /);
      await sendUnencrypted(ports.inbound);
      await everyKindPresent(dataDir, context);
      expectOwnerOnly(dataDir);
    } finally {
      hisp.child.kill('SIGTERM');
    }
    expect(await hisp.exited, context()).toEqual({ code: 0, signal: null });
    expectOwnerOnly(dataDir);
  }, 120_000);
});

describe('the gateway as a library (no CLI), umask 000', () => {
  it('keeps every file 0600 and every folder 0700', async () => {
    const dataDir = path.join(tmp.dir, 'data-library');
    const previous = process.umask(0);
    let gateway: HispGateway | undefined;
    try {
      const dev = await embeddedDefault(dataDir, { submission: 0, inbound: 0, api: 0 });
      gateway = await HispGateway.start({ config: dev.config, logger: createLogger({ level: 'silent' }), pollIntervalMs: 100 });
      expect(await submitToEmbedded(dataDir, gateway.submissionPort!, message('modes-library'))).toMatch(/^250 /);
      await sendUnencrypted(gateway.inboundPort!);
      await everyKindPresent(dataDir, () => '');
      expectOwnerOnly(dataDir);
      await gateway.stop();
      gateway = undefined;
      expectOwnerOnly(dataDir);
    } finally {
      await gateway?.stop();
      process.umask(previous);
    }
  }, 120_000);
});

describe('a data folder an older hisp made (files 0644)', () => {
  it('is tightened when hisp opens it again: the database, its WAL and SHM, the development certificates', async () => {
    const dataDir = path.join(tmp.dir, 'data-older');
    const dev = await ensureDevelopmentDomain(dataDir);
    const previous = process.umask(0o022);
    try {
      // As SQLite left them: hisp.sqlite and its WAL/SHM 0644 (a connection kept open, so they stay).
      const older = new BetterSqlite3(path.join(dataDir, 'hisp.sqlite'));
      older.pragma('journal_mode = WAL');
      older.exec('CREATE TABLE IF NOT EXISTS t (x)');
      for (const f of ['hisp.sqlite', 'hisp.sqlite-wal', 'hisp.sqlite-shm']) chmodSync(path.join(dataDir, f), 0o644);
      chmodSync(dev.certificate, 0o644);
      chmodSync(dev.anchor, 0o644);
      const db = openDatabase({ dataDir, migrations: [] });
      await ensureDevelopmentDomain(dataDir);
      const modes = Object.fromEntries(modesUnder(dataDir).map((e) => [e.path, e.mode]));
      await db.close();
      older.close();
      for (const f of ['hisp.sqlite', 'hisp.sqlite-wal', 'hisp.sqlite-shm', 'anchors/development-ca.cert.pem', 'domains/direct.localhost/domain.cert.pem']) {
        expect(modes[f], f).toBe(0o600);
      }
    } finally {
      process.umask(previous);
    }
  });
});

import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, sep } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hispRejection } from '../../test/helpers/hisp-error.js';
import { substituteAddress, type MaildirDelivery } from '../config/schema.js';
import { deliverToMaildir } from './maildir.js';

const MESSAGE = Buffer.from('From: a@sender.test\r\nTo: b@recipient.test\r\nMessage-ID: <../../etc/passwd@x>\r\nSubject: maildir\r\n\r\nbody\r\n');

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'hisp-maildir-'));
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

const mode = (p: string): number => statSync(p).mode & 0o777;

describe('deliverToMaildir', () => {
  it('creates tmp/new/cur (0700) and lands the message byte for byte in new/ (0600), tmp/ left empty', async () => {
    const box = join(root, 'deep', 'box');
    // Every byte value, bare LF and CR, NUL: stored exactly as given.
    const message = Buffer.concat([MESSAGE, Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from('\n\r\0')]);
    const file = await deliverToMaildir(box, message, { hostname: 'hisp.test' });

    expect(dirname(file)).toBe(join(box, 'new'));
    expect(readFileSync(file).equals(message)).toBe(true);
    expect(mode(file)).toBe(0o600);
    for (const d of ['tmp', 'new', 'cur']) expect(mode(join(box, d))).toBe(0o700);
    expect(mode(box)).toBe(0o700);
    expect(readdirSync(join(box, 'tmp'))).toEqual([]);
    expect(readdirSync(join(box, 'cur'))).toEqual([]);
  });

  it('names the file <sec>.M<usec>P<pid>Q<n>R<random>.<host>,S=<size>, with nothing taken from the message', async () => {
    const file = await deliverToMaildir(root, MESSAGE, { hostname: 'mx/1:a,b' });
    const name = basename(file);
    expect(name).toMatch(new RegExp(`^\\d{10,}\\.M\\d{1,6}P${process.pid}Q\\d+R[0-9a-f]{16}\\.mx\\\\0571\\\\072a\\\\054b,S=${MESSAGE.byteLength}$`));
    expect(name).not.toContain('passwd');
    expect(name).not.toContain(sep);
  });

  it('delivers into an existing maildir, and keeps 200 concurrent deliveries apart', async () => {
    await deliverToMaildir(root, MESSAGE);
    const messages = Array.from({ length: 200 }, (_, i) => Buffer.from(`Subject: ${i}\r\n\r\nmessage ${i}\r\n`));
    const files = await Promise.all(messages.map((m) => deliverToMaildir(root, m, { hostname: 'hisp.test' })));
    expect(new Set(files).size).toBe(200);
    expect(readdirSync(join(root, 'new'))).toHaveLength(201);
    files.forEach((f, i) => expect(readFileSync(f).equals(messages[i]!)).toBe(true));
    expect(readdirSync(join(root, 'tmp'))).toEqual([]);
  });

  it('creates the maildir again when it was removed after an earlier delivery', async () => {
    const box = join(root, 'again');
    await deliverToMaildir(box, Buffer.from('Subject: one\r\n\r\n1\r\n'));
    rmSync(box, { recursive: true, force: true });
    const second = await deliverToMaildir(box, Buffer.from('Subject: two\r\n\r\n2\r\n'));
    expect(readFileSync(second, 'utf8')).toContain('Subject: two');
    expect(readdirSync(join(box, 'new'))).toHaveLength(1);
  });

  it('a path that exists as a file is HISP_CONFIG_INVALID (transient: the operator fixes it), with the errno', async () => {
    const file = join(root, 'not-a-folder');
    writeFileSync(file, 'x');
    for (const path of [file, join(file, 'below')]) {
      const err = await hispRejection(deliverToMaildir(path, MESSAGE));
      expect(err.code).toBe('HISP_CONFIG_INVALID');
      expect(err.transient).toBe(true);
      expect(['EEXIST', 'ENOTDIR']).toContain(err.details?.errno);
    }
    // new/ as a file inside an otherwise fine maildir: the same.
    const box = join(root, 'box');
    await deliverToMaildir(box, MESSAGE);
    rmSync(join(box, 'new'), { recursive: true });
    writeFileSync(join(box, 'new'), 'x');
    const err = await hispRejection(deliverToMaildir(box, MESSAGE));
    expect(err.code).toBe('HISP_CONFIG_INVALID');
    expect(readdirSync(join(box, 'tmp'))).toEqual([]);
  });

  it('refuses a relative path (HISP_USAGE, permanent)', async () => {
    const err = await hispRejection(deliverToMaildir('relative/box', MESSAGE));
    expect(err).toMatchObject({ code: 'HISP_USAGE', transient: false });
  });

  it('a folder it may not write is HISP_IO, transient (EACCES)', async () => {
    const { chmodSync } = await import('node:fs');
    await deliverToMaildir(root, MESSAGE);
    chmodSync(join(root, 'tmp'), 0o500);
    // root writes anywhere (CAP_DAC_OVERRIDE), and CI runs as root: there the delivery runs with the
    // effective ids of nobody (65534), the real ones kept to come back, instead of being skipped.
    const asRoot = process.getuid?.() === 0 && process.seteuid !== undefined && process.setegid !== undefined;
    chmodSync(root, 0o755);
    try {
      if (asRoot) {
        process.setegid!(65534);
        process.seteuid!(65534);
      }
      const err = await hispRejection(deliverToMaildir(root, MESSAGE));
      expect(err).toMatchObject({ code: 'HISP_IO', transient: true, details: { errno: 'EACCES' } });
    } finally {
      if (asRoot) {
        process.seteuid!(0);
        process.setegid!(0);
      }
      chmodSync(join(root, 'tmp'), 0o700);
    }
  });

  it('an address from the network cannot climb out of the maildir root ({address} → addressFolderName)', async () => {
    const template: MaildirDelivery = { type: 'maildir', path: join(root, 'maildir', '{address}') };
    const hostile = ['../../escape@d.test', '..@d.test', '.@d.test', 'a/b@d.test', 'a\\b@d.test', '%2e%2e/x@d.test', '..%2F..%2Fx@d.test', 'nul\0byte@d.test', 'Dr.Smith@D.Test'];
    const folders = new Set<string>();
    for (const address of hostile) {
      const resolved = substituteAddress(template, address);
      if (resolved.type !== 'maildir') throw new Error('expected a maildir');
      const file = await deliverToMaildir(resolved.path, MESSAGE);
      const rel = relative(join(root, 'maildir'), file).split(sep);
      // <one folder>/new/<file>: the folder is a single segment below the root, never . or ..
      expect(rel).toHaveLength(3);
      expect(rel[0]).not.toMatch(/^\.\.?$/);
      expect(rel[1]).toBe('new');
      folders.add(rel[0]!);
    }
    expect(folders.size).toBe(hostile.length);
    expect(readdirSync(root)).toEqual(['maildir']);
  });
});

import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, sep } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hispRejection } from '../../test/helpers/hisp-error.js';
import { substituteAddress, type MaildirDelivery } from '../config/schema.js';
import { deliveryId } from './delivery-id.js';
import { deliverToMaildir, type MaildirDeliveryKey } from './maildir.js';

const RECEIVED = new Date('2026-11-25T10:00:00.750Z');
let deliveries = 0;
/** A fresh delivery (its own queue id), accepted at RECEIVED. */
const fresh = (extra: Partial<MaildirDeliveryKey> = {}): MaildirDeliveryKey => ({
  deliveryId: deliveryId(`q${++deliveries}`, 'b@recipient.test'),
  receivedAt: RECEIVED,
  ...extra,
});
/** deliverToMaildir for a fresh delivery: the file's path. */
const deliver = async (path: string, message: Buffer, hostname?: string): Promise<string> =>
  (await deliverToMaildir(path, message, fresh(), hostname === undefined ? {} : { hostname })).file;

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
    const file = await deliver(box, message, 'hisp.test');

    expect(dirname(file)).toBe(join(box, 'new'));
    expect(readFileSync(file).equals(message)).toBe(true);
    expect(mode(file)).toBe(0o600);
    for (const d of ['tmp', 'new', 'cur']) expect(mode(join(box, d))).toBe(0o700);
    expect(mode(box)).toBe(0o700);
    expect(readdirSync(join(box, 'tmp'))).toEqual([]);
    expect(readdirSync(join(box, 'cur'))).toEqual([]);
  });

  it('names the file <receivedAt seconds>.<delivery id>.<host>,S=<size>, with nothing taken from the message', async () => {
    const key = fresh();
    const { file } = await deliverToMaildir(root, MESSAGE, key, { hostname: 'mx/1:a,b' });
    const name = basename(file);
    expect(name).toBe(`${Math.floor(RECEIVED.getTime() / 1000)}.${key.deliveryId}.mx\\0571\\072a\\054b,S=${MESSAGE.byteLength}`);
    expect(name).not.toContain('passwd');
    expect(name).not.toContain(sep);
  });

  it('refuses a delivery id that could break the name (a dot, a colon, a slash) or a missing receivedAt (HISP_USAGE)', async () => {
    for (const id of ['a.b', 'a:b', 'a/b', '', 'a,b']) {
      expect(await hispRejection(deliverToMaildir(root, MESSAGE, fresh({ deliveryId: id })))).toMatchObject({ code: 'HISP_USAGE' });
    }
    expect(await hispRejection(deliverToMaildir(root, MESSAGE, fresh({ receivedAt: new Date(Number.NaN) })))).toMatchObject({ code: 'HISP_USAGE' });
  });

  it('delivers into an existing maildir, and keeps 200 concurrent deliveries apart', async () => {
    await deliver(root, MESSAGE);
    const messages = Array.from({ length: 200 }, (_, i) => Buffer.from(`Subject: ${i}\r\n\r\nmessage ${i}\r\n`));
    const files = await Promise.all(messages.map((m) => deliver(root, m, 'hisp.test')));
    expect(new Set(files).size).toBe(200);
    expect(readdirSync(join(root, 'new'))).toHaveLength(201);
    files.forEach((f, i) => expect(readFileSync(f).equals(messages[i]!)).toBe(true));
    expect(readdirSync(join(root, 'tmp'))).toEqual([]);
  });

  it('creates the maildir again when it was removed after an earlier delivery', async () => {
    const box = join(root, 'again');
    await deliver(box, Buffer.from('Subject: one\r\n\r\n1\r\n'));
    rmSync(box, { recursive: true, force: true });
    const second = await deliver(box, Buffer.from('Subject: two\r\n\r\n2\r\n'));
    expect(readFileSync(second, 'utf8')).toContain('Subject: two');
    expect(readdirSync(join(box, 'new'))).toHaveLength(1);
  });

  it('a path that exists as a file is HISP_CONFIG_INVALID (transient: the operator fixes it), with the errno', async () => {
    const file = join(root, 'not-a-folder');
    writeFileSync(file, 'x');
    for (const path of [file, join(file, 'below')]) {
      const err = await hispRejection(deliverToMaildir(path, MESSAGE, fresh()));
      expect(err.code).toBe('HISP_CONFIG_INVALID');
      expect(err.transient).toBe(true);
      expect(['EEXIST', 'ENOTDIR']).toContain(err.details?.errno);
    }
    // new/ as a file inside an otherwise fine maildir: the same.
    const box = join(root, 'box');
    await deliver(box, MESSAGE);
    rmSync(join(box, 'new'), { recursive: true });
    writeFileSync(join(box, 'new'), 'x');
    const err = await hispRejection(deliverToMaildir(box, MESSAGE, fresh({ mayExist: false })));
    expect(err.code).toBe('HISP_CONFIG_INVALID');
    expect(readdirSync(join(box, 'tmp'))).toEqual([]);
  });

  it('refuses a relative path (HISP_USAGE, permanent)', async () => {
    const err = await hispRejection(deliverToMaildir('relative/box', MESSAGE, fresh()));
    expect(err).toMatchObject({ code: 'HISP_USAGE', transient: false });
  });

  it('a folder it may not write is HISP_IO, transient (EACCES)', async () => {
    const { chmodSync } = await import('node:fs');
    await deliver(root, MESSAGE);
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
      const err = await hispRejection(deliverToMaildir(root, MESSAGE, fresh()));
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
      const file = await deliver(resolved.path, MESSAGE);
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

describe('deliverToMaildir: once per delivery (issue 14, item 7)', () => {
  const files = (box: string, sub: string) => readdirSync(join(box, sub));

  it('a second try of the same delivery finds the first copy in new/ and writes nothing', async () => {
    const key = fresh();
    const first = await deliverToMaildir(root, MESSAGE, key, { hostname: 'hisp.test' });
    const again = await deliverToMaildir(root, MESSAGE, key, { hostname: 'hisp.test' });
    expect(first.alreadyDelivered).toBe(false);
    expect(again).toEqual({ file: first.file, alreadyDelivered: true });
    expect(files(root, 'new')).toHaveLength(1);
    expect(files(root, 'tmp')).toEqual([]);
  });

  it('also when the mail reader moved it to cur/ with flags (uniq:2,S), or the host name changed since', async () => {
    const key = fresh();
    const first = await deliverToMaildir(root, MESSAGE, key, { hostname: 'hisp.test' });
    const seen = join(root, 'cur', `${basename(first.file)}:2,S`);
    renameSync(first.file, seen);
    const again = await deliverToMaildir(root, MESSAGE, key, { hostname: 'other-host.test' });
    expect(again).toEqual({ file: seen, alreadyDelivered: true });
    expect(files(root, 'new')).toEqual([]);
    expect(files(root, 'cur')).toEqual([basename(seen)]);
  });

  it("a crashed try's leftover in tmp/ is removed and the message written whole", async () => {
    const key = fresh();
    await deliverToMaildir(root, Buffer.from('unrelated'), fresh(), { hostname: 'hisp.test' });
    const leftover = join(root, 'tmp', `${Math.floor(RECEIVED.getTime() / 1000)}.${key.deliveryId}.hisp.test,S=${MESSAGE.byteLength}.0123456789abcdef`);
    writeFileSync(leftover, MESSAGE.subarray(0, 10)); // the crash came mid-write
    const r = await deliverToMaildir(root, MESSAGE, key, { hostname: 'hisp.test' });
    expect(r.alreadyDelivered).toBe(false);
    expect(readFileSync(r.file).equals(MESSAGE)).toBe(true);
    expect(files(root, 'tmp')).toEqual([]);
    expect(files(root, 'new')).toHaveLength(2);
  });

  it('the first try (mayExist false) does not look, and still never writes a second copy of a name in new/', async () => {
    const key = fresh();
    await deliverToMaildir(root, MESSAGE, key, { hostname: 'hisp.test' });
    const r = await deliverToMaildir(root, MESSAGE, { ...key, mayExist: false }, { hostname: 'hisp.test' });
    expect(r.alreadyDelivered).toBe(true);
    expect(files(root, 'new')).toHaveLength(1);
    expect(files(root, 'tmp')).toEqual([]);
  });

  it('two deliveries of the same message (two queue ids, or two recipients) are two files', async () => {
    await deliverToMaildir(root, MESSAGE, { deliveryId: deliveryId('q-one', 'b@recipient.test'), receivedAt: RECEIVED });
    await deliverToMaildir(root, MESSAGE, { deliveryId: deliveryId('q-one', 'c@recipient.test'), receivedAt: RECEIVED });
    await deliverToMaildir(root, MESSAGE, { deliveryId: deliveryId('q-two', 'b@recipient.test'), receivedAt: RECEIVED });
    expect(files(root, 'new')).toHaveLength(3);
  });

  it('ten tries of one delivery at once leave one file', async () => {
    const key = fresh();
    const results = await Promise.all(Array.from({ length: 10 }, () => deliverToMaildir(root, MESSAGE, key, { hostname: 'hisp.test' })));
    expect(new Set(results.map((r) => r.file)).size).toBe(1);
    expect(files(root, 'new')).toHaveLength(1);
    expect(readFileSync(results[0]!.file).equals(MESSAGE)).toBe(true);
  });
});

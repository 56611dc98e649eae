/**
 * `hisp send --api URL --key FILE --from A --to B [--ccda FILE] [--attach FILE] [--xdm]` (issue 15,
 * a contract) as a user runs it, against `hisp start` (the embedded default, its HTTP API on a free
 * loopback port with the development key it writes): it prints the message id, which `hisp status
 * ID --json` finds in the same data folder and the API's status shows; bad input exits 1 with the
 * HISP_… code on stderr (an unknown key, a sender outside the key, a file that is no C-CDA, a file
 * that cannot be read), a bad --api URL is a usage error (exit 2).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../gateway/cli/status-command.js';
import { cdaDocument, section } from '../helpers/ccda-documents.js';
import { runHisp, type CliResult } from '../helpers/hisp-cli.js';
import { listening, maildirNew, spawnHisp, waitFor, type RunningHisp } from '../helpers/hisp-start.js';
import { ensureBuilt } from '../helpers/openssl.js';

const work = mkdtempSync(path.join(tmpdir(), 'hisp-send-cmd-'));
const dataDir = path.join(work, 'data');
const keyFile = path.join(dataDir, 'private', 'api-key');
const ccda = path.join(work, 'CCDA_Summary.xml');
const FROM = 'provider@direct.localhost';
const TO = 'patient@direct.localhost';

let hisp: RunningHisp;
let api = '';

beforeAll(async () => {
  ensureBuilt();
  writeFileSync(ccda, cdaDocument({ title: 'Summary of care', sections: [section('<paragraph>No known allergies.</paragraph>', 'Allergies')] }));
  hisp = spawnHisp(['start', '--data-dir', dataDir, '--submission-port', '0', '--inbound-port', '0', '--api-port', '0'], { cwd: work });
  await listening(hisp);
  api = /^hisp: HTTP API at (http:\/\/127\.0\.0\.1:\d+)/m.exec(hisp.stderr())![1]!;
}, 180_000);

afterAll(async () => {
  if (hisp && hisp.child.exitCode === null && hisp.child.signalCode === null) {
    hisp.child.kill('SIGTERM');
    await hisp.exited;
  }
  rmSync(work, { recursive: true, force: true });
}, 60_000);

const send = (args: readonly string[], key = keyFile): Promise<CliResult> => runHisp(['send', '--api', api, '--key', key, ...args], { cwd: work });

/** The message as the API's status shows it (GET /v1/messages/{id}, the development key). */
async function apiStatus(id: string): Promise<{ subject: string | null; clientRef: string | null; from: string; recipients: { address: string; state: string }[] }> {
  const r = await fetch(`${api}/v1/messages/${id}`, { headers: { authorization: `Bearer ${readFileSync(keyFile, 'utf8').trim()}` } });
  expect(r.status).toBe(200);
  return (await r.json()) as Awaited<ReturnType<typeof apiStatus>>;
}

describe('hisp send (through the HTTP API of a running hisp)', () => {
  it('sends a C-CDA and prints the id; hisp status ID --json shows the message, which the gateway delivers', async () => {
    const r = await send(['--from', FROM, '--to', TO, '--ccda', ccda, '--subject', 'Your summary']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const id = r.stdout.trim();
    expect(r.stdout).toBe(`${id}\n`);
    expect(id).toMatch(/^[A-Za-z0-9_-]+$/);

    const status = await runHisp(['status', id, '--json', '--data-dir', dataDir], { cwd: work });
    expect(status.status, status.stderr).toBe(0);
    const report = JSON.parse(status.stdout) as StatusReport;
    expect(report).toMatchObject({ queueId: id, direction: 'outbound', mailFrom: FROM, recipients: [TO] });
    expect(report.deliveries.map((d) => d.recipient)).toEqual([TO]);

    expect(await apiStatus(id)).toMatchObject({ subject: 'Your summary', from: FROM, recipients: [{ address: TO }] });
    // The gateway relays it to its own domain: hisp status follows it to delivered.
    await waitFor(
      'the delivery in hisp status',
      async () => {
        const s = await runHisp(['status', id, '--json', '--data-dir', dataDir], { cwd: work });
        return (JSON.parse(s.stdout) as StatusReport).deliveries[0]?.state === 'delivered';
      },
      60_000,
      () => hisp.stdout().slice(-3000),
    );
  }, 90_000);

  it('--xdm sends the documents as an XDM package too (XDM/1.0/DDM in the Subject); --json prints the whole answer', async () => {
    const r = await send(['--from', FROM, '--to', TO, '--cc', `nurse@direct.localhost`, '--ccda', ccda, '--xdm', '--json', '--client-ref', 'order-42']);
    expect(r.status, r.stderr).toBe(0);
    const answer = JSON.parse(r.stdout) as { id: string; messageId: string; recipients: { address: string; state: string }[] };
    expect(answer.recipients).toEqual([
      { address: TO, state: 'queued' },
      { address: 'nurse@direct.localhost', state: 'queued' },
    ]);
    expect(await apiStatus(answer.id)).toMatchObject({ subject: 'Health record XDM/1.0/DDM', clientRef: 'order-42' });
    const status = await runHisp(['status', answer.id, '--json', '--data-dir', dataDir], { cwd: work });
    expect((JSON.parse(status.stdout) as StatusReport).messageId).toBe(answer.messageId);
    // What the patient receives: the C-CDA, its rendering, and the XDM package, announced in the Subject (ETT rule 124).
    const delivered = await waitFor(
      'the message in the patient’s Maildir',
      async () => {
        for (const raw of maildirNew(path.join(dataDir, 'maildir', TO))) {
          const mail = await simpleParser(raw);
          if (mail.messageId === `<${answer.messageId}>`) return mail;
        }
        return undefined;
      },
      60_000,
      () => hisp.stdout().slice(-3000),
    );
    expect(delivered.subject).toBe('Health record XDM/1.0/DDM');
    expect(delivered.attachments.map((a) => [a.filename, a.contentType])).toEqual([
      ['CCDA_Summary.xml', 'application/xml'],
      ['CCDA_Summary.html', 'text/html'],
      ['XDM.zip', 'application/zip'],
    ]);
    expect(delivered.attachments[0]?.content.equals(readFileSync(ccda))).toBe(true);
  }, 90_000);

  it('bad input exits 1 with the HISP_ code on stderr, and prints no id', async () => {
    const unknownKey = path.join(work, 'unknown.key');
    writeFileSync(unknownKey, `hisp_0123456789abcdef_${'A'.repeat(43)}\n`);
    const notCda = path.join(work, 'note.xml');
    writeFileSync(notCda, '<?xml version="1.0"?><note>not a CDA</note>');
    const cases: [string, Promise<CliResult>, string][] = [
      ['an unknown key', send(['--from', FROM, '--to', TO, '--ccda', ccda], unknownKey), 'HISP_API_UNAUTHORIZED'],
      ['a sender outside the key', send(['--from', 'doctor@elsewhere.example', '--to', TO, '--ccda', ccda]), 'HISP_API_FORBIDDEN'],
      ['a recipient that is no address', send(['--from', FROM, '--to', 'not an address']), 'HISP_API_INVALID_REQUEST'],
      ['a --ccda that is no C-CDA', send(['--from', FROM, '--to', TO, '--ccda', notCda]), 'HISP_CDA_INVALID'],
      ['a --ccda that does not exist', send(['--from', FROM, '--to', TO, '--ccda', path.join(work, 'missing.xml')]), 'HISP_IO'],
      ['a key file that does not exist', send(['--from', FROM, '--to', TO], path.join(work, 'missing.key')), 'HISP_IO'],
    ];
    for (const [what, result, code] of cases) {
      const r = await result;
      expect({ what, status: r.status, stdout: r.stdout }).toEqual({ what, status: 1, stdout: '' });
      expect(r.stderr, what).toMatch(new RegExp(`^hisp: ${code}: `, 'm'));
    }
    const usage = await runHisp(['send', '--api', 'not a url', '--key', keyFile, '--from', FROM, '--to', TO], { cwd: work });
    expect(usage.status).toBe(2);
    expect(usage.stderr).toContain('hisp: HISP_USAGE: --api is not a URL');
  });
});

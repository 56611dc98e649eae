// `hisp discover` exit codes and readable output that need no DCDT server (those are in dcdt-cases).
import { spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialPaths } from '../helpers/pki.js';

const repo = resolve(import.meta.dirname, '..', '..');
const hisp = (...args: string[]) => spawnSync(process.execPath, [join(repo, 'bin/hisp.js'), 'discover', ...args], { encoding: 'utf8' });

/** A UDP port that swallows every query: a DNS server that never answers. */
const silent = createSocket('udp4');
let port = 0;
beforeAll(async () => {
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
  port = silent.address().port;
});
afterAll(() => silent.close());

describe('hisp discover', () => {
  it('exits 4 with status "transient" when DNS does not answer (try again later, requirements §5.9)', () => {
    const r = hisp('patient@nowhere.test', '--dns', `127.0.0.1:${port}`, '--anchor', credentialPaths('root-ca').cert, '--timeout', '100', '--json');
    expect(r.status).toBe(4);
    const report = JSON.parse(r.stdout) as { status: string; code: string; selected: unknown[] };
    expect(report).toMatchObject({ status: 'transient', code: 'HISP_DISCOVERY_TEMPORARY', selected: [] });
  });

  it('prints a readable account of each step without --json', () => {
    const r = hisp('patient@nowhere.test', '--dns', `127.0.0.1:${port}`, '--anchor', credentialPaths('root-ca').cert, '--timeout', '100');
    expect(r.status).toBe(4);
    expect(r.stdout).toContain('discover patient@nowhere.test');
    expect(r.stdout).toContain('result: try again later');
  });

  it('refuses a malformed address, a --dns that is not an address and a missing anchor with exit 2', () => {
    expect(hisp('not-an-address', '--anchor', credentialPaths('root-ca').cert).status).toBe(2);
    expect(hisp('a@b.test', '--dns', 'dns.example:53', '--anchor', credentialPaths('root-ca').cert).status).toBe(2);
    const noAnchor = hisp('a@b.test', '--dns', `127.0.0.1:${port}`);
    expect(noAnchor.status).toBe(2);
    expect(noAnchor.stderr).toContain('HISP_USAGE');
    // --allow-fetch takes IP addresses and CIDR ranges only (issue 14 item 4).
    const badAllow = hisp('a@b.test', '--dns', `127.0.0.1:${port}`, '--anchor', credentialPaths('root-ca').cert, '--allow-fetch', '10.0.0.0/99');
    expect(badAllow.status).toBe(2);
    expect(badAllow.stderr).toContain('--allow-fetch "10.0.0.0/99": the prefix length must be 0 to 32');
  });
});

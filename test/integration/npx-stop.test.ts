/**
 * Issue 14, item 12: `npx hisp start`, then SIGTERM to that process — the stop the README
 * documents — stops the gateway, drained, instead of leaving it orphaned on its ports. npm 11 runs
 * the bin as `sh -c 'hisp' …` and forwards the SIGTERM to the shell only (parent-watch.ts has the
 * chain): the gateway must notice and drain. Real processes: npx in this repository, free ports, a
 * temporary data folder; polled with a deadline.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, makeTempDir } from '../helpers/openssl.js';
import { cleanEnv, listening, portOpen, spawnHisp, waitFor } from '../helpers/hisp-start.js';
import { isAlive } from '../helpers/watched-child.js';

const tmp = makeTempDir('hisp-npx-');
/** The gateway's own pid (from the data folder's lock file), killed after the test if it is still there. */
let gatewayPid: number | undefined;

beforeAll(() => {
  ensureBuilt();
}, 180_000);

afterAll(() => {
  if (gatewayPid !== undefined && isAlive(gatewayPid)) process.kill(gatewayPid, 'SIGKILL');
  tmp.cleanup();
});

describe('npx hisp start', () => {
  it('stops the gateway, drained, when the npx process gets SIGTERM', async () => {
    const dataDir = path.join(tmp.dir, 'data');
    const hisp = spawnHisp(['start', '--data-dir', dataDir, '--submission-port', '0', '--inbound-port', '0', '--api-port', '0'], { cwd: tmp.dir, how: 'npx', env: cleanEnv() });
    const context = () => `stdout:\n${hisp.stdout().slice(-3000)}\nstderr:\n${hisp.stderr().slice(-3000)}`;
    // npx links this package into its cache first: slow on a loaded machine.
    const ports = await listening(hisp, 150_000);
    gatewayPid = Number(readFileSync(path.join(dataDir, 'hisp.pid'), 'utf8'));
    // The gateway is npm's grandchild (npm → sh → node), not the process we signal.
    expect(gatewayPid).not.toBe(hisp.child.pid);
    expect(await portOpen(ports.submission)).toBe(true);

    hisp.child.kill('SIGTERM');

    await waitFor('"hisp gateway stopped" in the log', () => hisp.stdout().includes('"msg":"hisp gateway stopped"'), 30_000, context);
    expect(hisp.stdout()).toMatch(/"reason":"the parent process \(npm\) exited".*"msg":"draining and stopping"/);
    await waitFor('the gateway process to end', () => !isAlive(gatewayPid!), 30_000, context);
    expect(await portOpen(ports.submission)).toBe(false);
    expect(await portOpen(ports.inbound)).toBe(false);
    // Drained: the lock file is released by a clean stop, not left behind by a kill.
    expect(existsSync(path.join(dataDir, 'hisp.pid'))).toBe(false);
  }, 240_000);
});

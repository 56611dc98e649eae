// One rule for every test that needs something outside the repository: a real peer (knotd, slapd,
// Postfix, swaks, openssl and its legacy provider), root (Postfix's master(8) runs only as root), the
// third-party vectors in ../shared/vectors, or the built CLI in dist/.
//
//   const knot = requirePeer(missingExecutable('knotd'));
//   describe.skipIf(knot.skip)(knot.title('two gateways over knotd'), () => { … });
//
// hisp's guide: "With CI=true, a missing peer or vector folder fails the run: it never skips." So with
// CI=true, requirePeer() throws a MissingPeerError that names what is missing (the test file then
// fails to collect, and the run fails); without it, the tests are skipped, the reason is in their
// title (every reporter shows it) and printed once on stderr, never silently.
import { INSTALL_HINT, findExecutable } from './watched-child.js';

/** CI is set and not '', '0' or 'false' (GitHub, GitLab and most runners export CI=true). */
export function isCiRun(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.CI?.trim().toLowerCase();
  return v !== undefined && v !== '' && v !== '0' && v !== 'false';
}

/** What CI=true turns a missing peer into: a failure of the run that says what is missing. */
export class MissingPeerError extends Error {
  override readonly name = 'MissingPeerError';
  constructor(readonly missing: string) {
    super(`CI=true, and a test peer is missing: ${missing}. Without CI=true these tests would be skipped; in CI they must run.`);
  }
}

export interface PeerGate {
  /** True when the tests must be skipped: something is missing and this is not a CI run. */
  readonly skip: boolean;
  /** What is missing ('' when nothing is). */
  readonly reason: string;
  /** `title`, or `title (skipped: reason)` when skipping, so that the report shows why. */
  title(title: string): string;
}

const warned = new Set<string>();

/**
 * The gate for tests that need a peer. `missing` says what is missing (undefined when everything is
 * there): with CI=true that throws {@link MissingPeerError}; otherwise the gate skips, visibly.
 */
export function requirePeer(missing: string | undefined, env: NodeJS.ProcessEnv = process.env): PeerGate {
  if (missing === undefined || missing === '') return { skip: false, reason: '', title: (t) => t };
  if (isCiRun(env)) throw new MissingPeerError(missing);
  if (!warned.has(missing)) {
    warned.add(missing);
    console.warn(`[test peers] skipping tests: ${missing} (CI=true would fail instead)`);
  }
  return { skip: true, reason: missing, title: (t) => `${t} (skipped: ${missing})` };
}

/**
 * For a peer found missing only while a test runs (an OpenSSL without its legacy provider): with
 * CI=true the test fails with a MissingPeerError; otherwise it is skipped with the reason as its note.
 */
export function skipOrFail(ctx: { skip: (note?: string) => never }, missing: string, env: NodeJS.ProcessEnv = process.env): never {
  if (isCiRun(env)) throw new MissingPeerError(missing);
  return ctx.skip(missing);
}

/** Why an executable is missing (PATH, /usr/sbin, /sbin), or undefined when it is there. */
export function missingExecutable(name: string): string | undefined {
  return findExecutable(name) === undefined ? `${name} is not installed (looked in PATH, /usr/sbin, /sbin): ${INSTALL_HINT}` : undefined;
}

/** The first of several reasons (each undefined when that need is met). */
export function firstMissing(...reasons: readonly (string | undefined)[]): string | undefined {
  return reasons.find((r) => r !== undefined && r !== '');
}

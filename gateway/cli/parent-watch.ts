/**
 * Why `hisp start` watches its parent when npm started it.
 *
 * `npx hisp start` (npm 11: libnpmexec → @npmcli/run-script) does not run hisp itself: it spawns
 * `sh -c "'hisp' start …"`, and the shell spawns node (Debian's dash does not exec the last
 * command of `-c`). npm forwards SIGTERM and SIGINT to the child it spawned — the shell — and the
 * shell dies of it (a non-interactive shell does not forward signals to the command it waits for),
 * then npm kills itself with the same signal. The gateway never hears the SIGTERM the README tells
 * users to send: it goes on, orphaned, on its ports. (Ctrl-C works only because the terminal sends
 * SIGINT to the whole foreground process group.) `npm run` scripts take the same path.
 *
 * The shell between npm and hisp only waits for hisp: it goes away before hisp only when it was
 * killed, that is when npm passed a stop on. So, under npm, the parent's disappearance (the parent
 * pid changes: the kernel re-parents an orphan to init or to the nearest subreaper) is taken as the
 * stop. Node has no event for it (no prctl(PR_SET_PDEATHSIG) without a native addon, and npm gives
 * its child neither an IPC channel nor a stdin of its own), so it is polled: `process.ppid` is a
 * getppid(2) each time, a few microseconds.
 *
 * Not under npm (`node bin/hisp.js start`, systemd, a container's entry point, `nohup hisp start &`):
 * signals reach hisp directly, and a parent that exits is no reason to stop (nohup's whole point).
 */

/** True when npm (npx, npm exec, npm run) started this process: run-script sets this variable. */
export function startedByNpm(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.npm_lifecycle_event !== undefined && env.npm_lifecycle_event !== '';
}

export interface ParentWatch {
  /** Stops watching. */
  stop(): void;
}

/**
 * Calls `onGone` once when this process's parent changes from `initialParent` (the parent exited).
 * The timer is unref'd: it never keeps the process alive by itself.
 */
export function watchParent(onGone: () => void, options: { initialParent?: number; intervalMs?: number; ppid?: () => number } = {}): ParentWatch {
  const ppid = options.ppid ?? (() => process.ppid);
  const initial = options.initialParent ?? ppid();
  const timer = setInterval(() => {
    if (ppid() === initial) return;
    clearInterval(timer);
    onGone();
  }, options.intervalMs ?? 250);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** Exit codes of every verb (documented in README): scripts rely on them. */
export const EXIT = {
  ok: 0,
  /** The operation failed: crypto, trust, malformed input. The code is printed on stderr. */
  failed: 1,
  /** Command-line usage error. */
  usage: 2,
  /** Permanent "no certificate" outcome of discovery (trust issue). */
  permanent: 3,
  /** Transient outcome: try again later (trust issue). */
  transient: 4,
  /** Internal error (a bug): EX_SOFTWARE of sysexits.h. */
  internal: 70,
  /**
   * `hisp start` only: the gateway stopped itself because the store could not make its writes
   * durable (a failed fsync). EX_TEMPFAIL of sysexits.h: restart it (config/hisp.service does).
   */
  storeFailed: 75,
} as const;

/** Thrown by a verb that already printed its own failure report (--json), carrying the exit code. */
export class ReportedFailure extends Error {
  constructor(readonly exitCode: number) {
    super('failure already reported');
  }
}

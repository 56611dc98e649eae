/**
 * A coalesced durability operation (an fsync, an fdatasync): {@link request} resolves after a run of
 * the operation that started after the call, so everything written before the call is covered;
 * callers arriving while a run is in flight share the next one. A burst of N writers thus costs two
 * runs, not N, and nobody waits for more than the run in flight plus its own.
 *
 * A run that fails rejects every caller that waited for it; the next request starts a new run (the
 * owner decides whether a failure is final: after a failed fsync the kernel may have dropped the
 * dirty pages, see CommitBatcherOptions.onSyncFailure).
 */
export class GroupSync {
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;

  constructor(private readonly run: () => Promise<void>) {}

  request(): Promise<void> {
    if (this.running === undefined) {
      this.running = this.run().finally(() => {
        this.running = undefined;
      });
      return this.running;
    }
    // One is running but may have started before the caller's write: wait for the next one.
    this.next ??= this.running.then(
      () => this.startNext(),
      () => this.startNext(),
    );
    return this.next;
  }

  /** Resolves once no run is in flight or waiting (their failures are the callers' business). */
  async idle(): Promise<void> {
    while (this.running !== undefined || this.next !== undefined) {
      await (this.next ?? this.running)?.catch(() => undefined);
    }
  }

  private startNext(): Promise<void> {
    this.next = undefined;
    return this.request();
  }
}

/**
 * How many bytes of large messages the workers hold in memory at once (issue 14, item 6). A worker
 * that signs, encrypts, decrypts or verifies a message holds it whole, and a copy or two besides;
 * twenty workers on twenty 45 MB messages would need gigabytes. A message above `thresholdBytes`
 * first waits until its size fits in `budgetBytes` with those already in hand; the first one always
 * gets in, however large, so a single message never waits for itself. Smaller messages pass
 * without waiting: they are the ordinary traffic, and their memory is bounded by the worker count.
 * Waiters are served in order of arrival (a large message is not starved by smaller large ones).
 */
export class MemoryGate {
  private held = 0;
  private readonly waiting: { bytes: number; enter: () => void }[] = [];

  constructor(
    private readonly budgetBytes: number,
    readonly thresholdBytes: number,
  ) {}

  /** Bytes held now (tests, metrics). */
  get inUse(): number {
    return this.held;
  }

  /** Waits for room for a message of `size` octets; resolves to the function that gives it back. */
  async enter(size: number): Promise<() => void> {
    if (size <= this.thresholdBytes) return () => undefined;
    if (this.waiting.length > 0 || !this.fits(size)) await new Promise<void>((resolve) => this.waiting.push({ bytes: size, enter: resolve }));
    else this.held += size;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held -= size;
      this.admit();
    };
  }

  private fits(size: number): boolean {
    return this.held === 0 || this.held + size <= this.budgetBytes;
  }

  private admit(): void {
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.bytes)) {
      const next = this.waiting.shift()!;
      this.held += next.bytes;
      next.enter();
    }
  }
}

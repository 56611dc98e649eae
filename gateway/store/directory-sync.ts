import { close, constants, fsync, open } from 'node:fs';
import { promisify } from 'node:util';

const openAsync = promisify(open);
const fsyncAsync = promisify(fsync);
const closeAsync = promisify(close);

/**
 * Coalesced fsync of one directory. A file's own fsync makes its bytes durable, but its name lives in
 * the directory, which needs an fsync of its own (POSIX; ext4 usually commits both in one journal
 * transaction, other file systems do not). {@link sync} resolves after an fsync of the directory that
 * started after the call, so every file created before the call is durable; callers arriving while
 * one runs share the next one, so a burst of messages costs two directory fsyncs, not one each.
 */
export class DirectorySync {
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;

  constructor(private readonly dir: string) {}

  sync(): Promise<void> {
    if (this.running === undefined) {
      this.running = this.fsyncDir().finally(() => {
        this.running = undefined;
      });
      return this.running;
    }
    // One is running but may have started before our file was created: wait for the next one.
    this.next ??= this.running.then(
      () => this.startNext(),
      () => this.startNext(),
    );
    return this.next;
  }

  private startNext(): Promise<void> {
    this.next = undefined;
    return this.sync();
  }

  private async fsyncDir(): Promise<void> {
    const fd = await openAsync(this.dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await fsyncAsync(fd);
    } finally {
      await closeAsync(fd);
    }
  }
}

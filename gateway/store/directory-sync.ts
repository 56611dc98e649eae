import { close, constants, fsync, open } from 'node:fs';
import { promisify } from 'node:util';
import { GroupSync } from './group-sync.js';

const openAsync = promisify(open);
const fsyncAsync = promisify(fsync);
const closeAsync = promisify(close);

/** fsync of a directory (in the thread pool): the names of the files created in it become durable. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const fd = await openAsync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fsyncAsync(fd);
  } finally {
    await closeAsync(fd);
  }
}

/**
 * Coalesced fsync of one directory. A file's own fsync makes its bytes durable, but its name lives in
 * the directory, which needs an fsync of its own (POSIX; ext4 usually commits both in one journal
 * transaction, other file systems do not). {@link sync} resolves after an fsync of the directory that
 * started after the call, so every file created before the call is durable; callers arriving while
 * one runs share the next one ({@link GroupSync}), so a burst of messages costs two directory
 * fsyncs, not one each.
 */
export class DirectorySync {
  private readonly group: GroupSync;

  constructor(dir: string) {
    this.group = new GroupSync(() => fsyncDirectory(dir));
  }

  sync(): Promise<void> {
    return this.group.request();
  }
}

export { HispDatabase, openDatabase, type DatabaseOptions, type Migration, type SqliteConnection } from './database.js';
export { CommitBatcher, type CommitBatcherOptions } from './commit-batcher.js';
export { HISP_MIGRATIONS } from './schema.js';
export {
  MessageStore,
  normalizeMessageId,
  type MessageDirection,
  type MessageEnvelope,
  type MessageStoreOptions,
  type PreparedBody,
  type StoredMessage,
} from './message-store.js';
export {
  TrackingStore,
  normalizeAddress,
  type DueTimeout,
  type MdnKind,
  type MdnRecordResult,
  type MdnRecordStatus,
  type TrackingEntry,
  type TrackingState,
  type TrackOptions,
} from './tracking-store.js';
export { InboundDedupe, type InboundDedupeOptions } from './inbound-dedupe.js';
export {
  ENTRY_OVERHEAD_BYTES,
  QuarantineStore,
  type QuarantineDropCause,
  type QuarantineDropTally,
  type QuarantineEntry,
  type QuarantineLimits,
  type QuarantineListOptions,
  type QuarantineLogger,
  type QuarantinePurgeOptions,
  type QuarantineRemoved,
  type QuarantineStoreOptions,
  type QuarantineUsage,
} from './quarantine-store.js';
export { DISK_RESERVE_FILE, DiskReserve, isDiskFull } from './disk-reserve.js';

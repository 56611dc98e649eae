export type {
  Delivery,
  DeliveryState,
  DeliveryStatus,
  EnqueueItem,
  MessageStatus,
  OutboundQueue,
  QueueId,
  QueueListOptions,
  QueueListState,
  RemoteReply,
} from './outbound-queue.js';
export { SqliteQueue, type EnqueueOptions, type PendingDsn, type SqliteQueueOptions } from './sqlite-queue.js';
export { DeliveryTable, OPERATOR_BOUNCE } from './delivery-table.js';
export { RetrySchedule, defaultJitter, type RetryDecision, type RetryScheduleOptions } from './retry-schedule.js';

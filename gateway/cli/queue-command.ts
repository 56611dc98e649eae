import type { Command } from 'commander';
import { Option } from 'commander';
import { HispError } from '../core/errors.js';
import type { QueueListState } from '../queue/outbound-queue.js';
import type { MessageDirection } from '../store/message-store.js';
import { addDataOptions, parseLimit, withOperatorStores, writeJson, type DataFlags, type OperatorStores } from './data-options.js';
import { duration, messageReport, printable, replyText, sender, type DeliveryReport, type MessageReport } from './status-command.js';

interface ListFlags extends DataFlags {
  state?: QueueListState;
  direction?: MessageDirection;
  limit: string;
}

interface BounceFlags extends DataFlags {
  reason: string;
}

/**
 * The `--json` reports of `hisp queue`: contracts scripts rely on (fields may be added, never renamed).
 *
 * list:   { "messages": [MessageReport, …] }       oldest first; each as `hisp status --json`, with
 *                                                  --state only the deliveries in that state
 * retry:  { "queueId": "…" | null, "retried": 3 }  null: every waiting delivery of every message
 * bounce: { "queueId": "…", "bounced": 2, "inFlight": 0 }
 *                                                  inFlight: deliveries a worker holds now, left to it
 * errors: { "error": { "code": "HISP_NOT_FOUND", "reason": "…" } } (exit 1)
 */
export interface QueueListReport {
  messages: MessageReport[];
}

export interface QueueRetryReport {
  queueId: string | null;
  retried: number;
}

export interface QueueBounceReport {
  queueId: string;
  bounced: number;
  inFlight: number;
}

const STATES: readonly QueueListState[] = ['queued', 'deferred', 'leased', 'delivered', 'failed'];
const DEFAULT_BOUNCE_REASON = 'no reason given';

export function registerQueue(program: Command): void {
  const queue = program
    .command('queue')
    .summary('list the queue, retry waiting deliveries now, bounce a message')
    .description(
      'The deliveries of the data folder (a running gateway may share it: each write waits its turn). ' +
        'A message has one delivery per recipient: queued (not tried yet, or due), deferred (tried, ' +
        'waiting for its next try), leased (being delivered now), delivered or failed.',
    );

  addDataOptions(
    queue
      .command('list')
      .summary('list messages and their deliveries, oldest first')
      .description(
        'One line per delivery: queue id, age of the message, sender, recipient, state, attempts, next ' +
          'try and the last reply of the remote server. --state keeps the messages with a delivery in ' +
          'that state (queued means every delivery not final) and shows only those deliveries.',
      )
      .addOption(new Option('--state <state>', 'only deliveries in this state').choices(STATES))
      .addOption(new Option('--direction <direction>', 'only outbound (relay) or inbound (local delivery) messages').choices(['outbound', 'inbound']))
      .option('--limit <n>', 'at most this many messages', '100'),
  ).action(async (flags: ListFlags) => {
    const limit = parseLimit(flags.limit);
    await withOperatorStores(flags, async (stores) => {
      const statuses = await stores.queue.list({
        limit,
        ...(flags.state ? { state: flags.state } : {}),
        ...(flags.direction ? { direction: flags.direction } : {}),
      });
      const messages = statuses.map((s) => messageReport(s, stores.tracking.forQueueId(s.queueId)));
      if (flags.json) {
        writeJson({ messages } satisfies QueueListReport);
        return;
      }
      process.stdout.write(readableList(messages, Date.now(), flags.state));
    });
  });

  addDataOptions(
    queue
      .command('retry')
      .argument('[queue-id]', 'the message whose waiting deliveries to retry (default: every message)')
      .summary('make waiting (deferred) deliveries due now')
      .description(
        'The gateway tries them at once instead of at their next scheduled time. Deliveries being ' +
          'delivered now, and final ones, are left alone. Prints how many were made due. Exit 1 for an ' +
          'unknown queue id.',
      ),
  ).action(async (queueId: string | undefined, flags: DataFlags) => {
    await withOperatorStores(flags, async (stores) => {
      if (queueId !== undefined) requireMessage(stores, queueId);
      const retried = await stores.queue.retry(queueId);
      if (flags.json) {
        writeJson({ queueId: queueId ?? null, retried } satisfies QueueRetryReport);
        return;
      }
      const scope = queueId === undefined ? 'in the queue' : `of ${queueId}`;
      process.stdout.write(
        retried === 0
          ? `hisp: no delivery ${scope} was waiting: nothing to retry\n`
          : `hisp: ${retried} deliver${retried === 1 ? 'y' : 'ies'} ${scope} made due now: the gateway tries ${retried === 1 ? 'it' : 'them'} next\n`,
      );
    });
  });

  addDataOptions(
    queue
      .command('bounce')
      .argument('<queue-id>', 'the message to give up on')
      .summary('fail the deliveries of a message that are not final; the gateway sends the DSN')
      .description(
        'Every delivery of the message not yet delivered or failed becomes failed with the reply ' +
          '554 5.0.0 "bounced by the operator: REASON" (the last remote reply kept after it); the ' +
          'gateway then sends the sender a delivery status notification. A delivery being delivered ' +
          'now is left to its worker (bounce again once it ends). Prints how many. Exit 1 for an ' +
          'unknown queue id.',
      )
      .option('--reason <text>', 'why, for the DSN and `hisp status`', DEFAULT_BOUNCE_REASON),
  ).action(async (queueId: string, flags: BounceFlags) => {
    const reason = flags.reason.trim();
    if (reason === '') throw new HispError('HISP_USAGE', '--reason must not be empty');
    await withOperatorStores(flags, async (stores) => {
      requireMessage(stores, queueId);
      const bounced = await stores.queue.bounce(queueId, reason);
      const after = await stores.queue.get(queueId);
      const inFlight = after?.deliveries.filter((d) => d.state === 'queued').length ?? 0;
      if (flags.json) {
        writeJson({ queueId, bounced, inFlight } satisfies QueueBounceReport);
        return;
      }
      const lines = [
        bounced === 0
          ? `hisp: no delivery of ${queueId} was left to bounce`
          : `hisp: ${bounced} deliver${bounced === 1 ? 'y' : 'ies'} of ${queueId} bounced: the gateway sends the DSN to the sender`,
      ];
      if (inFlight > 0) lines.push(`hisp: ${inFlight} being delivered now left to the worker: bounce again once it ends`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
  });

  for (const c of queue.commands) c.exitOverride().showHelpAfterError('(add --help for usage)');
}

/** HISP_NOT_FOUND unless a message has that queue id (retry and bounce take queue ids only). */
function requireMessage(stores: OperatorStores, queueId: string): void {
  if (!stores.queue.messages.has(queueId)) {
    throw new HispError('HISP_NOT_FOUND', `no message with queue id ${JSON.stringify(queueId)} (see hisp queue list)`, { details: { id: queueId } });
  }
}

const COLUMNS = ['QUEUE ID', 'AGE', 'FROM', 'RECIPIENT', 'STATE', 'TRIES', 'NEXT TRY', 'LAST REPLY'] as const;

function readableList(messages: readonly MessageReport[], now: number, state: QueueListState | undefined): string {
  const rows: string[][] = [];
  for (const m of messages) {
    const age = duration(Math.max(0, now - Date.parse(m.receivedAt)));
    for (const d of m.deliveries) {
      rows.push([m.queueId, age, sender(m.mailFrom), printable(d.recipient), d.state, String(d.attempts), nextTry(d, now), replyText(d.lastReply)]);
    }
  }
  if (rows.length === 0) return `hisp: no message${state === undefined ? ' in the queue' : ` with a ${state} delivery`}\n`;
  const widths = COLUMNS.map((title, i) => Math.max(title.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const deliveries = rows.length;
  const footer = `${messages.length} message(s), ${deliveries} deliver${deliveries === 1 ? 'y' : 'ies'}`;
  return `${[line(COLUMNS), ...rows.map(line), footer].join('\n')}\n`;
}

function nextTry(d: DeliveryReport, now: number): string {
  if (d.state === 'leased') return 'in flight';
  if (d.nextAttemptAt === null) return '-';
  const delta = Date.parse(d.nextAttemptAt) - now;
  return delta <= 0 ? 'now' : `in ${duration(delta)}`;
}

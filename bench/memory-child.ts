import { readFileSync, writeFileSync } from 'node:fs';
import { unwrapMessage } from '../gateway/agent/unwrap-message.js';
import { wrapMessage } from '../gateway/agent/wrap-message.js';
import { benchCredentials } from './agent-workload.js';

/**
 * One wrap or one unwrap of the file given, in a fresh process, reporting the peak RSS above the
 * idle process (modules loaded, credentials read, before the message is read; the input file read
 * counts, as it is part of the work). Run by bench/run.ts:
 * `node --expose-gc dist/bench/memory-child.js wrap|unwrap FILE`. Prints one JSON line.
 */
const [mode, file] = process.argv.slice(2);
const { signers, recipients, decrypt } = benchCredentials();
// Warm the code paths on a tiny message so that lazily compiled code is part of "idle".
const tiny = Buffer.from('From: a@sender.test\r\nTo: b@recipient.test\r\nSubject: w\r\n\r\nx\r\n');
unwrapMessage(wrapMessage(tiny, { signers, recipients }).message, { credentials: decrypt });
(globalThis as { gc?: () => void }).gc?.();

/**
 * Peak RSS of this process from its idle point on. getrusage's maxRSS is no good here: Linux carries
 * the parent's RSS at fork into the child's maxRSS across exec, so a child of a big benchmark process
 * would report the parent's size. VmHWM in /proc/self/status is per address space, and writing 5 to
 * /proc/self/clear_refs resets it to the current RSS (Linux ≥ 4.0).
 */
function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'latin1'));
  return m ? Number(m[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}
try {
  writeFileSync('/proc/self/clear_refs', '5');
} catch {
  // not Linux: the peak then includes whatever came before the idle point
}
const idleRss = process.memoryUsage.rss();
const baselinePeak = peakRss();

const input = readFileSync(file!);
let outputLength: number;
if (mode === 'wrap') outputLength = wrapMessage(input, { signers, recipients }).message.length;
else outputLength = unwrapMessage(input, { credentials: decrypt }).message.length;

const peak = peakRss();
process.stdout.write(
  `${JSON.stringify({ mode, inputLength: input.length, outputLength, idleRss, baselinePeak, peakRss: peak, aboveIdle: peak - Math.max(idleRss, 0) })}\n`,
);

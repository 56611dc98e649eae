import { readFileSync } from 'node:fs';
import { unwrapMessage } from '../gateway/agent/unwrap-message.js';
import { wrapMessage } from '../gateway/agent/wrap-message.js';
import { benchCredentials } from './agent-workload.js';

/**
 * One wrap or one unwrap of the file given, in a fresh process, reporting the peak RSS above the
 * idle process (modules loaded, credentials read, before the message is read). Run by bench/run.ts:
 * `node --expose-gc dist/bench/memory-child.js wrap|unwrap FILE`. Prints one JSON line.
 */
const [mode, file] = process.argv.slice(2);
const { signers, recipients, decrypt } = benchCredentials();
// Warm the code paths on a tiny message so that lazily compiled code is part of "idle".
const tiny = Buffer.from('From: a@sender.test\r\nTo: b@recipient.test\r\nSubject: w\r\n\r\nx\r\n');
unwrapMessage(wrapMessage(tiny, { signers, recipients }).message, { credentials: decrypt });
(globalThis as { gc?: () => void }).gc?.();
const idleRss = process.memoryUsage.rss();
const baselinePeak = process.resourceUsage().maxRSS * 1024;

const input = readFileSync(file!);
let outputLength: number;
if (mode === 'wrap') outputLength = wrapMessage(input, { signers, recipients }).message.length;
else outputLength = unwrapMessage(input, { credentials: decrypt }).message.length;

const peak = process.resourceUsage().maxRSS * 1024;
process.stdout.write(
  `${JSON.stringify({ mode, inputLength: input.length, outputLength, idleRss, baselinePeak, peakRss: peak, aboveIdle: peak - Math.max(idleRss, 0) })}\n`,
);

import { wrapMessage } from '../gateway/agent/wrap-message.js';
import { unwrapMessage } from '../gateway/agent/unwrap-message.js';
import { benchCredentials, makeMessage } from './agent-workload.js';

const size = Number(process.argv[2] ?? 100_000);
const n = Number(process.argv[3] ?? 300);
const which = process.argv[4] ?? 'both';
const { signers, recipients, decrypt } = benchCredentials();
const msg = makeMessage(size);
let w = wrapMessage(msg, { signers, recipients });
if (which !== 'unwrap') {
  const t = performance.now();
  for (let i = 0; i < n; i++) w = wrapMessage(msg, { signers, recipients });
  console.log('wrap', size, ((n / (performance.now() - t)) * 1000).toFixed(0), 'msg/s');
}
if (which !== 'wrap') {
  const t = performance.now();
  for (let i = 0; i < n; i++) unwrapMessage(w.message, { credentials: decrypt });
  console.log('unwrap', size, ((n / (performance.now() - t)) * 1000).toFixed(0), 'msg/s');
}

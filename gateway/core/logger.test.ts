import { generateKeyPairSync } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, redactKeyMaterial } from './logger.js';

function capture(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { lines, stream };
}

describe('logger', () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const der = privateKey.export({ type: 'pkcs8', format: 'der' });
  const body = pem.split('\n')[3]!; // a line of the key's base64

  it('never writes key material, whatever shape it is logged in', async () => {
    const { lines, stream } = capture();
    const log = createLogger({ level: 'debug', destination: stream });
    log.info({ credential: { key: privateKey, certificate: 'CN=x' } }, 'loaded');
    log.info({ privateKey: pem, password: 'hunter2' }, 'by name');
    log.info({ note: `oops ${pem}` }, 'inside a string');
    log.info({ blob: der }, 'raw bytes');
    log.child({ session: 's1' }).warn({ err: new Error(`failed with ${pem}`) }, 'error');
    await new Promise((r) => setImmediate(r));
    const out = lines.join('');
    expect(lines).toHaveLength(5);
    expect(out).not.toContain(body);
    expect(out).not.toContain('hunter2');
    expect(out).not.toContain(der.toString('base64').slice(0, 40));
    expect(out).toContain('"certificate":"CN=x"');
    expect(out).toContain('"session":"s1"');
    expect(out).toContain('[private key]');
  });

  it('redacts recursively but keeps ordinary fields', () => {
    expect(redactKeyMaterial({ a: 1, nested: { secret: 'x', ok: 'y' }, list: [Buffer.alloc(3)] })).toEqual({
      a: 1,
      nested: { secret: '[redacted]', ok: 'y' },
      list: ['[3 bytes]'],
    });
  });
});

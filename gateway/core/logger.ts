import { KeyObject } from 'node:crypto';
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import pretty from 'pino-pretty';

export type { Logger } from 'pino';

/** Field names whose values are never logged, wherever they appear in a log object. */
const SECRET_FIELDS = /^(key|privateKey|private_key|password|passphrase|secret|cek|contentKey|pfx|p12|pkcs12|keyPem|authorization)$/i;
const PEM_PRIVATE = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g;

/**
 * Replaces key material in a log object: KeyObjects, fields named like secrets, PEM private keys
 * inside strings, and raw bytes (which may be keys or message content) by short placeholders.
 * Depth-limited so that a cyclic or huge object cannot stall logging.
 */
export function redactKeyMaterial(value: unknown, depth = 0): unknown {
  if (value instanceof KeyObject) return '[key]';
  if (Buffer.isBuffer(value) || value instanceof Uint8Array || value instanceof ArrayBuffer) {
    return `[${value.byteLength} bytes]`;
  }
  if (typeof value === 'string') return value.includes('PRIVATE KEY-----') ? value.replace(PEM_PRIVATE, '[private key]') : value;
  if (value === null || typeof value !== 'object') return value;
  if (depth > 6) return '[…]';
  if (value instanceof Error) {
    return { type: value.name, message: redactKeyMaterial(value.message, depth + 1), code: (value as { code?: unknown }).code };
  }
  if (Array.isArray(value)) return value.slice(0, 100).map((v) => redactKeyMaterial(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_FIELDS.test(k) ? '[redacted]' : redactKeyMaterial(v, depth + 1);
  return out;
}

export interface CreateLoggerOptions {
  /** Default `info`, or `HISP_LOG_LEVEL`. */
  level?: string;
  /** Default stdout (pino's default). */
  destination?: DestinationStream;
  name?: string;
  /**
   * `json` (default): one JSON object per line, for journald, a log shipper or `jq`. `pretty`: one
   * readable line per record (pino-pretty, in this process and synchronous, so that nothing is lost
   * at exit), for a person at a terminal: `hisp start` chooses it when its stdout is a TTY.
   */
  format?: LogFormat;
}

export type LogFormat = 'json' | 'pretty';

/** `pretty` when `stream` is a terminal, else `json` (what `hisp start` uses for its stdout). */
export function logFormatFor(stream: { isTTY?: boolean }): LogFormat {
  return stream.isTTY === true ? 'pretty' : 'json';
}

/**
 * The pino logger of hisp. Every log object passes through {@link redactKeyMaterial}, so a careless
 * `log.info({ credential })` still logs no key. Child loggers per SMTP session and per message carry
 * their ids (`log.child({ session })`).
 */
export function createLogger(options: CreateLoggerOptions = {}): Logger {
  const config: LoggerOptions = {
    name: options.name ?? 'hisp',
    level: options.level ?? process.env.HISP_LOG_LEVEL ?? 'info',
    formatters: { log: (obj) => redactKeyMaterial(obj) as Record<string, unknown> },
    serializers: { err: (e: unknown) => redactKeyMaterial(e) },
  };
  if (options.format === 'pretty') {
    const destination = options.destination ?? 1;
    return pino(config, pretty({ destination, sync: true, translateTime: 'SYS:standard', ignore: 'pid,hostname' }));
  }
  return options.destination ? pino(config, options.destination) : pino(config);
}

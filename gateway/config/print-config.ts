import { stringify } from 'smol-toml';
import type { HispConfig } from './schema.js';

/** Keys whose values are secrets: `hisp config print` shows them as {@link REDACTED}. */
export const SECRET_KEYS: ReadonlySet<string> = new Set(['password', 'hmacSecret', 'passwordHash']);
export const REDACTED = '[redacted]';

/** A plain copy of the configuration with every secret value replaced by {@link REDACTED}. */
export function redactedConfig(config: HispConfig): Record<string, unknown> {
  return redact(config) as Record<string, unknown>;
}

function redact(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redact);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (v === undefined) continue;
      out[k] = SECRET_KEYS.has(k) && typeof v === 'string' ? REDACTED : redact(v);
    }
    return out;
  }
  return value;
}

/** The effective configuration (defaults applied, paths absolute, secrets redacted) as TOML or JSON. */
export function formatConfig(config: HispConfig, format: 'toml' | 'json', source?: string): string {
  const data = redactedConfig(config);
  if (format === 'json') return `${JSON.stringify(data, null, 2)}\n`;
  const head = [
    `# Effective hisp configuration${source ? ` of ${source}` : ''}: every default applied,`,
    '# paths made absolute, secrets shown as "[redacted]".',
    '',
  ].join('\n');
  return `${head}${stringify(data)}\n`;
}

import { DirectAddress } from '../core/direct-address.js';
import type { HispErrorCode } from '../core/errors.js';
import { checkRecipient, type RecipientCheck, type RecipientCheckServices, type SendingScope } from './recipient-check.js';

/**
 * A pre-send check's answer for one recipient (issue 15): `trusted` (a certificate to encrypt to),
 * `untrusted` (certificates published, none valid and trusted), `no-certificate` (none published,
 * or an address a local domain does not know), `try-later` (discovery failed for now, or did not
 * finish in time).
 */
export type RecipientVerdict = 'trusted' | 'untrusted' | 'no-certificate' | 'try-later';

export interface RecipientValidation {
  /** As given. */
  address: string;
  verdict: RecipientVerdict;
  /** Why, when not trusted. */
  code?: HispErrorCode;
  reason?: string;
  /** The check step by step; undefined when it did not finish in time. */
  check?: RecipientCheck;
}

export interface ValidateRecipientsOptions {
  /** Validation time; default now. */
  at?: Date;
  patientDirected?: boolean;
  /**
   * The whole validation's time: past it, the recipients not yet decided are `try-later`. Each
   * discovery has its own budgets (DNS time-out and retries, the fetch budget of one recipient);
   * this bounds the wait of the caller however many there are. Default 30 s.
   */
  timeoutMs?: number;
  /** Recipients checked at once. Default 8. */
  concurrency?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_CONCURRENCY = 8;

/** The verdict of a finished check. */
export function verdictOf(check: RecipientCheck): RecipientVerdict {
  if (check.status === 'selected') return 'trusted';
  if (check.status === 'transient') return 'try-later';
  return check.code === 'HISP_DISCOVERY_NO_CERT' || check.code === 'HISP_SMTP_UNKNOWN_RECIPIENT' ? 'no-certificate' : 'untrusted';
}

/**
 * Checks each recipient as the gateway would for a message from `sender` (checkRecipient), a few at
 * once, within one time budget; the same address given twice (in any letter case) is checked once.
 * Addresses must be Direct addresses (DirectAddress.parse; the route checks them first).
 */
export async function validateRecipients(
  addresses: readonly string[],
  sender: SendingScope,
  services: RecipientCheckServices,
  options: ValidateRecipientsOptions = {},
): Promise<RecipientValidation[]> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const firsts = new Map<string, string>();
  for (const a of addresses) {
    const key = DirectAddress.parse(a).toString().toLowerCase();
    if (!firsts.has(key)) firsts.set(key, a);
  }
  const unique = [...firsts.entries()];
  const outcomes = new Map<string, RecipientValidation>();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)));
  let next = 0;
  let late = false;
  const worker = async (): Promise<void> => {
    while (!late && next < unique.length) {
      const [key, given] = unique[next++]!;
      const check = await Promise.race([checkRecipient(DirectAddress.parse(given), sender, services, options), deadline]);
      if (check === 'late') {
        late = true;
        return;
      }
      outcomes.set(key, { address: given, verdict: verdictOf(check), ...(check.code ? { code: check.code } : {}), ...(check.reason ? { reason: check.reason } : {}), check });
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(options.concurrency ?? DEFAULT_CONCURRENCY, unique.length) }, worker));
  } finally {
    clearTimeout(timer);
  }
  return addresses.map((given) => {
    const done = outcomes.get(DirectAddress.parse(given).toString().toLowerCase());
    if (done) return { ...done, address: given };
    return {
      address: given,
      verdict: 'try-later',
      code: 'HISP_DISCOVERY_TEMPORARY',
      reason: `the validation did not finish within ${timeoutMs >= 1000 ? `${Math.round(timeoutMs / 1000)} s` : `${timeoutMs} ms`}: try again later`,
    };
  });
}

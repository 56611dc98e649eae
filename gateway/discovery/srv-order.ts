/** An SRV record (RFC 2782). */
export interface SrvRecord {
  priority: number;
  weight: number;
  port: number;
  target: string;
}

/**
 * Orders SRV targets as RFC 2782 says: lowest priority first; within a priority, weighted random
 * selection, repeated until every target is placed. Targets of weight 0 come after the weighted ones
 * of their priority (RFC 2782 gives them only a very small chance of being picked first; placing
 * them last makes the order of DCDT D16 deterministic where a weighted target exists). `random`
 * returns a number in [0, 1) and is injectable so that tests are repeatable. A target of "." means
 * "no service here" (RFC 2782) and is dropped.
 */
export function orderSrvTargets(records: readonly SrvRecord[], random: () => number = Math.random): SrvRecord[] {
  const usable = records.filter((r) => r.target !== '.' && r.target !== '');
  const priorities = [...new Set(usable.map((r) => r.priority))].sort((a, b) => a - b);
  const ordered: SrvRecord[] = [];
  for (const p of priorities) {
    const group = usable.filter((r) => r.priority === p);
    const weighted = group.filter((r) => r.weight > 0);
    while (weighted.length > 0) {
      const total = weighted.reduce((n, r) => n + r.weight, 0);
      // A number in [1, total]; the first record whose running sum reaches it is selected.
      const pick = Math.min(total, Math.floor(random() * total) + 1);
      let sum = 0;
      const index = weighted.findIndex((r) => (sum += r.weight) >= pick);
      ordered.push(...weighted.splice(index, 1));
    }
    ordered.push(...group.filter((r) => r.weight === 0));
  }
  return ordered;
}

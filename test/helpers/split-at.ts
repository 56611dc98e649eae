/**
 * Splits `data` at the given cut points (each taken modulo the length + 1, sorted, deduplicated):
 * the segmentation a property test draws for a stream parser. Empty pieces are kept.
 */
export function splitAt(data: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    out.push(data.subarray(from, p));
    from = p;
  }
  out.push(data.subarray(from));
  return out;
}

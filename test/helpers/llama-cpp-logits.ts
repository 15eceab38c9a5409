/**
 * node-llama-cpp 3.21 returns no raw logits, only the softmax of every candidate (its greedy
 * default keeps all of them): log p = z − logsumexp(z). Subtracting each row's mean leaves
 * z − mean(z), exact in float64 apart from float32 rounding of p (relative ~1e-7), so llama.cpp's
 * rows and ours are compared centered (see test/fixtures/llama-cpp-oracle.ts).
 */

/** A row minus its mean. */
export function centered(row: ArrayLike<number>): Float64Array {
  let mean = 0;
  for (let i = 0; i < row.length; i++) mean += row[i]!;
  mean /= row.length;
  return Float64Array.from({ length: row.length }, (_, i) => row[i]! - mean);
}

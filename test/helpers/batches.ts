/** Next-token batches for model tests, right-padded with token 0 and masked there. */
import type { NativeBatch } from '../../lib/native.js';

/** Rows of token ids → inputs t₀…tₙ₋₂, targets t₁…tₙ₋₁; positions before `maskFrom` are not trained. */
export function nextTokenBatch(rows: number[][], maskFrom = 0): NativeBatch {
  const length = Math.max(...rows.map((r) => r.length)) - 1;
  const tokens = new Int32Array(rows.length * length);
  const targets = new Int32Array(rows.length * length);
  const mask = new Float32Array(rows.length * length);
  rows.forEach((r, b) => {
    for (let i = 0; i + 1 < r.length; i++) {
      tokens[b * length + i] = r[i]!;
      targets[b * length + i] = r[i + 1]!;
      mask[b * length + i] = i >= maskFrom ? 1 : 0;
    }
  });
  return { shape: [rows.length, length], tokens, targets, mask };
}

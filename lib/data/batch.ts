/**
 * A training batch, as the trainer consumes it. All arrays are row-major `rows × width`.
 *
 * Each row holds one record (bucketed batches) or several records packed back to back (packed
 * batches). For a record of n tokens t₀…tₙ₋₁ the row gets n−1 positions: `inputs` t₀…tₙ₋₂ and
 * `targets` t₁…tₙ₋₁, so no position ever predicts across two records.
 *
 * - `inputs[i]`    token id fed to the model (pad id after the row's real length)
 * - `targets[i]`   the next token id to predict at that position
 * - `mask[i]`      1 when `targets[i]` is supervised (an assistant token or its end-of-turn token
 *                  under the default policy), 0 for prompt, template and padding; the loss is
 *                  sum(mask · CE) / sum(mask)
 * - `positions[i]` position id for RoPE; restarts at 0 for each record in a packed row
 * - `segments[i]`  1-based index of the record within its row, 0 for padding; attention must be
 *                  causal AND same-segment (block-diagonal), so packed records never see each other
 * - `lengths[r]`   real (non-padding) positions in row r
 */
export interface Batch {
  /** Epoch this batch belongs to and its index within the epoch. */
  epoch: number;
  index: number;
  rows: number;
  width: number;
  inputs: Int32Array;
  targets: Int32Array;
  mask: Uint8Array;
  positions: Int32Array;
  segments: Int32Array;
  lengths: Int32Array;
  /** Dataset record indices in row order (for logging and debugging). */
  recordIds: Int32Array;
  /** Sum of `lengths`: positions that are not padding. */
  realTokens: number;
  /** Sum of `mask`. */
  supervisedTokens: number;
}

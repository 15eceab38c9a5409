/** What became of one optimizer update, from the native step's report. */
export type UpdateOutcome =
  | { kind: 'applied'; loss: number; gradNorm: number }
  /** The loss or gradient was NaN/Inf: the update was skipped. Non-finite values are null. */
  | { kind: 'nonfinite'; loss: number | null; gradNorm: number | null }
  /** The group had no supervised token: nothing to learn from, the update was skipped. */
  | { kind: 'empty' };

export function classifyUpdate(update: { lossSum: number; tokens: number; gradNorm: number }): UpdateOutcome {
  // The native step checks this first too: with no tokens it computes no gradient norm at all.
  if (!(update.tokens > 0)) return { kind: 'empty' };
  const loss = update.lossSum / update.tokens;
  if (!Number.isFinite(loss) || !Number.isFinite(update.gradNorm)) {
    return { kind: 'nonfinite', loss: Number.isFinite(loss) ? loss : null, gradNorm: Number.isFinite(update.gradNorm) ? update.gradNorm : null };
  }
  return { kind: 'applied', loss, gradNorm: update.gradNorm };
}

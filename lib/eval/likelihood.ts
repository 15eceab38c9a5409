/**
 * Likelihood of references under a model: per supervised token, −log p(token | prefix) from the
 * model's full logits (float64 log-softmax), and whether the argmax is the token.
 */
import type { NativeModel } from '../native.js';
import { astype, toTypedArray } from '../tensor.js';

/** Next-token logits at every position of `tokens`: row i predicts token i + 1. Row-major [length, vocab]. */
export async function sequenceLogits(model: NativeModel, tokens: ArrayLike<number>, lora: boolean): Promise<{ values: Float32Array; vocab: number }> {
  const ids = Int32Array.from(tokens as ArrayLike<number>);
  const t = await model.logits({ shape: [1, ids.length], tokens: ids }, { lora });
  // Logits of a bfloat16/float16 model are widened here, so the softmax below is always float64 over float32.
  const f32 = t.dtype === 'float32' ? t : await astype(t, 'float32').finally(() => t.dispose());
  try {
    return { values: (await toTypedArray(f32)) as Float32Array, vocab: f32.shape.at(-1)! };
  } finally {
    f32.dispose();
  }
}

/** log Σ exp over one row, in float64. */
export function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return max + Math.log(sum);
}

export function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

export interface SequenceLikelihood {
  /** Summed −log p over the supervised tokens, nats. */
  nll: number;
  /** Supervised tokens (mask 1 at positions ≥ 1). */
  tokens: number;
  /** Of those, how many are the argmax of the logits before them. */
  correct: number;
}

/** Likelihood of the supervised tokens of one sequence, given its logits. */
export function likelihoodFromLogits(logits: Float32Array, vocab: number, tokens: ArrayLike<number>, mask: ArrayLike<number>): SequenceLikelihood {
  let nll = 0;
  let count = 0;
  let correct = 0;
  for (let i = 1; i < tokens.length; i++) {
    if (mask[i] !== 1) continue;
    const row = logits.subarray((i - 1) * vocab, i * vocab);
    const target = tokens[i]!;
    nll += logSumExp(row) - row[target]!;
    if (argmax(row) === target) correct++;
    count++;
  }
  return { nll, tokens: count, correct };
}

export async function sequenceLikelihood(model: NativeModel, tokens: ArrayLike<number>, mask: ArrayLike<number>, lora: boolean): Promise<SequenceLikelihood> {
  const { values, vocab } = await sequenceLogits(model, tokens, lora);
  return likelihoodFromLogits(values, vocab, tokens, mask);
}

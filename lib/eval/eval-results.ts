/** The numbers of an evaluation: per-item outcomes and their per-arm, per-category aggregates. */
import { exactMatch, isRefusal, tokenF1 } from './metrics.js';
import type { SequenceLikelihood } from './likelihood.js';

/** The row that aggregates every category. */
export const ALL_CATEGORIES = '(all)';

export interface ArmOutput {
  readonly text: string;
  readonly tokens: readonly number[];
  readonly finish_reason: 'stop' | 'length' | 'aborted';
  /** This answer's share of its batch's wall time (prefill included); an arm's shares sum to its generation time. */
  readonly seconds: number;
  /** Of the reference, when the item has one. */
  readonly likelihood: SequenceLikelihood | null;
}

export interface ItemResult {
  readonly id: string;
  readonly category: string;
  readonly prompt: string;
  readonly reference: string | null;
  /** Arm name → what it did. */
  readonly outputs: Record<string, ArmOutput>;
}

export interface LikelihoodRow {
  readonly arm: string;
  readonly category: string;
  /** Mean −log p per supervised token (nats). */
  readonly loss: number | null;
  readonly perplexity: number | null;
  /** Share of supervised tokens that are the argmax of the logits before them. */
  readonly token_accuracy: number | null;
  readonly tokens: number;
}

export interface GenerationRow {
  readonly arm: string;
  readonly category: string;
  readonly items: number;
  /** Items with a reference, which exact match and F1 average over. */
  readonly scored_items: number;
  readonly exact_match: number | null;
  readonly token_f1: number | null;
  /** Mean generated tokens per answer (the stop token not counted). */
  readonly mean_answer_tokens: number;
  readonly refusal_rate: number;
  readonly generated_tokens: number;
  readonly seconds: number;
  readonly tokens_per_sec: number | null;
}

const mean = (xs: readonly number[]) => (xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length);

export function likelihoodRow(arm: string, category: string, items: readonly ItemResult[]): LikelihoodRow {
  const ls = items.map((i) => i.outputs[arm]?.likelihood).filter((l): l is SequenceLikelihood => l != null);
  const tokens = ls.reduce((a, l) => a + l.tokens, 0);
  const loss = tokens > 0 ? ls.reduce((a, l) => a + l.nll, 0) / tokens : null;
  const ppl = loss === null ? null : Math.exp(loss);
  return {
    arm,
    category,
    loss,
    perplexity: ppl !== null && Number.isFinite(ppl) ? ppl : null,
    token_accuracy: tokens > 0 ? ls.reduce((a, l) => a + l.correct, 0) / tokens : null,
    tokens,
  };
}

export function generationRow(arm: string, category: string, items: readonly ItemResult[]): GenerationRow {
  const outs = items.map((i) => ({ item: i, out: i.outputs[arm]! }));
  const scored = outs.filter((o) => o.item.reference !== null);
  const generated = outs.reduce((a, o) => a + o.out.tokens.length, 0);
  const seconds = outs.reduce((a, o) => a + o.out.seconds, 0);
  return {
    arm,
    category,
    items: outs.length,
    scored_items: scored.length,
    exact_match: mean(scored.map((o) => (exactMatch(o.out.text, o.item.reference!) ? 1 : 0))),
    token_f1: mean(scored.map((o) => tokenF1(o.out.text, o.item.reference!))),
    mean_answer_tokens: mean(outs.map((o) => o.out.tokens.length)) ?? 0,
    refusal_rate: mean(outs.map((o) => (isRefusal(o.out.text) ? 1 : 0))) ?? 0,
    generated_tokens: generated,
    seconds,
    tokens_per_sec: seconds > 0 ? generated / seconds : null,
  };
}

/** Rows for every arm × (each category, then all of them). */
export function aggregate<R>(arms: readonly string[], items: readonly ItemResult[], row: (arm: string, category: string, items: readonly ItemResult[]) => R): R[] {
  const categories = [...new Set(items.map((i) => i.category))].sort();
  return arms.flatMap((arm) => [
    ...categories.map((c) => row(arm, c, items.filter((i) => i.category === c))),
    row(arm, ALL_CATEGORIES, items),
  ]);
}

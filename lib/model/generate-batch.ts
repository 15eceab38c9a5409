/**
 * Generation of many prompts at once: prompts of similar length are grouped into batches that
 * share one native KV cache (left-padded, pad keys masked, positions per row), so each decode step
 * is one forward pass over every running prompt. Each prompt's tokens are those generate() gives it
 * alone with the same options: its row samples from its own key of the same seed.
 */
import { z } from 'zod';
import type { NativeGenerator, NativeModel } from '../native.js';
import { validateGenerateOptions, type FinishReason, type GenerateOptions, type GenerationResult } from './generate.js';

export interface GenerateBatchOptions extends GenerateOptions {
  /** Prompts per native batch (default 8). */
  batchSize?: number;
}

export interface BatchGenerationResult extends GenerationResult {
  /**
   * This prompt's share of its batch's wall time (the batch's time over its prompts, prefill
   * included), so the shares of all prompts sum to the whole call's generation time.
   */
  seconds: number;
}

export const DEFAULT_BATCH_SIZE = 8;

const batchSizeSchema = z.number().int().min(1).max(4096);
const tokenId = z.number().int().min(0).max(2 ** 31 - 1);

function validatePrompts(prompts: readonly ArrayLike<number>[]): Int32Array[] {
  return prompts.map((prompt, p) => {
    const ids = Array.from(prompt);
    const bad = ids.findIndex((id) => !tokenId.safeParse(id).success);
    if (bad >= 0) throw new TypeError(`generateBatch: prompts[${p}][${bad}] is ${String(ids[bad])}, not a token id`);
    if (ids.length === 0) throw new RangeError(`generateBatch: prompts[${p}] holds no token`);
    return Int32Array.from(ids);
  });
}

/** Prompt indices in groups of at most `size`, longest first, so that a batch's rows pad little. */
export function batchesByLength(lengths: readonly number[], size: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const out: number[][] = [];
  for (let i = 0; i < order.length; i += size) out.push(order.slice(i, i + size));
  return out;
}

interface RowState {
  readonly tokens: number[];
  finish: FinishReason | null;
}

/** Steps one native batch until every row has stopped; rows that stop leave the native batch. */
async function runBatch(generator: NativeGenerator, rows: RowState[], maxTokens: number, stops: ReadonlySet<number>, signal: AbortSignal | undefined): Promise<void> {
  let finished: number[] = rows.flatMap((r, i) => (r.finish === null ? [] : [i]));
  while (rows.some((r) => r.finish === null)) {
    if (signal?.aborted) {
      for (const r of rows) r.finish ??= 'aborted';
      return;
    }
    const next = await generator.step(Int32Array.from(finished));
    finished = [];
    for (const [i, r] of rows.entries()) {
      if (r.finish !== null) continue;
      const token = next[i]!;
      if (token < 0) throw new Error(`generateBatch: the native batch dropped prompt ${i} while it was running`);
      if (stops.has(token)) r.finish = 'stop';
      else {
        r.tokens.push(token);
        if (r.tokens.length >= maxTokens) r.finish = 'length';
      }
      if (r.finish !== null) finished.push(i);
    }
  }
}

/** Generates every prompt to the end; results in the prompts' order. */
export async function generateBatch(model: NativeModel, prompts: readonly ArrayLike<number>[], rawOptions: GenerateBatchOptions = {}): Promise<BatchGenerationResult[]> {
  const { batchSize: rawSize, ...rest } = rawOptions;
  if (rawSize !== undefined && !batchSizeSchema.safeParse(rawSize).success) throw new TypeError(`generateBatch options: batchSize: ${String(rawSize)} is not an integer in [1, 4096]`);
  const batchSize = rawSize ?? DEFAULT_BATCH_SIZE;
  const options = validateGenerateOptions(rest);
  const ids = validatePrompts(prompts);
  const maxTokens = options.maxTokens ?? 256;
  const stops = new Set(options.stopTokens ?? []);
  const native = { temperature: options.temperature ?? 0, topP: options.topP ?? 1, topK: options.topK ?? 0, seed: options.seed ?? 0, lora: options.lora ?? true };
  const results: BatchGenerationResult[] = ids.map(() => ({ tokens: [], finishReason: 'length', seconds: 0 }));
  for (const group of batchesByLength(ids.map((p) => p.length), batchSize)) {
    const rows: RowState[] = group.map(() => ({ tokens: [], finish: maxTokens === 0 ? 'length' : null }));
    const started = performance.now();
    if (options.signal?.aborted) for (const r of rows) r.finish = 'aborted';
    if (rows.some((r) => r.finish === null)) {
      const generator = await model.batchGenerator(group.map((i) => ids[i]!), native);
      try {
        await runBatch(generator, rows, maxTokens, stops, options.signal);
      } finally {
        generator.dispose();
      }
    }
    const share = (performance.now() - started) / 1000 / group.length;
    for (const [k, i] of group.entries()) results[i] = { tokens: rows[k]!.tokens, finishReason: rows[k]!.finish ?? 'length', seconds: share };
  }
  return results;
}

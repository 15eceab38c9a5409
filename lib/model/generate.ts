/**
 * Token generation as an async iterator: one native step per token (KV cache on the MLX thread),
 * greedy or sampled, stopping at a stop token, after maxTokens, or when the signal aborts.
 */
import type { NativeModel } from '../native.js';

export interface GenerateOptions {
  maxTokens?: number;
  /** 0 (the default) is greedy. */
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  /** Ids that end generation; the stop token itself is not yielded. */
  stopTokens?: readonly number[];
  /** Use the adapter (default) or the base model alone. */
  lora?: boolean;
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length' | 'aborted';

export interface GenerationResult {
  tokens: number[];
  finishReason: FinishReason;
}

/** Yields generated token ids; the iterator's return value says why it ended. */
export async function* generateTokens(
  model: NativeModel,
  prompt: ArrayLike<number>,
  options: GenerateOptions = {},
): AsyncGenerator<number, FinishReason, undefined> {
  const maxTokens = options.maxTokens ?? 256;
  const stops = new Set(options.stopTokens ?? []);
  const generator = await model.generator(Int32Array.from(prompt), {
    temperature: options.temperature ?? 0,
    topP: options.topP ?? 1,
    topK: options.topK ?? 0,
    seed: options.seed ?? 0,
    lora: options.lora ?? true,
  });
  try {
    for (let i = 0; i < maxTokens; i++) {
      if (options.signal?.aborted) return 'aborted';
      const token = await generator.next();
      if (stops.has(token)) return 'stop';
      yield token;
    }
    return 'length';
  } finally {
    generator.dispose();
  }
}

/** Runs generation to the end. */
export async function generate(model: NativeModel, prompt: ArrayLike<number>, options: GenerateOptions = {}): Promise<GenerationResult> {
  const tokens: number[] = [];
  const it = generateTokens(model, prompt, options);
  for (;;) {
    const step = await it.next();
    if (step.done) return { tokens, finishReason: step.value };
    tokens.push(step.value);
  }
}

/**
 * Token generation as an async iterator: one native step per token (KV cache on the MLX thread),
 * greedy or sampled, stopping at a stop token, after maxTokens, or when the signal aborts.
 */
import { z } from 'zod';
import { formatKeyPath, problemsFromIssues } from '../config/zod-problems.js';
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

const tokenId = z.number().int().min(0).max(2 ** 31 - 1);

// Strict: a misspelt option (`temprature`) or a string where a number belongs (`"0.7"`) is an
// error naming it, never a silent fall-back to greedy decoding.
const generateOptionsSchema = z.strictObject({
  maxTokens: z.number().int().min(0).optional(),
  temperature: z.number().min(0).max(Number.MAX_VALUE).optional(),
  topP: z.number().min(0).max(1).optional(),
  topK: z.number().int().min(0).max(2 ** 31 - 1).optional(),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  stopTokens: z.array(tokenId).readonly().optional(),
  lora: z.boolean().optional(),
  signal: z.instanceof(AbortSignal).optional(),
});

const optionKeys = Object.keys(generateOptionsSchema.shape);

/** The options, checked: throws a TypeError listing every bad option by name. */
export function validateGenerateOptions(options: unknown): GenerateOptions {
  const parsed = generateOptionsSchema.safeParse(options ?? {});
  if (parsed.success) return parsed.data;
  const problems = problemsFromIssues(parsed.error.issues, options, (path) => (path.length === 0 ? optionKeys : undefined));
  throw new TypeError(`generate options: ${problems.map((p) => `${formatKeyPath(p.path)}: ${p.message}`).join('; ')}`);
}

function validatePrompt(prompt: ArrayLike<number>): Int32Array {
  const ids = Array.from(prompt);
  const bad = ids.findIndex((id) => !tokenId.safeParse(id).success);
  if (bad >= 0) throw new TypeError(`generate: prompt[${bad}] is ${String(ids[bad])}, not a token id`);
  if (ids.length === 0) throw new RangeError('generate: the prompt must hold at least one token');
  return Int32Array.from(ids);
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
  rawOptions: GenerateOptions = {},
): AsyncGenerator<number, FinishReason, undefined> {
  const options = validateGenerateOptions(rawOptions);
  const maxTokens = options.maxTokens ?? 256;
  const stops = new Set(options.stopTokens ?? []);
  const generator = await model.generator(validatePrompt(prompt), {
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
  // Checked before the first await, so a bad option throws from the call itself.
  validateGenerateOptions(options);
  const tokens: number[] = [];
  const it = generateTokens(model, prompt, options);
  for (;;) {
    const step = await it.next();
    if (step.done) return { tokens, finishReason: step.value };
    tokens.push(step.value);
  }
}

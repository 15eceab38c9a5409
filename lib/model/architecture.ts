/**
 * The decoder shape the native model is built from, from an HF config.json or GGUF `llama.*`
 * metadata. RoPE scaling (linear, llama3) is resolved here into a position scale or per-pair
 * periods, so the native side has one RoPE path.
 */
import { z } from 'zod';
import type { GgufFile } from '../gguf/reader.js';
import { optionalInteger, optionalNumber, optionalString, requireInteger } from '../gguf/metadata.js';
import type { NativeModelConfig } from '../native.js';

/** The native decoder's config plus where it came from. */
export interface Architecture extends NativeModelConfig {
  /** `llama`, `mistral` or `qwen2`: what the weights came as. */
  family: 'llama' | 'mistral' | 'qwen2';
  maxPositionEmbeddings?: number;
}

const ropeScalingSchema = z
  .object({
    type: z.string().optional(),
    rope_type: z.string().optional(),
    factor: z.number().positive().optional(),
    low_freq_factor: z.number().optional(),
    high_freq_factor: z.number().optional(),
    original_max_position_embeddings: z.number().int().positive().optional(),
  })
  .loose();

const hfConfigSchema = z
  .object({
    architectures: z.array(z.string()).nonempty().optional(),
    model_type: z.string().optional(),
    vocab_size: z.number().int().positive(),
    hidden_size: z.number().int().positive(),
    intermediate_size: z.number().int().positive(),
    num_hidden_layers: z.number().int().positive(),
    num_attention_heads: z.number().int().positive(),
    num_key_value_heads: z.number().int().positive().optional(),
    head_dim: z.number().int().positive().nullish(),
    rms_norm_eps: z.number().positive().default(1e-5),
    rope_theta: z.number().positive().default(10000),
    rope_scaling: ropeScalingSchema.nullish(),
    tie_word_embeddings: z.boolean().default(false),
    attention_bias: z.boolean().optional(),
    sliding_window: z.number().int().positive().nullish(),
    use_sliding_window: z.boolean().optional(),
    max_position_embeddings: z.number().int().positive().optional(),
  })
  .loose();

export type HfConfig = z.infer<typeof hfConfigSchema>;

const families: Record<string, Architecture['family']> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
};

/** mlx-lm's Llama3RoPE: per-pair periods stretched for low frequencies, smoothed in between. */
export function llama3RopePeriods(
  headDim: number,
  theta: number,
  scaling: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number },
): Float32Array {
  const half = headDim / 2;
  const out = new Float32Array(half);
  const lowFreqWavelen = scaling.originalMaxPositions / scaling.lowFreqFactor;
  const highFreqWavelen = scaling.originalMaxPositions / scaling.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const period = theta ** ((2 * i) / headDim);
    const wavelen = 2 * Math.PI * period;
    if (wavelen > lowFreqWavelen) {
      out[i] = period * scaling.factor;
    } else if (wavelen > highFreqWavelen) {
      const smooth = (scaling.originalMaxPositions / wavelen - scaling.lowFreqFactor) / (scaling.highFreqFactor - scaling.lowFreqFactor);
      out[i] = period / ((1 - smooth) / scaling.factor + smooth);
    } else {
      out[i] = period;
    }
  }
  return out;
}

function ropeFromScaling(
  scaling: z.infer<typeof ropeScalingSchema> | null | undefined,
  headDim: number,
  theta: number,
  where: string,
): Pick<Architecture, 'ropePositionScale' | 'ropePeriods'> {
  if (!scaling) return { ropePositionScale: 1 };
  const kind = scaling.rope_type ?? scaling.type ?? 'default';
  if (kind === 'default') return { ropePositionScale: 1 };
  if (kind === 'linear') {
    if (!scaling.factor) throw new Error(`${where}: rope_scaling of type linear needs a factor`);
    return { ropePositionScale: 1 / scaling.factor };
  }
  if (kind === 'llama3') {
    const { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } = scaling;
    if (!factor || low_freq_factor === undefined || high_freq_factor === undefined || !original_max_position_embeddings) {
      throw new Error(`${where}: rope_scaling of type llama3 needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings`);
    }
    return {
      ropePositionScale: 1,
      ropePeriods: llama3RopePeriods(headDim, theta, {
        factor,
        lowFreqFactor: low_freq_factor,
        highFreqFactor: high_freq_factor,
        originalMaxPositions: original_max_position_embeddings,
      }),
    };
  }
  throw new Error(`${where}: rope_scaling type '${kind}' is not supported (default, linear, llama3)`);
}

/** From an HF config.json; `where` names the file in errors. */
export function architectureFromHf(json: unknown, where: string): Architecture {
  const parsed = hfConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${where}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const c = parsed.data;
  const archName = c.architectures?.[0];
  const family = archName ? families[archName] : c.model_type && (['llama', 'mistral', 'qwen2'] as const).find((f) => f === c.model_type);
  if (!family) {
    throw new Error(`${where}: architecture ${archName ?? c.model_type ?? '(none)'} is not supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)`);
  }
  const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  const slidingWindow =
    family === 'qwen2' ? (c.use_sliding_window ? (c.sliding_window ?? undefined) : undefined) : (c.sliding_window ?? undefined);
  return {
    family,
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads: c.num_key_value_heads ?? c.num_attention_heads,
    headDim,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: c.rope_theta,
    ropeTraditional: false,
    ...ropeFromScaling(c.rope_scaling, headDim, c.rope_theta, where),
    tieWordEmbeddings: c.tie_word_embeddings,
    attentionBias: c.attention_bias ?? family === 'qwen2',
    ...(slidingWindow !== undefined ? { slidingWindow } : {}),
    ...(c.max_position_embeddings !== undefined ? { maxPositionEmbeddings: c.max_position_embeddings } : {}),
  };
}

/** From GGUF metadata (`general.architecture` llama or qwen2). */
export function architectureFromGguf(file: GgufFile): Architecture {
  const arch = optionalString(file, 'general.architecture');
  if (arch !== 'llama' && arch !== 'qwen2') {
    throw new Error(`${file.path}: GGUF architecture '${arch ?? '(none)'}' is not supported (llama, qwen2)`);
  }
  const k = (name: string) => `${arch}.${name}`;
  const hidden = requireInteger(file, k('embedding_length'));
  const heads = requireInteger(file, k('attention.head_count'));
  const headDim = optionalInteger(file, k('attention.key_length')) ?? optionalInteger(file, k('rope.dimension_count')) ?? hidden / heads;
  const embed = file.tensors.find((t) => t.name === 'token_embd.weight');
  if (!embed) throw new Error(`${file.path}: no token_embd.weight tensor`);
  const vocab = optionalInteger(file, k('vocab_size')) ?? embed.shape[0]!;
  const theta = optionalNumber(file, k('rope.freq_base')) ?? 10000;
  const scalingType = optionalString(file, k('rope.scaling.type'));
  const scalingFactor = optionalNumber(file, k('rope.scaling.factor'));
  const window = optionalInteger(file, k('attention.sliding_window'));
  const contextLength = optionalInteger(file, k('context_length'));
  return {
    family: arch === 'qwen2' ? 'qwen2' : 'llama',
    vocabSize: vocab,
    hiddenSize: hidden,
    intermediateSize: requireInteger(file, k('feed_forward_length')),
    numLayers: requireInteger(file, k('block_count')),
    numHeads: heads,
    numKvHeads: optionalInteger(file, k('attention.head_count_kv')) ?? heads,
    headDim,
    rmsNormEps: optionalNumber(file, k('attention.layer_norm_rms_epsilon')) ?? 1e-5,
    ropeTheta: theta,
    // llama.cpp's llama arch rotates interleaved pairs (its converter permuted the Q/K rows);
    // qwen2 is NeoX style and its rows are not permuted.
    ropeTraditional: arch === 'llama',
    ropePositionScale: scalingType === 'linear' && scalingFactor ? 1 / scalingFactor : 1,
    tieWordEmbeddings: !file.tensors.some((t) => t.name === 'output.weight'),
    attentionBias: file.tensors.some((t) => t.name === 'blk.0.attn_q.bias'),
    ...(window !== undefined && window > 0 ? { slidingWindow: window } : {}),
    ...(contextLength !== undefined ? { maxPositionEmbeddings: contextLength } : {}),
  };
}

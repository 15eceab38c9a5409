import { statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../config/config-error.js';
import { canonicalJson } from '../config/config-hash.js';
import {
  LORA_TARGETS,
  QUANTIZATION_BITS,
  QUANTIZATION_GROUP_SIZES,
  loraScale,
  type LoraTarget,
  type TrainConfig,
} from '../config/train-config.js';
import { problemsFromIssues } from '../config/zod-problems.js';
import { writeFileAtomic } from '../io/atomic-file.js';
import { libraryVersion } from '../config/library-version.js';

/**
 * mlx-lm's `adapter_config.json` (gguf_ollama.md §2.1). mlx-lm's `load_adapters` reads only
 * `fine_tune_type`, `num_layers` and `lora_parameters {rank, scale, dropout, keys}`; everything
 * else in the file is free-form (mlx-lm itself dumps all its CLI arguments there), so ours adds
 * `base_model` and `library_version`, and reading accepts and keeps unknown top-level keys.
 */

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';

/** mlx-lm module path of each target inside a decoder block. */
export const MLX_KEY_OF: Record<LoraTarget, string> = {
  q_proj: 'self_attn.q_proj',
  k_proj: 'self_attn.k_proj',
  v_proj: 'self_attn.v_proj',
  o_proj: 'self_attn.o_proj',
  gate_proj: 'mlp.gate_proj',
  up_proj: 'mlp.up_proj',
  down_proj: 'mlp.down_proj',
};
const MLX_KEYS = LORA_TARGETS.map((target) => MLX_KEY_OF[target]) as [string, ...string[]];

/**
 * Row order of the q/k projections' outputs: HF's split halves, or llama.cpp's interleaved pairs
 * (its converter permutes the rows of Llama-family GGUF files, gguf_ollama.md §3.2). A LoRA B
 * trained on a base holds its output columns in that base's order.
 */
export const QK_ROW_ORDERS = ['hf', 'gguf'] as const;
export type QkRowOrder = (typeof QK_ROW_ORDERS)[number];

const baseModelSchema = z.strictObject({
  /** The model as the config named it: a resolved path or an Ollama name. */
  source: z.string().min(1),
  architecture: z.string().min(1).optional(),
  /** Decoder blocks in the base model, to turn `num_layers` into block indices. */
  num_hidden_layers: z.int().min(1),
  /** How the frozen base was quantized during training; null for an unquantized base. */
  quantization: z
    .strictObject({ bits: z.literal(QUANTIZATION_BITS), group_size: z.literal(QUANTIZATION_GROUP_SIZES) })
    .nullable(),
  /** The q/k row order the adapter was trained in; absent in older adapters (see qkRowOrderOfBase). */
  qk_row_order: z.enum(QK_ROW_ORDERS).optional(),
});

export const adapterConfigSchema = z.looseObject({
  // mlx-lm treats a missing type as LoRA; DoRA and full fine-tunes are not ours to load.
  fine_tune_type: z.literal('lora').default('lora'),
  /** Adapted blocks counted from the end; -1 means all. */
  num_layers: z.union([z.literal(-1), z.int().min(1)]),
  lora_parameters: z.looseObject({
    rank: z.int().min(1),
    scale: z.number(),
    dropout: z.number().min(0).max(1).default(0),
    /** Module paths inside a block; absent means every linear layer (mlx-lm ≥ PR #515). */
    keys: z.array(z.enum(MLX_KEYS)).min(1).optional(),
  }),
  /** mlx-lm's own field for the base model path. */
  model: z.string().optional(),
  base_model: baseModelSchema.optional(),
  library_version: z.string().optional(),
});

export type AdapterConfig = z.output<typeof adapterConfigSchema>;
export type BaseModelInfo = z.output<typeof baseModelSchema>;

/**
 * The q/k row order of a base model named by `source` (as adapter configs record it): a GGUF file
 * or an Ollama name is in llama.cpp's order, except qwen2 whose rows llama.cpp never permutes; an
 * HF folder is in HF order. A path that is gone counts as a GGUF file only by its extension.
 */
export function inferQkRowOrder(source: string, architecture?: string): QkRowOrder {
  if (architecture === 'qwen2') return 'hf';
  if (/\.gguf$/i.test(source)) return 'gguf';
  const info = statSync(path.resolve(source), { throwIfNoEntry: false });
  if (info) return info.isFile() ? 'gguf' : 'hf';
  const looksLikePath = path.isAbsolute(source) || /^\.{0,2}[\\/]/.test(source);
  return looksLikePath ? 'hf' : 'gguf';
}

/** The q/k row order an adapter config says its adapter was trained in. */
export function qkRowOrderOfBase(base: BaseModelInfo): QkRowOrder {
  return base.qk_row_order ?? inferQkRowOrder(base.source, base.architecture);
}

/** The adapter config for a training run on a given base model. */
export function adapterConfigFor(
  config: Pick<TrainConfig, 'lora' | 'model' | 'quantization'>,
  base: Pick<BaseModelInfo, 'num_hidden_layers' | 'architecture' | 'qk_row_order'>,
): AdapterConfig {
  const { lora } = config;
  if (lora.layers !== 'all' && lora.layers > base.num_hidden_layers) {
    throw new RangeError(`lora.layers: the model has ${base.num_hidden_layers} layers, got ${lora.layers}`);
  }
  const quantization = config.quantization === 'none' ? null : config.quantization;
  return {
    fine_tune_type: 'lora',
    num_layers: lora.layers === 'all' ? -1 : lora.layers,
    lora_parameters: {
      rank: lora.rank,
      scale: loraScale(lora),
      dropout: lora.dropout,
      keys: lora.targets.map((target) => MLX_KEY_OF[target]),
    },
    model: config.model,
    base_model: { ...base, source: config.model, quantization, qk_row_order: base.qk_row_order ?? inferQkRowOrder(config.model, base.architecture) },
    library_version: libraryVersion(),
  };
}

/** mlx-lm's layout: keys sorted at every level, 4-space indent (`json.dump(sort_keys=True, indent=4)`). */
export function serializeAdapterConfig(adapterConfig: AdapterConfig): string {
  const validated = adapterConfigSchema.parse(adapterConfig);
  return `${JSON.stringify(JSON.parse(canonicalJson(validated)), null, 4)}\n`;
}

/** Writes `adapter_config.json` into `dir`, replacing any previous one atomically. */
export async function writeAdapterConfig(dir: string, adapterConfig: AdapterConfig): Promise<string> {
  const filePath = path.join(dir, ADAPTER_CONFIG_FILE);
  await writeFileAtomic(filePath, serializeAdapterConfig(adapterConfig));
  return filePath;
}

/** Reads and validates an adapter config, given its folder or the file itself. */
export async function readAdapterConfig(dirOrFile: string): Promise<AdapterConfig> {
  const isDir = (await stat(dirOrFile).catch(() => undefined))?.isDirectory() ?? false;
  const file = isDir ? path.join(dirOrFile, ADAPTER_CONFIG_FILE) : dirOrFile;
  const fail = (message: string): never => {
    throw new ConfigError([{ message }], file, 'adapter config');
  };
  const text = await readFile(file, 'utf8').catch((error: unknown) =>
    fail(`cannot read: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : String(error)}`),
  );
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return fail(`not valid JSON: ${(error as Error).message}`);
  }
  const result = adapterConfigSchema.safeParse(json);
  if (!result.success) throw new ConfigError(problemsFromIssues(result.error.issues, json), file, 'adapter config');
  return result.data;
}

/** The targets an adapter config adapts; no `keys` means all of them, as in mlx-lm. */
export function loraTargetsOf(adapterConfig: AdapterConfig): LoraTarget[] {
  const keys = adapterConfig.lora_parameters.keys;
  if (!keys) return [...LORA_TARGETS];
  return LORA_TARGETS.filter((target) => keys.includes(MLX_KEY_OF[target]));
}

/** Indices of the adapted decoder blocks: the last `num_layers` (all for -1). */
export function adaptedLayers(numLayers: number, totalLayers: number): number[] {
  const count = numLayers === -1 ? totalLayers : Math.min(numLayers, totalLayers);
  return Array.from({ length: count }, (_, index) => totalLayers - count + index);
}

/**
 * The safetensors key of a LoRA matrix in mlx-lm's layout, e.g.
 * `model.layers.31.self_attn.q_proj.lora_a`; lora_a is (in, r) and lora_b is (r, out).
 */
export function adapterTensorName(layer: number, target: LoraTarget, matrix: 'lora_a' | 'lora_b'): string {
  return `model.layers.${layer}.${MLX_KEY_OF[target]}.${matrix}`;
}

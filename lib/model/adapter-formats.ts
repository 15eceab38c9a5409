/**
 * Which LoRA adapter a folder holds and what its config says: ours (mlx-lm layout plus a
 * `base_model` record), mlx-lm's own (gguf_ollama.md §2.1) or Hugging Face PEFT's (§2.4).
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../config/config-error.js';
import { problemsFromIssues } from '../config/zod-problems.js';
import { LORA_TARGETS, loraScale, type LoraTarget } from '../config/train-config.js';
import { ADAPTER_CONFIG_FILE, loraTargetsOf, qkRowOrderOfBase, readAdapterConfig, type QkRowOrder } from './adapter-config.js';

export type AdapterFormat = 'mlx-qlora' | 'mlx-lm' | 'peft';
export { ADAPTER_CONFIG_FILE };
export const MLX_ADAPTER_WEIGHTS_FILE = 'adapters.safetensors';
export const PEFT_WEIGHTS_FILE = 'adapter_model.safetensors';

/** An adapter folder's config, whatever its format, in one shape. */
export interface AdapterDescription {
  readonly format: AdapterFormat;
  readonly dir: string;
  readonly configFile: string;
  readonly weightsFile: string;
  readonly rank: number;
  /** What B·A is multiplied by. */
  readonly scale: number;
  /** PEFT's lora_alpha; scale·r for mlx formats (which store the scale). */
  readonly alpha: number;
  /** PEFT's use_rslora: scale = alpha/√r. */
  readonly rslora: boolean;
  readonly dropout: number;
  readonly targets: readonly LoraTarget[];
  /** The adapted blocks when the config says which; otherwise (count from the end) see `numLayers`. */
  readonly layers?: readonly number[];
  /** mlx's num_layers: adapted blocks counted from the end, -1 for all. */
  readonly numLayers: number;
  /** Blocks in the base, when the config records it. */
  readonly totalLayers?: number;
  /** The q/k output row order of lora_b: HF's for mlx-lm and PEFT, recorded (or inferred) for ours. */
  readonly rowOrder: QkRowOrder;
  /** The base as the config names it (a path, an Ollama name, a hub id). */
  readonly baseModel?: string;
}

const peftConfigSchema = z.looseObject({
  peft_type: z.literal('LORA'),
  r: z.int().min(1),
  lora_alpha: z.number().positive(),
  target_modules: z.union([z.array(z.string()).min(1), z.string()]),
  use_rslora: z.boolean().default(false),
  lora_dropout: z.number().min(0).max(1).default(0),
  layers_to_transform: z.union([z.int().min(0), z.array(z.int().min(0)).min(1)]).nullish(),
  bias: z.string().default('none'),
  use_dora: z.boolean().default(false),
  fan_in_fan_out: z.boolean().default(false),
  modules_to_save: z.array(z.string()).nullish(),
  rank_pattern: z.record(z.string(), z.unknown()).nullish(),
  alpha_pattern: z.record(z.string(), z.unknown()).nullish(),
  base_model_name_or_path: z.string().nullish(),
});

/** PEFT features whose weights the LoRA slots cannot hold, each with what to tell the user. */
function unsupportedPeft(c: z.output<typeof peftConfigSchema>): string | undefined {
  if (c.use_dora) return 'use_dora: DoRA adapters are not supported';
  if (c.bias !== 'none') return `bias: LoRA biases are not supported (bias must be "none", got ${JSON.stringify(c.bias)})`;
  if (c.fan_in_fan_out) return 'fan_in_fan_out: adapters of Conv1D layers (GPT-2 style) are not supported';
  if (c.modules_to_save?.length) return `modules_to_save: fully trained modules (${c.modules_to_save.join(', ')}) are not supported`;
  if (Object.keys(c.rank_pattern ?? {}).length) return 'rank_pattern: per-module ranks are not supported';
  if (Object.keys(c.alpha_pattern ?? {}).length) return 'alpha_pattern: per-module alphas are not supported';
  return undefined;
}

async function readJson(file: string): Promise<unknown> {
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new Error(`${file}: ${error.code === 'ENOENT' ? 'not found: an adapter folder holds adapter_config.json and its safetensors' : error.message}`);
  });
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${file}: not valid JSON: ${(error as Error).message}`);
  }
}

/** Tells an adapter folder's format from its adapter_config.json, and checks its weights file is there. */
export async function detectAdapterFormat(dir: string): Promise<AdapterFormat> {
  const info = await stat(dir).catch(() => undefined);
  if (!info?.isDirectory()) throw new Error(`${dir}: not an adapter folder (no such folder)`);
  const configFile = join(dir, ADAPTER_CONFIG_FILE);
  const json = await readJson(configFile);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${configFile}: not a JSON object`);
  let format: AdapterFormat;
  if ('peft_type' in json) format = 'peft';
  else if ('lora_parameters' in json) format = 'base_model' in json ? 'mlx-qlora' : 'mlx-lm';
  else throw new Error(`${configFile}: neither a PEFT config (peft_type) nor an mlx-lm one (lora_parameters)`);
  const weights = join(dir, format === 'peft' ? PEFT_WEIGHTS_FILE : MLX_ADAPTER_WEIGHTS_FILE);
  if (!(await stat(weights).catch(() => undefined))?.isFile()) {
    const bin = format === 'peft' && (await stat(join(dir, 'adapter_model.bin')).catch(() => undefined));
    throw new Error(`${weights}: not found${bin ? ' (adapter_model.bin, a PyTorch pickle, is not read: save the adapter with safe_serialization)' : ''}`);
  }
  return format;
}

/** PEFT target_modules as our targets: leaf names (or paths ending in one), or "all-linear". */
function peftTargets(modules: string | readonly string[], configFile: string): LoraTarget[] {
  if (typeof modules === 'string') {
    if (modules === 'all-linear') return [...LORA_TARGETS];
    throw new Error(`${configFile}: target_modules: the pattern ${JSON.stringify(modules)} is not supported (give module names or "all-linear")`);
  }
  const leaves = modules.map((m) => m.split('.').pop() ?? m);
  const unknown = leaves.filter((leaf) => !(LORA_TARGETS as readonly string[]).includes(leaf));
  if (unknown.length) {
    throw new Error(`${configFile}: target_modules: ${unknown.join(', ')} cannot be adapted (supported: ${LORA_TARGETS.join(', ')})`);
  }
  return LORA_TARGETS.filter((t) => leaves.includes(t));
}

async function describePeft(dir: string): Promise<AdapterDescription> {
  const configFile = join(dir, ADAPTER_CONFIG_FILE);
  const json = await readJson(configFile);
  const parsed = peftConfigSchema.safeParse(json);
  if (!parsed.success) throw new ConfigError(problemsFromIssues(parsed.error.issues, json), configFile, 'PEFT adapter config');
  const c = parsed.data;
  const unsupported = unsupportedPeft(c);
  if (unsupported) throw new Error(`${configFile}: ${unsupported}`);
  const layers = c.layers_to_transform == null ? undefined : [...new Set([c.layers_to_transform].flat())].sort((a, b) => a - b);
  return {
    format: 'peft',
    dir,
    configFile,
    weightsFile: join(dir, PEFT_WEIGHTS_FILE),
    rank: c.r,
    scale: loraScale({ alpha: c.lora_alpha, rank: c.r, rslora: c.use_rslora }),
    alpha: c.lora_alpha,
    rslora: c.use_rslora,
    dropout: c.lora_dropout,
    targets: peftTargets(c.target_modules, configFile),
    ...(layers ? { layers } : {}),
    numLayers: layers ? layers.length : -1,
    rowOrder: 'hf',
    ...(c.base_model_name_or_path ? { baseModel: c.base_model_name_or_path } : {}),
  };
}

async function describeMlx(dir: string, format: 'mlx-qlora' | 'mlx-lm'): Promise<AdapterDescription> {
  const configFile = join(dir, ADAPTER_CONFIG_FILE);
  const config = await readAdapterConfig(configFile);
  const p = config.lora_parameters;
  const base = config.base_model;
  return {
    format,
    dir,
    configFile,
    weightsFile: join(dir, MLX_ADAPTER_WEIGHTS_FILE),
    rank: p.rank,
    scale: p.scale,
    alpha: p.scale * p.rank,
    rslora: false,
    dropout: p.dropout,
    targets: loraTargetsOf(config),
    numLayers: config.num_layers,
    ...(base ? { totalLayers: base.num_hidden_layers } : {}),
    // mlx-lm loads HF checkpoints, so its adapters are in HF order.
    rowOrder: base ? qkRowOrderOfBase(base) : 'hf',
    ...((base?.source ?? config.model) ? { baseModel: base?.source ?? config.model } : {}),
  };
}

/** The config of the adapter in `dir`, any format. */
export async function describeAdapter(dir: string): Promise<AdapterDescription> {
  const format = await detectAdapterFormat(dir);
  return format === 'peft' ? describePeft(dir) : describeMlx(dir, format);
}

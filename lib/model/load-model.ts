/**
 * Resolves a model (HF folder, GGUF file, Ollama name) into a native decoder: config, frozen base
 * weights (quantized for QLoRA), LoRA adapters.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { device } from '../device.js';
import { readGguf, type GgufFile } from '../gguf/reader.js';
import { readAdapterConfig } from './adapter-config.js';
import { native, type DType, type NativeBuildOptions, type NativeModel } from '../native.js';
import { architectureFromGguf, architectureFromHf, type Architecture } from './architecture.js';
import { ggufRopePeriods, loadGgufWeights } from './gguf-weights.js';
import { loadAdapterWeights, loraSettingsOfAdapter } from './adapter.js';
import { nativeLoraOptions, type LoraSettings } from './lora-options.js';
import { resolveModelSource, type ModelSource } from '../source/model-source.js';

/** How the frozen base's linear weights are held: MLX affine bits and group size, or dense. */
export type BaseQuantization = { bits: number; groupSize: number } | 'none';

export interface LoadModelOptions {
  /**
   * The base quantization; 'none' keeps the base dense (plain LoRA). Absent: what the adapter
   * records, else the model as stored (defaultBaseQuantization).
   */
  quantization?: BaseQuantization;
  /**
   * Activations, norms and dense weights; default float32 on the CPU, on a GPU bfloat16 (float16
   * for GGUF files, see defaultComputeDtype). The choice is in LoadedModel.build and model info.
   */
  computeDtype?: DType;
  /** How quantized linears are computed; 'auto' picks the fastest kernel for the backend. */
  kernel?: 'auto' | NativeBuildOptions['kernel'];
  lora?: LoraSettings;
  /** An adapter folder (adapter_config.json + adapters.safetensors) to load onto the base; overrides `lora`. */
  adapter?: string;
  ollamaModelsDir?: string;
}

export interface LoadedModel {
  native: NativeModel;
  architecture: Architecture;
  source: ModelSource;
  /** What the native model was built with, defaults resolved (computeDtype included). */
  build: NativeBuildOptions;
  dispose(): void;
}

const indexSchema = z.object({ weight_map: z.record(z.string(), z.string()) });
const mlxQuantizationSchema = z.object({ group_size: z.number().int(), bits: z.number().int() }).loose();

async function readJson(path: string): Promise<unknown> {
  const text = await readFile(path, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${path}: ${e.code === 'ENOENT' ? 'not found' : e.message}`);
  });
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${path}: invalid JSON (${(error as Error).message})`);
  }
}

/** The safetensors files of an HF folder: the index's shards, or model.safetensors. */
export async function hfWeightFiles(dir: string): Promise<string[]> {
  const indexPath = join(dir, 'model.safetensors.index.json');
  if (await stat(indexPath).catch(() => undefined)) {
    const parsed = indexSchema.safeParse(await readJson(indexPath));
    if (!parsed.success) throw new Error(`${indexPath}: weight_map: ${parsed.error.issues[0]?.message}`);
    const files = [...new Set(Object.values(parsed.data.weight_map))].sort();
    for (const f of files) {
      if (!(await stat(join(dir, f)).catch(() => undefined))) throw new Error(`${indexPath}: shard '${f}' is missing from ${dir}`);
    }
    return files.map((f) => join(dir, f));
  }
  const single = join(dir, 'model.safetensors');
  if (await stat(single).catch(() => undefined)) return [single];
  throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json`);
}

/**
 * The compute dtype when the caller sets none: float32 on the CPU; on a GPU bfloat16, except for
 * GGUF files (Ollama's included), which get float16. Their Q4_0/Q4_1/Q8_0 scales are float16 and
 * repack losslessly only while they stay float16 (bfloat16 drops 3 of their mantissa bits), and
 * they cannot stay float16 beside bfloat16 activations: MLX's quantized_matmul promotes the two to
 * float32 and would run every projection there. llama.cpp computes these files in float16 too.
 */
export function defaultComputeDtype(gpu: boolean, source: ModelSource['kind']): DType {
  if (!gpu) return 'float32';
  return source === 'hf' ? 'bfloat16' : 'float16';
}

/** Bits for GGUF types MLX cannot hold as they are (Q4_0, Q4_1 and Q8_0 are repacked as they are). */
const GGUF_REQUANTIZED_BITS: Readonly<Record<string, number>> = { Q2_K: 2, Q3_K: 3, Q4_K: 4, Q5_0: 5, Q5_1: 5, Q5_K: 5, Q6_K: 6, Q8_1: 8, Q8_K: 8 };
const GGUF_LINEAR = /^(output|blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down))\.weight$/;

/**
 * A GGUF's linear weights as stored, as the loader's quantization: 'none' when they are all
 * F32/F16/BF16 or Q4_0/Q4_1/Q8_0 (which load as they are whatever the setting); else the K-quant
 * and Q5 types, which must be decoded and quantized again, get the widest of their bit widths at
 * MLX's finest group size (32), the nearest MLX layout to what the file holds.
 */
export function ggufStoredQuantization(file: Pick<GgufFile, 'tensors'>): BaseQuantization {
  let bits = 0;
  for (const t of file.tensors) if (GGUF_LINEAR.test(t.name)) bits = Math.max(bits, GGUF_REQUANTIZED_BITS[t.typeName] ?? 0);
  return bits === 0 ? 'none' : { bits, groupSize: 32 };
}

/**
 * The base quantization when the caller names none (no `--bits`), for every command that loads a
 * model: with an adapter that records `base_model.quantization` (adapters this library trains),
 * that record (null: dense), so the adapter runs on the base it was trained on; otherwise (no
 * adapter, or an mlx-lm or PEFT adapter without the record) the model as stored: a dense HF
 * folder stays dense, an MLX-quantized folder keeps its bits and group size, a GGUF as
 * ggufStoredQuantization says.
 */
export async function defaultBaseQuantization(stored: BaseQuantization, adapterDir?: string): Promise<BaseQuantization> {
  return (adapterDir === undefined ? undefined : await recordedBaseQuantization(adapterDir)) ?? stored;
}

/** The base quantization an adapter folder records it was trained on; undefined when it records none. */
export async function recordedBaseQuantization(adapterDir: string): Promise<BaseQuantization | undefined> {
  const recorded = (await readAdapterConfig(adapterDir)).base_model;
  if (!recorded) return undefined;
  return recorded.quantization ? { bits: recorded.quantization.bits, groupSize: recorded.quantization.group_size } : 'none';
}

async function defaultBuild(options: LoadModelOptions, source: ModelSource['kind'], stored: BaseQuantization): Promise<NativeBuildOptions> {
  const gpu = (await device()).type === 'gpu';
  const q = options.quantization ?? (await defaultBaseQuantization(stored, options.adapter));
  const kernel = options.kernel && options.kernel !== 'auto' ? options.kernel : gpu ? 'quantized-matmul' : 'dequantize-matmul';
  return {
    quantBits: q === 'none' ? 0 : q.bits,
    quantGroupSize: q === 'none' ? 64 : q.groupSize,
    computeDtype: options.computeDtype ?? defaultComputeDtype(gpu, source),
    kernel,
  };
}

async function loraFor(options: LoadModelOptions, numLayers: number): Promise<LoraSettings | undefined> {
  return options.adapter ? loraSettingsOfAdapter(options.adapter, numLayers) : options.lora;
}

export async function loadModel(spec: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  const loaded = await loadBase(spec, options);
  if (options.adapter) {
    try {
      await loadAdapterWeights(loaded, options.adapter);
    } catch (error) {
      loaded.dispose();
      throw error;
    }
  }
  return loaded;
}

async function loadBase(spec: string, options: LoadModelOptions): Promise<LoadedModel> {
  const source = await resolveModelSource(spec, options.ollamaModelsDir ? { ollamaModelsDir: options.ollamaModelsDir } : {});
  let architecture: Architecture;
  let build: NativeBuildOptions;
  let model: NativeModel;
  if (source.kind === 'hf') {
    const configPath = join(source.path, 'config.json');
    const json = await readJson(configPath);
    architecture = architectureFromHf(json, configPath);
    const q = mlxQuantizationSchema.safeParse((json as { quantization?: unknown }).quantization);
    build = await defaultBuild(options, source.kind, q.success ? { bits: q.data.bits, groupSize: q.data.group_size } : 'none');
    model = await native().createModel(architecture, build, nativeLoraOptions(await loraFor(options, architecture.numLayers), architecture.numLayers));
    try {
      for (const file of await hfWeightFiles(source.path)) await model.loadSafetensors(file);
      await model.finalize();
    } catch (error) {
      model.dispose();
      throw error;
    }
  } else {
    const file = await readGguf(source.path);
    architecture = architectureFromGguf(file);
    const periods = await ggufRopePeriods(file, architecture.headDim, architecture.ropeTheta);
    if (periods) architecture.ropePeriods = periods;
    build = await defaultBuild(options, source.kind, ggufStoredQuantization(file));
    model = await native().createModel(architecture, build, nativeLoraOptions(await loraFor(options, architecture.numLayers), architecture.numLayers));
    try {
      await loadGgufWeights(model, file);
      await model.finalize();
    } catch (error) {
      model.dispose();
      throw error;
    }
  }
  return { native: model, architecture, source, build, dispose: () => model.dispose() };
}

/**
 * Resolves a model (HF folder, GGUF file, Ollama name) into a native decoder: config, frozen base
 * weights (quantized for QLoRA), LoRA adapters.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { device } from '../device.js';
import { readGguf } from '../gguf/reader.js';
import { native, type DType, type NativeBuildOptions, type NativeModel } from '../native.js';
import { architectureFromGguf, architectureFromHf, type Architecture } from './architecture.js';
import { ggufRopePeriods, loadGgufWeights } from './gguf-weights.js';
import { loadAdapterWeights, loraSettingsOfAdapter } from './adapter.js';
import { nativeLoraOptions, type LoraSettings } from './lora-options.js';
import { resolveModelSource, type ModelSource } from './source.js';

export interface LoadModelOptions {
  /** QLoRA base quantization; 'none' keeps the base dense (plain LoRA). Default 4 bits, group 64. */
  quantization?: { bits: number; groupSize: number } | 'none';
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

async function defaultBuild(
  options: LoadModelOptions,
  source: ModelSource['kind'],
  mlxQuantization?: { bits: number; groupSize: number },
): Promise<NativeBuildOptions> {
  const gpu = (await device()).type === 'gpu';
  const q = options.quantization ?? mlxQuantization ?? { bits: 4, groupSize: 64 };
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
    build = await defaultBuild(options, source.kind, q.success ? { bits: q.data.bits, groupSize: q.data.group_size } : undefined);
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
    build = await defaultBuild(options, source.kind);
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

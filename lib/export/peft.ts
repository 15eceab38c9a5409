/**
 * A LoRA adapter as a Hugging Face PEFT folder: adapter_model.safetensors (A [r, in], B [out, r]
 * under `base_model.model.model.layers.N…lora_A.weight`, q/k outputs in HF row order) and
 * adapter_config.json, written as a whole folder that replaces nothing until it is complete.
 */
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ADAPTER_CONFIG_FILE, PEFT_WEIGHTS_FILE } from '../model/adapter-formats.js';
import { encodeSafetensorsF32, type DenseMatrix } from '../model/adapter-safetensors.js';
import { adapterForBase, peftTensorName, readAdapter, transpose, type AdapterWeights } from '../model/adapter-weights.js';
import type { Architecture } from '../model/architecture.js';
import { architectureOfModel } from '../model/architecture-of.js';
import { replaceFolderAtomically } from '../io/atomic-folder.js';
import { adapterTensorName } from '../model/adapter-config.js';

export interface PeftExportOptions {
  /** base_model_name_or_path; by default the base the adapter's config names. */
  baseModel?: string;
  /**
   * The base's shape, to check the adapter against it and to put q/k rows of an adapter trained on
   * a GGUF base back in HF order; by default read from the base the adapter's config names.
   */
  base?: Architecture;
  /** Replace an existing folder at outDir. */
  overwrite?: boolean;
}

/** The adapter with its q/k lora_b columns in HF order (needs the base's head counts when they are not). */
async function inHfOrder(adapter: AdapterWeights, base: Architecture | undefined): Promise<AdapterWeights> {
  if (base) return adapterForBase(adapter, base, 'hf');
  if (adapter.rowOrder === 'hf') return adapter;
  if (!adapter.baseModel) {
    throw new Error(`${adapter.configFile}: the adapter was trained on a GGUF base (q/k rows in llama.cpp's order) that it does not name; give the base model to write it as PEFT`);
  }
  const named = await architectureOfModel(adapter.baseModel).catch((error: Error) => {
    throw new Error(`${adapter.configFile}: the adapter's q/k rows are in llama.cpp's order and its base is needed to reorder them: ${error.message}`);
  });
  return adapterForBase(adapter, named, 'hf');
}

export function peftConfigOf(adapter: AdapterWeights, baseModel: string | undefined): Record<string, unknown> {
  const all = adapter.totalLayers !== undefined ? adapter.layers.length === adapter.totalLayers : adapter.numLayers === -1;
  return {
    alpha_pattern: {},
    base_model_name_or_path: baseModel ?? null,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: all ? null : [...adapter.layers],
    // PEFT scales by lora_alpha/r (use_rslora: /√r); ours stores the scale, mlx formats give alpha = scale·r.
    lora_alpha: adapter.alpha,
    lora_dropout: adapter.dropout,
    modules_to_save: null,
    peft_type: 'LORA',
    r: adapter.rank,
    rank_pattern: {},
    revision: null,
    target_modules: [...adapter.targets],
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: adapter.rslora,
  };
}

/** PEFT's tensors: mlx lora_a (in, r) → A [r, in], lora_b (r, out) → B [out, r]. */
export function peftTensorsOf(adapter: AdapterWeights): Map<string, DenseMatrix> {
  const out = new Map<string, DenseMatrix>();
  for (const layer of adapter.layers) {
    for (const target of adapter.targets) {
      for (const [matrix, peft] of [['lora_a', 'A'], ['lora_b', 'B']] as const) {
        const m = adapter.matrices.get(adapterTensorName(layer, target, matrix))!;
        const [rows, cols] = m.shape as [number, number];
        out.set(peftTensorName(layer, target, peft), { shape: [cols, rows], values: transpose(m.values, rows, cols) });
      }
    }
  }
  return out;
}

/** Writes the adapter in `adapterDir` (ours, mlx-lm's or PEFT's) as a PEFT folder at `outDir`. */
export async function writePeftAdapter(adapterDir: string, outDir: string, options: PeftExportOptions = {}): Promise<void> {
  const target = resolve(outDir);
  if (!options.overwrite && (await stat(target).catch(() => undefined))) {
    throw new Error(`${target} already exists (pass overwrite to replace it)`);
  }
  const read = await readAdapter(adapterDir, options.base ? { totalLayers: options.base.numLayers } : {});
  const adapter = await inHfOrder(read, options.base);
  const config = peftConfigOf(adapter, options.baseModel ?? adapter.baseModel);
  const weights = encodeSafetensorsF32(peftTensorsOf(adapter), { format: 'pt' });
  await mkdir(dirname(target), { recursive: true });
  await replaceFolderAtomically(dirname(target), basename(target), async (temp) => {
    await writeFile(join(temp, PEFT_WEIGHTS_FILE), weights);
    await writeFile(join(temp, ADAPTER_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  });
}

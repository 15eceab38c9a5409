/**
 * Adapter folders into a loaded model: ours (adapter_config.json + adapters.safetensors, mlx-lm
 * layout), mlx-lm's and PEFT's (adapter_model.safetensors), in whatever q/k row order the base uses.
 */
import { tensor, type Tensor } from '../tensor.js';
import { describeAdapter, MLX_ADAPTER_WEIGHTS_FILE } from './adapter-formats.js';
import { adapterForBase, readAdapter, type AdapterWeights } from './adapter-weights.js';
import type { Architecture } from './architecture.js';
import type { LoadedModel } from './load-model.js';
import type { LoraSettings } from './lora-options.js';

export { ADAPTER_CONFIG_FILE, MLX_ADAPTER_WEIGHTS_FILE, PEFT_WEIGHTS_FILE, detectAdapterFormat, type AdapterFormat } from './adapter-formats.js';
export { adapterForBase, readAdapter, type AdapterWeights } from './adapter-weights.js';

/** Our weights file (mlx-lm's name). */
export const ADAPTER_WEIGHTS_FILE = MLX_ADAPTER_WEIGHTS_FILE;

/** LoRA settings of an adapter read into memory, as the native model is built with them. */
export function loraSettingsOf(adapter: Pick<AdapterWeights, 'rank' | 'alpha' | 'rslora' | 'dropout' | 'targets'> & { layers: readonly number[] }): LoraSettings {
  return {
    rank: adapter.rank,
    alpha: adapter.alpha,
    rslora: adapter.rslora,
    dropout: adapter.dropout,
    targets: [...adapter.targets],
    layers: adapter.layers.length,
  };
}

/** LoRA settings that rebuild the adapter slots an adapter folder (any format) was trained with. */
export async function loraSettingsOfAdapter(dir: string, numLayers: number): Promise<LoraSettings> {
  const d = await describeAdapter(dir);
  const layers = d.layers?.length ?? (d.numLayers === -1 ? numLayers : d.numLayers);
  return loraSettingsOf({ ...d, layers: Array.from({ length: layers }, (_, i) => i) });
}

export interface AdapterTensors {
  settings: LoraSettings;
  scale: number;
  /** mlx names → float32 tensors in mlx orientation (lora_a (in, r), lora_b (r, out)), in the base's q/k row order. Caller disposes. */
  tensors: Record<string, Tensor>;
}

/** The adapter in `dir` as native tensors ready for `base`'s LoRA slots (setLoraParameters). */
export async function readAdapterTensors(dir: string, base: Architecture): Promise<AdapterTensors> {
  const adapter = adapterForBase(await readAdapter(dir, { totalLayers: base.numLayers }), base);
  const tensors: Record<string, Tensor> = {};
  try {
    for (const [name, m] of adapter.matrices) tensors[name] = await tensor(m.values, m.shape);
  } catch (error) {
    for (const t of Object.values(tensors)) t.dispose();
    throw error;
  }
  return { settings: loraSettingsOf(adapter), scale: adapter.scale, tensors };
}

/** Loads an adapter folder (any format) into the model's LoRA slots; every slot must be filled. */
export async function loadAdapterWeights(model: LoadedModel, dir: string): Promise<void> {
  const { tensors } = await readAdapterTensors(dir, model.architecture);
  try {
    const expected = (await model.native.info()).loraNames;
    const missing = expected.filter((n) => !(n in tensors));
    const extra = Object.keys(tensors).filter((n) => !expected.includes(n));
    if (missing.length || extra.length) {
      throw new Error(
        `${dir}: adapter tensors do not match the model's LoRA slots` +
          (missing.length ? `; missing ${missing.slice(0, 4).join(', ')}${missing.length > 4 ? ', …' : ''}` : '') +
          (extra.length ? `; unexpected ${extra.slice(0, 4).join(', ')}${extra.length > 4 ? ', …' : ''}` : ''),
      );
    }
    await model.native.setLoraParameters(tensors).catch((error: Error) => {
      throw new Error(`${dir}: ${error.message}`);
    });
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}

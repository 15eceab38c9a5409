/** Adapters on disk (mlx-lm layout: adapter_config.json + adapters.safetensors) into a loaded model. */
import { join } from 'node:path';
import { loadSafetensors } from '../io/safetensors.js';
import { readAdapterConfig, loraTargetsOf } from '../train/adapter-config.js';
import type { LoraSettings } from './lora-options.js';
import type { LoadedModel } from './load-model.js';

export const ADAPTER_WEIGHTS_FILE = 'adapters.safetensors';

/** LoRA settings that rebuild the adapter slots an adapter folder was trained with. */
export async function loraSettingsOfAdapter(dir: string, numLayers: number): Promise<LoraSettings> {
  const config = await readAdapterConfig(dir);
  const p = config.lora_parameters;
  return {
    rank: p.rank,
    // The file stores the scale; alpha = scale·r gives it back through loraScale().
    alpha: p.scale * p.rank,
    dropout: p.dropout,
    targets: loraTargetsOf(config),
    layers: config.num_layers === -1 ? numLayers : config.num_layers,
  };
}

/** Loads adapters.safetensors into the model's LoRA slots; every slot must be filled. */
export async function loadAdapterWeights(model: LoadedModel, dir: string): Promise<void> {
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  const { tensors } = await loadSafetensors(path);
  try {
    const expected = (await model.native.info()).loraNames;
    const missing = expected.filter((n) => !(n in tensors));
    const extra = Object.keys(tensors).filter((n) => !expected.includes(n));
    if (missing.length || extra.length) {
      throw new Error(
        `${path}: adapter tensors do not match the model` +
          (missing.length ? `; missing ${missing.slice(0, 4).join(', ')}${missing.length > 4 ? ', …' : ''}` : '') +
          (extra.length ? `; unexpected ${extra.slice(0, 4).join(', ')}${extra.length > 4 ? ', …' : ''}` : ''),
      );
    }
    await model.native.setLoraParameters(tensors).catch((error: Error) => {
      throw new Error(`${path}: ${error.message}`);
    });
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}

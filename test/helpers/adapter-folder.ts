/** Writes a model's current LoRA parameters as an adapter folder, exactly as a training run does. */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseTrainConfig } from '../../lib/config/load-config.js';
import type { LoadedModel } from '../../lib/model/load-model.js';
import type { LoraSettings } from '../../lib/model/lora-options.js';
import { adapterConfigFor } from '../../lib/model/adapter-config.js';
import { adapterWriters } from '../../lib/train/run-checkpoint.js';

export async function saveAdapterFolder(model: LoadedModel, dir: string, lora: Pick<LoraSettings, 'rank' | 'alpha' | 'targets'>): Promise<void> {
  const config = parseTrainConfig({
    model: model.source.path,
    data: { train: 'unused' },
    output: 'unused',
    lora: { rank: lora.rank, alpha: lora.alpha, dropout: 0, ...(lora.targets ? { targets: lora.targets === 'all-linear' ? 'all-linear' : [...lora.targets] } : {}) },
    quantization: 'none',
  });
  const adapterConfig = adapterConfigFor(config, { num_hidden_layers: model.architecture.numLayers, architecture: model.architecture.family });
  await mkdir(dir, { recursive: true });
  for (const writer of adapterWriters(model.native, adapterConfig)) await writer.write(join(dir, writer.name));
}

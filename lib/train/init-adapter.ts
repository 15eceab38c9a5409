/**
 * Continued training: a run that starts from an earlier adapter (ours, mlx-lm's or PEFT's) instead
 * of fresh LoRA weights. The earlier adapter must have the LoRA shape the config builds (rank,
 * scale, targets, adapted layers): loading weights into other slots would silently train another
 * model than the one the user asked for.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { TrainConfig } from '../config/train-config.js';
import { loraScale } from '../config/train-config.js';
import { describeAdapter, type AdapterDescription } from '../model/adapter-formats.js';
import { loadAdapterWeights } from '../model/adapter.js';
import type { LoadedModel } from '../model/load-model.js';

interface LoraShape {
  rank: number;
  scale: number;
  targets: string[];
  layers: number;
}

function describeShape(s: LoraShape): string {
  return `rank ${s.rank}, scale ${Number(s.scale.toPrecision(6))}, targets ${s.targets.join(',')}, last ${s.layers} layers`;
}

/** The LoRA shape a training config builds on a base of `numLayers` blocks. */
export function configLoraShape(lora: TrainConfig['lora'], numLayers: number): LoraShape {
  return { rank: lora.rank, scale: loraScale(lora), targets: [...lora.targets].sort(), layers: lora.layers === 'all' ? numLayers : Math.min(lora.layers, numLayers) };
}

/** The LoRA shape an adapter folder was trained with. */
export function adapterLoraShape(d: AdapterDescription, numLayers: number): LoraShape {
  const layers = d.layers?.length ?? (d.numLayers === -1 ? numLayers : Math.min(d.numLayers, numLayers));
  return { rank: d.rank, scale: d.scale, targets: [...d.targets].sort(), layers };
}

/** Refuses an init adapter whose LoRA shape differs from the config's, naming both. */
export function checkInitAdapterShape(dir: string, adapter: LoraShape, config: LoraShape): void {
  const same =
    adapter.rank === config.rank &&
    Math.abs(adapter.scale - config.scale) <= 1e-6 * Math.abs(config.scale) &&
    adapter.layers === config.layers &&
    adapter.targets.join(',') === config.targets.join(',');
  if (!same) {
    throw new Error(`lora.init_adapter ${dir}: the adapter has ${describeShape(adapter)}; the config's lora section builds ${describeShape(config)}; set lora to the adapter's settings`);
  }
}

/** An existing adapter folder, or an error naming the key and path. */
export function initAdapterFolder(path: string): string {
  const dir = resolve(path);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`lora.init_adapter ${path}: no such adapter folder`);
  return dir;
}

/**
 * Loads the config's `lora.init_adapter` into a freshly built model before step 1 (a resumed run
 * has its checkpoint's weights instead). Nothing happens without the key.
 */
export async function applyInitAdapter(model: LoadedModel, config: TrainConfig): Promise<string | undefined> {
  const path = config.lora.init_adapter;
  if (path === undefined) return undefined;
  const dir = initAdapterFolder(path);
  const numLayers = model.architecture.numLayers;
  const description = await describeAdapter(dir);
  checkInitAdapterShape(path, adapterLoraShape(description, numLayers), configLoraShape(config.lora, numLayers));
  await loadAdapterWeights(model, dir);
  return dir;
}

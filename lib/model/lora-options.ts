/** LoRA settings as users give them (rank, alpha, …) and as the native model takes them. */
import { LORA_TARGETS, loraScale, type LoraTarget } from '../config/train-config.js';
import type { DType, NativeLoraOptions } from '../native.js';

export { LORA_TARGETS, loraScale, type LoraTarget };

export interface LoraSettings {
  rank: number;
  alpha: number;
  dropout?: number;
  /** Projection names, or 'all-linear'. Default q/k/v/o. */
  targets?: readonly LoraTarget[] | 'all-linear';
  /** Adapt only the last N layers; default all. */
  layers?: number;
  /** rsLoRA: scale alpha/√r instead of alpha/r. */
  rslora?: boolean;
  seed?: number;
  dtype?: DType;
}

export function nativeLoraOptions(s: LoraSettings | undefined, numLayers: number): NativeLoraOptions {
  if (!s) return { rank: 0, scale: 1, dropout: 0, targets: [], numLayers, seed: 0, dtype: 'float32' };
  const targets = s.targets === 'all-linear' ? [...LORA_TARGETS] : [...(s.targets ?? ['q_proj', 'k_proj', 'v_proj', 'o_proj'])];
  return {
    rank: s.rank,
    scale: loraScale({ rank: s.rank, alpha: s.alpha, rslora: s.rslora ?? false }),
    dropout: s.dropout ?? 0,
    targets,
    numLayers: Math.min(s.layers ?? numLayers, numLayers),
    seed: s.seed ?? 0,
    dtype: s.dtype ?? 'float32',
  };
}

/** LoRA settings as users give them (rank, alpha, …) and as the native model takes them. */
import type { DType, NativeLoraOptions } from '../native.js';

export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

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

export function loraScale(s: Pick<LoraSettings, 'rank' | 'alpha' | 'rslora'>): number {
  return s.rslora ? s.alpha / Math.sqrt(s.rank) : s.alpha / s.rank;
}

export function nativeLoraOptions(s: LoraSettings | undefined, numLayers: number): NativeLoraOptions {
  if (!s) return { rank: 0, scale: 1, dropout: 0, targets: [], numLayers, seed: 0, dtype: 'float32' };
  const targets = s.targets === 'all-linear' ? [...LORA_TARGETS] : [...(s.targets ?? ['q_proj', 'k_proj', 'v_proj', 'o_proj'])];
  return {
    rank: s.rank,
    scale: loraScale(s),
    dropout: s.dropout ?? 0,
    targets,
    numLayers: Math.min(s.layers ?? numLayers, numLayers),
    seed: s.seed ?? 0,
    dtype: s.dtype ?? 'float32',
  };
}

import { createHash } from 'node:crypto';
import type { TrainConfig } from './train-config.js';

/**
 * A fingerprint of what determines the training trajectory: the model, data, LoRA, quantization
 * and optimisation settings. Where the run is written, how often it is evaluated or checkpointed
 * and the memory limits are left out, so changing them does not make a checkpoint look foreign.
 * Stored in each checkpoint so that a resume with a different config can be noticed.
 */
export function trainConfigHash(config: TrainConfig): string {
  const { model, lora, quantization, training } = config;
  // `truncate` is left out: runs from before data.overlong existed had no overlong record (they
  // stopped at the first), so for them it changes nothing, and their checkpoints still resume.
  const { overlong, ...data } = config.data;
  return createHash('sha256')
    .update(canonicalJson({ model, data: overlong === 'truncate' ? data : config.data, lora, quantization, training }))
    .digest('hex');
}

/** JSON with object keys sorted at every level and undefined members dropped. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, member]) => member !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(entries.map(([key, member]) => [key, sortKeys(member)]));
}

/** Checks and settings a run makes before its first step, kept out of the training loop. */
import type { TrainConfig } from '../config/train-config.js';
import { setCacheLimit, setMemoryLimit } from '../device.js';
import type { OverlongCounts } from '../data/overlong.js';
import { loadModel, type LoadedModel } from '../model/load-model.js';
import type { Checkpoint } from './checkpoint-store.js';
import type { StartEvent } from './run-events.js';
import { TRAINER_STATE_FILE } from './trainer-state.js';
import type { TrainingData } from './training-data.js';
import { TrainingError } from './training-error.js';

/** Sets MLX's limits; returns what puts back the host's own (they are process-wide). */
export async function applyMemoryLimits(memory: TrainConfig['memory']): Promise<Array<() => Promise<unknown>>> {
  const restore: Array<() => Promise<unknown>> = [];
  if (memory.limit !== undefined) {
    const previous = await setMemoryLimit(memory.limit);
    restore.push(() => setMemoryLimit(previous));
  }
  if (memory.cache_limit !== undefined) {
    const previous = await setCacheLimit(memory.cache_limit);
    restore.push(() => setCacheLimit(previous));
  }
  return restore;
}

/** Every token id of the data must have an embedding row: MLX's gather does not check. */
export function checkVocabulary(data: Pick<TrainingData, 'vocabSize'>, model: Pick<LoadedModel, 'architecture' | 'source'>): void {
  if (data.vocabSize <= model.architecture.vocabSize) return;
  throw new TrainingError(
    `the data was prepared with a tokenizer of ${data.vocabSize} ids, but ${model.source.path} has ${model.architecture.vocabSize} embedding rows; prepare the data with this model`,
    'tokenizer_mismatch',
  );
}

function snakeCounts(c: OverlongCounts | null): { truncated: number; truncated_away: number; dropped: number } | null {
  return c && { truncated: c.truncated, truncated_away: c.truncatedAway, dropped: c.dropped };
}

/** The start event's account of what data.overlong did, per split. */
export function overlongReport(config: TrainConfig, data: Pick<TrainingData, 'overlong'>): NonNullable<StartEvent['overlong']> {
  const o = data.overlong;
  return {
    policy: config.data.overlong,
    max_seq_length: config.data.max_seq_length,
    train: snakeCounts(o.train)!,
    valid: snakeCounts(o.valid),
    test: snakeCounts(o.test),
  };
}

/** A checkpoint resumes this run only if the run would reproduce the steps it replaces. */
export function checkResumable(resumed: Checkpoint | undefined, configHash: string, totalSteps?: number): void {
  if (!resumed) return;
  if (resumed.state.config_hash !== configHash) {
    throw new TrainingError(
      `cannot resume from ${resumed.dir}: the config changed since it was written (hash ${resumed.state.config_hash.slice(0, 12)} ≠ ${configHash.slice(0, 12)}); resuming would not reproduce the run`,
      'config_changed',
    );
  }
  if (totalSteps !== undefined && resumed.state.schedule.total_steps !== totalSteps) {
    throw new TrainingError(
      `cannot resume from ${resumed.dir}: its ${TRAINER_STATE_FILE} has schedule.total_steps ${resumed.state.schedule.total_steps}, but this run counts ${totalSteps} steps; resuming would change the learning-rate schedule`,
      'schedule_changed',
    );
  }
}

/** The base model with fresh LoRA slots, quantized and computed as the config says. */
export function loadRunModel(c: TrainConfig): Promise<LoadedModel> {
  return loadModel(c.model, {
    quantization: c.quantization === 'none' ? 'none' : { bits: c.quantization.bits, groupSize: c.quantization.group_size },
    ...(c.training.compute_dtype !== 'auto' ? { computeDtype: c.training.compute_dtype } : {}),
    lora: { ...c.lora, layers: c.lora.layers === 'all' ? undefined : c.lora.layers, seed: c.training.seed },
  });
}

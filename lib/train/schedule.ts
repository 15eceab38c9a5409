import type { LrScheduleName } from '../config/train-config.js';

/**
 * Learning-rate schedule: linear warmup, then cosine, linear or no decay. A pure function of the
 * update index, so a resumed run gets the same rates as an uninterrupted one from the step alone.
 *
 * With peak = learning_rate, W = warmup_steps, T = total_steps and k the 0-based index of the
 * optimizer update (the first update is k = 0, the one after resuming from step s is k = s):
 *
 *   warmup, k < W:     lr = peak · (k + 1) / W
 *   after,  k ≥ W:     p  = min(1, (k − W) / max(1, T − W))
 *     cosine:          lr = min_lr + (peak − min_lr) · (1 + cos(π · p)) / 2
 *     linear:          lr = min_lr + (peak − min_lr) · (1 − p)
 *     constant:        lr = peak
 *
 * Warmup counts from k + 1 so the first update already moves the weights (mlx-lm and Hugging Face
 * start at 0 and spend one update doing nothing); it reaches peak at k = W − 1 and decay starts at
 * k = W with exactly peak. The last update k = T − 1 is one decay step short of min_lr, as in
 * Hugging Face's schedules; steps past T stay at min_lr instead of rising again.
 */
export interface LrScheduleParams {
  learning_rate: number;
  min_lr: number;
  warmup_steps: number;
  schedule: LrScheduleName;
  /** Optimizer updates in the whole run. */
  total_steps: number;
}

export function learningRateAt(step: number, params: LrScheduleParams): number {
  if (!Number.isInteger(step) || step < 0) throw new RangeError(`learningRateAt: step must be an integer >= 0, got ${step}`);
  const { learning_rate: peak, min_lr: floor, warmup_steps: warmup, total_steps: total } = params;
  if (step < warmup) return (peak * (step + 1)) / warmup;
  if (params.schedule === 'constant') return peak;
  const progress = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  const decay = params.schedule === 'cosine' ? (1 + Math.cos(Math.PI * progress)) / 2 : 1 - progress;
  return floor + (peak - floor) * decay;
}

/**
 * Optimizer updates in a run: `max_steps` when given, else the sum over the epochs of
 * ⌈micro-batches in that epoch / grad_accumulation⌉ (an accumulation group never spans two
 * epochs, so a short last group is still an update). With packing each epoch's count differs, and
 * every epoch's is needed: a resumed run must arrive at the same total, hence the same schedule.
 */
export function totalTrainingSteps(
  training: { epochs?: number | undefined; max_steps?: number | undefined; grad_accumulation: number },
  microBatchesInEpoch: (epoch: number) => number,
): number {
  if (training.max_steps !== undefined) return training.max_steps;
  if (training.epochs === undefined) throw new RangeError('totalTrainingSteps: training needs epochs or max_steps');
  let total = 0;
  for (let epoch = 0; epoch < training.epochs; epoch++) {
    const batches = microBatchesInEpoch(epoch);
    if (!Number.isInteger(batches) || batches < 1) {
      throw new RangeError(`totalTrainingSteps: an epoch needs at least one batch, got ${batches} in epoch ${epoch}`);
    }
    total += Math.ceil(batches / training.grad_accumulation);
  }
  return total;
}

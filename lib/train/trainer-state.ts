import { z } from 'zod';

/**
 * What a checkpoint must remember, besides tensors, for a resumed run to continue exactly where
 * the interrupted one stopped: the position in the data, the random state, the schedule, and the
 * bookkeeping behind early stopping and the non-finite step limit.
 */

export const TRAINER_STATE_FILE = 'trainer-state.json';
export const TRAINER_STATE_FORMAT = 1;

/** The fields the trainer provides. */
export const trainerStateInputSchema = z.strictObject({
  /** Optimizer updates completed; the next update has (0-based) index `step`. */
  step: z.int().min(0),
  /** 0-based epoch in progress. */
  epoch: z.int().min(0),
  /** Opaque position of the data iterator, as it reported it. */
  data_cursor: z.json(),
  /**
   * How dropout masks are keyed. They are a pure function of the seed and the position (step,
   * micro-batch), and shuffling of the seed and epoch, so there is no generator state to restore:
   * this records the scheme, for people and for a later scheme to refuse an old checkpoint.
   */
  dropout_keys: z.json(),
  /** The schedule this run follows, so a resume can check it computes the same rates. */
  schedule: z.strictObject({
    total_steps: z.int().min(1),
    /** The rate of the last update, for people reading the file. */
    learning_rate: z.number().min(0),
  }),
  /** Lowest validation loss so far and the step it was measured at. */
  best: z.strictObject({ metric: z.number(), step: z.int().min(0) }).nullable(),
  /** Validation loss measured at this very step, or null; retention keeps the lowest. */
  eval_loss: z.number().nullable(),
  /** Evaluations since the last new best, for early stopping. */
  evals_since_best: z.int().min(0),
  /** Updates skipped so far for a NaN/Inf loss or gradient. */
  nonfinite_count: z.int().min(0),
  /** `trainConfigHash` of the run's config. */
  config_hash: z.string().regex(/^[0-9a-f]{64}$/, 'expected a sha256 hex digest'),
});

/** The file on disk: the trainer's fields plus what the checkpoint store adds when it writes. */
export const trainerStateSchema = trainerStateInputSchema.extend({
  format_version: z.literal(TRAINER_STATE_FORMAT),
  created_at: z.iso.datetime(),
  library_version: z.string().min(1),
  /** Every other file of the checkpoint and its size in bytes, to tell a complete folder. */
  files: z.record(z.string(), z.int().min(0)),
});

export type TrainerStateInput = z.input<typeof trainerStateInputSchema>;
export type TrainerState = z.output<typeof trainerStateSchema>;

/** Checkpoints written before the field got its name called it `rng_state`. */
export function withCurrentFieldNames(json: unknown): unknown {
  if (json === null || typeof json !== 'object' || Array.isArray(json) || !('rng_state' in json) || 'dropout_keys' in json) return json;
  const { rng_state: dropoutKeys, ...rest } = json as Record<string, unknown>;
  return { ...rest, dropout_keys: dropoutKeys };
}

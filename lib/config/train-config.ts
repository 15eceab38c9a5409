import { z } from 'zod';
import { memorySizeSchema } from './memory-size.js';

/** What happens to a record longer than max_seq_length tokens (lib/data/overlong.ts). */
const OVERLONG_POLICIES = ['truncate', 'drop'] as const;
const DEFAULT_OVERLONG: (typeof OVERLONG_POLICIES)[number] = 'truncate';

/**
 * The training-run config contract. Key names are public API: users and their scripts write
 * them, so they are never renamed, and unknown keys are errors so a typo cannot silently fall
 * back to a default. Defaults are a QLoRA recipe that fits a 7B chat model on one machine
 * (r 64, α 128 on attention, 2e-4 cosine after 100 warm-up steps, effective batch 16).
 *
 * Paths in here are as written; `load-config.ts` resolves them against the config file's folder.
 */

/** Projections of a Llama-family decoder block that can carry a LoRA. */
export const LORA_TARGETS = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'up_proj',
  'down_proj',
] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

const ALL_LINEAR = 'all-linear';
const loraTargetName = z.enum([...LORA_TARGETS, ALL_LINEAR]);

/** `targets: all-linear`, `targets: q_proj` or a list; normalised to a list of projections. */
const loraTargetsSchema = z
  .union([loraTargetName, z.array(loraTargetName).min(1)])
  .superRefine((value, ctx) => {
    if (!Array.isArray(value)) return;
    const seen = new Set<string>();
    for (const [index, name] of value.entries()) {
      if (seen.has(name)) ctx.addIssue({ code: 'custom', path: [index], message: `"${name}" is listed twice` });
      seen.add(name);
    }
  })
  .transform((value): LoraTarget[] => {
    const names = Array.isArray(value) ? value : [value];
    if (names.includes(ALL_LINEAR)) return [...LORA_TARGETS];
    // Keep the canonical order so equal configs hash equally whatever order the user wrote.
    return LORA_TARGETS.filter((target) => names.includes(target));
  });

const modelSchema = z.string().min(1);

/** A path, or for `train` several JSONL files. */
const dataPathsSchema = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

/**
 * How raw JSONL given to `train` is prepared (the `prepare` command's options); a prepared folder
 * ignores them. Absent keys take prepare's defaults.
 */
const dataPrepareSchema = z.strictObject({
  /** chatml, mistral, llama-3, alpaca or a .jinja file; default the model's own template. */
  template: z.string().min(1).optional(),
  min_quality: z.number().min(0).max(1).optional(),
  keep_unscored: z.boolean().optional(),
  min_messages: z.int().min(0).optional(),
  train_on: z.enum(['assistant', 'last-assistant', 'all']).optional(),
  /** The same policy as `data.overlong`, which it defaults to; the two may not disagree. */
  overlong: z.enum(OVERLONG_POLICIES).optional(),
  /** MinHash Jaccard threshold for near duplicates; null turns near-duplicate removal off. */
  near_duplicate_threshold: z.number().gt(0).lt(1).nullable().optional(),
  /** Share of records hashed into validation (and test) when `valid` is not given. */
  valid_fraction: z.number().min(0).lt(1).optional(),
  test_fraction: z.number().min(0).lt(1).optional(),
});

const dataFields = z.strictObject({
  /**
   * A prepared folder, or JSONL file(s). JSONL without `valid` is split by content hash like
   * `prepare` does, so records never move between train and validation as the export grows.
   */
  train: dataPathsSchema,
  valid: dataPathsSchema.optional(),
  test: dataPathsSchema.optional(),
  // Two tokens are the least that give a next-token loss.
  max_seq_length: z.int().min(2).default(2048),
  /**
   * Records longer than max_seq_length tokens (a folder prepared at a longer length): `truncate`
   * cuts them, loss mask included, `drop` leaves them out. Default `truncate`, or
   * `data.prepare.overlong` when only that is given. Raw JSONL is prepared with the same policy.
   */
  overlong: z.enum(OVERLONG_POLICIES).optional(),
  packing: z.boolean().default(false),
  prepare: dataPrepareSchema.optional(),
});

const dataSchema = dataFields
  .superRefine((data, ctx) => {
    const split = data.prepare;
    if (split && (split.valid_fraction ?? 0.05) + (split.test_fraction ?? 0.05) >= 1) {
      ctx.addIssue({ code: 'custom', path: ['prepare', 'valid_fraction'], message: 'valid_fraction + test_fraction must leave records for training' });
    }
    const prepareOverlong = data.prepare?.overlong;
    if (data.overlong !== undefined && prepareOverlong !== undefined && prepareOverlong !== data.overlong) {
      ctx.addIssue({
        code: 'custom',
        path: ['prepare', 'overlong'],
        message: `disagrees with data.overlong (${data.overlong}); give the policy once, as data.overlong`,
      });
    }
  })
  .transform((data) => ({ ...data, overlong: data.overlong ?? data.prepare?.overlong ?? DEFAULT_OVERLONG }));

const loraSchema = z.strictObject({
  rank: z.int().min(1).max(4096).default(64),
  alpha: z.number().positive().default(128),
  dropout: z.number().min(0).lt(1).default(0.05),
  targets: loraTargetsSchema.default(['q_proj', 'k_proj', 'v_proj', 'o_proj']),
  /** `all` blocks, or the last N decoder blocks (mlx-lm's `num_layers`). */
  layers: z.union([z.literal('all'), z.int().min(1)]).default('all'),
  /** rsLoRA scales by alpha/√rank instead of alpha/rank. */
  rslora: z.boolean().default(false),
  /** An earlier adapter folder (ours, mlx-lm's or PEFT's) whose weights the run starts from. */
  init_adapter: z.string().min(1).optional(),
});

export const QUANTIZATION_BITS = [2, 3, 4, 5, 6, 8] as const;
export const QUANTIZATION_GROUP_SIZES = [32, 64, 128] as const;

const quantizationFields = z.strictObject({
  bits: z.literal(QUANTIZATION_BITS).default(4),
  group_size: z.literal(QUANTIZATION_GROUP_SIZES).default(64),
});

const quantizationSchema = z.union([z.literal('none'), quantizationFields]);

export const LR_SCHEDULES = ['cosine', 'linear', 'constant'] as const;
export type LrScheduleName = (typeof LR_SCHEDULES)[number];

/** `auto`: float32 on MLX's CPU backend (fastest and exact there); on a GPU bfloat16 for HF folders, float16 for GGUF/Ollama sources (see defaultComputeDtype). */
export const COMPUTE_DTYPES = ['auto', 'float16', 'bfloat16', 'float32'] as const;

const DEFAULT_EPOCHS = 3;

const trainingFields = z.strictObject({
  learning_rate: z.number().positive().max(1).default(2e-4),
  batch_size: z.int().min(1).default(4),
  grad_accumulation: z.int().min(1).default(4),
  /** Either `epochs` or `max_steps` (optimizer updates); `epochs: 3` when neither is given. */
  epochs: z.int().min(1).optional(),
  max_steps: z.int().min(1).optional(),
  warmup_steps: z.int().min(0).default(100),
  schedule: z.enum(LR_SCHEDULES).default('cosine'),
  /** Where cosine and linear decay end. */
  min_lr: z.number().min(0).default(0),
  /** Decoupled (AdamW) weight decay; MLX's and Unsloth's default. */
  weight_decay: z.number().min(0).default(0.01),
  /** Clip by global gradient norm; 0 turns clipping off. */
  max_grad_norm: z.number().min(0).default(1.0),
  seed: z.int().min(0).max(0xffff_ffff).default(42),
  grad_checkpointing: z.boolean().default(true),
  /** Activation dtype; LoRA weights and optimizer moments stay float32. */
  compute_dtype: z.enum(COMPUTE_DTYPES).default('auto'),
  /** Updates skipped for a NaN/Inf loss or gradient; one more than this stops the run. */
  max_nonfinite_steps: z.int().min(0).default(10),
});

const trainingSchema = trainingFields
  .superRefine((training, ctx) => {
    if (training.epochs !== undefined && training.max_steps !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['max_steps'], message: 'give either training.epochs or training.max_steps, not both' });
    }
    if (typeof training.min_lr === 'number' && typeof training.learning_rate === 'number' && training.min_lr > training.learning_rate) {
      ctx.addIssue({
        code: 'custom',
        path: ['min_lr'],
        message: `must not exceed training.learning_rate (${training.learning_rate}), got ${training.min_lr}`,
      });
    }
  })
  .transform((training) =>
    training.epochs === undefined && training.max_steps === undefined
      ? { ...training, epochs: DEFAULT_EPOCHS }
      : training,
  );

const evalSchema = z.strictObject({
  /** Validation loss every N optimizer steps; 0 evaluates only at the end. */
  every_steps: z.int().min(0).default(100),
  /** Stop after this many evaluations without a new best; 0 never stops early. */
  early_stopping_patience: z.int().min(0).default(3),
  /** Validation batches per evaluation; absent means the whole validation set. */
  max_batches: z.int().min(1).optional(),
});

const checkpointSchema = z.strictObject({
  /**
   * A checkpoint every N optimizer steps; 0 writes one only at the end and on abort. An
   * evaluation that sets a new best writes one too, so the best checkpoint always exists.
   */
  every_steps: z.int().min(0).default(100),
  /** Newest checkpoints kept; the best by validation loss is kept in addition. */
  keep_last: z.int().min(1).default(3),
});

const memorySchema = z.strictObject({
  /** MLX memory limit; absent leaves MLX's default. */
  limit: memorySizeSchema.optional(),
  /** MLX buffer-cache limit; absent leaves MLX's default. */
  cache_limit: memorySizeSchema.optional(),
});

export const trainConfigSchema = z.strictObject({
  /** A Hugging Face model folder, a .gguf file, or an Ollama model name. */
  model: modelSchema,
  data: dataSchema,
  lora: loraSchema.prefault({}),
  /** QLoRA base quantization, or `none` for plain LoRA on an unquantized base. */
  quantization: quantizationSchema.prefault({}),
  training: trainingSchema.prefault({}),
  eval: evalSchema.prefault({}),
  checkpoint: checkpointSchema.prefault({}),
  memory: memorySchema.prefault({}),
  /** The run folder: checkpoints, metrics.jsonl and the final adapter go here. */
  output: z.string().min(1),
});

const SECTION_KEYS: Record<string, readonly string[]> = {
  '': Object.keys(trainConfigSchema.shape),
  data: Object.keys(dataFields.shape),
  'data.prepare': Object.keys(dataPrepareSchema.shape),
  lora: Object.keys(loraSchema.shape),
  quantization: Object.keys(quantizationFields.shape),
  training: Object.keys(trainingFields.shape),
  eval: Object.keys(evalSchema.shape),
  checkpoint: Object.keys(checkpointSchema.shape),
  memory: Object.keys(memorySchema.shape),
};

/** The keys a config section accepts (for "did you mean" hints on unknown keys). */
export function allowedConfigKeys(path: readonly (string | number)[]): readonly string[] | undefined {
  return SECTION_KEYS[path.join('.')];
}

/** A validated training config with every default filled in. */
export type TrainConfig = z.output<typeof trainConfigSchema>;
/** What a user may write (or pass to `train()`): most keys optional. */
export type TrainConfigInput = z.input<typeof trainConfigSchema>;
export type LoraConfig = TrainConfig['lora'];
export type TrainingConfig = TrainConfig['training'];
export type QuantizationConfig = TrainConfig['quantization'];

/** The multiplier of the LoRA branch, `y = Wx + scale·B(A·x)`. */
export function loraScale(lora: Pick<LoraConfig, 'alpha' | 'rank' | 'rslora'>): number {
  return lora.rslora ? lora.alpha / Math.sqrt(lora.rank) : lora.alpha / lora.rank;
}

import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../lib/config/config-error.js';
import { parseTrainConfig } from '../../lib/config/load-config.js';
import { parseMemorySize } from '../../lib/config/memory-size.js';
import { loraScale, type TrainConfigInput } from '../../lib/config/train-config.js';

const minimal = { model: 'dolphin-mistral:7b', data: { train: 'prepared' }, output: 'runs/x' } satisfies TrainConfigInput;
const baseDir = '/work/cfg';

function withPatch(patch: Record<string, unknown>): Record<string, unknown> {
  const config: Record<string, unknown> = structuredClone(minimal);
  for (const [dotted, value] of Object.entries(patch)) {
    const keys = dotted.split('.');
    let target = config;
    for (const key of keys.slice(0, -1)) {
      target[key] ??= {};
      target = target[key] as Record<string, unknown>;
    }
    target[keys.at(-1) as string] = value;
  }
  return config;
}

function errorOf(input: unknown): ConfigError {
  try {
    parseTrainConfig(input, { baseDir });
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('train config defaults', () => {
  it('fills the documented defaults', () => {
    const config = parseTrainConfig(minimal, { baseDir });
    expect(config.lora).toEqual({
      rank: 64,
      alpha: 128,
      dropout: 0.05,
      targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
      layers: 'all',
      rslora: false,
    });
    expect(config.quantization).toEqual({ bits: 4, group_size: 64 });
    expect(config.training).toEqual({
      learning_rate: 2e-4,
      batch_size: 4,
      grad_accumulation: 4,
      epochs: 3,
      warmup_steps: 100,
      schedule: 'cosine',
      min_lr: 0,
      weight_decay: 0.01,
      max_grad_norm: 1.0,
      seed: 42,
      grad_checkpointing: true,
      compute_dtype: 'auto',
      max_nonfinite_steps: 10,
    });
    expect(config.data).toEqual({ train: '/work/cfg/prepared', max_seq_length: 2048, overlong: 'truncate', packing: false });
    expect(config.eval).toEqual({ every_steps: 100, early_stopping_patience: 3 });
    expect(config.checkpoint).toEqual({ every_steps: 100, keep_last: 3 });
    expect(config.memory).toEqual({});
  });

  it('max_steps replaces the default epochs', () => {
    const config = parseTrainConfig(withPatch({ 'training.max_steps': 500 }), { baseDir });
    expect(config.training.max_steps).toBe(500);
    expect(config.training.epochs).toBeUndefined();
  });

  it('normalises targets: all-linear, a single name, canonical order', () => {
    const targetsOf = (targets: unknown) => parseTrainConfig(withPatch({ 'lora.targets': targets }), { baseDir }).lora.targets;
    expect(targetsOf('all-linear')).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    expect(targetsOf(['down_proj', 'all-linear'])).toHaveLength(7);
    expect(targetsOf('v_proj')).toEqual(['v_proj']);
    expect(targetsOf(['v_proj', 'q_proj', 'up_proj'])).toEqual(['q_proj', 'v_proj', 'up_proj']);
  });

  it('accepts quantization none and memory sizes', () => {
    const config = parseTrainConfig(withPatch({ quantization: 'none', memory: { limit: '24GB', cache_limit: 1024 } }), { baseDir });
    expect(config.quantization).toBe('none');
    expect(config.memory).toEqual({ limit: 24_000_000_000, cache_limit: 1024 });
  });

  it('computes the LoRA scale as alpha/rank, or alpha/sqrt(rank) for rsLoRA', () => {
    expect(loraScale({ alpha: 128, rank: 64, rslora: false })).toBe(2);
    expect(loraScale({ alpha: 16, rank: 64, rslora: true })).toBe(2);
  });
});

describe('memory sizes', () => {
  it.each([
    ['1024', 1024],
    ['512B', 512],
    ['2KB', 2000],
    ['2KiB', 2048],
    ['1.5GiB', 1.5 * 2 ** 30],
    ['24 GB', 24e9],
    ['1TiB', 2 ** 40],
  ])('%s is %d bytes', (text, bytes) => {
    expect(parseMemorySize(text)).toBe(bytes);
  });

  it.each(['', 'GB', '-1GB', '24XB', '0', '1e9', '24 gigabytes'])('rejects %j', (text) => {
    expect(parseMemorySize(text)).toBeUndefined();
  });
});

describe('every config error names its key', () => {
  // [patch, exact message]
  const cases: [Record<string, unknown>, string][] = [
    [{ model: '' }, 'model: must not be empty, got an empty string'],
    [{ model: 7 }, 'model: expected a string, got 7'],
    [{ output: ['a'] }, 'output: expected a string, got a list'],
    [{ data: 'x' }, 'data: expected an object, got "x"'],
    [{ 'data.train': 3 }, 'data.train: expected a string or a list, got 3'],
    [{ 'data.train': [] }, 'data.train: must have at least 1 item, got 0 items'],
    [{ 'data.prepare': { train_on: 'everything' } }, 'data.prepare.train_on: expected one of assistant | last-assistant | all, got "everything"'],
    [{ 'data.prepare': { valid_fraction: 0.6, test_fraction: 0.5 } }, 'data.prepare.valid_fraction: valid_fraction + test_fraction must leave records for training'],
    [{ 'data.valid': ['v.jsonl', 5] }, 'data.valid[1]: expected a string, got 5'],
    [{ 'data.test': '' }, 'data.test: must not be empty, got an empty string'],
    [{ 'data.max_seq_length': 1 }, 'data.max_seq_length: must be >= 2, got 1'],
    [{ 'data.max_seq_length': 2048.5 }, 'data.max_seq_length: expected an integer, got 2048.5'],
    [{ 'data.packing': 'yes' }, 'data.packing: expected true or false, got "yes"'],
    [{ 'lora.rank': 0 }, 'lora.rank: must be >= 1, got 0'],
    [{ 'lora.alpha': 0 }, 'lora.alpha: must be > 0, got 0'],
    [{ 'lora.dropout': 1 }, 'lora.dropout: must be < 1, got 1'],
    [{ 'lora.dropout': -0.1 }, 'lora.dropout: must be >= 0, got -0.1'],
    [
      { 'lora.targets': ['q_proj', 'qkv'] },
      'lora.targets[1]: expected one of q_proj | k_proj | v_proj | o_proj | gate_proj | up_proj | down_proj | all-linear, got "qkv"',
    ],
    [{ 'lora.targets': [] }, 'lora.targets: must have at least 1 item, got 0 items'],
    [{ 'lora.targets': ['q_proj', 'q_proj'] }, 'lora.targets[1]: "q_proj" is listed twice'],
    [
      { 'lora.targets': 'attention' },
      'lora.targets: expected "q_proj" | "k_proj" | "v_proj" | "o_proj" | "gate_proj" | "up_proj" | "down_proj" | "all-linear" or a list, got "attention"',
    ],
    [{ 'lora.layers': 0 }, 'lora.layers: must be >= 1, got 0'],
    [{ 'lora.layers': 'some' }, 'lora.layers: expected "all" or a number, got "some"'],
    [{ 'lora.rslora': 1 }, 'lora.rslora: expected true or false, got 1'],
    [{ quantization: 'nf4' }, 'quantization: expected "none" or an object, got "nf4"'],
    [{ quantization: 4 }, 'quantization: expected "none" or an object, got 4'],
    [{ 'quantization.bits': 7 }, 'quantization.bits: expected one of 2 | 3 | 4 | 5 | 6 | 8, got 7'],
    [{ 'quantization.group_size': 16 }, 'quantization.group_size: expected one of 32 | 64 | 128, got 16'],
    [{ 'training.learning_rate': 0 }, 'training.learning_rate: must be > 0, got 0'],
    [{ 'training.learning_rate': '2e-4' }, 'training.learning_rate: expected a number, got "2e-4"'],
    [{ 'training.batch_size': 0 }, 'training.batch_size: must be >= 1, got 0'],
    [{ 'training.grad_accumulation': 1.5 }, 'training.grad_accumulation: expected an integer, got 1.5'],
    [{ 'training.epochs': 0 }, 'training.epochs: must be >= 1, got 0'],
    [{ 'training.max_steps': -5 }, 'training.max_steps: must be >= 1, got -5'],
    [{ 'training.epochs': 2, 'training.max_steps': 10 }, 'training.max_steps: give either training.epochs or training.max_steps, not both'],
    [{ 'training.warmup_steps': -1 }, 'training.warmup_steps: must be >= 0, got -1'],
    [{ 'training.schedule': 'cosin' }, 'training.schedule: expected one of cosine | linear | constant, got "cosin"'],
    [{ 'training.min_lr': 0.1 }, 'training.min_lr: must not exceed training.learning_rate (0.0002), got 0.1'],
    [{ 'training.weight_decay': -0.01 }, 'training.weight_decay: must be >= 0, got -0.01'],
    [{ 'training.max_grad_norm': null }, 'training.max_grad_norm: expected a number, got null'],
    [{ 'training.seed': 2 ** 32 }, 'training.seed: must be <= 4294967295, got 4294967296'],
    [{ 'training.grad_checkpointing': 'on' }, 'training.grad_checkpointing: expected true or false, got "on"'],
    [{ 'training.compute_dtype': 'fp16' }, 'training.compute_dtype: expected one of auto | float16 | bfloat16 | float32, got "fp16"'],
    [{ 'training.max_nonfinite_steps': -1 }, 'training.max_nonfinite_steps: must be >= 0, got -1'],
    [{ 'eval.every_steps': -1 }, 'eval.every_steps: must be >= 0, got -1'],
    [{ 'eval.early_stopping_patience': 'never' }, 'eval.early_stopping_patience: expected a number, got "never"'],
    [{ 'eval.max_batches': 0 }, 'eval.max_batches: must be >= 1, got 0'],
    [{ 'checkpoint.every_steps': 2.5 }, 'checkpoint.every_steps: expected an integer, got 2.5'],
    [{ 'checkpoint.keep_last': 0 }, 'checkpoint.keep_last: must be >= 1, got 0'],
    [
      { 'memory.limit': '24XB' },
      'memory.limit: expected a positive number of bytes or a size such as "24GB" or "512MiB", got "24XB"',
    ],
    [
      { 'memory.cache_limit': -1 },
      'memory.cache_limit: expected a positive number of bytes or a size such as "24GB" or "512MiB", got -1',
    ],
  ];

  it.each(cases)('%j', (patch, message) => {
    const error = errorOf(withPatch(patch));
    expect(error.message).toBe(message);
    expect(error.problems).toHaveLength(1);
  });

  it('names missing required keys', () => {
    const error = errorOf({});
    expect(error.message).toBe(
      ['invalid training config (3 problems):', '  model: required, but missing', '  data: required, but missing', '  output: required, but missing'].join('\n'),
    );
    expect(errorOf(withPatch({ data: { packing: true } })).message).toBe('data.train: required, but missing');
  });

  it('rejects a top level that is not an object', () => {
    expect(errorOf(['model']).message).toBe('(top level): expected an object, got a list');
  });

  it.each([
    [{ lerning_rate: 1 }, 'training', 'training.lerning_rate: unknown key; did you mean "learning_rate"?'],
    [{ rnak: 8 }, 'lora', 'lora.rnak: unknown key; did you mean "rank"?'],
    [{ valid_set: 'x' }, 'data', 'data.valid_set: unknown key (allowed: train, valid, test, max_seq_length, overlong, packing, prepare)'],
    [{ bit: 4 }, 'quantization', 'quantization.bit: unknown key; did you mean "bits"?'],
    [{ keep: 2 }, 'checkpoint', 'checkpoint.keep: unknown key (allowed: every_steps, keep_last)'],
    [{ patience: 2 }, 'eval', 'eval.patience: unknown key (allowed: every_steps, early_stopping_patience, max_batches)'],
    [{ limits: 2 }, 'memory', 'memory.limits: unknown key; did you mean "limit"?'],
  ])('rejects unknown key %j in %s', (extra, section, start) => {
    const error = errorOf({ ...minimal, [section]: { ...(section === 'data' ? minimal.data : {}), ...extra } });
    expect(error.problems).toHaveLength(1);
    expect(error.message.startsWith(start)).toBe(true);
  });

  it('rejects unknown top-level keys', () => {
    expect(errorOf({ ...minimal, optimizer: 'adamw' }).message).toBe(
      'optimizer: unknown key (allowed: model, data, lora, quantization, training, eval, checkpoint, memory, output)',
    );
    expect(errorOf({ ...minimal, outptu: 'x' }).message.startsWith('outptu: unknown key; did you mean "output"?')).toBe(true);
  });

  it('reports all problems at once', () => {
    const error = errorOf(withPatch({ 'lora.rank': 0, 'training.schedule': 'x', 'eval.every_steps': -2 }));
    expect(error.problems.map((problem) => problem.path)).toEqual([
      ['lora', 'rank'],
      ['training', 'schedule'],
      ['eval', 'every_steps'],
    ]);
    expect(error.message.split('\n')[0]).toBe('invalid training config (3 problems):');
  });
});

describe('data.overlong', () => {
  const parse = (data: Record<string, unknown>) => parseTrainConfig({ ...minimal, data: { ...minimal.data, ...data } }, { baseDir }).data.overlong;

  it('defaults to truncate, takes data.prepare.overlong when only that is given, and data.overlong first', () => {
    expect(parse({})).toBe('truncate');
    expect(parse({ overlong: 'drop' })).toBe('drop');
    expect(parse({ prepare: { overlong: 'drop' } })).toBe('drop');
    expect(parse({ overlong: 'drop', prepare: { overlong: 'drop' } })).toBe('drop');
  });

  it('refuses a data.prepare.overlong that disagrees with data.overlong, and unknown policies', () => {
    expect(errorOf({ ...minimal, data: { ...minimal.data, overlong: 'truncate', prepare: { overlong: 'drop' } } }).message).toBe(
      'data.prepare.overlong: disagrees with data.overlong (truncate); give the policy once, as data.overlong',
    );
    expect(errorOf({ ...minimal, data: { ...minimal.data, overlong: 'cut' } }).message).toMatch(/^data\.overlong: /);
  });
});

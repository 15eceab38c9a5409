import { mkdir, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../lib/config/config-error.js';
import { createHash } from 'node:crypto';
import { canonicalJson, trainConfigHash } from '../../lib/config/config-hash.js';
import { loadTrainConfig, parseTrainConfigText } from '../../lib/config/load-config.js';
import { tempDirs } from '../train/fixtures/temp-dirs.js';

const makeTempDir = tempDirs('mlxq-config-');

// The contract example from issue 5, verbatim.
const ISSUE_EXAMPLE = `model: dolphin-mistral:7b        # HF folder, .gguf file, or Ollama name
data:
  train: prepared/               # a prepared folder, or JSONL files (then also \`valid:\`)
  max_seq_length: 2048
  packing: false
lora: { rank: 64, alpha: 128, dropout: 0.05, targets: [q_proj, k_proj, v_proj, o_proj] }
quantization: { bits: 4, group_size: 64 }   # or \`quantization: none\` for plain LoRA
training:
  learning_rate: 2.0e-4
  batch_size: 4
  grad_accumulation: 4
  epochs: 3                      # or max_steps
  warmup_steps: 100
  schedule: cosine               # cosine | linear | constant
  max_grad_norm: 1.0
  seed: 42
  grad_checkpointing: true
eval: { every_steps: 100, early_stopping_patience: 3 }
checkpoint: { every_steps: 100, keep_last: 3 }
output: runs/iceburg-v1
`;

let dir: string;

async function writeConfig(name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
}

async function loadError(source: string): Promise<ConfigError> {
  const error = await loadTrainConfig(source).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!(error instanceof ConfigError)) throw new Error(`expected a ConfigError, got ${String(error)}`);
  return error;
}

beforeAll(async () => {
  dir = await makeTempDir();
});

describe('loadTrainConfig from files', () => {
  it('loads the issue example and resolves paths against the file folder', async () => {
    const file = await writeConfig('train.yaml', ISSUE_EXAMPLE);
    const config = await loadTrainConfig(file);
    expect(config.model).toBe('dolphin-mistral:7b');
    expect(config.data.train).toBe(path.join(dir, 'prepared'));
    expect(config.output).toBe(path.join(dir, 'runs/iceburg-v1'));
    expect(config.training.learning_rate).toBe(2e-4);
    expect(config.training.epochs).toBe(3);
    expect(config.quantization).toEqual({ bits: 4, group_size: 64 });
  });

  it('reads a file URL too', async () => {
    const file = await writeConfig('url.yaml', ISSUE_EXAMPLE);
    expect((await loadTrainConfig(pathToFileURL(file))).output).toBe(path.join(dir, 'runs/iceburg-v1'));
  });

  it('names file, line and key for each problem, in file order', async () => {
    const broken = ISSUE_EXAMPLE.replace('schedule: cosine', 'schedule: cosin')
      .replace('rank: 64', 'rnak: 64')
      .replace('  seed: 42', '  seed: 42\n  lerning_rate: 1');
    const file = await writeConfig('broken.yaml', broken);
    const error = await loadError(file);
    expect(error.file).toBe(file);
    expect(error.message).toBe(
      [
        'invalid training config (3 problems):',
        `  ${file}:6: lora.rnak: unknown key; did you mean "rank"? (allowed: rank, alpha, dropout, targets, layers, rslora, init_adapter)`,
        `  ${file}:14: training.schedule: expected one of cosine | linear | constant, got "cosin"`,
        `  ${file}:17: training.lerning_rate: unknown key; did you mean "learning_rate"? (allowed: learning_rate, batch_size, grad_accumulation, epochs, max_steps, warmup_steps, schedule, min_lr, weight_decay, max_grad_norm, seed, grad_checkpointing, compute_dtype, max_nonfinite_steps)`,
      ].join('\n'),
    );
  });

  it('points list items and missing keys at their lines', async () => {
    const file = await writeConfig(
      'items.yaml',
      ['model: m', 'data:', '  packing: true', 'lora:', '  targets:', '    - q_proj', '    - qq_proj', 'output: o', ''].join('\n'),
    );
    const error = await loadError(file);
    expect(error.problems.map((problem) => [problem.line, problem.path])).toEqual([
      [2, ['data', 'train']],
      [7, ['lora', 'targets', 1]],
    ]);
  });

  it('reports YAML syntax errors and duplicate keys with their line', async () => {
    const syntax = await loadError(await writeConfig('syntax.yaml', 'model: m\ndata: {train: [a, b}\n'));
    expect(syntax.problems).toHaveLength(1);
    expect(syntax.problems[0]?.line).toBe(2);
    expect(syntax.message).toMatch(new RegExp(`^${escape(syntax.file ?? '')}:2: not valid YAML: `));

    const duplicate = await loadError(await writeConfig('dup.yaml', 'model: a\noutput: o\nmodel: b\n'));
    expect(duplicate.message).toBe(`${duplicate.file}:3: not valid YAML: Map keys must be unique`);
  });

  it('loads JSON with line numbers for errors', async () => {
    const json = JSON.stringify({ model: 'm', data: { train: 'd' }, output: 'o', training: { schedule: 'step' } }, null, 2);
    const error = await loadError(await writeConfig('train.json', json));
    expect(error.message).toBe(`${error.file}:8: training.schedule: expected one of cosine | linear | constant, got "step"`);

    const ok = await loadTrainConfig(await writeConfig('ok.json', JSON.stringify({ model: 'm', data: { train: 'd' }, output: 'o' })));
    expect(ok.data.train).toBe(path.join(dir, 'd'));
  });

  it('reports JSON syntax errors with their line, and is strict JSON', async () => {
    const error = await loadError(await writeConfig('bad.json', '{\n  "model": "m",\n  "data": {"train": "d",}\n}'));
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]?.line).toBe(3);
    expect(error.message).toMatch(/:3: not valid JSON: /);
  });

  it('lists what an empty file lacks', async () => {
    const file = await writeConfig('empty.yaml', '# nothing yet\n');
    expect((await loadError(file)).message).toBe(
      [
        'invalid training config (3 problems):',
        `  ${file}: model: required, but missing`,
        `  ${file}: data: required, but missing`,
        `  ${file}: output: required, but missing`,
      ].join('\n'),
    );
  });

  it('names a missing file', async () => {
    const file = path.join(dir, 'nope.yaml');
    expect((await loadError(file)).message).toBe(`${file}: cannot read the config file: no such file`);
  });
});

describe('path resolution', () => {
  it('resolves data paths (also lists), output and path-like models; keeps Ollama names', async () => {
    await mkdir(path.join(dir, 'models/llama-hf'), { recursive: true });
    const config = parseTrainConfigText(
      [
        'model: models/llama-hf',
        'data: { train: [a.jsonl, /abs/b.jsonl], valid: v.jsonl, test: ~/t.jsonl }',
        'output: ../runs/r',
        '',
      ].join('\n'),
      { file: path.join(dir, 'c.yaml') },
    );
    expect(config.model).toBe(path.join(dir, 'models/llama-hf'));
    expect(config.data.train).toEqual([path.join(dir, 'a.jsonl'), '/abs/b.jsonl']);
    expect(config.data.valid).toBe(path.join(dir, 'v.jsonl'));
    expect(config.data.test).toBe(path.join(homedir(), 't.jsonl'));
    expect(config.output).toBe(path.resolve(dir, '../runs/r'));

    const modelOf = (model: string) =>
      parseTrainConfigText(`model: "${model}"\ndata: {train: d}\noutput: o\n`, { file: path.join(dir, 'c.yaml') }).model;
    expect(modelOf('dolphin-mistral:7b')).toBe('dolphin-mistral:7b');
    expect(modelOf('hf.co/bartowski/Mistral-7B-GGUF:Q4_K_M')).toBe('hf.co/bartowski/Mistral-7B-GGUF:Q4_K_M');
    expect(modelOf('weights/model.gguf')).toBe(path.join(dir, 'weights/model.gguf'));
    expect(modelOf('./mistral')).toBe(path.join(dir, 'mistral'));
  });

  it('resolves an object config against baseDir', async () => {
    const config = await loadTrainConfig({ model: 'm', data: { train: 'd' }, output: 'o' }, { baseDir: '/base' });
    expect(config.data.train).toBe('/base/d');
    expect(config.output).toBe('/base/o');
  });
});

describe('trainConfigHash', () => {
  it('depends on what shapes training, not on where or how often it is saved', () => {
    const parse = (extra: string) => parseTrainConfigText(`model: m\ndata: {train: d}\noutput: o\n${extra}`, { baseDir: '/b' });
    const plain = trainConfigHash(parse(''));
    expect(plain).toMatch(/^[0-9a-f]{64}$/);
    expect(trainConfigHash(parse('checkpoint: {keep_last: 9}\nmemory: {limit: 1GB}\n'))).toBe(plain);
    expect(trainConfigHash(parse('lora: {targets: [v_proj, q_proj]}\n'))).toBe(trainConfigHash(parse('lora: {targets: [q_proj, v_proj]}\n')));
    expect(trainConfigHash(parse('training: {seed: 43}\n'))).not.toBe(plain);
    expect(trainConfigHash(parse('lora: {rank: 8}\n'))).not.toBe(plain);
  });

  it('keeps the hash runs had before data.overlong existed, unless the policy is drop', () => {
    const parse = (data: string) => parseTrainConfigText(`model: m\ndata: ${data}\noutput: o\n`, { baseDir: '/b' });
    // The hash of this config as it was computed before the key existed.
    const { overlong, ...before } = parse('{train: d}').data;
    expect(overlong).toBe('truncate');
    const old = createHash('sha256').update(canonicalJson({ model: 'm', data: before, lora: parse('{train: d}').lora, quantization: parse('{train: d}').quantization, training: parse('{train: d}').training })).digest('hex');
    expect(trainConfigHash(parse('{train: d}'))).toBe(old);
    expect(trainConfigHash(parse('{train: d, overlong: truncate}'))).toBe(old);
    expect(trainConfigHash(parse('{train: d, overlong: drop}'))).not.toBe(old);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

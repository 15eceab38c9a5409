/**
 * What `export` reads: a run folder's final adapter or one of its checkpoints (best, latest,
 * step-N), an adapter folder, and the base model the adapter config names (ours, mlx-lm's and
 * PEFT's key) or `--model` gives. Run folders are built through the real CheckpointStore.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveExportInput } from '../../lib/export/export-input.js';
import { parseExportOptions } from '../../lib/export/export-options.js';
import { CheckpointStore } from '../../lib/train/checkpoint-store.js';
import { tempDir } from '../helpers/temp-dir.js';

let root: string;
let baseDir: string;
let run: string;

function ourConfig(base: string, step: number): string {
  return JSON.stringify({
    fine_tune_type: 'lora',
    num_layers: -1,
    lora_parameters: { rank: 4, scale: 2, dropout: 0 },
    model: base,
    base_model: { source: base, num_hidden_layers: 2, quantization: null },
    step_marker: step,
  });
}

async function saveCheckpoint(store: CheckpointStore, step: number, evalLoss: number | null): Promise<void> {
  await store.save(
    {
      step,
      epoch: 0,
      data_cursor: { offset: step },
      dropout_keys: [step],
      schedule: { total_steps: 10, learning_rate: 1e-3 },
      best: null,
      eval_loss: evalLoss,
      evals_since_best: 0,
      nonfinite_count: 0,
      config_hash: 'ab'.repeat(32),
    },
    [
      { name: 'adapters.safetensors', write: (p) => writeFile(p, `weights of step ${step}`) },
      { name: 'adapter_config.json', write: (p) => writeFile(p, ourConfig(baseDir, step)) },
    ],
  );
}

beforeAll(async () => {
  root = tempDir('export-input-');
  baseDir = join(root, 'base');
  await mkdir(baseDir);
  run = join(root, 'run');
  const store = await CheckpointStore.open(join(run, 'checkpoints'), { keepLast: 10 });
  await saveCheckpoint(store, 2, 1.5);
  await saveCheckpoint(store, 4, 1.2);
  await saveCheckpoint(store, 6, null);
  await mkdir(join(run, 'adapter'));
  await writeFile(join(run, 'adapter', 'adapters.safetensors'), 'final');
  await writeFile(join(run, 'adapter', 'adapter_config.json'), ourConfig(baseDir, 6));
});

describe('export input', () => {
  it('a run folder gives its final adapter, or the checkpoint asked for', async () => {
    expect(await resolveExportInput({ run })).toMatchObject({ adapterDir: join(run, 'adapter'), base: baseDir, baseNamedBy: `${join(run, 'adapter', 'adapter_config.json')} (base_model.source)` });
    expect((await resolveExportInput({ run, checkpoint: 'latest' })).adapterDir).toBe(join(run, 'checkpoints', 'step-000006'));
    expect((await resolveExportInput({ run, checkpoint: 'best' })).adapterDir).toBe(join(run, 'checkpoints', 'step-000004'));
    expect((await resolveExportInput({ run, checkpoint: 'step-2' })).adapterDir).toBe(join(run, 'checkpoints', 'step-000002'));
    expect((await resolveExportInput({ run, checkpoint: 'step-000004' })).adapterDir).toBe(join(run, 'checkpoints', 'step-000004'));
    expect((await resolveExportInput({ run, checkpoint: 'best' })).description).toMatch(/step-000004 \(best, val_loss 1\.2\) on base /);
  });

  it('without a final adapter, a run falls back on its latest checkpoint', async () => {
    const partial = join(root, 'partial');
    const store = await CheckpointStore.open(join(partial, 'checkpoints'), { keepLast: 10 });
    await saveCheckpoint(store, 3, null);
    const input = await resolveExportInput({ run: partial });
    expect(input.adapterDir).toBe(join(partial, 'checkpoints', 'step-000003'));
    expect(input.description).toMatch(/latest; the run has no final adapter/);
    await expect(resolveExportInput({ run: partial, checkpoint: 'best' })).rejects.toThrow(/no checkpoint .* has a validation loss/);
  });

  it('a missing checkpoint or run names what is missing', async () => {
    await expect(resolveExportInput({ run, checkpoint: 'step-5' })).rejects.toThrow(`${join(run, 'checkpoints', 'step-000005')}: trainer-state.json is missing`);
    await expect(resolveExportInput({ run: join(root, 'nope') })).rejects.toThrow(`--run ${join(root, 'nope')}: no such folder`);
    await expect(resolveExportInput({ run: baseDir })).rejects.toThrow(/no final adapter .* no checkpoints folder/);
  });

  it('mlx-lm and PEFT adapter folders name their base by their own keys; --model overrides', async () => {
    const mlxLm = join(root, 'mlx-lm');
    await mkdir(mlxLm);
    await writeFile(join(mlxLm, 'adapters.safetensors'), 'x');
    await writeFile(join(mlxLm, 'adapter_config.json'), JSON.stringify({ model: baseDir, num_layers: 16, lora_parameters: { rank: 8, scale: 20 } }));
    expect(await resolveExportInput({ adapter: mlxLm })).toMatchObject({ adapterDir: mlxLm, base: baseDir, baseNamedBy: `${join(mlxLm, 'adapter_config.json')} (model)` });

    const peft = join(root, 'peft');
    await mkdir(peft);
    await writeFile(join(peft, 'adapter_model.safetensors'), 'x');
    await writeFile(join(peft, 'adapter_config.json'), JSON.stringify({ base_model_name_or_path: baseDir, peft_type: 'LORA', r: 8 }));
    expect((await resolveExportInput({ adapter: peft })).baseNamedBy).toMatch(/\(base_model_name_or_path\)$/);

    const other = join(root, 'other-base');
    await mkdir(other);
    expect(await resolveExportInput({ adapter: peft, model: other })).toMatchObject({ base: other, baseNamedBy: '--model' });
    expect(await resolveExportInput({ model: other })).toMatchObject({ base: other, description: `base ${other}` });
    expect((await resolveExportInput({ model: other })).adapterDir).toBeUndefined();
  });

  it('a base that does not resolve is an error naming the base and who named it', async () => {
    const orphan = join(root, 'orphan');
    await mkdir(orphan);
    await writeFile(join(orphan, 'adapters.safetensors'), 'x');
    const gone = join(root, 'deleted-base');
    await writeFile(join(orphan, 'adapter_config.json'), JSON.stringify({ model: gone, num_layers: -1, lora_parameters: { rank: 8, scale: 2 } }));
    await expect(resolveExportInput({ adapter: orphan })).rejects.toThrow(`base model '${gone}' (named by ${join(orphan, 'adapter_config.json')} (model)) cannot be loaded`);
    await expect(resolveExportInput({ adapter: orphan })).rejects.toThrow(/pass --model to name the base/);
    await writeFile(join(orphan, 'adapter_config.json'), JSON.stringify({ num_layers: -1, lora_parameters: { rank: 8, scale: 2 } }));
    await expect(resolveExportInput({ adapter: orphan })).rejects.toThrow(/names no base model .*; pass --model/);
  });

  it('an adapter folder without weights is refused before anything is written', async () => {
    const empty = join(root, 'no-weights');
    await mkdir(empty);
    await writeFile(join(empty, 'adapter_config.json'), ourConfig(baseDir, 0));
    await expect(resolveExportInput({ adapter: empty })).rejects.toThrow(`${empty}: no adapters.safetensors or adapter_model.safetensors`);
  });
});

describe('export options', () => {
  const ok = { model: 'm', gguf: 'f16', out: 'x.gguf' } as const;
  it.each([
    [{ ...ok, gguf: 'q5_k' }, /^invalid export option gguf \(--gguf\): /],
    [{ ...ok, out: 'x.bin' }, /^invalid export option out \(--out\): expected a file name ending in \.gguf/],
    [{ ...ok, gguf: 'adapter' }, /^invalid export option gguf \(--gguf\): 'adapter' needs an adapter/],
    [{ ...ok, checkpoint: 'best' }, /^invalid export option checkpoint \(--checkpoint\): needs run/],
    [{ ...ok, run: 'r', adapter: 'a' }, /^invalid export option adapter \(--adapter\): give run or adapter, not both/],
    [{ ...ok, run: 'r', checkpoint: 'newest' }, /^invalid export option checkpoint \(--checkpoint\): /],
    [{ ...ok, peft: 'p' }, /^invalid export option peft \(--peft\): needs an adapter/],
    [{ ...ok, run: 'r', gguf: 'adapter', fallback: 'fused' }, /^invalid export option fallback \(--fallback\): only applies to gguf 'adapter' with ollama/],
    [{ ...ok, system: 'hi' }, /^invalid export option system \(--system\): only applies with modelfile or ollama/],
    [{ ...ok, threads: 0 }, /^invalid export option threads \(--threads\): /],
    [{ gguf: 'f16', out: 'x.gguf' }, /^invalid export option model \(--model\): nothing to export/],
  ])('%j is refused, naming the option and its flag', (options, message) => {
    expect(() => parseExportOptions(options as never)).toThrow(message);
  });

  it('defaults', () => {
    expect(parseExportOptions({ run: 'r', gguf: 'adapter', out: 'a.gguf' })).toEqual({ run: 'r', gguf: 'adapter', out: 'a.gguf', modelfile: false, adapterDtype: 'f32' });
  });
});

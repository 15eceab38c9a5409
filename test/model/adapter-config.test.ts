import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../lib/config/config-error.js';
import { parseTrainConfig } from '../../lib/config/load-config.js';
import {
  adaptedLayers,
  adapterConfigFor,
  adapterTensorName,
  loraTargetsOf,
  readAdapterConfig,
  serializeAdapterConfig,
  writeAdapterConfig,
} from '../../lib/model/adapter-config.js';
import { libraryVersion } from '../../lib/config/library-version.js';
import { tempDirs } from '../train/fixtures/temp-dirs.js';

const makeTempDir = tempDirs('mlxq-adapter-');

const config = (lora: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) =>
  parseTrainConfig({ model: 'dolphin-mistral:7b', data: { train: 'd' }, output: 'o', lora, ...extra }, { baseDir: '/b' });

let dir: string;
beforeEach(async () => {
  dir = await makeTempDir();
});

describe('adapterConfigFor', () => {
  it('maps the LoRA settings to mlx-lm fields', () => {
    const adapter = adapterConfigFor(config(), { num_hidden_layers: 32, architecture: 'llama' });
    expect(adapter).toEqual({
      fine_tune_type: 'lora',
      num_layers: -1,
      lora_parameters: {
        rank: 64,
        scale: 2,
        dropout: 0.05,
        keys: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj'],
      },
      model: 'dolphin-mistral:7b',
      base_model: { source: 'dolphin-mistral:7b', architecture: 'llama', num_hidden_layers: 32, quantization: { bits: 4, group_size: 64 }, qk_row_order: 'gguf' },
      library_version: libraryVersion(),
    });
  });

  it('handles last-N layers, MLP targets, rsLoRA and an unquantized base', () => {
    const adapter = adapterConfigFor(
      config({ layers: 16, targets: ['down_proj', 'q_proj'], rank: 16, alpha: 32, rslora: true }, { quantization: 'none' }),
      { num_hidden_layers: 32 },
    );
    expect(adapter.num_layers).toBe(16);
    expect(adapter.lora_parameters).toEqual({ rank: 16, scale: 8, dropout: 0.05, keys: ['self_attn.q_proj', 'mlp.down_proj'] });
    expect(adapter.base_model?.quantization).toBeNull();
  });

  it('refuses more layers than the model has', () => {
    expect(() => adapterConfigFor(config({ layers: 40 }), { num_hidden_layers: 32 })).toThrow('lora.layers: the model has 32 layers, got 40');
  });
});

describe('serialising and reading', () => {
  it('writes sorted keys with a 4-space indent, like mlx-lm', () => {
    const text = serializeAdapterConfig({
      num_layers: 2,
      lora_parameters: { scale: 20, rank: 8, dropout: 0 },
      fine_tune_type: 'lora',
    });
    expect(text).toBe(
      [
        '{',
        '    "fine_tune_type": "lora",',
        '    "lora_parameters": {',
        '        "dropout": 0,',
        '        "rank": 8,',
        '        "scale": 20',
        '    },',
        '    "num_layers": 2',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('round-trips through a folder, replacing the file atomically', async () => {
    const adapter = adapterConfigFor(config({ targets: 'all-linear' }), { num_hidden_layers: 4 });
    await writeAdapterConfig(dir, { ...adapter, num_layers: 1 });
    const written = await writeAdapterConfig(dir, adapter);
    expect(written).toBe(path.join(dir, 'adapter_config.json'));
    expect(await readdir(dir)).toEqual(['adapter_config.json']);
    expect(await readAdapterConfig(dir)).toEqual(adapter);
    expect(await readAdapterConfig(written)).toEqual(adapter);
    expect(loraTargetsOf(adapter)).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    expect(JSON.parse(await readFile(written, 'utf8')).lora_parameters.keys).toHaveLength(7);
  });

  it('reads what mlx-lm writes: extra arguments kept, no keys meaning every projection', async () => {
    const mlxLm = {
      adapter_path: 'adapters',
      batch_size: 4,
      fine_tune_type: 'lora',
      iters: 1000,
      learning_rate: 1e-5,
      lora_parameters: { dropout: 0.0, rank: 8, scale: 20.0 },
      model: 'mlx-community/Mistral-7B-Instruct-v0.3-4bit',
      num_layers: 16,
      seed: 0,
    };
    await writeFile(path.join(dir, 'adapter_config.json'), JSON.stringify(mlxLm, null, 4));
    const adapter = await readAdapterConfig(dir);
    expect(adapter).toMatchObject(mlxLm);
    expect(adapter.base_model).toBeUndefined();
    expect(loraTargetsOf(adapter)).toHaveLength(7);
    expect(loraTargetsOf({ ...adapter, lora_parameters: { ...adapter.lora_parameters, keys: ['self_attn.v_proj', 'self_attn.q_proj'] } })).toEqual([
      'q_proj',
      'v_proj',
    ]);
  });

  it('treats a missing fine_tune_type as LoRA, like mlx-lm', async () => {
    await writeFile(path.join(dir, 'adapter_config.json'), JSON.stringify({ num_layers: -1, lora_parameters: { rank: 8, scale: 2 } }));
    expect(await readAdapterConfig(dir)).toMatchObject({ fine_tune_type: 'lora', lora_parameters: { dropout: 0 } });
  });

  it.each([
    [{ fine_tune_type: 'dora', num_layers: 4, lora_parameters: { rank: 8, scale: 20 } }, 'fine_tune_type: expected "lora", got "dora"'],
    [{ lora_parameters: { rank: 8, scale: 20 } }, 'num_layers: required, but missing'],
    [{ num_layers: 0, lora_parameters: { rank: 8, scale: 20 } }, 'num_layers: must be >= 1, got 0'],
    [{ num_layers: 4, lora_parameters: { rank: 0, scale: 20 } }, 'lora_parameters.rank: must be >= 1, got 0'],
    [{ num_layers: 4, lora_parameters: { rank: 8 } }, 'lora_parameters.scale: required, but missing'],
    [
      { num_layers: 4, lora_parameters: { rank: 8, scale: 20, keys: ['embed_tokens'] } },
      'lora_parameters.keys[0]: expected one of self_attn.q_proj | self_attn.k_proj | self_attn.v_proj | self_attn.o_proj | mlp.gate_proj | mlp.up_proj | mlp.down_proj, got "embed_tokens"',
    ],
  ])('names the key of a bad file: %j', async (content, message) => {
    const file = path.join(dir, 'adapter_config.json');
    await writeFile(file, JSON.stringify(content));
    const error = await readAdapterConfig(dir).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toBe(`${file}: ${message}`);
  });

  it('names a missing or unparseable file', async () => {
    const file = path.join(dir, 'adapter_config.json');
    await expect(readAdapterConfig(dir)).rejects.toThrow(`${file}: cannot read: no such file`);
    await writeFile(file, '{"num_layers": ');
    await expect(readAdapterConfig(file)).rejects.toThrow(new RegExp(`^${file.replace(/[.]/g, '\\.')}: not valid JSON: `));
  });
});

describe('tensor layout', () => {
  it('adapts the last num_layers blocks', () => {
    expect(adaptedLayers(-1, 4)).toEqual([0, 1, 2, 3]);
    expect(adaptedLayers(16, 32)).toEqual(Array.from({ length: 16 }, (_, i) => 16 + i));
    expect(adaptedLayers(1, 32)).toEqual([31]);
  });

  it('names tensors as mlx-lm does', () => {
    expect(adapterTensorName(31, 'q_proj', 'lora_a')).toBe('model.layers.31.self_attn.q_proj.lora_a');
    expect(adapterTensorName(0, 'gate_proj', 'lora_b')).toBe('model.layers.0.mlp.gate_proj.lora_b');
  });
});

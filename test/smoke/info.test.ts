/**
 * `info` describes a model from its metadata alone: the same architecture, parameter count, build,
 * base bytes and linear storage as the loaded model reports, while reading no tensor data and
 * making no native model (a model whose data is cut off after the header still gets its report).
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { register as registerInfo } from '../../lib/cli/commands/info.js';
import { loadModel, type LoadModelOptions } from '../../lib/model/load-model.js';
import { parameterCount, summarizeModel, type SummaryOptions } from '../../lib/model/model-summary.js';
import { native } from '../../lib/native.js';
import { quantize, saveSafetensors, tensor, type Tensor } from '../../lib/index.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';

const shape = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300 };

/** An mlx-lm quantized folder, mixed precision: q/v projections at 8 bits g32, the rest 4 bits g64. */
async function writeMlxFolder(tiny: TinyModel, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const overrides: Record<string, unknown> = {};
  const tensors: Record<string, Tensor> = {};
  for (const [name, w] of tiny.weights) {
    const t = await tensor(Float32Array.from(w.values), w.shape);
    if (!(name.endsWith('_proj.weight') || name === 'lm_head.weight' || name === 'model.embed_tokens.weight')) {
      tensors[name] = t;
      continue;
    }
    const base = name.slice(0, -'.weight'.length);
    const layout = /(q|v)_proj/.test(name) ? { bits: 8, groupSize: 32 } : { bits: 4, groupSize: 64 };
    if (layout.bits === 8) overrides[base] = { bits: 8, group_size: 32 };
    const q = await quantize(t, layout);
    Object.assign(tensors, { [`${base}.weight`]: q.wq, [`${base}.scales`]: q.scales, [`${base}.biases`]: q.biases });
    t.dispose();
  }
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ...tiny.hfConfig, quantization: { group_size: 64, bits: 4, ...overrides } }));
  await saveSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'mlx' });
  for (const t of Object.values(tensors)) t.dispose();
}

/** A copy of an HF folder whose model.safetensors ends right after its header: no tensor data at all. */
async function truncatedCopy(hfDir: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const f of ['config.json']) await copyFile(join(hfDir, f), join(dir, f));
  const bytes = await readFile(join(hfDir, 'model.safetensors'));
  const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
  await writeFile(join(dir, 'model.safetensors'), bytes.subarray(0, headerEnd));
}

/** A copy of a GGUF file whose tensor data is gone: the header kept, the rest a hole of zeros. */
async function hollowGguf(path: string, out: string, dataOffset: number): Promise<void> {
  const bytes = await readFile(path);
  await writeFile(out, bytes.subarray(0, dataOffset));
  const fh = await open(out, 'r+');
  await fh.truncate(bytes.length);
  await fh.close();
}

/** An Ollama models folder holding `gguf` as library/tiny:latest. */
async function ollamaStore(root: string, gguf: string): Promise<void> {
  const bytes = await readFile(gguf);
  const hex = createHash('sha256').update(bytes).digest('hex');
  await mkdir(join(root, 'blobs'), { recursive: true });
  await writeFile(join(root, 'blobs', `sha256-${hex}`), bytes);
  const manifest = join(root, 'manifests', 'registry.ollama.ai', 'library', 'tiny');
  await mkdir(manifest, { recursive: true });
  await writeFile(
    join(manifest, 'latest'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 2 },
      layers: [{ mediaType: 'application/vnd.ollama.image.model', digest: `sha256:${hex}`, size: bytes.byteLength }],
    }),
  );
}

async function loadedNumbers(spec: string, options: LoadModelOptions) {
  const model = await loadModel(spec, options);
  try {
    const info = await model.native.info();
    let elements = 0;
    for (const name of await model.native.weightNames()) {
      const w = await model.native.denseWeight(name);
      elements += w.shape.reduce((n, d) => n * d, 1);
      w.dispose();
    }
    return { build: model.build, baseBytes: info.baseBytes, linearStorage: info.linearStorage, elements, family: model.architecture.family };
  } finally {
    model.dispose();
  }
}

async function runInfoCli(model: string): Promise<string> {
  const program = new Command('mlx-qlora').exitOverride();
  registerInfo(program);
  let out = '';
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    await program.parseAsync(['node', 'mlx-qlora', 'info', '--model', model, '--json']);
  } finally {
    write.mockRestore();
  }
  return out;
}

describe('info reads metadata only', () => {
  let hf: TinyModel;
  let q40: TinyModel;
  let q80: TinyModel;
  let mlxDir: string;

  beforeAll(async () => {
    hf = await makeTinyModel({ ...shape, seed: 11, ggufType: 'F16' });
    q40 = await makeTinyModel({ ...shape, seed: 12, ggufType: 'Q4_0', tiedEmbeddings: true });
    q80 = await makeTinyModel({ ...shape, seed: 13, ggufType: 'Q8_0' });
    mlxDir = join(hf.root, 'mlx-mixed');
    await writeMlxFolder(hf, mlxDir);
  });
  afterAll(async () => {
    for (const t of [hf, q40, q80]) await t?.cleanup();
  });

  const cases: Array<[string, () => string, SummaryOptions]> = [
    ['HF folder, as stored (dense)', () => hf.hfDir, {}],
    ['HF folder, 4-bit g64 base', () => hf.hfDir, { quantization: { bits: 4, groupSize: 64 } }],
    ['HF folder, dense base', () => hf.hfDir, { quantization: 'none' }],
    ['HF folder, 8-bit g32 base, float16', () => hf.hfDir, { quantization: { bits: 8, groupSize: 32 }, computeDtype: 'float16' }],
    ['F16 GGUF, 3-bit g128 base', () => hf.ggufPath, { quantization: { bits: 3, groupSize: 128 } }],
    ['Q4_0 GGUF (tied), repacked blocks', () => q40.ggufPath, {}],
    ['Q8_0 GGUF, dense base otherwise', () => q80.ggufPath, { quantization: 'none' }],
    ['MLX-quantized mixed-precision folder', () => mlxDir, {}],
  ];

  it.each(cases)('%s: the same numbers as the loaded model', async (_label, spec, options) => {
    const summary = await summarizeModel(spec(), options);
    const loaded = await loadedNumbers(spec(), options);
    expect(summary.build).toEqual(loaded.build);
    expect(summary.baseBytes).toBe(loaded.baseBytes);
    expect(summary.linearStorage).toEqual(loaded.linearStorage);
    // The parameter count, against the weights the model really holds.
    expect(summary.parameters).toBe(loaded.elements);
    expect(summary.architecture.family).toBe(loaded.family);
  });

  it('reports an HF model whose safetensors hold a header and no data (loading it fails)', async () => {
    const dir = join(hf.root, 'truncated');
    await truncatedCopy(hf.hfDir, dir);
    const whole = await summarizeModel(hf.hfDir);
    const cut = await summarizeModel(dir);
    expect({ ...cut, source: undefined }).toEqual({ ...whole, source: undefined });
    await expect(loadModel(dir)).rejects.toThrow();
    const report = JSON.parse(await runInfoCli(dir)) as { parameters: number; baseBytes: number; linearStorage: Record<string, number> };
    expect(report.parameters).toBe(parameterCount(whole.architecture));
    expect(report.baseBytes).toBe(whole.baseBytes);
    expect(report.linearStorage).toEqual({ dense: 14 });
  });

  it('resolves an Ollama name to its GGUF blob and reports it as the loader would load it', async () => {
    const store = join(q40.root, 'ollama-models');
    await ollamaStore(store, q40.ggufPath);
    const previous = process.env.OLLAMA_MODELS;
    process.env.OLLAMA_MODELS = store;
    try {
      const report = JSON.parse(await runInfoCli('tiny')) as { source: { kind: string; name: string }; baseBytes: number; build: unknown };
      expect(report.source).toMatchObject({ kind: 'ollama', name: 'registry.ollama.ai/library/tiny:latest' });
      const loaded = await loadedNumbers('tiny', { ollamaModelsDir: store });
      expect(report.baseBytes).toBe(loaded.baseBytes);
      expect(report.build).toEqual(loaded.build);
    } finally {
      if (previous === undefined) delete process.env.OLLAMA_MODELS;
      else process.env.OLLAMA_MODELS = previous;
    }
  });

  it('reports a GGUF model without making a native model or reading a tensor', async () => {
    const { readGguf } = await import('../../lib/gguf/reader.js');
    const file = await readGguf(q40.ggufPath);
    const hollow = join(q40.root, 'hollow.gguf');
    await hollowGguf(q40.ggufPath, hollow, file.dataOffset);
    const addon = native();
    const spies = (['createModel', 'tensorFromFile', 'loadSafetensors', 'fromBytes'] as const).map((name) =>
      vi.spyOn(addon, name).mockImplementation(() => {
        throw new Error(`info called ${name}`);
      }),
    );
    try {
      const report = JSON.parse(await runInfoCli(hollow)) as { parameters: number; linearStorage: Record<string, number> };
      expect(report.linearStorage).toEqual({ '4-bit g32': 14 });
      expect(report.parameters).toBe((await summarizeModel(q40.ggufPath)).parameters);
      for (const spy of spies) expect(spy).not.toHaveBeenCalled();
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });
});

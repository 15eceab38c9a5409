import { writeFile, mkdir, copyFile, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import { loadSafetensors, saveSafetensors } from '../../lib/io/safetensors.js';
import { dequantize, disposeAll, quantize, tensor, toTypedArray, type Tensor } from '../../lib/tensor.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { openLlamaCppOracle } from '../fixtures/llama-cpp-oracle.js';
import { referenceLogits, type ReferenceConfig, type ReferenceWeight } from '../helpers/llama-reference.js';
import { relativeError } from '../helpers/reference.js';
import { centered } from '../helpers/llama-cpp-logits.js';

const tokens = [1, 17, 42, 5, 260, 99, 3, 77, 150, 8];
const shape = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300 } as const;

function refConfig(m: TinyModel): ReferenceConfig {
  const c = m.config;
  return { ...shape, headDim: c.headDim, ropeTheta: c.ropeTheta, rmsNormEps: c.rmsNormEps, tiedEmbeddings: c.tiedEmbeddings };
}

async function logitsOf(model: LoadedModel, seq: number[] = tokens): Promise<Float32Array> {
  const t = await model.native.logits({ shape: [1, seq.length], tokens: Int32Array.from(seq) });
  return (await toTypedArray(t)) as Float32Array;
}

/** The model's own weights, dense (dequantized), for the reference. */
async function effectiveWeights(model: LoadedModel): Promise<Map<string, ReferenceWeight>> {
  const out = new Map<string, ReferenceWeight>();
  for (const name of await model.native.weightNames()) {
    const w = await model.native.denseWeight(name);
    out.set(name, { shape: w.shape, values: (await toTypedArray(w)) as Float32Array });
    w.dispose();
  }
  return out;
}

interface QuantLayout {
  bits: number;
  groupSize: number;
}

const isQuantizable = (name: string): boolean =>
  name.endsWith('_proj.weight') || name === 'lm_head.weight' || name === 'model.embed_tokens.weight';

/**
 * Writes `tiny` as an mlx-lm quantized folder: the embedding and every linear as a
 * weight/scales/biases triple in the layout `layoutOf` gives, the rest dense. `shardOf` spreads the
 * tensors over shards (with an index) by name; a negative shard drops the tensor. Returns what the
 * files hold, dequantized in float32: the weights of a correct load.
 */
async function writeMlxFolder(
  tiny: TinyModel,
  dir: string,
  quantization: Record<string, unknown>,
  layoutOf: (name: string) => QuantLayout,
  shardOf: (name: string) => number = () => 0,
): Promise<Map<string, ReferenceWeight>> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ...tiny.hfConfig, quantization }));
  const shards: Record<string, Tensor>[] = [];
  const put = (name: string, t: Tensor): void => {
    const i = shardOf(name);
    if (i >= 0) (shards[i] ??= {})[name] = t;
  };
  const dense = new Map<string, ReferenceWeight>();
  for (const [name, w] of tiny.weights) {
    const t = await tensor(Float32Array.from(w.values), w.shape);
    if (!isQuantizable(name)) {
      put(name, t);
      dense.set(name, w);
      continue;
    }
    const layout = layoutOf(name);
    const q = await quantize(t, layout);
    const base = name.slice(0, -'.weight'.length);
    put(`${base}.weight`, q.wq);
    put(`${base}.scales`, q.scales);
    put(`${base}.biases`, q.biases);
    const d = await dequantize(q, { ...layout, dtype: 'float32' });
    dense.set(name, { shape: w.shape, values: (await toTypedArray(d)) as Float32Array });
    d.dispose();
    t.dispose();
  }
  if (shards.length === 1) {
    await saveSafetensors(join(dir, 'model.safetensors'), shards[0]!, { format: 'mlx' });
  } else {
    const weightMap: Record<string, string> = {};
    for (const [i, shard] of shards.entries()) {
      const file = `model-0000${i + 1}-of-0000${shards.length}.safetensors`;
      await saveSafetensors(join(dir, file), shard, { format: 'mlx' });
      for (const name of Object.keys(shard)) weightMap[name] = file;
    }
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  }
  for (const shard of shards) for (const t of Object.values(shard)) t.dispose();
  return dense;
}

describe('loading weights', () => {
  const fixtures: TinyModel[] = [];
  afterAll(async () => {
    for (const f of fixtures) await f.cleanup();
  });
  async function fixture(options: Parameters<typeof makeTinyModel>[0]): Promise<TinyModel> {
    const f = await makeTinyModel({ ...shape, seed: 21, ...options });
    fixtures.push(f);
    return f;
  }

  it('llama.cpp computes the same logits from the same GGUF (independent implementation)', async () => {
    const tiny = await fixture({ ggufType: 'F32' });
    const ours = await loadModel(tiny.ggufPath, { quantization: 'none' });
    const oracle = await openLlamaCppOracle(tiny.ggufPath);
    try {
      // llama.cpp's rows come centered (see the oracle); ours are centered the same way.
      const theirs = await oracle.logits(tokens);
      const mine = await logitsOf(ours);
      const flatTheirs = new Float64Array(tokens.length * shape.vocab);
      const flatMine = new Float64Array(tokens.length * shape.vocab);
      theirs.forEach((row, i) => {
        flatTheirs.set(row, i * shape.vocab);
        flatMine.set(centered(mine.subarray(i * shape.vocab, (i + 1) * shape.vocab)), i * shape.vocab);
      });
      expect(relativeError(flatMine, flatTheirs)).toBeLessThan(1e-4);
    } finally {
      await oracle.dispose();
      ours.dispose();
    }
  });

  it.each(['Q4_0', 'Q8_0'] as const)('repacks %s blocks losslessly into MLX quantized weights', async (type) => {
    const tiny = await fixture({ ggufType: type, outputType: type });
    const model = await loadModel(tiny.ggufPath);
    try {
      const info = await model.native.info();
      expect(info.linearStorage).toEqual({ [type === 'Q4_0' ? '4-bit g32' : '8-bit g32']: 14 });
      // What the native model computes in is what the build options say (float16 on a GPU).
      expect(info.computeDtype).toBe(model.build.computeDtype);
      // The fixture's weights are exactly representable in the GGUF type, so the reference on
      // them is the reference on what the file holds.
      const ref = referenceLogits(refConfig(tiny), tiny.weights, tokens);
      expect(relativeError(await logitsOf(model), ref)).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }
  });

  it('dequantizes K-quant output weights and quantizes them again for QLoRA', async () => {
    const tiny = await fixture({ ggufType: 'Q4_0', outputType: 'Q6_K', hidden: 256, heads: 4, kvHeads: 2 });
    const model = await loadModel(tiny.ggufPath, { quantization: { bits: 8, groupSize: 32 } });
    try {
      const ref = referenceLogits({ ...refConfig(tiny), hidden: 256, headDim: 64 }, tiny.weights, tokens);
      // Q6_K → float → MLX 8-bit: close to, not exactly, the file's values.
      expect(relativeError(await logitsOf(model), ref)).toBeLessThan(2e-2);
    } finally {
      model.dispose();
    }
  });

  it('QLoRA 4-bit base: both kernels compute the reference on the dequantized weights', async () => {
    const tiny = await fixture({ dtype: 'bf16', shards: 3 });
    const a = await loadModel(tiny.hfDir, { quantization: { bits: 4, groupSize: 32 }, kernel: 'dequantize-matmul' });
    const b = await loadModel(tiny.hfDir, { quantization: { bits: 4, groupSize: 32 }, kernel: 'quantized-matmul' });
    try {
      expect((await a.native.info()).linearStorage).toEqual({ '4-bit g32': 14 });
      const ref = referenceLogits(refConfig(tiny), await effectiveWeights(a), tokens);
      const la = await logitsOf(a);
      expect(relativeError(la, ref)).toBeLessThan(1e-4);
      expect(relativeError(await logitsOf(b), la)).toBeLessThan(1e-5);
      // And the quantization is a real approximation of the bf16 weights, not a copy.
      const exact = referenceLogits(refConfig(tiny), tiny.weights, tokens);
      const err = relativeError(la, exact);
      expect(err).toBeGreaterThan(1e-4);
      expect(err).toBeLessThan(0.2);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('loads an MLX-quantized folder (weight/scales/biases) as it is', async () => {
    const tiny = await fixture({});
    const dir = join(tiny.root, 'mlx-4bit');
    await mkdir(dir, { recursive: true });
    const config = JSON.parse(await readFile(join(tiny.hfDir, 'config.json'), 'utf8'));
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, quantization: { group_size: 64, bits: 4 } }));
    const tensors: Record<string, Awaited<ReturnType<typeof tensor>>> = {};
    for (const [name, w] of tiny.weights) {
      const t = await tensor(Float32Array.from(w.values), w.shape);
      if (name.endsWith('_proj.weight') || name === 'lm_head.weight' || name === 'model.embed_tokens.weight') {
        const q = await quantize(t, { bits: 4, groupSize: 64 });
        const base = name.slice(0, -'.weight'.length);
        tensors[`${base}.weight`] = q.wq;
        tensors[`${base}.scales`] = q.scales;
        tensors[`${base}.biases`] = q.biases;
      } else {
        tensors[name] = t;
      }
    }
    await saveSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'mlx' });
    const fromMlx = await loadModel(dir);
    const fromHf = await loadModel(tiny.hfDir, { quantization: { bits: 4, groupSize: 64 } });
    try {
      expect((await fromMlx.native.info()).linearStorage).toEqual({ '4-bit g64': 14 });
      const ref = referenceLogits(refConfig(tiny), await effectiveWeights(fromMlx), tokens);
      expect(relativeError(await logitsOf(fromMlx), ref)).toBeLessThan(1e-4);
      // The linears hold the same grid as quantizing the HF weights at load time.
      const a = await fromMlx.native.denseWeight('model.layers.1.mlp.down_proj.weight');
      const b = await fromHf.native.denseWeight('model.layers.1.mlp.down_proj.weight');
      expect([...((await toTypedArray(a)) as Float32Array)]).toEqual([...((await toTypedArray(b)) as Float32Array)]);
    } finally {
      fromMlx.dispose();
      fromHf.dispose();
    }
  });

  // Each of these packs like another layout (8-bit g64 as 4-bit g128, 2-bit g64 as 4-bit g32,
  // 6-bit g64 as 3-bit g128) when the input features are not known.
  it.each([
    [8, 64],
    [2, 64],
    [6, 64],
  ])('reads an MLX %i-bit g%i folder from its shapes and the model dimensions', async (bits, groupSize) => {
    const tiny = await fixture({});
    const dir = join(tiny.root, `mlx-${bits}bit`);
    const dense = await writeMlxFolder(tiny, dir, { group_size: groupSize, bits }, () => ({ bits, groupSize }));
    const model = await loadModel(dir);
    try {
      expect((await model.native.info()).linearStorage).toEqual({ [`${bits}-bit g${groupSize}`]: 14 });
      const ref = referenceLogits(refConfig(tiny), dense, tokens);
      expect(relativeError(await logitsOf(model), ref)).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }
  });

  it('reads a mixed-precision MLX folder (per-layer overrides, as mlx-lm writes them)', async () => {
    const tiny = await fixture({});
    const dir = join(tiny.root, 'mlx-mixed');
    const overrides: Record<string, QuantLayout> = {
      'model.layers.0.self_attn.q_proj': { bits: 6, groupSize: 32 },
      'model.layers.1.mlp.down_proj': { bits: 2, groupSize: 64 },
      'lm_head': { bits: 8, groupSize: 32 },
    };
    const quantization: Record<string, unknown> = { group_size: 64, bits: 4 };
    for (const [k, v] of Object.entries(overrides)) quantization[k] = { group_size: v.groupSize, bits: v.bits };
    const dense = await writeMlxFolder(tiny, dir, quantization, (name) => overrides[name.slice(0, -'.weight'.length)] ?? { bits: 4, groupSize: 64 });
    const model = await loadModel(dir);
    try {
      expect((await model.native.info()).linearStorage).toEqual({ '4-bit g64': 12, '6-bit g32': 1, '2-bit g64': 1 });
      const ref = referenceLogits(refConfig(tiny), dense, tokens);
      expect(relativeError(await logitsOf(model), ref)).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }
  });

  it('completes a weight/scales/biases triple split across shards, and names one that never completes', async () => {
    const tiny = await fixture({});
    const layout = { bits: 4, groupSize: 64 };
    const second = new Set(['model.layers.0.self_attn.q_proj.weight', 'model.layers.1.mlp.down_proj.scales', 'lm_head.biases']);
    const dir = join(tiny.root, 'mlx-split');
    const dense = await writeMlxFolder(tiny, dir, { group_size: 64, bits: 4 }, () => layout, (n) => (second.has(n) ? 1 : 0));
    const index = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8'));
    expect(index.weight_map['model.layers.0.self_attn.q_proj.scales']).toBe('model-00001-of-00002.safetensors');
    expect(index.weight_map['model.layers.0.self_attn.q_proj.weight']).toBe('model-00002-of-00002.safetensors');
    const model = await loadModel(dir);
    try {
      expect((await model.native.info()).linearStorage).toEqual({ '4-bit g64': 14 });
      expect(relativeError(await logitsOf(model), referenceLogits(refConfig(tiny), dense, tokens))).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }

    const broken = join(tiny.root, 'mlx-split-broken');
    await writeMlxFolder(tiny, broken, { group_size: 64, bits: 4 }, () => layout, (n) =>
      n === 'model.layers.1.mlp.down_proj.biases' ? -1 : second.has(n) ? 1 : 0,
    );
    await expect(loadModel(broken)).rejects.toThrow(/never all arrived: model\.layers\.1\.mlp\.down_proj\.weight \(missing \.biases\)/);
  });

  it('rejects quantized shapes that fit no MLX layout, naming the tensor and its shapes', async () => {
    const tiny = await fixture({});
    const dir = join(tiny.root, 'mlx-bad');
    await writeMlxFolder(tiny, dir, { group_size: 64, bits: 4 }, () => ({ bits: 4, groupSize: 64 }));
    // q_proj (64 inputs) replaced by a 4-bit g32 quantization of a [64, 96] matrix: 12 packed words
    // would be 6 bits, but 3 groups do not divide 64 inputs.
    using dense = await tensor(new Float32Array(64 * 96).fill(0.5), [64, 96]);
    const wrong = await quantize(dense, { bits: 4, groupSize: 32 });
    const { tensors } = await loadSafetensors(join(dir, 'model.safetensors'));
    disposeAll(tensors['model.layers.0.self_attn.q_proj.weight'], tensors['model.layers.0.self_attn.q_proj.scales'], tensors['model.layers.0.self_attn.q_proj.biases']);
    tensors['model.layers.0.self_attn.q_proj.weight'] = wrong.wq;
    tensors['model.layers.0.self_attn.q_proj.scales'] = wrong.scales;
    tensors['model.layers.0.self_attn.q_proj.biases'] = wrong.biases;
    await saveSafetensors(join(dir, 'model.safetensors'), tensors);
    disposeAll(Object.values(tensors));
    await expect(loadModel(dir)).rejects.toThrow(
      /quantized tensor 'model\.layers\.0\.self_attn\.q_proj\.weight' \(64 input features; packed \[64, 12\], scales \[64, 3\], biases \[64, 3\]\)/,
    );
  });

  it('names a missing tensor, a misshapen one with both shapes, and a missing shard', async () => {
    const tiny = await fixture({ shards: 2 });
    const dir = join(tiny.root, 'broken');
    await mkdir(dir, { recursive: true });
    const config = JSON.parse(await readFile(join(tiny.hfDir, 'config.json'), 'utf8'));
    await writeFile(join(dir, 'config.json'), JSON.stringify(config));
    const keep: Record<string, Awaited<ReturnType<typeof tensor>>> = {};
    for (const [name, w] of tiny.weights) {
      if (name === 'model.layers.1.mlp.up_proj.weight') continue;
      keep[name] = await tensor(Float32Array.from(w.values), w.shape);
    }
    await saveSafetensors(join(dir, 'model.safetensors'), keep);
    await expect(loadModel(dir)).rejects.toThrow(/missing tensors: model\.layers\.1\.mlp\.up_proj\.weight/);

    keep['model.layers.1.mlp.up_proj.weight'] = await tensor(new Float32Array(64 * 64), [64, 64]);
    await saveSafetensors(join(dir, 'model.safetensors'), keep);
    await expect(loadModel(dir)).rejects.toThrow(/model\.safetensors: tensor 'model\.layers\.1\.mlp\.up_proj\.weight' has shape \[64, 64\], expected \[128, 64\]/);

    await rm(join(tiny.hfDir, 'model-00002-of-00002.safetensors'));
    await expect(loadModel(tiny.hfDir)).rejects.toThrow(/shard 'model-00002-of-00002\.safetensors' is missing/);
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, architectures: ['GPT2LMHeadModel'] }));
    await expect(loadModel(dir)).rejects.toThrow(/config\.json: architecture GPT2LMHeadModel is not supported/);
    void copyFile;
  });
});

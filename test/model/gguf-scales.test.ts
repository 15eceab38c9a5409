/**
 * How quantized base weights are held and computed: GGUF Q4_0/Q8_0 scales kept in float16 and
 * their biases (−2^(bits−1)·scale) not stored at all, the embedding kept quantized (the values and
 * logits of the file), and large quantized weights dequantized block by block (the logits,
 * gradients and dense weights of whole dequantization).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoraTarget } from '../../lib/config/train-config.js';
import { loadModel, type LoadedModel, type LoadModelOptions } from '../../lib/model/load-model.js';
import type { NativeBatch } from '../../lib/native.js';
import { tensor, toTypedArray, type Tensor } from '../../lib/tensor.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { nextTokenBatch } from '../helpers/batches.js';
import { relativeError, seededFloats } from '../helpers/reference.js';

const tokens = [1, 17, 42, 5, 260, 99, 3, 77, 150, 8, 201, 64];

async function values(t: Tensor): Promise<Float32Array> {
  try {
    return (await toTypedArray(t)) as Float32Array;
  } finally {
    t.dispose();
  }
}

const logitsOf = async (m: LoadedModel): Promise<Float32Array> =>
  values(await m.native.logits({ shape: [1, tokens.length], tokens: Int32Array.from(tokens) }));

/** Elements of every quantized linear weight of the model (decoder projections and the head). */
function linearElements(tiny: TinyModel): number {
  let n = 0;
  for (const [name, w] of tiny.weights) if (name === 'lm_head.weight' || name.endsWith('_proj.weight')) n += w.shape[0]! * w.shape[1]!;
  return n;
}

describe('float16 scales of repacked GGUF weights', () => {
  const models: Partial<Record<'Q4_0' | 'Q8_0', TinyModel>> = {};
  afterAll(async () => {
    for (const m of Object.values(models)) await m.cleanup();
  });

  it.each([
    ['Q4_0', 4],
    ['Q8_0', 8],
  ] as const)('%s: the dense weights and logits of the file, float16 scales, no stored biases, a quantized embedding', async (type, bits) => {
    const tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 23, ggufType: type });
    models[type] = tiny;
    const gguf = await loadModel(tiny.ggufPath);
    const dense = await loadModel(tiny.hfDir, { quantization: 'none' });
    const float32Scales = await loadModel(tiny.hfDir, { quantization: { bits, groupSize: 32 } });
    try {
      // The fixture's values are exactly those of the GGUF blocks: dequantizing must give them back
      // (zeros compared without their sign: code 8 of Q4_0 gives d·8 − 8·d = +0).
      const unsigned = (v: Float32Array) => Array.from(v, (x) => x + 0);
      for (const name of ['model.layers.1.mlp.down_proj.weight', 'model.layers.0.self_attn.v_proj.weight', 'lm_head.weight', 'model.embed_tokens.weight']) {
        expect(unsigned(await values(await gguf.native.denseWeight(name))), name).toEqual(unsigned(tiny.weights.get(name)!.values));
      }
      expect(relativeError(await logitsOf(gguf), await logitsOf(dense))).toBeLessThan(1e-5);
      const [a, b] = [await gguf.native.info(), await float32Scales.native.info()];
      expect(a.linearStorage).toEqual(b.linearStorage);
      // Linears: the same packed codes; float16 scales and no biases against float32 scales and biases.
      // Embedding: packed codes and float16 scales against dense float32. Norms: the same.
      const embedding = 300 * 64;
      const linearSaving = (linearElements(tiny) / 32) * (4 + 4 - 2);
      const embeddingSaving = embedding * 4 - ((embedding * bits) / 8 + (embedding / 32) * 2);
      expect(b.baseBytes - a.baseBytes).toBe(linearSaving + embeddingSaving);
    } finally {
      for (const m of [gguf, dense, float32Scales]) m.dispose();
    }
  }, 120_000);
});

describe('block-by-block dequantization of large quantized weights', () => {
  let tiny: TinyModel;
  const batch: NativeBatch = nextTokenBatch([tokens, [...tokens].reverse()]);
  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 128, heads: 4, kvHeads: 2, intermediate: 256, vocab: 300, seed: 31, ggufType: 'Q4_0' });
  });
  afterAll(async () => {
    delete process.env.MLXQ_DEQUANT_BLOCK_ELEMENTS;
    await tiny?.cleanup();
  });

  /** Logits, LoRA gradients (checkpointed) and a dense weight, with `blockElements` set or not. */
  async function outputs(path: string, options: LoadModelOptions, blockElements: number | undefined, targets: 'all-linear' | readonly LoraTarget[]) {
    if (blockElements === undefined) delete process.env.MLXQ_DEQUANT_BLOCK_ELEMENTS;
    else process.env.MLXQ_DEQUANT_BLOCK_ELEMENTS = String(blockElements);
    const m = await loadModel(path, { ...options, lora: { rank: 8, alpha: 16, targets } });
    try {
      const params = await m.native.loraParameters();
      const seeded: Record<string, Tensor> = {};
      let seed = 1;
      for (const [name, p] of Object.entries(params)) {
        seeded[name] = await tensor(seededFloats(p.shape.reduce((x, y) => x * y, 1), seed++).map((v) => v * 0.05), p.shape);
        p.dispose();
      }
      await m.native.setLoraParameters(seeded);
      for (const t of Object.values(seeded)) t.dispose();
      const logits = await logitsOf(m);
      const { loss, grads } = await m.native.lossAndGrads(batch, { checkpoint: true });
      const gradValues: Record<string, Float32Array> = {};
      for (const [name, g] of Object.entries(grads)) gradValues[name] = await values(g);
      const down = await values(await m.native.denseWeight('model.layers.0.mlp.down_proj.weight'));
      return { logits, loss, grads: gradValues, down };
    } finally {
      m.dispose();
    }
  }

  const attentionOnly: readonly LoraTarget[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];
  it.each([
    ['Q4_0 GGUF (4-bit, float16 scales)', 'gguf', {}, 'all-linear'],
    ['HF folder quantized to 6 bits (float32 scales)', 'hf', { quantization: { bits: 6, groupSize: 32 } }, 'all-linear'],
    // A frozen MLP goes in blocks of its intermediate features (blocked_mlp.cc): at 4096 elements
    // 64 of its 256 (4 blocks), at 1024 its group size, 32 (8 blocks); backward by the same blocks.
    ['Q4_0 GGUF, adapters on attention only (the MLP in blocks)', 'gguf', {}, attentionOnly],
    ['HF folder at 6 bits, adapters on attention only (the MLP in blocks)', 'hf', { quantization: { bits: 6, groupSize: 32 } }, attentionOnly],
  ] as const)('%s: the logits, LoRA gradients and dense weights of whole dequantization', async (_label, source, options, targets) => {
    const path = source === 'gguf' ? tiny.ggufPath : tiny.hfDir;
    const whole = await outputs(path, options, undefined, targets);
    // 4096 elements: 32 rows of the 128-wide projections per block (4 at 6 bits), so every
    // projection is split, forward by rows and backward by columns; the loss takes the head's
    // 300 rows in vocabulary blocks of 256 (then 44). At 1024: blocks of 64 rows, the last of 44.
    for (const blockElements of [4096, 1024]) {
      const blocked = await outputs(path, options, blockElements, targets);
      expect(relativeError(blocked.logits, whole.logits)).toBeLessThan(1e-6);
      expect(Math.abs(blocked.loss - whole.loss) / Math.abs(whole.loss)).toBeLessThan(1e-6);
      expect(Object.keys(blocked.grads)).toEqual(Object.keys(whole.grads));
      for (const [name, g] of Object.entries(whole.grads)) expect(relativeError(blocked.grads[name]!, g), name).toBeLessThan(1e-5);
      expect([...blocked.down]).toEqual([...whole.down]);
    }
  }, 180_000);
});

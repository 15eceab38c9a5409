/**
 * The fused step (q/k/v and gate/up as one matmul each over concatenated base weights, the LoRA
 * A's of a group in one matmul and added by addmm, SwiGLU with a hand-written gradient and the
 * loss's one-exp softmax gradient as compiled closures, causal attention in query blocks) against the plain per-op step (all three build switches off) on the
 * same random weights: logits, loss and every LoRA gradient, for a dense and a 4-bit base, packed
 * rows with segments, with and without gradient checkpointing and with LoRA dropout. Generation
 * through the fused model is checked against llama.cpp in generation.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NativeBatch, NativeModel, NativeModelConfig } from '../../lib/native.js';
import { toTypedArray } from '../../lib/tensor.js';
import { randomModel } from '../../bench/random-model.js';
import { packedBatch, randomAdapters, unfused, type FusionOptions } from '../../bench/step-profile.js';

const config: NativeModelConfig = {
  vocabSize: 700,
  hiddenSize: 64,
  intermediateSize: 128,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 16,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  ropeTraditional: false,
  ropePositionScale: 1,
  tieWordEmbeddings: false,
  attentionBias: false,
};
/**
 * Float rounding only: the fused matmuls sum the same products in other BLAS blockings, addmm
 * scales x·A·B before adding rather than after, and a query block's softmax runs over fewer
 * (all masked) keys; relative to each tensor's largest entry, in float32 over ~100-token sums.
 */
const RTOL = 1e-5;
/** 3 query blocks of 40, 40 and 16 rows over 96 positions: one block ends mid-document. */
const fused: FusionOptions = { fuseProjections: true, compileElementwise: true, attentionQueryBlock: 40 };
const batch: NativeBatch = packedBatch(2, 96, config.vocabSize, 11, 50);

async function pair(bits: number, dropout = 0, fast: FusionOptions = fused): Promise<[NativeModel, NativeModel]> {
  const options = {
    bits,
    groupSize: 32,
    kernel: 'dequantize-matmul' as const,
    lora: { rank: 4, alpha: 8, dropout, targets: 'all-linear' as const },
    packedDirectly: false,
  };
  const plain = await randomModel(config, { ...options, build: unfused });
  const other = await randomModel(config, { ...options, build: fast });
  await randomAdapters(plain, 3);
  await randomAdapters(other, 3);
  return [plain, other];
}

async function floats(t: { dispose(): void }): Promise<Float32Array> {
  const out = (await toTypedArray(t as never)) as Float32Array;
  t.dispose();
  return out;
}

/** Largest |a − b| relative to b's largest entry. */
function relativeError(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
}

async function gradients(model: NativeModel, checkpoint: boolean, dropoutSeed?: number) {
  const r = await model.lossAndGrads(batch, dropoutSeed === undefined ? { checkpoint } : { checkpoint, dropoutSeed });
  const grads = new Map<string, Float32Array>();
  for (const [name, g] of Object.entries(r.grads)) grads.set(name, await floats(g));
  return { loss: r.loss, grads };
}

async function expectSameStep(plain: NativeModel, fast: NativeModel, checkpoint: boolean, dropoutSeed?: number) {
  const a = await gradients(plain, checkpoint, dropoutSeed);
  const b = await gradients(fast, checkpoint, dropoutSeed);
  expect(Math.abs(b.loss - a.loss) / Math.abs(a.loss)).toBeLessThan(RTOL);
  expect([...b.grads.keys()]).toEqual([...a.grads.keys()]);
  for (const [name, g] of a.grads) {
    const rel = relativeError(b.grads.get(name)!, g);
    if (!(rel < RTOL)) throw new Error(`${name}: relative error ${rel}`);
  }
}

// Blocked attention has two backward passes: MLX's own (small scores) and a hand-written one that
// recomputes each block's softmax (large scores; forced here by a threshold of one byte).
describe.each([
  ['blocks differentiated by MLX', undefined],
  ['blocks with their own backward pass', '1'],
] as const)('fused projections, compiled SwiGLU and blocked attention (%s)', (_label, vjpBytes) => {
  const models: NativeModel[] = [];
  beforeAll(() => {
    if (vjpBytes === undefined) delete process.env.MLXQ_ATTENTION_VJP_BYTES;
    else process.env.MLXQ_ATTENTION_VJP_BYTES = vjpBytes;
  });
  afterAll(() => {
    models.forEach((m) => m.dispose());
    delete process.env.MLXQ_ATTENTION_VJP_BYTES;
  });

  for (const bits of [0, 4]) {
    const base = bits === 0 ? 'dense base' : '4-bit base';
    it(`gives the plain step's logits, loss and LoRA gradients: ${base}, packed rows`, async () => {
      const [plain, fast] = await pair(bits);
      models.push(plain, fast);
      const la = await floats(await plain.logits(batch));
      const lb = await floats(await fast.logits(batch));
      expect(relativeError(lb, la)).toBeLessThan(RTOL);
      await expectSameStep(plain, fast, false);
      await expectSameStep(plain, fast, true);
    });

    it(`keeps one copy of the base, the projections as views of the fused weights: ${base}`, async () => {
      const [plain, fast] = await pair(bits);
      models.push(plain, fast);
      expect((await fast.info()).baseBytes).toBe((await plain.info()).baseBytes);
      for (const p of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'mlp.gate_proj', 'mlp.up_proj']) {
        const name = `model.layers.1.${p}.weight`;
        await plain.setLoraEnabled(false);
        await fast.setLoraEnabled(false);
        expect(await floats(await fast.denseWeight(name))).toEqual(await floats(await plain.denseWeight(name)));
      }
    });
  }

  it('gives the plain step as one compiled closure (compileStep), checkpointed or not, with dropout', async () => {
    const [plain, compiled] = await pair(4, 0.2, { ...fused, compileStep: true });
    models.push(plain, compiled);
    await expectSameStep(plain, compiled, false);
    await expectSameStep(plain, compiled, true);
    await expectSameStep(plain, compiled, false, 17);
    // A second call replays the cached trace.
    await expectSameStep(plain, compiled, false);
  }, 600_000);

  it('gives the plain step with LoRA dropout (each projection its own mask)', async () => {
    const [plain, fast] = await pair(4, 0.2);
    models.push(plain, fast);
    await expectSameStep(plain, fast, false, 17);
    await expectSameStep(plain, fast, true, 17);
  });
});

/**
 * The chunked LM head + cross-entropy (a custom VJP that never holds more than one chunk of
 * logits) against the whole-logits loss it replaces: loss, evaluation loss and every LoRA
 * gradient, for a 4-bit head under both kernels, for a tied dense embedding, and for a head large
 * enough to go vocabulary block by vocabulary block (vocab_blocked_loss.cc; here made "large" by
 * shrinking the dequantization block), with chunk sizes that split the tokens unevenly. A small model keeps this a test (seconds); the benchmark
 * (`npm run bench -- profile`) makes the same comparison on the 60M reference model.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { clearCache, memory, resetPeakMemory } from '../../lib/device.js';
import type { NativeBatch, NativeModelConfig } from '../../lib/native.js';
import { toTypedArray } from '../../lib/tensor.js';
import { randomModel } from '../../bench/random-model.js';
import { packedBatch, profiling, randomAdapters, type ProfilingModel } from '../../bench/step-profile.js';

const config: NativeModelConfig = {
  vocabSize: 3000,
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
/** Float rounding only: a sum over ~100 tokens and matmuls of the same rows in other blockings. */
const RTOL = 1e-5;

const batch: NativeBatch = packedBatch(2, 48, config.vocabSize, 21, 30);

interface Step {
  loss: number;
  evalLoss: number;
  grads: Map<string, Float32Array>;
}

async function step(model: ProfilingModel, chunk: number, checkpoint = false): Promise<Step> {
  await model.setLossChunkTokens(chunk);
  const r = await model.lossAndGrads(batch, { checkpoint });
  const grads = new Map<string, Float32Array>();
  for (const [name, g] of Object.entries(r.grads)) {
    grads.set(name, (await toTypedArray(g)) as Float32Array);
    g.dispose();
  }
  const evalLoss = (await model.loss(batch)).loss;
  return { loss: r.loss, evalLoss, grads };
}

function maxAbs(a: Float32Array): number {
  return a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
}

/** Largest |a − b| over a gradient, relative to that gradient's largest entry. */
function relativeError(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst / maxAbs(b);
}

const cases = [
  { name: '4-bit head, dequantize + matmul', tie: false, kernel: 'dequantize-matmul' as const },
  { name: '4-bit head, quantized_matmul', tie: false, kernel: 'quantized-matmul' as const },
  { name: 'tied dense embedding as head', tie: true, kernel: 'dequantize-matmul' as const },
  // Blocks of 16384 elements: the 3000 × 64 head is "large", and 96 tokens take it in vocabulary
  // blocks of 341 rows (8 of them, then 272), each folded into a running log-sum-exp.
  { name: '4-bit head in vocabulary blocks', tie: false, kernel: 'dequantize-matmul' as const, blockElements: 16384 },
];

describe('chunked LM head + cross-entropy', () => {
  const models: ProfilingModel[] = [];
  afterAll(() => {
    models.forEach((m) => m.dispose());
    delete process.env.MLXQ_DEQUANT_BLOCK_ELEMENTS;
  });

  for (const c of cases) {
    it(`equals the whole-logits loss and LoRA gradients: ${c.name}`, async () => {
      if (c.blockElements) process.env.MLXQ_DEQUANT_BLOCK_ELEMENTS = String(c.blockElements);
      else delete process.env.MLXQ_DEQUANT_BLOCK_ELEMENTS;
      const model = profiling(
        await randomModel(
          { ...config, tieWordEmbeddings: c.tie },
          { bits: 4, groupSize: 32, kernel: c.kernel, lora: { rank: 4, alpha: 8, targets: 'all-linear' }, packedDirectly: false },
        ),
      );
      models.push(model);
      await randomAdapters(model, 77);
      const whole = await step(model, 0);
      // 96 tokens: chunks of 37 (37 + 37 + 22), of 1 and the automatic size (699 tokens: one chunk).
      // With gradient checkpointing too (blocks recomputed in the backward pass).
      for (const [chunk, checkpoint] of [[37, false], [1, false], [-1, false], [37, true]] as const) {
        const chunked = await step(model, chunk, checkpoint);
        expect(Math.abs(chunked.loss - whole.loss) / whole.loss).toBeLessThan(RTOL);
        expect(Math.abs(chunked.evalLoss - whole.evalLoss) / whole.evalLoss).toBeLessThan(RTOL);
        expect([...chunked.grads.keys()]).toEqual([...whole.grads.keys()]);
        for (const [name, g] of whole.grads) {
          expect(maxAbs(g), name).toBeGreaterThan(0);
          expect(relativeError(chunked.grads.get(name)!, g), `${name}, chunk ${chunk}, checkpoint ${checkpoint}`).toBeLessThan(RTOL);
        }
      }
      // The loss is a real cross-entropy over the supervised tokens: near ln(vocab) at random init.
      const supervised = batch.mask!.reduce((s, x) => s + x, 0);
      expect(whole.loss / supervised).toBeGreaterThan(Math.log(config.vocabSize) - 1.5);
      expect(whole.loss / supervised).toBeLessThan(Math.log(config.vocabSize) + 1.5);
    }, 120_000);
  }

  it('holds a few chunks of logits, not [tokens, vocab] of them and their gradient', async () => {
    // 1024 tokens × 32000 vocabulary: 125 MiB of float32 logits, as much again for their gradient;
    // a narrow one-layer model keeps everything else small.
    const wide = { ...config, vocabSize: 32000, numLayers: 1 };
    const model = profiling(
      await randomModel(wide, { bits: 4, groupSize: 32, kernel: 'dequantize-matmul', lora: { rank: 4, alpha: 8, targets: 'all-linear' }, packedDirectly: false }),
    );
    models.push(model);
    const big = packedBatch(2, 512, wide.vocabSize, 5, 100);
    const logitsBytes = 1024 * wide.vocabSize * 4;
    const peakRise = async (chunk: number): Promise<number> => {
      await model.setLossChunkTokens(chunk);
      await clearCache();
      const held = (await memory()).active;
      await resetPeakMemory();
      const r = await model.lossAndGrads(big);
      const peak = (await memory()).peak;
      for (const g of Object.values(r.grads)) g.dispose();
      return peak - held;
    };
    const whole = await peakRise(0);
    const chunked = await peakRise(-1);
    expect(whole).toBeGreaterThan(2 * logitsBytes);
    // Chunks of 65 tokens, about two alive at once with their temporaries, and the model's own
    // activations (measured: 220 MB against 458 MB; 385 MB with unchained 262-token chunks).
    expect(chunked).toBeLessThan(0.6 * whole);
  }, 120_000);

  it('rejects a chunk size below -1', async () => {
    const model = models[0]!;
    expect(() => model.setLossChunkTokens(-2)).toThrow(/'tokens' must be an integer >= -1/);
  });
});

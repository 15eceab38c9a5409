/**
 * profileStep: the forward pass evaluated phase by phase must be the same step (same loss as
 * lossAndGrads), every op class of every block must be charged once per occurrence, and the probe
 * must be gone afterwards.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { NativeModelConfig } from '../../lib/native.js';
import { randomModel } from '../../bench/random-model.js';
import { packedBatch, profiling, randomAdapters, type ProfilingModel } from '../../bench/step-profile.js';

const layers = 3;
const config: NativeModelConfig = {
  vocabSize: 1000,
  hiddenSize: 64,
  intermediateSize: 128,
  numLayers: layers,
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
const batch = packedBatch(2, 40, config.vocabSize, 9, 20);

describe('profileStep', () => {
  let model: ProfilingModel | undefined;
  afterAll(() => model?.dispose());

  it('charges each op class once per occurrence and computes the same step', async () => {
    model = profiling(
      await randomModel(config, { bits: 4, groupSize: 32, kernel: 'dequantize-matmul', lora: { rank: 4, alpha: 8, targets: 'all-linear' }, packedDirectly: false }),
    );
    await randomAdapters(model, 3);
    for (const chunk of [-1, 0]) {
      await model.setLossChunkTokens(chunk);
      const expected = await model.lossAndGrads(batch);
      for (const g of Object.values(expected.grads)) g.dispose();
      const p = await model.profileStep(batch);
      expect(Math.abs(p.loss - expected.loss) / expected.loss).toBeLessThan(1e-6);
      expect(p.tokens).toBe(expected.tokens);
      const calls = Object.fromEntries(p.phases.map((x) => [x.name, x.calls]));
      const head = chunk === 0 ? { 'LM head': 1, loss: 1 } : { 'LM head and loss (chunked)': 1 };
      expect(calls).toEqual({
        'host: graph building': 0,
        'mask and RoPE tables': 1,
        embedding: 1,
        norms: 2 * layers + 1,
        'attention projections (base)': 4 * layers,
        'LoRA branches': 7 * layers,
        RoPE: layers,
        'attention (scores, softmax, values)': layers,
        'residual adds': 2 * layers,
        'MLP projections (base)': 3 * layers,
        SwiGLU: layers,
        ...head,
        backward: 1,
      });
      for (const x of p.phases) expect(x.seconds).toBeGreaterThanOrEqual(0);
      expect(p.wholeStepSeconds).toBeGreaterThan(0);
      expect(p.wholeStepPeakBytes).toBeGreaterThan(0);
      // The probe is uninstalled: a plain step afterwards gives the same loss.
      const after = await model.lossAndGrads(batch);
      for (const g of Object.values(after.grads)) g.dispose();
      expect(after.loss).toBe(expected.loss);
    }
  }, 120_000);
});

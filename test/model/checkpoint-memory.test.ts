/**
 * Gradient checkpointing trades compute for memory: each decoder block keeps only its input and
 * recomputes its activations in the backward pass. On a model whose activations dwarf its weights
 * (12 layers, 4 × 256 tokens, 4 heads of 256² attention scores per row), the peak memory of one
 * loss-and-gradients step must fall, and the gradients must not change.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clearCache, memory, resetPeakMemory } from '../../lib/device.js';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import { disposeAll, tensor, toTypedArray, type Tensor } from '../../lib/tensor.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { createRng } from '../fixtures/rng.js';
import { nextTokenBatch } from '../helpers/batches.js';
import { relativeError, seededFloats } from '../helpers/reference.js';

interface Step {
  /** Peak bytes above what was held before the step. */
  peak: number;
  loss: number;
  grads: Map<string, Float32Array>;
}

async function measuredStep(model: LoadedModel, batch: ReturnType<typeof nextTokenBatch>, checkpoint: boolean): Promise<Step> {
  await clearCache();
  const before = (await memory()).active;
  await resetPeakMemory();
  const r = await model.native.lossAndGrads(batch, { checkpoint });
  const peak = (await memory()).peak - before;
  const grads = new Map<string, Float32Array>();
  for (const [name, t] of Object.entries(r.grads)) grads.set(name, (await toTypedArray(t)) as Float32Array);
  disposeAll(Object.values(r.grads));
  return { peak, loss: r.loss, grads };
}

describe('gradient checkpointing', () => {
  let tiny: TinyModel;
  let model: LoadedModel;
  const rng = createRng(17);
  const rows = Array.from({ length: 4 }, () => Array.from({ length: 257 }, () => rng.int(3, 299)));
  const batch = nextTokenBatch(rows);

  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 12, hidden: 128, heads: 4, kvHeads: 2, intermediate: 256, vocab: 300, seed: 8 });
    model = await loadModel(tiny.hfDir, { quantization: 'none', lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'down_proj'], seed: 1 } });
    // Non-zero B, so every A gets a gradient to compare.
    const params = await model.native.loraParameters();
    const updates: Record<string, Tensor> = {};
    let seed = 70;
    for (const [name, p] of Object.entries(params)) {
      if (name.endsWith('lora_b')) updates[name] = await tensor(seededFloats(p.shape[0]! * p.shape[1]!, seed++).map((v) => v * 0.1), p.shape);
    }
    await model.native.setLoraParameters(updates);
    disposeAll(Object.values(updates), Object.values(params));
  }, 120_000);
  afterAll(async () => {
    model?.dispose();
    await tiny?.cleanup();
  });

  it('lowers the peak memory of a step at least 2x and leaves loss and gradients as they were', async () => {
    const info = await model.native.info();
    // Warm-up, so one-off allocations do not count against the first measured step.
    await measuredStep(model, batch, false);
    const plain = await measuredStep(model, batch, false);
    const checkpointed = await measuredStep(model, batch, true);
    const again = await measuredStep(model, batch, false);
    // The measurement is stable: the same step twice peaks within 10%.
    expect(Math.abs(again.peak - plain.peak) / plain.peak).toBeLessThan(0.1);
    // Activations dominate: the plain step's peak is many times the weights it holds.
    expect(plain.peak).toBeGreaterThan(5 * (info.baseBytes + info.loraBytes));
    expect(checkpointed.peak, `peak ${checkpointed.peak} B with checkpointing, ${plain.peak} B without`).toBeLessThan(plain.peak / 2);
    expect(Math.abs(checkpointed.loss - plain.loss) / plain.loss).toBeLessThan(1e-6);
    for (const [name, g] of plain.grads) expect(relativeError(checkpointed.grads.get(name)!, g), name).toBeLessThan(1e-5);
  });

  it('nested runs of blocks (each block checkpointed inside a checkpointed run) give the same loss and gradients', async () => {
    const single = await measuredStep(model, batch, true);
    // Any inputs count as large: runs of ⌈√12⌉ = 4 blocks, each recomputed, then each block again.
    process.env.MLXQ_CHECKPOINT_NEST_BYTES = '1';
    try {
      const nested = await measuredStep(model, batch, true);
      expect(nested.loss).toBe(single.loss);
      expect([...nested.grads.keys()]).toEqual([...single.grads.keys()]);
      for (const [name, g] of single.grads) expect(relativeError(nested.grads.get(name)!, g), name).toBeLessThan(1e-6);
    } finally {
      delete process.env.MLXQ_CHECKPOINT_NEST_BYTES;
    }
  });
});

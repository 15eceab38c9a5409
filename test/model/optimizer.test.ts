import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clearCache, memory, resetPeakMemory } from '../../lib/device.js';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import type { NativeBatch } from '../../lib/native.js';
import { nextTokenBatch } from '../helpers/batches.js';
import { disposeAll, tensor, toTypedArray, type Tensor } from '../../lib/tensor.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { ADAMW_MISTAKES, ReferenceAdamW, globalNorm, type AdamWOptions } from '../helpers/reference-adamw.js';
import { relativeError, seededFloats } from '../helpers/reference.js';

const rows = [
  [1, 17, 42, 5, 260, 99, 3, 77, 150],
  [1, 8, 201, 64, 33, 9],
  [1, 250, 251, 252, 7, 7, 7, 19, 20, 21, 22],
  [1, 90, 91],
];

const batchOf = (rs: number[][]) => nextTokenBatch(rs, 1);

async function snapshot(model: LoadedModel): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, t] of Object.entries(await model.native.loraParameters())) {
    out.set(name, (await toTypedArray(t)) as Float32Array);
    t.dispose();
  }
  return out;
}

function maxRelDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let num = 0;
  let den = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    for (let i = 0; i < x.length; i++) {
      num = Math.max(num, Math.abs(x[i]! - y[i]!));
      den = Math.max(den, Math.abs(x[i]!));
    }
  }
  return num / den;
}

/**
 * β2 = 0.99 keeps bias correction large over six steps (1 − β2⁶ ≈ 0.06); ε = 1e-3 is near the
 * corrected √v of most coordinates, so where ε is added (√v̂ + ε, not √v + ε) shows; decay 0.2 makes
 * the decoupled term lr·wd·p a visible share of each step.
 */
const ADAMW = { learningRate: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-3, weightDecay: 0.2 } as const;

function toFloat32(params: Map<string, Float64Array>): Map<string, Float32Array> {
  return new Map([...params].map(([name, v]) => [name, Float32Array.from(v)]));
}

/** ‖p − ref‖ / ‖ref − p₀‖ over all parameters. */
function updateError(p: Map<string, Float32Array>, ref: Map<string, Float64Array>, p0: Map<string, Float32Array>): number {
  let num = 0;
  let den = 0;
  for (const [name, r] of ref) {
    const x = p.get(name)!;
    const x0 = p0.get(name)!;
    for (let i = 0; i < r.length; i++) {
      num += (x[i]! - r[i]!) ** 2;
      den += (r[i]! - x0[i]!) ** 2;
    }
  }
  return Math.sqrt(num / den);
}

describe('gradient accumulation and AdamW', () => {
  let tiny: TinyModel;
  const open = async (): Promise<LoadedModel> => {
    const m = await loadModel(tiny.hfDir, { quantization: 'none', lora: { rank: 4, alpha: 8, targets: 'all-linear', seed: 2 } });
    // Non-zero B so every parameter gets a gradient from the first step.
    const params = await m.native.loraParameters();
    const updates: Record<string, Tensor> = {};
    let seed = 40;
    for (const [name, t] of Object.entries(params)) {
      if (name.endsWith('lora_b')) updates[name] = await tensor(seededFloats(t.shape[0]! * t.shape[1]!, seed++).map((v) => v * 0.05), t.shape);
    }
    await m.native.setLoraParameters(updates);
    return m;
  };
  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 13 });
  });
  afterAll(async () => tiny?.cleanup());

  it('batch 4 × accumulation 1 and batch 1 × accumulation 4 give the same update', async () => {
    const a = await open();
    const b = await open();
    try {
      // Summed-loss gradients: one batch of 4 rows against the sum of the 4 rows alone.
      const whole4 = await a.native.lossAndGrads(batchOf(rows));
      const parts = await Promise.all(rows.map((r) => a.native.lossAndGrads(batchOf([r]))));
      let gNum = 0;
      let gDen = 0;
      for (const name of Object.keys(whole4.grads)) {
        const w = (await toTypedArray(whole4.grads[name]!)) as Float32Array;
        const sum = new Float64Array(w.length);
        for (const p of parts) ((await toTypedArray(p.grads[name]!)) as Float32Array).forEach((v, i) => (sum[i]! += v));
        w.forEach((v, i) => {
          gNum += (v - sum[i]!) ** 2;
          gDen += v * v;
        });
      }
      expect(Math.sqrt(gNum / gDen)).toBeLessThan(1e-5);
      // AdamW's first step is nearly sign(g) where |g| is tiny next to ε, which magnifies float
      // rounding of near-zero gradients; ε = 1e-4 keeps the comparison about accumulation.
      const options = { learningRate: 1e-2, weightDecay: 0.01, maxGradNorm: 1, eps: 1e-4 };
      const start = await snapshot(a);
      const whole = await a.native.accumulateGradients(batchOf(rows));
      const ra = await a.native.applyOptimizer(options);
      let tokens = 0;
      for (const r of rows) tokens += (await b.native.accumulateGradients(batchOf([r]))).tokens;
      const rb = await b.native.applyOptimizer(options);
      expect(tokens).toBe(whole.tokens);
      expect(rb.tokens).toBe(ra.tokens);
      expect(Math.abs(rb.lossSum - ra.lossSum) / ra.lossSum).toBeLessThan(1e-5);
      expect(Math.abs(rb.gradNorm - ra.gradNorm) / ra.gradNorm).toBeLessThan(1e-5);
      // The updates, compared as vectors: ‖Δa − Δb‖ / ‖Δa‖.
      const pa = await snapshot(a);
      const pb = await snapshot(b);
      let num = 0;
      let den = 0;
      for (const [name, p0] of start) {
        for (let i = 0; i < p0.length; i++) {
          const da = pa.get(name)![i]! - p0[i]!;
          const db = pb.get(name)![i]! - p0[i]!;
          num += (da - db) ** 2;
          den += da ** 2;
        }
      }
      expect(Math.sqrt(num / den)).toBeLessThan(1e-5);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('six AdamW steps (bias correction, ε, decoupled decay, clipping) follow a float64 AdamW', async () => {
    const m = await open();
    try {
      const start = await snapshot(m);
      const reference = new ReferenceAdamW(start);
      const controls = ADAMW_MISTAKES.map((mistake) => ({ mistake, adamw: new ReferenceAdamW(start, mistake) }));
      for (let step = 0; step < 6; step++) {
        const batch = batchOf(rows.slice(step % 3, (step % 3) + 2));
        // The gradients the update will use, read first: the optimizer divides the summed
        // gradients by the supervised token count.
        const probe = await m.native.lossAndGrads(batch);
        const g = new Map<string, Float64Array>();
        for (const [name, t] of Object.entries(probe.grads)) g.set(name, Float64Array.from((await toTypedArray(t)) as Float32Array, (v) => v / probe.tokens));
        disposeAll(Object.values(probe.grads));
        const norm = globalNorm(g);
        // Clipping off for three steps, then on at half the gradient norm.
        const options: AdamWOptions = { ...ADAMW, maxGradNorm: step < 3 ? 0 : norm / 2 };
        await m.native.accumulateGradients(batch);
        const r = await m.native.applyOptimizer(options);
        expect(r.step).toBe(step + 1);
        expect(Math.abs(r.gradNorm - norm) / norm).toBeLessThan(1e-5);
        reference.step(g, options);
        for (const c of controls) c.adamw.step(g, options);
      }
      const got = await snapshot(m);
      // ‖p − p_ref‖ / ‖p_ref − p₀‖: float32 arithmetic over six steps gives ~3e-7 (measured).
      const error = updateError(got, reference.params, start);
      expect(error).toBeLessThan(1e-5);
      // Each mistake moves the parameters by far more than that, so the bound can see it.
      for (const c of controls) expect(updateError(toFloat32(c.adamw.params), reference.params, start), c.mistake).toBeGreaterThan(100 * Math.max(error, 1e-5));
      // The stored moments are the uncorrected running averages.
      const state = await m.native.optimizerState();
      expect(state.step).toBe(6);
      for (const [name, mRef] of reference.m) {
        expect(relativeError((await toTypedArray(state.tensors[`m.${name}`]!)) as Float32Array, mRef), `m.${name}`).toBeLessThan(1e-4);
        expect(relativeError((await toTypedArray(state.tensors[`v.${name}`]!)) as Float32Array, reference.v.get(name)!), `v.${name}`).toBeLessThan(1e-4);
      }
      disposeAll(Object.values(state.tensors));
    } finally {
      m.dispose();
    }
  });

  it('a non-finite gradient skips the update and leaves the parameters alone', async () => {
    const m = await open();
    try {
      const params = await m.native.loraParameters();
      const [name, t] = Object.entries(params).find(([n]) => n.endsWith('lora_a'))!;
      const poisoned = (await toTypedArray(t)) as Float32Array;
      poisoned[0] = Number.NaN;
      await m.native.setLoraParameters({ [name]: await tensor(poisoned, t.shape) });
      const before = await snapshot(m);
      await m.native.accumulateGradients(batchOf(rows));
      const r = await m.native.applyOptimizer({ learningRate: 1e-2 });
      expect(r.skipped).toBe(true);
      expect(r.step).toBe(0);
      const after = await snapshot(m);
      for (const [n, v] of before) expect(Buffer.from(after.get(n)!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
    } finally {
      m.dispose();
    }
  });

  it('optimizer state round-trips: a restored model takes the identical next step', async () => {
    const a = await open();
    const b = await open();
    try {
      const options = { learningRate: 5e-3, weightDecay: 0.01 };
      for (let s = 0; s < 2; s++) {
        await a.native.accumulateGradients(batchOf(rows.slice(s, s + 2)));
        await a.native.applyOptimizer(options);
      }
      const state = await a.native.optimizerState();
      expect(state.step).toBe(2);
      await b.native.setLoraParameters(await a.native.loraParameters());
      await b.native.setOptimizerState(state.tensors, state.step);
      await a.native.accumulateGradients(batchOf(rows));
      await b.native.accumulateGradients(batchOf(rows));
      const ra = await a.native.applyOptimizer(options);
      const rb = await b.native.applyOptimizer(options);
      expect(rb.step).toBe(3);
      expect(rb.lossSum).toBe(ra.lossSum);
      expect(maxRelDiff(await snapshot(a), await snapshot(b))).toBe(0);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('updates parameter by parameter: the peak is the moments and one parameter\'s temporaries', async () => {
    // 8 layers × 7 targets × rank 32: 112 parameters, none over 3% of the adapter.
    const big = await makeTinyModel({ layers: 8, hidden: 128, heads: 4, kvHeads: 2, intermediate: 256, vocab: 300, seed: 5 });
    const m = await loadModel(big.hfDir, { quantization: 'none', lora: { rank: 32, alpha: 64, targets: 'all-linear', seed: 3 } });
    try {
      const lora = (await m.native.info()).loraBytes;
      const peakOfUpdate = async (): Promise<number> => {
        await m.native.accumulateGradients(batchOf(rows));
        await clearCache();
        const before = (await memory()).active;
        await resetPeakMemory();
        await m.native.applyOptimizer({ learningRate: 1e-3 });
        return (await memory()).peak - before;
      };
      // The first update makes both moments (2 × the adapter). One graph over every parameter,
      // with every scaled gradient kept for it, peaked at 3.2 × the adapter.
      const first = await peakOfUpdate();
      expect(first, `first update peaked ${first} B over an adapter of ${lora} B`).toBeLessThan(2.5 * lora);
      const second = await peakOfUpdate();
      expect(second, `second update peaked ${second} B over an adapter of ${lora} B`).toBeLessThan(0.5 * lora);
    } finally {
      m.dispose();
      await big.cleanup();
    }
  }, 120_000);
});

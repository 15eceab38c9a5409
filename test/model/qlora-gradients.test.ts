/**
 * QLoRA: LoRA adapters over a 4-bit base. The dense-base tests (gradients.test.ts) cannot see a
 * backward pass that goes wrong only through quantized weights, so here the LoRA gradients of a
 * 4-bit model are checked against central differences of that model's own loss, for both kernels
 * a quantized linear can use, and a 4-bit model must learn a small memorisation task.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import type { NativeBatch } from '../../lib/native.js';
import { disposeAll, tensor, toTypedArray, type Tensor } from '../../lib/tensor.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { nextTokenBatch } from '../helpers/batches.js';
import { seededFloats } from '../helpers/reference.js';

const QUANT = { bits: 4, groupSize: 32 };
const LORA = { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'o_proj', 'down_proj'] as const, seed: 3 };
const seq = [1, 17, 42, 5, 260, 99, 3, 77, 150, 8, 201, 64, 33];
const batch = nextTokenBatch([seq, [...seq].reverse()], 2);

/**
 * Step and tolerance. The loss is a float32 sum over 22 tokens (≈ 130): each evaluation carries
 * rounding noise of a few ulps of 130 (≈ 1e-5) plus the forward pass's own rounding, which a
 * central difference divides by 2h. A large step keeps that small (h = 3e-2: a few 1e-4 in the
 * derivative); the O(h²) truncation error a large step brings is removed by Richardson
 * extrapolation over h and h/2, leaving O(h⁴). Measured: |analytic − numeric| ≤ 0.22 of the bound
 * RTOL·|g| + ATOL on every coordinate, for both kernels. The dense base's gradient (a backward pass
 * through the unquantized weights) is 2-108 bounds away, so a bound this tight can tell them apart.
 */
const H = 3e-2;
const RTOL = 5e-3;
const ATOL = 2e-3;

async function values(t: Tensor): Promise<Float32Array> {
  return (await toTypedArray(t)) as Float32Array;
}

/** Seeded non-zero A and B (B = 0 would leave every A without a gradient). */
async function setAdapters(model: LoadedModel): Promise<Map<string, { values: Float32Array; shape: number[] }>> {
  const params = await model.native.loraParameters();
  const set = new Map<string, { values: Float32Array; shape: number[] }>();
  const updates: Record<string, Tensor> = {};
  let seed = 500;
  for (const [name, p] of Object.entries(params)) {
    const v = seededFloats(p.shape[0]! * p.shape[1]!, seed++).map((x) => x * 0.2);
    set.set(name, { values: v, shape: p.shape });
    updates[name] = await tensor(v, p.shape);
  }
  await model.native.setLoraParameters(updates);
  disposeAll(Object.values(updates), Object.values(params));
  return set;
}

interface Coordinate {
  name: string;
  index: number;
}

/** Loss with one coordinate moved by `delta` from the set values (restored by the next call). */
async function lossAt(model: LoadedModel, set: Map<string, { values: Float32Array; shape: number[] }>, c: Coordinate, delta: number): Promise<number> {
  const { values: base, shape } = set.get(c.name)!;
  const moved = Float32Array.from(base);
  moved[c.index] = base[c.index]! + delta;
  const t = await tensor(moved, shape);
  await model.native.setLoraParameters({ [c.name]: t });
  t.dispose();
  return (await model.native.loss(batch)).loss;
}

/** Richardson-extrapolated central difference, in float64 from the float32 losses. */
async function numericDerivative(model: LoadedModel, set: Map<string, { values: Float32Array; shape: number[] }>, c: Coordinate): Promise<number> {
  const central = async (h: number) => ((await lossAt(model, set, c, h)) - (await lossAt(model, set, c, -h))) / (2 * h);
  const d1 = await central(H);
  const d2 = await central(H / 2);
  await lossAt(model, set, c, 0);
  return (4 * d2 - d1) / 3;
}

async function gradients(model: LoadedModel, b: NativeBatch): Promise<Map<string, Float32Array>> {
  const r = await model.native.lossAndGrads(b);
  const out = new Map<string, Float32Array>();
  for (const [name, t] of Object.entries(r.grads)) out.set(name, await values(t));
  disposeAll(Object.values(r.grads));
  return out;
}

/** In A and B of a few projections in both layers: the largest-gradient coordinate and a seeded one. */
function coordinatesToCheck(grads: Map<string, Float32Array>): Coordinate[] {
  const names = ['model.layers.0.self_attn.q_proj.lora_a', 'model.layers.0.mlp.down_proj.lora_b', 'model.layers.1.self_attn.v_proj.lora_b', 'model.layers.1.self_attn.o_proj.lora_a'];
  const out: Coordinate[] = [];
  for (const [k, name] of names.entries()) {
    const g = grads.get(name);
    if (g === undefined) throw new Error(`no gradient for ${name}`);
    let largest = 0;
    g.forEach((v, i) => {
      if (Math.abs(v) > Math.abs(g[largest]!)) largest = i;
    });
    out.push({ name, index: largest }, { name, index: Math.floor(((seededFloats(1, 77 + k)[0]! + 1) / 2) * g.length) });
  }
  return out;
}

describe('QLoRA gradients on a 4-bit base match central differences of its loss', () => {
  let tiny: TinyModel;
  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 21 });
  });
  afterAll(async () => tiny?.cleanup());

  for (const kernel of ['dequantize-matmul', 'quantized-matmul'] as const) {
    it(`${kernel} kernel`, async () => {
      const q4 = await loadModel(tiny.hfDir, { quantization: QUANT, kernel, lora: { ...LORA, targets: [...LORA.targets] } });
      const dense = await loadModel(tiny.hfDir, { quantization: 'none', lora: { ...LORA, targets: [...LORA.targets] } });
      try {
        expect((await q4.native.info()).linearStorage).toEqual({ '4-bit g32': 14 });
        const set = await setAdapters(q4);
        await setAdapters(dense);
        const g = await gradients(q4, batch);
        const gDense = await gradients(dense, batch);
        let denseOutside = 0;
        for (const c of coordinatesToCheck(g)) {
          const analytic = g.get(c.name)![c.index]!;
          const numeric = await numericDerivative(q4, set, c);
          const bound = RTOL * Math.abs(numeric) + ATOL;
          expect(Math.abs(analytic - numeric), `${c.name}[${c.index}]: analytic ${analytic}, numeric ${numeric}`).toBeLessThan(bound);
          // Negative control: the dense base's gradient is the wrong answer here.
          if (Math.abs(gDense.get(c.name)![c.index]! - numeric) > bound) denseOutside++;
        }
        expect(denseOutside, 'coordinates where the dense-base gradient is outside the bound').toBeGreaterThanOrEqual(6);
      } finally {
        q4.dispose();
        dense.dispose();
      }
    });
  }
});

describe('QLoRA learns on a 4-bit base', () => {
  it('memorises two sequences with a frozen 4-bit base', async () => {
    const tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 22 });
    const model = await loadModel(tiny.hfDir, { quantization: QUANT, lora: { rank: 8, alpha: 16, targets: 'all-linear', seed: 4 } });
    try {
      expect((await model.native.info()).linearStorage).toEqual({ '4-bit g32': 14 });
      const rows = [
        [1, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54],
        [1, 200, 150, 100, 50, 25, 12, 6, 3, 250, 125, 60, 30, 15, 7, 280],
      ];
      const train = nextTokenBatch(rows);
      const probe = { shape: [1, rows[0]!.length] as [number, number], tokens: Int32Array.from(rows[0]!) };
      const baseBefore = await values(await model.native.logits(probe, { lora: false }));
      const perToken = async () => {
        const r = await model.native.loss(train);
        return r.loss / r.tokens;
      };
      const initial = await perToken();
      for (let step = 0; step < 40; step++) {
        await model.native.accumulateGradients(train);
        await model.native.applyOptimizer({ learningRate: 2e-2, weightDecay: 0 });
      }
      const final = await perToken();
      // Chance is ln 300 ≈ 5.7 nats a token; memorised, the 30 targets cost a small fraction of that.
      expect(initial).toBeGreaterThan(4);
      expect(final, `loss per token ${initial} → ${final}`).toBeLessThan(0.5);
      // The base stayed frozen: with the adapters switched off the logits are the same bits.
      const baseAfter = await values(await model.native.logits(probe, { lora: false }));
      expect(Buffer.from(baseAfter.buffer).equals(Buffer.from(baseBefore.buffer))).toBe(true);
      // And the adapters are what learned: with them on, every next token after the shared first is the argmax.
      const logits = await values(await model.native.logits(probe));
      for (let t = 1; t + 1 < rows[0]!.length; t++) {
        const row = logits.subarray(t * 300, (t + 1) * 300);
        expect(row.indexOf(Math.max(...row)), `position ${t}`).toBe(rows[0]![t + 1]);
      }
    } finally {
      model.dispose();
      await tiny.cleanup();
    }
  });
});

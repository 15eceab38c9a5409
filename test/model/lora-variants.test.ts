import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import { disposeAll, tensor, toTypedArray, type Tensor } from '../../lib/tensor.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { nextTokenBatch } from '../helpers/batches.js';
import { referenceLogits, type ReferenceConfig, type ReferenceLora } from '../helpers/llama-reference.js';
import { relativeError, seededFloats } from '../helpers/reference.js';

const seq = [1, 17, 42, 5, 260, 99, 3, 77, 150, 8, 201, 64, 33];
const rank = 4;
const alpha = 8;

async function logitsOf(model: LoadedModel, lora = true): Promise<Float32Array> {
  const t = await model.native.logits({ shape: [1, seq.length], tokens: Int32Array.from(seq) }, { lora });
  try {
    return (await toTypedArray(t)) as Float32Array;
  } finally {
    t.dispose();
  }
}

function referenceConfig(tiny: TinyModel): ReferenceConfig {
  const c = tiny.config;
  return { layers: c.layers, hidden: c.hidden, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, intermediate: c.intermediate, vocab: c.vocab, ropeTheta: c.ropeTheta, rmsNormEps: c.rmsNormEps, tiedEmbeddings: c.tiedEmbeddings };
}

/** Seeded values for every LoRA matrix (`zeroB` keeps B at zero); returns them as the reference's adapters. */
async function setAdapter(model: LoadedModel, scale: number, zeroB = false, bFactor = 1): Promise<ReferenceLora> {
  const params = await model.native.loraParameters();
  const updates: Record<string, Tensor> = {};
  const values = new Map<string, Float32Array>();
  let seed = 900;
  const r = Object.values(params)[0]!.shape[1]!;
  for (const [name, p] of Object.entries(params)) {
    const n = p.shape[0]! * p.shape[1]!;
    const isB = name.endsWith('lora_b');
    const v = zeroB && isB ? new Float32Array(n) : seededFloats(n, seed++).map((x) => x * 0.3 * (isB ? bFactor : 1));
    values.set(name, v);
    updates[name] = await tensor(v, p.shape);
  }
  await model.native.setLoraParameters(updates);
  disposeAll(Object.values(updates), Object.values(params));
  const adapters = new Map<string, { a: Float32Array; b: Float32Array; rank: number }>();
  for (const name of values.keys()) {
    if (!name.endsWith('.lora_a')) continue;
    const path = name.slice(0, -'.lora_a'.length);
    adapters.set(path, { a: values.get(name)!, b: values.get(`${path}.lora_b`)!, rank: r });
  }
  return { scale, adapters };
}

describe('LoRA scaling, dropout and tied embeddings against the float64 reference', () => {
  let tiny: TinyModel;
  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 31 });
  });
  afterAll(async () => tiny?.cleanup());

  // Rank 4 alone could not tell alpha/√r from, say, 2·alpha/r; 9 and 16 can.
  for (const r of [4, 9, 16]) {
    for (const rslora of [false, true]) {
      it(`rank ${r}: ${rslora ? 'rsLoRA scales by alpha/√r' : 'LoRA scales by alpha/r'}`, async () => {
        const model = await loadModel(tiny.hfDir, { quantization: 'none', lora: { rank: r, alpha, rslora, targets: ['q_proj', 'up_proj'] } });
        try {
          const scale = rslora ? alpha / Math.sqrt(r) : alpha / r;
          const lora = await setAdapter(model, scale);
          const cfg = referenceConfig(tiny);
          const got = await logitsOf(model);
          expect(relativeError(got, referenceLogits(cfg, tiny.weights, seq, { lora }))).toBeLessThan(1e-4);
          // The other scaling would be measurably off.
          const other = { ...lora, scale: rslora ? alpha / r : alpha / Math.sqrt(r) };
          expect(relativeError(got, referenceLogits(cfg, tiny.weights, seq, { lora: other }))).toBeGreaterThan(1e-3);
        } finally {
          model.dispose();
        }
      });
    }

    it(`rank ${r}: rsLoRA's adapter acts as plain LoRA's with B scaled by √r`, async () => {
      // alpha/√r = (alpha/r)·√r, and the branch is scale·(x·A)·B: the two models must agree.
      const rs = await loadModel(tiny.hfDir, { quantization: 'none', lora: { rank: r, alpha, rslora: true, targets: ['q_proj', 'up_proj'] } });
      const plain = await loadModel(tiny.hfDir, { quantization: 'none', lora: { rank: r, alpha, targets: ['q_proj', 'up_proj'] } });
      try {
        await setAdapter(rs, alpha / Math.sqrt(r));
        await setAdapter(plain, alpha / r, false, Math.sqrt(r));
        const base = await logitsOf(rs, false);
        const got = await logitsOf(rs);
        const want = await logitsOf(plain);
        expect(relativeError(got, want)).toBeLessThan(1e-5);
        // …and the adapters move the logits well beyond that.
        expect(relativeError(base, want)).toBeGreaterThan(1e-2);
      } finally {
        rs.dispose();
        plain.dispose();
      }
    });
  }

  it('dropout touches only the LoRA branch, only in training steps, reproducibly by seed', async () => {
    const model = await loadModel(tiny.hfDir, { quantization: 'none', lora: { rank, alpha, dropout: 0.5, targets: ['v_proj', 'down_proj'] } });
    const batch = nextTokenBatch([seq], 2);
    try {
      // B = 0: the LoRA branch is zero, so dropping its input changes nothing, bit for bit.
      await setAdapter(model, alpha / rank, true);
      const plain = await model.native.loss(batch);
      expect((await model.native.lossAndGrads(batch, { dropoutSeed: 7 })).loss).toBe(plain.loss);
      // B ≠ 0: dropout changes the loss, a seed fixes the mask, and no seed means no dropout.
      await setAdapter(model, alpha / rank);
      const evalLoss = (await model.native.loss(batch)).loss;
      const noSeed = await model.native.lossAndGrads(batch);
      expect(noSeed.loss).toBe(evalLoss);
      const a = await model.native.lossAndGrads(batch, { dropoutSeed: 7 });
      const b = await model.native.lossAndGrads(batch, { dropoutSeed: 7 });
      const c = await model.native.lossAndGrads(batch, { dropoutSeed: 8 });
      expect(a.loss).toBe(b.loss);
      expect(Math.abs(a.loss - evalLoss) / evalLoss).toBeGreaterThan(1e-4);
      expect(c.loss).not.toBe(a.loss);
      for (const r of [noSeed, a, b, c]) disposeAll(Object.values(r.grads));
    } finally {
      model.dispose();
    }
  });

  it('tied embeddings: the LM head is the embedding matrix', async () => {
    const tied = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 32, tiedEmbeddings: true });
    try {
      expect(tied.weights.has('lm_head.weight')).toBe(false);
      for (const path of [tied.hfDir, tied.ggufPath]) {
        const model = await loadModel(path, { quantization: 'none' });
        try {
          expect(model.architecture.tieWordEmbeddings).toBe(true);
          expect(relativeError(await logitsOf(model), referenceLogits(referenceConfig(tied), tied.weights, seq))).toBeLessThan(1e-4);
        } finally {
          model.dispose();
        }
      }
    } finally {
      await tied.cleanup();
    }
  });
});

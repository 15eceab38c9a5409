import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import type { NativeBatch } from '../../lib/native.js';
import { nextTokenBatch } from '../helpers/batches.js';
import { tensor, toTypedArray, type Tensor } from '../../lib/tensor.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { referenceLogits, referenceLoss, type ReferenceLora } from '../helpers/llama-reference.js';
import { seededFloats } from '../helpers/reference.js';

const seq = [1, 17, 42, 5, 260, 99, 3, 77, 150, 8, 201, 64, 33];

const batchOf = nextTokenBatch;

async function values(t: Tensor): Promise<Float32Array> {
  return (await toTypedArray(t)) as Float32Array;
}

describe('LoRA loss and gradients', () => {
  let tiny: TinyModel;
  let model: LoadedModel;
  let names: string[];
  const rank = 4;
  const alpha = 8;

  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 5 });
    model = await loadModel(tiny.hfDir, {
      quantization: 'none',
      lora: { rank, alpha, targets: ['q_proj', 'v_proj', 'down_proj'], seed: 3 },
    });
    names = (await model.native.info()).loraNames;
  });
  afterAll(async () => {
    model?.dispose();
    await tiny?.cleanup();
  });

  it('creates A Kaiming-uniform and B zero, so the adapted model equals the base exactly', async () => {
    expect(names).toHaveLength(2 * 2 * 3);
    expect(names[0]).toBe('model.layers.0.self_attn.q_proj.lora_a');
    const params = await model.native.loraParameters();
    const a = await values(params['model.layers.0.mlp.down_proj.lora_a']!);
    expect(params['model.layers.0.mlp.down_proj.lora_a']!.shape).toEqual([128, rank]);
    const bound = 1 / Math.sqrt(128);
    expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...a.map(Math.abs))).toBeGreaterThan(bound * 0.8);
    expect([...(await values(params['model.layers.0.mlp.down_proj.lora_b']!))].every((v) => v === 0)).toBe(true);
    const batch = { shape: [1, seq.length] as [number, number], tokens: Int32Array.from(seq) };
    const withLora = await values(await model.native.logits(batch));
    const base = await values(await model.native.logits(batch, { lora: false }));
    expect(Buffer.from(withLora.buffer).equals(Buffer.from(base.buffer))).toBe(true);
  });

  describe('with non-zero adapters', () => {
    const set = new Map<string, Float32Array>();
    beforeAll(async () => {
      const params = await model.native.loraParameters();
      const updates: Record<string, Tensor> = {};
      let seed = 100;
      for (const name of names) {
        const shape = params[name]!.shape;
        const v = seededFloats(shape[0]! * shape[1]!, seed++).map((x) => x * 0.2);
        set.set(name, v);
        updates[name] = await tensor(v, shape);
      }
      await model.native.setLoraParameters(updates);
    });

    function referenceLora(): ReferenceLora {
      const adapters = new Map<string, { a: Float32Array; b: Float32Array; rank: number }>();
      for (const name of names.filter((n) => n.endsWith('.lora_a'))) {
        const path = name.slice(0, -'.lora_a'.length);
        adapters.set(path, { a: set.get(name)!, b: set.get(`${path}.lora_b`)!, rank });
      }
      return { scale: alpha / rank, adapters };
    }

    it('computes the summed masked cross-entropy of a float64 reference', async () => {
      const batch = batchOf([seq], 4);
      const { loss, tokens } = await model.native.loss(batch);
      expect(tokens).toBe(seq.length - 1 - 4);
      const logits = referenceLogits(
        { layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 16, intermediate: 128, vocab: 300, ropeTheta: tiny.config.ropeTheta, rmsNormEps: tiny.config.rmsNormEps, tiedEmbeddings: tiny.config.tiedEmbeddings },
        tiny.weights,
        seq.slice(0, -1),
        { lora: referenceLora() },
      );
      const ref = referenceLoss(logits, 300, seq.slice(1), [...batch.mask!]);
      expect(Math.abs(loss - ref) / ref).toBeLessThan(1e-4);
    });

    it('gradients match central finite differences', async () => {
      const batch = batchOf([seq, [...seq].reverse()], 2);
      const { loss, grads } = await model.native.lossAndGrads(batch);
      expect(Object.keys(grads).sort()).toEqual([...names].sort());
      const g = new Map<string, Float32Array>();
      for (const name of names) g.set(name, await values(grads[name]!));
      const lossAt = async (direction: Map<string, Float32Array>, eps: number) => {
        const updates: Record<string, Tensor> = {};
        for (const name of names) {
          const base = set.get(name)!;
          const d = direction.get(name)!;
          updates[name] = await tensor(base.map((v, i) => v + eps * d[i]!), (await model.native.loraParameters())[name]!.shape);
        }
        await model.native.setLoraParameters(updates);
        return (await model.native.loss(batch)).loss;
      };
      // Directional derivatives along random directions and along single coordinates.
      const directions: Map<string, Float32Array>[] = [];
      for (let k = 0; k < 3; k++) {
        directions.push(new Map(names.map((n, j) => [n, seededFloats(set.get(n)!.length, 1000 * k + j)])));
      }
      for (const name of [names[0]!, names[5]!, names[11]!]) {
        const gv = g.get(name)!;
        let best = 0;
        gv.forEach((v, i) => {
          if (Math.abs(v) > Math.abs(gv[best]!)) best = i;
        });
        directions.push(new Map(names.map((n) => [n, Float32Array.from(set.get(n)!, (_, i) => (n === name && i === best ? 1 : 0))])));
      }
      const eps = 1e-2;
      for (const d of directions) {
        const analytic = names.reduce((s, n) => s + g.get(n)!.reduce((t, v, i) => t + v * d.get(n)![i]!, 0), 0);
        const numeric = ((await lossAt(d, eps)) - (await lossAt(d, -eps))) / (2 * eps);
        expect(Math.abs(numeric - analytic) / Math.abs(analytic)).toBeLessThan(1e-2);
      }
      // Restore and check the loss is the one the gradients were taken at.
      await lossAt(directions[0]!, 0);
      expect((await model.native.loss(batch)).loss).toBeCloseTo(loss, 3);
    });

    it('checkpointing leaves loss and gradients unchanged (its memory saving is checked in checkpoint-memory.test.ts)', async () => {
      const batch = batchOf([seq]);
      const plain = await model.native.lossAndGrads(batch);
      const ckpt = await model.native.lossAndGrads(batch, { checkpoint: true });
      expect(ckpt.loss).toBe(plain.loss);
      for (const name of names) {
        const a = await values(plain.grads[name]!);
        const b = await values(ckpt.grads[name]!);
        for (let i = 0; i < a.length; i++) expect(b[i]).toBeCloseTo(a[i]!, 5);
      }
    });

    it('a packed row of two documents gives each the loss it has alone', async () => {
      const docA = seq.slice(0, 6);
      const docB = seq.slice(6);
      const alone = (await model.native.loss(batchOf([docA]))).loss + (await model.native.loss(batchOf([docB]))).loss;
      // Packed: inputs A[0..5) B[0..6), targets within each document; the boundary token is not trained.
      const packedTokens = [...docA.slice(0, -1), ...docB.slice(0, -1)];
      const packed: NativeBatch = {
        shape: [1, packedTokens.length],
        tokens: Int32Array.from(packedTokens),
        targets: Int32Array.from([...docA.slice(1), ...docB.slice(1)]),
        mask: new Float32Array(packedTokens.length).fill(1),
        positions: Int32Array.from([...docA.slice(0, -1).map((_, i) => i), ...docB.slice(0, -1).map((_, i) => i)]),
        segments: Int32Array.from([...docA.slice(0, -1).map(() => 0), ...docB.slice(0, -1).map(() => 1)]),
      };
      const { loss, tokens } = await model.native.loss(packed);
      expect(tokens).toBe(packedTokens.length);
      expect(Math.abs(loss - alone) / alone).toBeLessThan(1e-5);
    });
  });
});

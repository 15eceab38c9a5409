import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import { toTypedArray } from '../../lib/tensor.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { referenceLogits, type ReferenceConfig } from '../helpers/llama-reference.js';
import { relativeError } from '../helpers/reference.js';

function refConfig(m: TinyModel): ReferenceConfig {
  const c = m.config;
  return {
    layers: c.layers,
    hidden: c.hidden,
    heads: c.heads,
    kvHeads: c.kvHeads,
    headDim: c.headDim,
    intermediate: c.intermediate,
    vocab: c.vocab,
    ropeTheta: c.ropeTheta,
    rmsNormEps: c.rmsNormEps,
    tiedEmbeddings: c.tiedEmbeddings,
  };
}

async function logitsOf(model: LoadedModel, tokens: number[]): Promise<Float32Array> {
  const t = await model.native.logits({ shape: [1, tokens.length], tokens: Int32Array.from(tokens) });
  try {
    return (await toTypedArray(t)) as Float32Array;
  } finally {
    t.dispose();
  }
}

const tokens = [1, 17, 42, 5, 260, 99, 3, 77, 150, 8, 201, 64];

describe('Llama-family forward pass', () => {
  let tiny: TinyModel;
  let hf: LoadedModel;
  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 11 });
    hf = await loadModel(tiny.hfDir, { quantization: 'none' });
  });
  afterAll(async () => {
    hf?.dispose();
    await tiny?.cleanup();
  });

  it('matches a float64 reference on HF weights (split-half RoPE, GQA 4:2)', async () => {
    expect(hf.architecture.ropeTraditional).toBe(false);
    const ours = await logitsOf(hf, tokens);
    const ref = referenceLogits(refConfig(tiny), tiny.weights, tokens);
    expect(ours.length).toBe(tokens.length * 300);
    expect(relativeError(ours, ref)).toBeLessThan(1e-4);
  });

  it('gives the same logits from the GGUF layout (permuted Q/K, interleaved RoPE)', async () => {
    const gguf = await loadModel(tiny.ggufPath, { quantization: 'none' });
    try {
      expect(gguf.architecture.ropeTraditional).toBe(true);
      const a = await logitsOf(hf, tokens);
      const b = await logitsOf(gguf, tokens);
      expect(relativeError(b, a)).toBeLessThan(1e-5);
    } finally {
      gguf.dispose();
    }
  });

  it('batches rows independently and restarts positions per packed document', async () => {
    const docA = tokens.slice(0, 5);
    const docB = tokens.slice(5);
    const packed = await hf.native.logits({
      shape: [1, tokens.length],
      tokens: Int32Array.from(tokens),
      positions: Int32Array.from([...docA.map((_, i) => i), ...docB.map((_, i) => i)]),
      segments: Int32Array.from([...docA.map(() => 0), ...docB.map(() => 1)]),
    });
    const p = (await toTypedArray(packed)) as Float32Array;
    const alone = [...(await logitsOf(hf, docA)), ...(await logitsOf(hf, docB))];
    expect(relativeError(p, alone)).toBeLessThan(1e-5);
    const ref = referenceLogits(refConfig(tiny), tiny.weights, tokens, {
      positions: [...docA.map((_, i) => i), ...docB.map((_, i) => i)],
      segments: [...docA.map(() => 0), ...docB.map(() => 1)],
    });
    expect(relativeError(p, ref)).toBeLessThan(1e-4);
  });
});

import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../lib/model/load-model.js';
import { toTypedArray } from '../../lib/tensor.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { referenceLogits } from '../helpers/llama-reference.js';
import { relativeError } from '../helpers/reference.js';

// The GGUF types that cannot be repacked reach the native model through gguf-weights.ts's
// decode path. The fixture's weights are the decoded blocks, so a correct load holds them exactly.

const fixtures: TinyModel[] = [];
afterAll(async () => {
  for (const f of fixtures) await f.cleanup();
});

describe('GGUF tensors that are decoded rather than repacked', () => {
  it.each(['Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q5_K'] as const)('%s embedding and output load with their exact values', async (type) => {
    const tiny = await makeTinyModel({ layers: 1, hidden: 256, heads: 4, kvHeads: 2, intermediate: 256, seed: 60, embeddingType: type, outputType: type });
    fixtures.push(tiny);
    const model = await loadModel(tiny.ggufPath, { quantization: 'none', computeDtype: 'float32' });
    try {
      for (const name of ['model.embed_tokens.weight', 'lm_head.weight']) {
        const w = await model.native.denseWeight(name, 'float32');
        const got = (await toTypedArray(w)) as Float32Array;
        w.dispose();
        const want = tiny.weights.get(name)!.values;
        expect(got).toHaveLength(want.length);
        let mismatches = 0;
        for (let i = 0; i < want.length; i++) if (!Object.is(got[i], want[i])) mismatches++;
        expect(mismatches, name).toBe(0);
      }
      const tokens = [1, 300, 17, 42, 260];
      const logits = await model.native.logits({ shape: [1, tokens.length], tokens: Int32Array.from(tokens) });
      const ref = referenceLogits(tiny.config, tiny.weights, tokens);
      expect(relativeError((await toTypedArray(logits)) as Float32Array, ref)).toBeLessThan(1e-4);
      logits.dispose();
    } finally {
      model.dispose();
    }
  });
});

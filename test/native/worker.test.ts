import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { native } from '../../lib/native.js';

const addonPath = require.resolve('../../build/Release/mlx_qlora.node');

/** Runs `body` (CommonJS, with the addon as `m`) in a worker; resolves with what it posts. */
function inWorker<T>(body: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const w = new Worker(
      `
      const { parentPort } = require('node:worker_threads');
      const m = require(${JSON.stringify(addonPath)});
      ${body}
      `,
      { eval: true },
    );
    w.once('message', resolve);
    w.once('error', reject);
  });
}

// Plain JavaScript, so the worker (eval'd CommonJS) and this test run the very same code: a tiny
// dense decoder from seeded random weights, its logits and three greedy tokens. It makes a Model
// and a Generator, the two classes whose constructors the addon keeps per environment.
const tinyModelRun = `async (m) => {
  const hidden = 32, inter = 64, vocab = 16;
  const model = await m.createModel(
    { vocabSize: vocab, hiddenSize: hidden, intermediateSize: inter, numLayers: 1, numHeads: 2, numKvHeads: 1,
      tieWordEmbeddings: true },
    { quantBits: 0, computeDtype: 'float32', kernel: 'dequantize-matmul' },
    { rank: 0 });
  const shapes = {
    'model.embed_tokens.weight': [vocab, hidden], 'model.norm.weight': [hidden],
    'model.layers.0.input_layernorm.weight': [hidden], 'model.layers.0.post_attention_layernorm.weight': [hidden],
    'model.layers.0.self_attn.q_proj.weight': [hidden, hidden], 'model.layers.0.self_attn.k_proj.weight': [16, hidden],
    'model.layers.0.self_attn.v_proj.weight': [16, hidden], 'model.layers.0.self_attn.o_proj.weight': [hidden, hidden],
    'model.layers.0.mlp.gate_proj.weight': [inter, hidden], 'model.layers.0.mlp.up_proj.weight': [inter, hidden],
    'model.layers.0.mlp.down_proj.weight': [hidden, inter],
  };
  let seed = 0;
  for (const [name, shape] of Object.entries(shapes)) {
    const t = await m.randomNormal(shape, 'float32', ++seed, name.endsWith('norm.weight') ? 1 : 0, 0.3);
    await model.setWeight(name, t);
    t.dispose();
  }
  await model.finalize();
  const logits = await model.logits({ shape: [1, 3], tokens: Int32Array.from([1, 2, 3]) });
  const values = [...new Float32Array(await m.toBytes(logits))];
  logits.dispose();
  const gen = await model.generator(Int32Array.from([1, 2, 3]), { temperature: 0 });
  const tokens = [await gen.next(), await gen.next(), await gen.next()];
  gen.dispose();
  model.dispose();
  return { values, tokens };
}`;

interface TinyRun {
  values: number[];
  tokens: number[];
}

// Each Node environment gets its own MLX thread; a worker that loads the addon, computes and
// exits must not take the process down or leak its thread.
describe('worker threads', () => {
  it('computes in a worker and exits cleanly, twice', async () => {
    for (let round = 0; round < 2; round++) {
      const result = await inWorker<number[]>(`
        (async () => {
          const a = await m.fromBytes(new Float32Array([1, 2, 3, 4]), [2, 2], 'float32');
          const c = await m.matmul(a, a);
          parentPort.postMessage([...new Float32Array(await m.toBytes(c))]);
          // Left undisposed on purpose: teardown must free them.
        })();
      `);
      expect(result).toEqual([7, 10, 15, 22]);
    }
  });

  it('a model made in a worker leaves the main thread able to make and use models after it exits', async () => {
    const run = (0, eval)(tinyModelRun) as (m: unknown) => Promise<TinyRun>;
    // Loaded here first, so a worker's Init that overwrote shared constructors would leave this
    // environment holding the dead worker's.
    const before = await run(native());
    const inside = await inWorker<TinyRun>(`(${tinyModelRun})(m).then((r) => parentPort.postMessage(r));`);
    const after = await run(native());
    expect(inside.values).toHaveLength(3 * 16);
    // Same seeds, same code: the worker and the main thread agree to the bit, before and after.
    expect(inside).toEqual(before);
    expect(after).toEqual(before);
    expect(new Set(before.values).size).toBeGreaterThan(40);
    expect(before.tokens.every((t) => t >= 0 && t < 16)).toBe(true);
  });
});

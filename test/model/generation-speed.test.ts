import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memory, resetPeakMemory } from '../../lib/device.js';
import { generate } from '../../lib/model/generate.js';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import { toTypedArray } from '../../lib/tensor.js';
import { openLlamaCppOracle } from '../fixtures/llama-cpp-oracle.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';

const prompt = [1, 17, 42, 5, 260, 99];
// The generator's KV cache grows in steps of 256 positions: 300 new tokens cross the boundary.
const longRun = 300;

/**
 * Checks `tokens` is the greedy continuation of `prompt` by one full forward pass without any
 * cache: at every step the generated token's logit is the row's maximum (up to float rounding,
 * so a near-tie decided the other way by a different summation order is not a failure).
 */
async function expectGreedyByFullForward(model: LoadedModel, tokens: number[]): Promise<void> {
  const seq = [...prompt, ...tokens];
  const t = await model.native.logits({ shape: [1, seq.length], tokens: Int32Array.from(seq) });
  const all = (await toTypedArray(t)) as Float32Array;
  t.dispose();
  const vocab = all.length / seq.length;
  let exact = 0;
  for (let i = 0; i < tokens.length; i++) {
    const row = all.subarray((prompt.length - 1 + i) * vocab, (prompt.length + i) * vocab);
    let best = 0;
    for (let j = 1; j < vocab; j++) if (row[j]! > row[best]!) best = j;
    if (best === tokens[i]) exact++;
    expect(row[best]! - row[tokens[i]!]!, `step ${i}: token ${tokens[i]} vs argmax ${best}`).toBeLessThan(1e-4);
  }
  // Near-ties are rare: nearly every step is the exact argmax.
  expect(exact).toBeGreaterThanOrEqual(tokens.length - 2);
}

async function withSlidingWindow(tiny: TinyModel, window: number): Promise<string> {
  const dir = join(tiny.root, `swa-${window}`);
  await mkdir(dir, { recursive: true });
  const config = JSON.parse(await readFile(join(tiny.hfDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, sliding_window: window }));
  for (const f of ['model.safetensors']) await writeFile(join(dir, f), await readFile(join(tiny.hfDir, f)));
  return dir;
}

describe('generation speed: stepped KV cache and last-position logits', () => {
  let tiny: TinyModel;
  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 21, ggufType: 'F32', contextLength: 1024 });
  });
  afterAll(async () => tiny?.cleanup());

  it('dense F32 base: 300 greedy tokens past the cache step equal a full forward pass, and llama.cpp', async () => {
    const model = await loadModel(tiny.ggufPath, { quantization: 'none' });
    try {
      const ours = await generate(model.native, prompt, { maxTokens: longRun });
      expect(ours.tokens).toHaveLength(longRun);
      await expectGreedyByFullForward(model, ours.tokens);
      const oracle = await openLlamaCppOracle(tiny.ggufPath, { contextSize: 512 });
      try {
        const theirs = await oracle.greedy(prompt, longRun);
        const eos = theirs.indexOf(tiny.vocab.eosId);
        const n = eos >= 0 ? eos : theirs.length;
        expect(n).toBeGreaterThan(256);
        expect(ours.tokens.slice(0, n)).toEqual(theirs.slice(0, n));
      } finally {
        await oracle.dispose();
      }
    } finally {
      model.dispose();
    }
  }, 120_000);

  it('4-bit base with an adapter: 300 greedy tokens equal a full forward pass', async () => {
    const model = await loadModel(tiny.hfDir, { quantization: { bits: 4, groupSize: 32 }, lora: { rank: 4, alpha: 8, seed: 3 } });
    try {
      expect(Object.keys((await model.native.info()).linearStorage).join()).toMatch(/4-bit/);
      const ours = await generate(model.native, prompt, { maxTokens: longRun });
      await expectGreedyByFullForward(model, ours.tokens);
    } finally {
      model.dispose();
    }
  }, 120_000);

  it('sliding-window (Mistral) model: the window still hides old positions in the cache', async () => {
    const model = await loadModel(await withSlidingWindow(tiny, 24), { quantization: 'none' });
    try {
      expect(model.architecture.slidingWindow).toBe(24);
      const ours = await generate(model.native, prompt, { maxTokens: longRun });
      await expectGreedyByFullForward(model, ours.tokens);
      // The window changes the continuation, so the check above saw it.
      const full = await loadModel(tiny.hfDir, { quantization: 'none' });
      try {
        expect((await generate(full.native, prompt, { maxTokens: longRun })).tokens).not.toEqual(ours.tokens);
      } finally {
        full.dispose();
      }
    } finally {
      model.dispose();
    }
  }, 120_000);

  it('prefill does not materialise [prompt × vocab] logits', async () => {
    const big = await makeTinyModel({ layers: 1, hidden: 64, heads: 2, kvHeads: 1, intermediate: 128, vocab: 32000, seed: 5, ggufType: 'F32', contextLength: 4096 });
    const model = await loadModel(big.hfDir, { quantization: 'none' });
    try {
      const length = 2048;
      const longPrompt = Array.from({ length }, (_, i) => (i * 7919 + 3) % 32000);
      await generate(model.native, [1, 2, 3], { maxTokens: 2 });
      await resetPeakMemory();
      const before = (await memory()).active;
      const { tokens } = await generate(model.native, longPrompt, { maxTokens: 1 });
      const rise = (await memory()).peak - before;
      expect(tokens).toHaveLength(1);
      const allLogits = length * 32000 * 4;
      // The attention scores of the prompt's pass ([heads, T, T] float32) are the largest transient, a quarter of the logits here.
      expect(rise).toBeLessThan(allLogits / 2);
      expect(rise).toBeGreaterThan(0);
    } finally {
      model.dispose();
      await big.cleanup();
    }
  }, 120_000);
});

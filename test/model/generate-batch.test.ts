import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../lib/model/generate.js';
import { batchesByLength, generateBatch } from '../../lib/model/generate-batch.js';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import type { NativeModel } from '../../lib/native.js';
import { tensor, toTypedArray } from '../../lib/tensor.js';
import { openLlamaCppOracle } from '../fixtures/llama-cpp-oracle.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';

// Different lengths, so every row but the longest is left-padded.
const prompts = [
  [1, 17, 42, 5, 260, 99],
  [1, 8],
  [1, 250, 3, 77, 12, 190, 44, 61, 5, 230, 14],
  [1, 120, 9, 33],
  [1],
];

async function alone(model: LoadedModel, options: Parameters<typeof generate>[2], list: number[][] = prompts) {
  const out = [];
  for (const p of list) out.push(await generate(model.native, p, options));
  return out;
}

/** The tiny model's HF folder with a sliding window written into its config. */
async function withSlidingWindow(tiny: TinyModel, window: number): Promise<string> {
  const dir = join(tiny.root, `swa-${window}`);
  await mkdir(dir, { recursive: true });
  const config = JSON.parse(await readFile(join(tiny.hfDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, sliding_window: window }));
  await writeFile(join(dir, 'model.safetensors'), await readFile(join(tiny.hfDir, 'model.safetensors')));
  return dir;
}

describe('batched generation', () => {
  let tiny: TinyModel;
  let model: LoadedModel;
  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 8, ggufType: 'F32' });
    model = await loadModel(tiny.ggufPath, { quantization: 'none' });
  }, 60_000);
  afterAll(async () => {
    model?.dispose();
    await tiny?.cleanup();
  });

  it("a padded row's logits equal the same prompt's logits alone, at the prefill and later steps", async () => {
    const batch = await model.native.batchGenerator(prompts.map((p) => Int32Array.from(p)), { temperature: 0 });
    const singles = await Promise.all(prompts.map((p) => model.native.generator(Int32Array.from(p), { temperature: 0 })));
    try {
      for (let step = 0; step < 4; step++) {
        const tokens = [...(await batch.step())];
        const rows = (await toTypedArray(await batch.logits())) as Float32Array;
        const vocab = rows.length / prompts.length;
        expect(vocab).toBe(300);
        for (const [i, g] of singles.entries()) {
          expect(tokens[i], `step ${step}, prompt ${i}`).toBe(await g.next());
          const own = (await toTypedArray(await g.logits())) as Float32Array;
          const row = rows.subarray(i * vocab, (i + 1) * vocab);
          let worst = 0;
          for (let j = 0; j < vocab; j++) worst = Math.max(worst, Math.abs(row[j]! - own[j]!));
          expect(worst, `step ${step}, prompt ${i}`).toBeLessThan(1e-4);
        }
      }
    } finally {
      batch.dispose();
      for (const g of singles) g.dispose();
    }
  });

  it('greedy: every prompt gets the tokens it gets alone, in one batch and in batches of 2', async () => {
    const expected = await alone(model, { maxTokens: 20, lora: false });
    for (const batchSize of [8, 2]) {
      const ours = await generateBatch(model.native, prompts, { maxTokens: 20, lora: false, batchSize });
      expect(ours.map((r) => r.tokens)).toEqual(expected.map((r) => r.tokens));
      expect(ours.every((r) => r.finishReason === 'length' && r.seconds > 0)).toBe(true);
    }
  });

  it('stop tokens end rows at different steps; the rows left keep their tokens (finished rows leave the batch)', async () => {
    const free = await alone(model, { maxTokens: 16 });
    // A stop token from the middle of each of two continuations: those rows end early.
    const stopTokens = [free[0]!.tokens[3]!, free[2]!.tokens[9]!];
    const expected = await alone(model, { maxTokens: 16, stopTokens });
    const ours = await generateBatch(model.native, prompts, { maxTokens: 16, stopTokens });
    expect(ours.map((r) => r.tokens)).toEqual(expected.map((r) => r.tokens));
    expect(ours.map((r) => r.finishReason)).toEqual(expected.map((r) => r.finishReason));
    expect(expected.filter((r) => r.finishReason === 'stop').length).toBeGreaterThanOrEqual(2);
    expect(new Set(expected.map((r) => r.tokens.length)).size).toBeGreaterThan(1);
  });

  it('sampling: each row draws from its own key of the seed, as the prompt does alone', async () => {
    for (const sampling of [{ temperature: 1.3, seed: 5 }, { temperature: 0.9, topK: 20, seed: 7 }, { temperature: 1.1, topP: 0.8, seed: 9 }]) {
      const expected = await alone(model, { maxTokens: 12, ...sampling });
      const ours = await generateBatch(model.native, prompts, { maxTokens: 12, ...sampling });
      expect(ours.map((r) => r.tokens)).toEqual(expected.map((r) => r.tokens));
    }
  });

  it("llama.cpp's greedy continuations of the same GGUF equal the batched rows", async () => {
    const oracle = await openLlamaCppOracle(tiny.ggufPath);
    try {
      const picked = [prompts[0]!, prompts[1]!, prompts[2]!];
      const theirs = [];
      for (const p of picked) theirs.push(await oracle.greedy(p, 12));
      const ours = await generateBatch(model.native, picked, { maxTokens: 12, lora: false });
      for (const [i, t] of theirs.entries()) {
        expect(t.length).toBeGreaterThan(4);
        expect(ours[i]!.tokens.slice(0, t.length)).toEqual(t);
      }
    } finally {
      await oracle.dispose();
    }
  });

  it('maxTokens 0, an aborted signal and bad options', async () => {
    expect(await generateBatch(model.native, prompts, { maxTokens: 0 })).toEqual(prompts.map(() => expect.objectContaining({ tokens: [], finishReason: 'length' })));
    const aborted = AbortSignal.abort();
    expect((await generateBatch(model.native, prompts, { signal: aborted })).map((r) => r.finishReason)).toEqual(prompts.map(() => 'aborted'));
    await expect(generateBatch(model.native, prompts, { batchSize: 0 })).rejects.toThrow(/batchSize/);
    await expect(generateBatch(model.native, [[1], []])).rejects.toThrow(/prompts\[1\] holds no token/);
    await expect(generateBatch(model.native, [[1, 300]])).rejects.toThrow(/outside the vocabulary/);
    expect(() => model.native.batchGenerator([])).toThrow(/at least one prompt/);
  });

  it('an abort between steps ends every running row with the tokens it had', async () => {
    const full = await generateBatch(model.native, prompts, { maxTokens: 10 });
    const controller = new AbortController();
    // The real model, with a generator that aborts the run after its third step.
    const batchGenerator: NativeModel['batchGenerator'] = async (ps, o) => {
      const g = await model.native.batchGenerator(ps, o);
      let steps = 0;
      return {
        next: () => g.next(),
        logits: () => g.logits(),
        dispose: () => g.dispose(),
        step: async (finished) => {
          const out = await g.step(finished);
          if (++steps === 3) controller.abort();
          return out;
        },
      };
    };
    const aborting = { batchGenerator } as unknown as NativeModel;
    const cut = await generateBatch(aborting, prompts, { maxTokens: 10, signal: controller.signal });
    expect(cut.map((r) => r.finishReason)).toEqual(prompts.map(() => 'aborted'));
    expect(cut.map((r) => r.tokens)).toEqual(full.map((r) => r.tokens.slice(0, 3)));
  });

  it('groups prompts by length, longest first', () => {
    expect(batchesByLength([3, 9, 1, 9, 4], 2)).toEqual([[1, 3], [4, 0], [2]]);
  });
});

describe('batched generation: adapters, sliding window, the cache step', () => {
  let tiny: TinyModel;
  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 21, ggufType: 'F32', contextLength: 4096 });
  }, 60_000);
  afterAll(async () => tiny?.cleanup());

  it('4-bit base with a non-zero adapter: rows equal the prompts alone with the adapter on and off', async () => {
    const model = await loadModel(tiny.hfDir, { quantization: { bits: 4, groupSize: 32 }, lora: { rank: 4, alpha: 8, seed: 3 } });
    try {
      const updates: Record<string, Awaited<ReturnType<typeof tensor>>> = {};
      for (const [name, t] of Object.entries(await model.native.loraParameters())) {
        if (name.endsWith('lora_b')) updates[name] = await tensor(Float32Array.from({ length: t.shape[0]! * t.shape[1]! }, (_, i) => Math.sin(i) * 0.5), t.shape);
      }
      await model.native.setLoraParameters(updates);
      const tuned = await generateBatch(model.native, prompts, { maxTokens: 16 });
      const base = await generateBatch(model.native, prompts, { maxTokens: 16, lora: false });
      expect(tuned.map((r) => r.tokens)).toEqual((await alone(model, { maxTokens: 16 })).map((r) => r.tokens));
      expect(base.map((r) => r.tokens)).toEqual((await alone(model, { maxTokens: 16, lora: false })).map((r) => r.tokens));
      expect(tuned.map((r) => r.tokens)).not.toEqual(base.map((r) => r.tokens));
    } finally {
      model.dispose();
    }
  }, 120_000);

  it('sliding window: padded rows see the same window as alone, past the 256-position cache step', async () => {
    const model = await loadModel(await withSlidingWindow(tiny, 24), { quantization: 'none' });
    try {
      const expected = await alone(model, { maxTokens: 270 });
      const ours = await generateBatch(model.native, prompts, { maxTokens: 270 });
      expect(ours.map((r) => r.tokens)).toEqual(expected.map((r) => r.tokens));
    } finally {
      model.dispose();
    }
  }, 120_000);

  it('rows that stop early leave the batch (the longest first, so pad columns are trimmed) and the rest run on past the cache step', async () => {
    const model = await loadModel(tiny.ggufPath, { quantization: 'none' });
    try {
      const free = await alone(model, { maxTokens: 300 });
      // The longest prompt's row stops first: dropping it leaves pad columns no row needs.
      const stopTokens = [free[2]!.tokens[2]!];
      const expected = await alone(model, { maxTokens: 300, stopTokens });
      const lengths = expected.map((r) => r.tokens.length);
      expect(lengths[2]).toBeLessThan(Math.min(...lengths.filter((_, i) => i !== 2)));
      expect(Math.max(...lengths)).toBeGreaterThan(256);
      const ours = await generateBatch(model.native, prompts, { maxTokens: 300, stopTokens });
      expect(ours.map((r) => r.tokens)).toEqual(expected.map((r) => r.tokens));
      expect(ours.map((r) => r.finishReason)).toEqual(expected.map((r) => r.finishReason));
    } finally {
      model.dispose();
    }
  }, 120_000);

  it('long prompts prefill in row groups (their attention scores would pass 256 MiB at once) with the same tokens', async () => {
    const model = await loadModel(tiny.ggufPath, { quantization: 'none' });
    try {
      // 4 heads × 3000² float32 scores = 144 MB a row: two rows would pass 256 MiB.
      const long = [3000, 2950, 40].map((n, p) => [1, ...Array.from({ length: n - 1 }, (_, i) => 3 + ((p * 31 + i * 17) % 290))]);
      const expected = await alone(model, { maxTokens: 6 }, long);
      const ours = await generateBatch(model.native, long, { maxTokens: 6 });
      expect(ours.map((r) => r.tokens)).toEqual(expected.map((r) => r.tokens));
    } finally {
      model.dispose();
    }
  }, 120_000);
});

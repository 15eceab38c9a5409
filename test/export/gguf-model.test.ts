/**
 * Fused model GGUFs judged by llama.cpp: it loads what we write, its logits and greedy tokens equal
 * our adapted forward, and its tokenizer splits text as ours does — for an HF-sourced base (Q/K rows
 * permuted, vocabulary built from tokenizer.json) and a GGUF-sourced one (rows and vocabulary kept).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeGgufModel } from '../../lib/export/gguf-model.js';
import { readGguf } from '../../lib/gguf/reader.js';
import { generate } from '../../lib/model/generate.js';
import { loadModel } from '../../lib/model/load-model.js';
import { toTypedArray } from '../../lib/tensor.js';
import { loadModelTokenizer } from '../../lib/tokenizer/load-tokenizer.js';
import { openLlamaCppOracle } from '../fixtures/llama-cpp-oracle.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { tempDir } from '../helpers/temp-dir.js';
import { addChatmlTokenizer, llamaCppLogProbs, logSoftmax, makeAdapter, withChatmlVocab } from './gguf-model-fixtures.js';

const TEXTS = [
  'Hello world, this is a test.',
  'Café déjà vu: naïve façade, Ærøskøbing',
  'emoji 🦙🚀 and 漢字 too',
  '<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n',
  '  leading spaces\tand\ttabs\n\nnewlines',
];

interface Ours {
  logits: Float32Array[];
  greedy: number[][];
}

/** Our adapted forward over each prompt: per-position logits and a 16-token greedy continuation. */
async function ourRun(base: string, adapter: string, prompts: number[][]): Promise<Ours> {
  const model = await loadModel(base, { adapter, quantization: 'none' });
  try {
    const logits: Float32Array[] = [];
    const greedy: number[][] = [];
    for (const p of prompts) {
      const t = await model.native.logits({ shape: [1, p.length], tokens: Int32Array.from(p) });
      const v = (await toTypedArray(t)) as Float32Array;
      t.dispose();
      const vocab = v.length / p.length;
      for (let i = 0; i < p.length; i++) logits.push(v.slice(i * vocab, (i + 1) * vocab));
      greedy.push((await generate(model.native, p, { maxTokens: 16 })).tokens);
    }
    return { logits, greedy };
  } finally {
    model.dispose();
  }
}

/**
 * max |ours − theirs| in log-softmax over every position (llama.cpp's underflowed zeros skipped,
 * and counted), and our raw logits' range (max − min).
 */
function logitGap(ours: Float32Array[], theirs: Float32Array[]): { maxDiff: number; range: number; compared: number; total: number } {
  let maxDiff = 0;
  let lo = Infinity;
  let hi = -Infinity;
  let compared = 0;
  let total = 0;
  const mine = logSoftmax(ours);
  ours.forEach((row, r) => {
    const other = theirs[r]!;
    const own = mine[r]!;
    for (let i = 0; i < row.length; i++) {
      lo = Math.min(lo, row[i]!);
      hi = Math.max(hi, row[i]!);
      total++;
      if (!Number.isFinite(other[i]!)) continue;
      compared++;
      maxDiff = Math.max(maxDiff, Math.abs(own[i]! - other[i]!));
    }
  });
  return { maxDiff, range: hi - lo, compared, total };
}

async function theirRun(out: string, prompts: number[][]): Promise<{ logits: Float32Array[]; greedy: number[][] }> {
  const logits = await llamaCppLogProbs(out, prompts);
  const greedy: number[][] = [];
  const oracle = await openLlamaCppOracle(out);
  try {
    for (const p of prompts) greedy.push(await oracle.greedy(p, 16));
  } finally {
    await oracle.dispose();
  }
  return { logits, greedy };
}

describe('fused model GGUF in llama.cpp', () => {
  let tiny: TinyModel;
  let dir: string;
  let ggufBase: string;
  let prompts: number[][];
  const adapters: Record<'hf' | 'gguf', string> = { hf: '', gguf: '' };
  const bases: Record<'hf' | 'gguf', string> = { hf: '', gguf: '' };

  beforeAll(async () => {
    dir = tempDir('gguf-model-');
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 32002, seed: 31, dir: join(dir, 'tiny') });
    await addChatmlTokenizer(tiny.hfDir);
    ggufBase = join(dir, 'chatml.gguf');
    await withChatmlVocab(tiny.ggufPath, ggufBase);
    bases.hf = tiny.hfDir;
    bases.gguf = ggufBase;
    adapters.hf = join(dir, 'adapter-hf');
    adapters.gguf = join(dir, 'adapter-gguf');
    await makeAdapter(tiny.hfDir, adapters.hf, 500);
    await makeAdapter(ggufBase, adapters.gguf, 700);
    const { tokenizer } = await loadModelTokenizer(tiny.hfDir);
    prompts = TEXTS.slice(0, 4).map((t) => [1, ...tokenizer.encode(t)]);
  }, 180_000);
  afterAll(async () => tiny?.cleanup());

  for (const source of ['hf', 'gguf'] as const) {
    describe(`${source}-sourced base with an adapter`, () => {
      let ours: Ours;
      beforeAll(async () => {
        ours = await ourRun(bases[source], adapters[source], prompts);
      }, 120_000);

      it('F32: llama.cpp logits equal our forward (max diff < 1e-3 of the range), greedy tokens equal', async () => {
        const out = join(dir, `${source}-f32.gguf`);
        await writeGgufModel({ source: bases[source], adapter: adapters[source] }, out, { type: 'f32' });
        const theirs = await theirRun(out, prompts);
        const { maxDiff, range, compared, total } = logitGap(ours.logits, theirs.logits);
        console.log(`${source} f32: max |Δlogit| ${maxDiff.toExponential(3)} over range ${range.toFixed(3)} (${compared}/${total} compared)`);
        expect(range).toBeGreaterThan(1);
        expect(compared).toBeGreaterThan(0.99 * total);
        expect(maxDiff).toBeLessThan(1e-3 * range);
        expect(theirs.greedy).toEqual(ours.greedy);
        expect(theirs.greedy.every((g) => g.length === 16)).toBe(true);
      }, 120_000);

      it('F16: llama.cpp logits within f16 rounding of ours; greedy tokens equal', async () => {
        const out = join(dir, `${source}-f16.gguf`);
        await writeGgufModel({ source: bases[source], adapter: adapters[source] }, out, { type: 'f16' });
        const file = await readGguf(out);
        expect(file.metadata.get('general.file_type')).toBe(1);
        expect(file.tensors.find((t) => t.name === 'blk.0.attn_q.weight')?.typeName).toBe('F16');
        expect(file.tensors.find((t) => t.name === 'blk.0.attn_norm.weight')?.typeName).toBe('F32');
        const theirs = await theirRun(out, prompts);
        const { maxDiff, range } = logitGap(ours.logits, theirs.logits);
        console.log(`${source} f16: max |Δlogit| ${maxDiff.toExponential(3)} over range ${range.toFixed(3)}`);
        // Each weight moves by at most 2⁻¹¹ of itself; through two layers and a 64-wide dot product
        // that stays well under 1% of the logit range, far from the F32 bound's slack.
        expect(maxDiff).toBeLessThan(1e-2 * range);
        expect(theirs.greedy).toEqual(ours.greedy);
      }, 120_000);

      it('tokenizes ASCII, accents, emoji and ChatML special tokens as our tokenizer does', async () => {
        const out = join(dir, `${source}-f32.gguf`);
        const { tokenizer } = await loadModelTokenizer(bases[source]);
        const oracle = await openLlamaCppOracle(out);
        try {
          expect(oracle.vocabSize).toBe(32002);
          for (const text of TEXTS) expect(oracle.tokenize(text, { special: true }), text).toEqual(Array.from(tokenizer.encode(text)));
          expect(oracle.tokenize('<|im_end|>', { special: true })).toEqual([32000]);
          expect(oracle.bos).toBe(1);
          expect(oracle.eos).toBe(32000);
          const file = await readGguf(out);
          expect(file.metadata.get('tokenizer.chat_template')).toContain('<|im_start|>');
          expect(file.metadata.get('tokenizer.ggml.add_bos_token')).toBe(true);
          const types = file.metadata.get('tokenizer.ggml.token_type') as number[];
          expect([types[0], types[1], types[3 + 0x0a], types[32000], types[500]]).toEqual([2, 3, 6, 3, 1]);
        } finally {
          await oracle.dispose();
        }
      }, 60_000);
    });
  }
});

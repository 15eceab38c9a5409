/**
 * GGUF tensors that are decoded rather than repacked (Q5_0, Q5_1, K-quants) reach the native model
 * through gguf-weights.ts's decode path. The fixture's expected values come from our own decoder,
 * so they cannot judge it; llama.cpp can. Its get_rows (the embedding lookup) runs ggml's own
 * dequantize_row_*, and with every other tensor F32 its logits agree with an F32 forward pass to
 * ~1e-7 only if every decoded value is the same (llama-cpp-oracle.test.ts measured this).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readGguf, type GgufFile } from '../../lib/gguf/reader.js';
import { writeGguf } from '../../lib/gguf/writer.js';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import { toTypedArray } from '../../lib/tensor.js';
import { makeTinyModel, TINY_RANDOM_BLOCK_TYPES, type TinyModel, type TinyWeight } from '../fixtures/tiny-model.js';
import { openLlamaCppOracle } from '../fixtures/llama-cpp-oracle.js';
import { centered } from '../helpers/llama-cpp-logits.js';
import { logitsRow, referenceLogits } from '../helpers/llama-reference.js';
import { relativeError } from '../helpers/reference.js';

// F32 logits from two implementations of the same F32 network differ by ~1e-7 (measured ~2e-7 for
// llama.cpp against float64); one wrongly decoded value in a row moves them by far more.
const F32_AGREEMENT = 1e-5;
const SHAPE = { layers: 1, hidden: 256, heads: 4, kvHeads: 2, intermediate: 256 } as const;

const fixtures: TinyModel[] = [];
afterAll(async () => {
  for (const f of fixtures) await f.cleanup();
});

const CHUNK = 128;
// Room beyond the longest chunk: with the context exactly full, llama.cpp's last row comes out
// wrong (measured 0.16 relative error at position 127 of 128).
const ORACLE_CONTEXT = CHUNK + 32;

/** Every vocabulary row once, in chunks of CHUNK positions. */
function tokenChunks(vocab: number, size = CHUNK): number[][] {
  const all = Array.from({ length: vocab }, (_, i) => (i * 97) % vocab);
  return Array.from({ length: Math.ceil(vocab / size) }, (_, k) => all.slice(k * size, (k + 1) * size));
}

async function nativeLogits(model: LoadedModel, tokens: number[]): Promise<Float32Array> {
  const t = await model.native.logits({ shape: [1, tokens.length], tokens: Int32Array.from(tokens) });
  try {
    return (await toTypedArray(t)) as Float32Array;
  } finally {
    t.dispose();
  }
}

async function denseWeight(model: LoadedModel, name: string): Promise<Float32Array> {
  const t = await model.native.denseWeight(name, 'float32');
  try {
    return (await toTypedArray(t)) as Float32Array;
  } finally {
    t.dispose();
  }
}

/** llama.cpp's centered logits of each chunk, from one context on `ggufPath`. */
async function llamaCppChunks(ggufPath: string, chunks: number[][]): Promise<Float64Array[][]> {
  const oracle = await openLlamaCppOracle(ggufPath, { contextSize: ORACLE_CONTEXT });
  try {
    const out: Float64Array[][] = [];
    for (const tokens of chunks) out.push(await oracle.logits(tokens));
    return out;
  } finally {
    await oracle.dispose();
  }
}

/** Worst per-position relative error between llama.cpp's centered rows and [n, vocab] logits, centered. */
function worstRowError(llama: Float64Array[], logits: ArrayLike<number>, vocab: number): number {
  let worst = 0;
  llama.forEach((row, t) => {
    const want = centered(Float64Array.from({ length: vocab }, (_, j) => logits[t * vocab + j]!));
    worst = Math.max(worst, relativeError(row, want));
  });
  return worst;
}

/**
 * A copy of `file` whose token_embd is output.weight's raw bytes and whose output.weight is the
 * F32 `head`, so that llama.cpp decodes output.weight's bytes through get_rows.
 */
async function withOutputAsEmbedding(file: GgufFile, head: Float32Array, path: string): Promise<void> {
  const bytes = await readFile(file.path);
  const raw = (name: string) => {
    const t = file.tensors.find((x) => x.name === name)!;
    return { t, data: bytes.subarray(t.offset, t.offset + t.nbytes) };
  };
  const output = raw('output.weight');
  const tensors = file.tensors.map((t) => {
    if (t.name === 'token_embd.weight') return { name: t.name, ne: t.ne, type: output.t.ggmlType, data: output.data };
    if (t.name === 'output.weight') return { name: t.name, ne: t.ne, type: 'F32' as const, data: new Uint8Array(head.buffer, head.byteOffset, head.byteLength) };
    return { name: t.name, ne: t.ne, type: t.ggmlType, data: raw(t.name).data };
  });
  const metadata = new Map([...file.metadata].map(([key, value]) => [key, { type: file.metadataTypes.get(key)!, value }]));
  await writeGguf(path, { metadata, tensors });
}

describe('GGUF tensors that are decoded rather than repacked equal llama.cpp\'s decoding', () => {
  it.each(TINY_RANDOM_BLOCK_TYPES)('%s token_embd: native logits equal llama.cpp\'s to F32 precision', async (type) => {
    const tiny = await makeTinyModel({ ...SHAPE, seed: 60, embeddingType: type });
    fixtures.push(tiny);
    const model = await loadModel(tiny.ggufPath, { quantization: 'none', computeDtype: 'float32' });
    try {
      const chunks = tokenChunks(tiny.config.vocab);
      const theirs = await llamaCppChunks(tiny.ggufPath, chunks);
      for (const [k, tokens] of chunks.entries()) {
        expect(worstRowError(theirs[k]!, await nativeLogits(model, tokens), tiny.config.vocab)).toBeLessThan(F32_AGREEMENT);
      }
    } finally {
      model.dispose();
    }
  });

  it.each(TINY_RANDOM_BLOCK_TYPES)('%s output.weight: the native head is llama.cpp\'s decoding of its bytes', async (type) => {
    const tiny = await makeTinyModel({ ...SHAPE, seed: 70, outputType: type });
    fixtures.push(tiny);
    const model = await loadModel(tiny.ggufPath, { quantization: 'none', computeDtype: 'float32' });
    try {
      const head = await denseWeight(model, 'lm_head.weight');
      // llama.cpp reads output.weight with quantized dot products (activations rounded to Q8), so its
      // logits cannot pin the values down; as token_embd the same bytes go through get_rows.
      // The swapped file's F32 head is the embedding scaled by 1/16 (exact), so logits stay a few
      // units wide and no probability llama.cpp reports underflows float32.
      const embed = tiny.weights.get('model.embed_tokens.weight')!;
      const newHead: TinyWeight = { shape: embed.shape, values: embed.values.map((v) => v / 16) };
      const swapped = join(tiny.root, 'output-as-embedding.gguf');
      await withOutputAsEmbedding(await readGguf(tiny.ggufPath), newHead.values, swapped);
      const swappedWeights = new Map<string, TinyWeight>(tiny.weights);
      swappedWeights.set('model.embed_tokens.weight', { shape: embed.shape, values: head });
      swappedWeights.set('lm_head.weight', newHead);
      const chunks = tokenChunks(tiny.config.vocab);
      const theirs = await llamaCppChunks(swapped, chunks);
      for (const [k, tokens] of chunks.entries()) {
        expect(worstRowError(theirs[k]!, referenceLogits(tiny.config, swappedWeights, tokens), tiny.config.vocab)).toBeLessThan(F32_AGREEMENT);
      }
      // And the native model computes its logits with that head.
      const tokens = [1, 300, 17, 42, 260];
      const ours = await nativeLogits(model, tokens);
      const want = referenceLogits(tiny.config, new Map([...tiny.weights, ['lm_head.weight', { shape: embed.shape, values: head }]]), tokens);
      for (let t = 0; t < tokens.length; t++) {
        expect(relativeError(ours.subarray(t * tiny.config.vocab, (t + 1) * tiny.config.vocab), logitsRow(want, tiny.config.vocab, t))).toBeLessThan(F32_AGREEMENT);
      }
    } finally {
      model.dispose();
    }
  });
});

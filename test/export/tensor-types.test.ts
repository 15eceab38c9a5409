import { describe, expect, it } from 'vitest';
import { GGUF_EXPORT_TYPES, fileTypeOf, tensorTypeFor, useMoreBits, type GgufExportType, type TensorTypeModel } from '../../lib/export/tensor-types.js';

/**
 * The type plan on 7B-sized shapes, which the tiny-model comparison with llama_model_quantize
 * (quantize-model.test.ts) cannot afford: Mistral 7B (32 layers, 32 heads, 8 KV heads,
 * FFN 14336, vocabulary 32000) and a Llama-2-70B-like stack of 80 layers.
 */

const mistral = { numLayers: 32, numHeads: 32, numKvHeads: 8 };
const llama70b = { numLayers: 80, numHeads: 64, numKvHeads: 8 };

function typeOf(name: string, ne: number[], type: GgufExportType, model: TensorTypeModel = mistral): string {
  return tensorTypeFor({ name, ne }, type, model);
}

describe('tensorTypeFor', () => {
  it('general.file_type is llama_ftype', () => {
    expect(GGUF_EXPORT_TYPES.map(fileTypeOf)).toEqual([0, 1, 32, 7, 2, 15]);
  });

  it('use_more_bits: the first and last eighth and every third layer between', () => {
    const layers = (n: number) => Array.from({ length: n }, (_, i) => i).filter((i) => useMoreBits(i, n));
    expect(layers(8)).toEqual([0, 3, 6, 7]);
    expect(layers(32)).toEqual([0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
    expect(layers(4)).toEqual([2, 3]); // n/8 = 0: (i − 0) % 3 == 2, and i ≥ 3
  });

  it('Q4_K_M on Mistral 7B: Q6_K for output, and for attn_v/ffn_down in the use_more_bits layers', () => {
    expect(typeOf('output.weight', [4096, 32000], 'q4_k_m')).toBe('Q6_K');
    expect(typeOf('token_embd.weight', [4096, 32000], 'q4_k_m')).toBe('Q4_K');
    expect(typeOf('token_embd.weight', [4096, 32000], 'q4_k_m', { ...mistral, tiedEmbeddings: true })).toBe('Q6_K');
    const v = Array.from({ length: 32 }, (_, i) => typeOf(`blk.${i}.attn_v.weight`, [4096, 1024], 'q4_k_m'));
    const down = Array.from({ length: 32 }, (_, i) => typeOf(`blk.${i}.ffn_down.weight`, [14336, 4096], 'q4_k_m'));
    const q6 = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];
    expect(v).toEqual(v.map((_, i) => (q6.includes(i) ? 'Q6_K' : 'Q4_K')));
    expect(down).toEqual(v);
    for (const part of ['attn_q', 'attn_k', 'attn_output', 'ffn_gate', 'ffn_up']) {
      expect(typeOf(`blk.3.${part}.weight`, [4096, 4096], 'q4_k_m')).toBe('Q4_K');
    }
  });

  it('1-D tensors and norms stay F32 in every file type, even a 2-D shape with a trailing 1', () => {
    for (const type of GGUF_EXPORT_TYPES) {
      expect(typeOf('blk.0.attn_norm.weight', [4096], type)).toBe('F32');
      expect(typeOf('output_norm.weight', [4096], type)).toBe('F32');
      expect(typeOf('rope_freqs.weight', [64], type)).toBe('F32');
      expect(typeOf('blk.0.ffn_norm.weight', [4096, 1], type)).toBe('F32');
      expect(typeOf('blk.0.attn_q.bias', [4096, 2], type)).toBe('F32'); // not a weight
    }
  });

  it('plain file types: every 2-D weight in the file type, output included', () => {
    expect(typeOf('output.weight', [4096, 32000], 'f16')).toBe('F16');
    expect(typeOf('blk.0.attn_v.weight', [4096, 1024], 'bf16')).toBe('BF16');
    expect(typeOf('blk.0.ffn_down.weight', [14336, 4096], 'f32')).toBe('F32');
    expect(typeOf('blk.0.ffn_down.weight', [100, 7], 'f16')).toBe('F16');
  });

  it('Q8_0 and Q4_0: output Q8_0 and Q6_K, nothing else changes', () => {
    expect(typeOf('output.weight', [4096, 32000], 'q8_0')).toBe('Q8_0');
    expect(typeOf('output.weight', [4096, 32000], 'q4_0')).toBe('Q6_K');
    expect(typeOf('token_embd.weight', [4096, 32000], 'q4_0')).toBe('Q4_0');
    expect(typeOf('blk.0.attn_v.weight', [4096, 1024], 'q4_0')).toBe('Q4_0');
    expect(typeOf('blk.31.ffn_down.weight', [14336, 4096], 'q8_0')).toBe('Q8_0');
  });

  it('shape fallbacks: Q4_K → Q5_0, Q6_K → Q8_0, and F16 where not even 32 divides the row', () => {
    expect(typeOf('blk.1.attn_q.weight', [4128, 4128], 'q4_k_m')).toBe('Q5_0');
    expect(typeOf('blk.0.attn_v.weight', [4128, 1024], 'q4_k_m')).toBe('Q8_0');
    expect(typeOf('output.weight', [4128, 32000], 'q4_k_m')).toBe('Q8_0');
    expect(typeOf('output.weight', [4128, 32000], 'q4_0')).toBe('Q8_0');
    expect(typeOf('blk.1.attn_q.weight', [4100, 4100], 'q4_k_m')).toBe('F16');
    expect(typeOf('blk.1.attn_q.weight', [4100, 4100], 'q4_0')).toBe('F16');
    expect(typeOf('output.weight', [4100, 32000], 'q8_0')).toBe('F16');
  });

  it('80 layers with GQA: attn_v Q5_K outside the Q6_K layers; without GQA Q4_K', () => {
    expect(typeOf('blk.20.attn_v.weight', [8192, 1024], 'q4_k_m', llama70b)).toBe('Q5_K');
    expect(typeOf('blk.12.attn_v.weight', [8192, 1024], 'q4_k_m', llama70b)).toBe('Q6_K');
    expect(typeOf('blk.20.ffn_down.weight', [28672, 8192], 'q4_k_m', llama70b)).toBe('Q4_K');
    expect(typeOf('blk.20.attn_v.weight', [8192, 8192], 'q4_k_m', { ...llama70b, numKvHeads: 64 })).toBe('Q4_K');
    expect(typeOf('blk.20.attn_v.weight', [8192, 1024], 'q4_0', llama70b)).toBe('Q4_0');
  });

  it('a layer tensor without a layer number is an error naming it', () => {
    expect(() => typeOf('attn_v.weight', [4096, 1024], 'q4_k_m')).toThrow(/attn_v\.weight/);
  });
});

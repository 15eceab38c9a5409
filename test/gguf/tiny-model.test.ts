import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readGguf } from '../../lib/gguf/reader.js';
import { readTensorFloat32 } from '../../lib/gguf/tensor-data.js';
import { readSafetensors } from '../fixtures/safetensors.js';
import { hfToGgufName, makeTinyModel, makeTinyVocab, qkPermutation, type TinyModel } from '../fixtures/tiny-model.js';

const made: TinyModel[] = [];
async function tiny(...args: Parameters<typeof makeTinyModel>): Promise<TinyModel> {
  const m = await makeTinyModel(...args);
  made.push(m);
  return m;
}
afterAll(async () => {
  for (const m of made) await m.cleanup();
});

describe('tiny model fixture', () => {
  it('permutes Q/K rows as convert_hf_to_gguf does: GGUF row h·hd+2i+j = HF row h·hd+j·hd/2+i', () => {
    expect([...qkPermutation(8, 2)]).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
    expect([...qkPermutation(6, 1)]).toEqual([0, 3, 1, 4, 2, 5]);
  });

  it('writes an HF folder whose safetensors hold exactly `weights`', async () => {
    const m = await tiny({ dtype: 'bf16', ggufType: 'F16', arch: 'llama', seed: 21 });
    const config = JSON.parse(await readFile(join(m.hfDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({
      architectures: ['LlamaForCausalLM'],
      hidden_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      intermediate_size: 128,
      vocab_size: 384,
      torch_dtype: 'bfloat16',
      tie_word_embeddings: false,
    });
    const st = await readSafetensors(join(m.hfDir, 'model.safetensors'));
    expect([...st.tensors.keys()].sort()).toEqual([...m.weights.keys()].sort());
    expect(st.tensors.size).toBe(2 * 9 + 3);
    for (const [name, w] of m.weights) {
      const t = st.tensors.get(name);
      expect(t?.entry.dtype).toBe('BF16');
      expect(t?.entry.shape).toEqual(w.shape);
      expect(Buffer.from(t?.values.buffer ?? new ArrayBuffer(0)).equals(Buffer.from(w.values.buffer))).toBe(true);
    }
    expect(m.weights.get('model.layers.1.self_attn.k_proj.weight')?.shape).toEqual([32, 64]);
  });

  it('shards the safetensors with an index when asked', async () => {
    const m = await tiny({ shards: 3, tiedEmbeddings: true, seed: 22 });
    const files = (await readdir(m.hfDir)).sort();
    expect(files).toEqual(['config.json', 'model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors', 'model.safetensors.index.json']);
    const index = JSON.parse(await readFile(join(m.hfDir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string>; metadata: { total_size: number } };
    expect(Object.keys(index.weight_map).sort()).toEqual([...m.weights.keys()].sort());
    expect(index.weight_map['lm_head.weight']).toBeUndefined();
    let total = 0;
    for (const file of files.filter((f) => f.startsWith('model-'))) {
      const st = await readSafetensors(join(m.hfDir, file));
      for (const [name, t] of st.tensors) {
        expect(index.weight_map[name]).toBe(file);
        expect([...t.values]).toEqual([...(m.weights.get(name)?.values ?? [])]);
        total += t.values.byteLength;
      }
    }
    expect(index.metadata.total_size).toBe(total);
  });

  it('writes the same weights as a llama.cpp-style GGUF', async () => {
    const m = await tiny({ ggufType: 'Q8_0', seed: 23, ropeTheta: 1e6 });
    const f = await readGguf(m.ggufPath);
    expect(Object.fromEntries([...f.metadataTypes].filter(([k]) => k.startsWith('llama.') || k.startsWith('general.')))).toEqual({
      'general.architecture': 'string',
      'general.type': 'string',
      'general.name': 'string',
      'general.file_type': 'uint32',
      'general.quantization_version': 'uint32',
      'llama.block_count': 'uint32',
      'llama.context_length': 'uint32',
      'llama.embedding_length': 'uint32',
      'llama.feed_forward_length': 'uint32',
      'llama.attention.head_count': 'uint32',
      'llama.attention.head_count_kv': 'uint32',
      'llama.rope.freq_base': 'float32',
      'llama.attention.layer_norm_rms_epsilon': 'float32',
      'llama.vocab_size': 'uint32',
      'llama.rope.dimension_count': 'uint32',
    });
    expect(f.metadata.get('general.file_type')).toBe(7);
    expect(f.metadata.get('llama.rope.freq_base')).toBe(1e6);
    expect(f.metadata.get('tokenizer.ggml.tokens')).toEqual(m.vocab.tokens);
    expect(f.tensors.map((t) => t.name)).toEqual([...m.weights.keys()].map(hfToGgufName));
    expect(f.tensors.find((t) => t.name === 'blk.0.attn_k.weight')).toMatchObject({ ne: [64, 32], typeName: 'Q8_0' });
    expect(f.tensors.find((t) => t.name === 'blk.0.ffn_norm.weight')).toMatchObject({ ne: [64], typeName: 'F32' });

    // Q rows are permuted (head_dim 16: GGUF row 1 = HF row 8, row 2 = HF row 1, row 3 = HF row 9); V is not.
    const q = await readTensorFloat32(f, 'blk.1.attn_q.weight');
    const hfQ = m.weights.get('model.layers.1.self_attn.q_proj.weight')?.values ?? new Float32Array();
    const row = (a: Float32Array, r: number): number[] => [...a.subarray(r * 64, (r + 1) * 64)];
    for (const [g, h] of [[0, 0], [1, 8], [2, 1], [3, 9], [15, 15], [16, 16], [17, 24]]) expect(row(q, g as number)).toEqual(row(hfQ, h as number));
    expect(row(q, 1)).not.toEqual(row(hfQ, 1));
    const v = await readTensorFloat32(f, 'blk.1.attn_v.weight');
    expect([...v]).toEqual([...(m.weights.get('model.layers.1.self_attn.v_proj.weight')?.values ?? [])]);
  });

  it('is deterministic in its seed', async () => {
    const a = await tiny({ seed: 5, ggufType: 'Q4_0' });
    const b = await tiny({ seed: 5, ggufType: 'Q4_0' });
    const c = await tiny({ seed: 6, ggufType: 'Q4_0' });
    expect((await readFile(a.ggufPath)).equals(await readFile(b.ggufPath))).toBe(true);
    expect((await readFile(a.ggufPath)).equals(await readFile(c.ggufPath))).toBe(false);
  });

  it('makes SPM vocabularies with specials, byte fallback and pieces', () => {
    const v = makeTinyVocab(300);
    expect(v.tokens.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
    expect(v.tokens[3 + 0x0a]).toBe('<0x0A>');
    expect(v.tokenTypes.slice(0, 4)).toEqual([2, 3, 3, 6]);
    expect(v.tokens).toHaveLength(300);
    expect(new Set(v.tokens).size).toBe(300);
    const small = makeTinyVocab(40);
    expect(small.tokens.slice(0, 5)).toEqual(['<unk>', '<s>', '</s>', '▁', 'a']);
  });
});

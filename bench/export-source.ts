/**
 * The export benchmark's inputs, written straight to disk: a Mistral-7B-shaped GGUF of random
 * weights in the layout Ollama ships dolphin-mistral:7b (Q4_0 matrices, output.weight Q6_K, F32
 * norms, an SPM vocabulary llama.cpp can load), streamed a few MiB at a time, and a random LoRA
 * adapter folder in our format (mlx-lm layout) on top of it.
 */
import { randomFillSync } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { f32ToF16Bits } from '../lib/gguf/float16.js';
import type { GgufMetadataInput } from '../lib/gguf/metadata-encoding.js';
import { writeGguf, type GgufTensorInput } from '../lib/gguf/writer.js';
import { encodeSafetensorsF32, type DenseMatrix } from '../lib/model/adapter-safetensors.js';
import { makeTinyVocab } from '../test/fixtures/tiny-model.js';

export interface SourceShape {
  layers: number;
  hidden: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  vocab: number;
}

export const MISTRAL_7B: SourceShape = { layers: 32, hidden: 4096, intermediate: 14336, heads: 32, kvHeads: 8, vocab: 32000 };

const BLOCKS = {
  Q4_0: { elements: 32, bytes: 18, scaleAt: 0, codeStd: 4.6 },
  Q6_K: { elements: 256, bytes: 210, scaleAt: 208, codeStd: 900 },
} as const;
const CHUNK_BLOCKS = 1 << 16;

/**
 * Random blocks: every byte random, then each block's f16 scale drawn from a table (by one of the
 * block's own random bytes), so values come out around ±std and no scale is NaN or Inf.
 */
function randomBlocks(type: keyof typeof BLOCKS, elements: number, std: number): () => AsyncIterable<Uint8Array> {
  const b = BLOCKS[type];
  const scales = Array.from({ length: 256 }, (_, i) => f32ToF16Bits(((i & 1 ? -1 : 1) * (std / b.codeStd) * (0.5 + (i >> 1) / 128))));
  const positive = scales.map((s) => s & 0x7fff);
  return async function* () {
    let left = elements / b.elements;
    while (left > 0) {
      const n = Math.min(left, CHUNK_BLOCKS);
      const chunk = randomFillSync(new Uint8Array(n * b.bytes));
      for (let o = 0; o < chunk.length; o += b.bytes) {
        // Q4_0 scales take either sign (d = max/−8); Q6_K's super-block scale is positive.
        const s = (type === 'Q4_0' ? scales : positive)[chunk[o + (b.scaleAt === 0 ? 2 : 0)]!]!;
        chunk[o + b.scaleAt] = s & 0xff;
        chunk[o + b.scaleAt + 1] = s >> 8;
      }
      left -= n;
      yield chunk;
    }
  };
}

function normOnes(n: number): Uint8Array {
  return new Uint8Array(new Float32Array(n).fill(1).buffer);
}

function metadata(s: SourceShape): Map<string, GgufMetadataInput> {
  const v = makeTinyVocab(s.vocab);
  return new Map<string, GgufMetadataInput>([
    ['general.architecture', 'llama'],
    ['general.name', `random-mistral-7b-shape-${s.layers}l`],
    ['general.file_type', 2],
    ['general.quantization_version', 2],
    ['llama.block_count', s.layers],
    ['llama.context_length', 32768],
    ['llama.embedding_length', s.hidden],
    ['llama.feed_forward_length', s.intermediate],
    ['llama.attention.head_count', s.heads],
    ['llama.attention.head_count_kv', s.kvHeads],
    ['llama.rope.freq_base', 1e6],
    ['llama.attention.layer_norm_rms_epsilon', 1e-5],
    ['llama.vocab_size', s.vocab],
    ['llama.rope.dimension_count', s.hidden / s.heads],
    ['tokenizer.ggml.model', 'llama'],
    ['tokenizer.ggml.pre', 'default'],
    ['tokenizer.ggml.tokens', [...v.tokens]],
    ['tokenizer.ggml.scores', [...v.scores]],
    ['tokenizer.ggml.token_type', [...v.tokenTypes]],
    ['tokenizer.ggml.bos_token_id', v.bosId],
    ['tokenizer.ggml.eos_token_id', v.eosId],
    ['tokenizer.ggml.unknown_token_id', v.unkId],
    ['tokenizer.ggml.add_bos_token', true],
    ['tokenizer.ggml.add_eos_token', false],
  ]);
}

/** Tensors in llama.cpp's file order, with HF row-major shapes ([out, in]). */
export function sourceTensors(s: SourceShape): GgufTensorInput[] {
  const headDim = s.hidden / s.heads;
  const q = (name: string, rows: number, cols: number): GgufTensorInput => ({ name, shape: [rows, cols], type: 'Q4_0', data: randomBlocks('Q4_0', rows * cols, 1 / Math.sqrt(cols)) });
  const norm = (name: string): GgufTensorInput => ({ name, shape: [s.hidden], type: 'F32', data: normOnes(s.hidden) });
  const tensors: GgufTensorInput[] = [q('token_embd.weight', s.vocab, s.hidden)];
  for (let l = 0; l < s.layers; l++) {
    const p = `blk.${l}`;
    tensors.push(
      norm(`${p}.attn_norm.weight`),
      q(`${p}.attn_q.weight`, s.heads * headDim, s.hidden),
      q(`${p}.attn_k.weight`, s.kvHeads * headDim, s.hidden),
      q(`${p}.attn_v.weight`, s.kvHeads * headDim, s.hidden),
      q(`${p}.attn_output.weight`, s.hidden, s.heads * headDim),
      norm(`${p}.ffn_norm.weight`),
      q(`${p}.ffn_gate.weight`, s.intermediate, s.hidden),
      q(`${p}.ffn_up.weight`, s.intermediate, s.hidden),
      q(`${p}.ffn_down.weight`, s.hidden, s.intermediate),
    );
  }
  tensors.push(norm('output_norm.weight'), { name: 'output.weight', shape: [s.vocab, s.hidden], type: 'Q6_K', data: randomBlocks('Q6_K', s.vocab * s.hidden, 1 / Math.sqrt(s.hidden)) });
  return tensors;
}

/** Elements of the largest tensor (the embedding or output matrix). */
export function largestTensorElements(s: SourceShape): number {
  return Math.max(s.vocab * s.hidden, s.intermediate * s.hidden);
}

export async function writeSourceGguf(path: string, s: SourceShape): Promise<number> {
  return (await writeGguf(path, { metadata: metadata(s), tensors: sourceTensors(s) })).size;
}

function randomMatrix(rows: number, cols: number, std: number): DenseMatrix {
  const values = new Float32Array(rows * cols);
  const bytes = randomFillSync(new Uint8Array(values.length));
  for (let i = 0; i < values.length; i++) values[i] = ((bytes[i]! - 127.5) / 73.6) * std;
  return { shape: [rows, cols], values };
}

/** A rank-`rank` LoRA adapter on q/k/v/o of every block, in our format (mlx-lm layout), trained "on" `base`. */
export async function writeRandomAdapter(dir: string, base: string, s: SourceShape, rank: number): Promise<void> {
  const headDim = s.hidden / s.heads;
  const outs = { q_proj: s.heads * headDim, k_proj: s.kvHeads * headDim, v_proj: s.kvHeads * headDim, o_proj: s.hidden } as const;
  const tensors = new Map<string, DenseMatrix>();
  for (let l = 0; l < s.layers; l++) {
    for (const [target, out] of Object.entries(outs)) {
      const inputs = target === 'o_proj' ? s.heads * headDim : s.hidden;
      tensors.set(`model.layers.${l}.self_attn.${target}.lora_a`, randomMatrix(inputs, rank, 1 / Math.sqrt(inputs)));
      tensors.set(`model.layers.${l}.self_attn.${target}.lora_b`, randomMatrix(rank, out, 0.01));
    }
  }
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'adapters.safetensors'), encodeSafetensorsF32(tensors, { format: 'mlx' }));
  const config = {
    fine_tune_type: 'lora',
    num_layers: -1,
    lora_parameters: { rank, scale: 2, dropout: 0, keys: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj'] },
    model: base,
    base_model: { source: base, architecture: 'llama', num_hidden_layers: s.layers, quantization: null, qk_row_order: 'gguf' },
  };
  await writeFile(join(dir, 'adapter_config.json'), `${JSON.stringify(config, null, 4)}\n`);
}

/**
 * The demo's built-in model: a tiny random Llama-shaped GGUF (2 blocks, width 64) with a
 * SentencePiece vocabulary in code — byte fallback, letters and common English pieces, and the
 * ChatML turn tokens dolphin-mistral has — so the whole flow runs in about a minute on a CPU with
 * nothing downloaded. Its answers are noise until trained; that is the point of the demo.
 */
import { mulberry32 } from '../data/rng.js';
import { writeGguf, type GgufTensorInput } from '../gguf/writer.js';
import type { GgufMetadataInput } from '../gguf/metadata-encoding.js';
import { BUILTIN_TEMPLATES } from '../tokenizer/builtin-templates.js';

const SHAPE = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128 };
const WORDS = ['the', 'and', 'ice', 'sea', 'heat', 'code', 'data', 'model', 'ocean', 'glacier', 'climate', 'research', 'answer', 'source', 'because', 'python', 'function', 'summary'];

interface DemoVocab {
  tokens: string[];
  scores: number[];
  types: number[];
}

/** <unk>, <s>, </s>, 256 byte tokens, then pieces by score, then the ChatML control tokens. */
function demoVocab(): DemoVocab {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6);
  }
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  const pieces = ['▁', ...letters, ...[...letters].map((c) => `▁${c}`), ...letters.toUpperCase(), ...'0123456789.,!?\'-:;()', ...WORDS.map((w) => `▁${w}`), ...WORDS];
  const scores = tokens.map(() => 0);
  for (const [rank, piece] of [...new Set(pieces)].entries()) {
    tokens.push(piece);
    types.push(1);
    scores.push(-rank);
  }
  for (const special of ['<|im_end|>', '<|im_start|>']) {
    tokens.push(special);
    types.push(3);
    scores.push(0);
  }
  return { tokens, scores, types };
}

function metadata(vocab: DemoVocab): Record<string, GgufMetadataInput> {
  const { layers, hidden, heads, kvHeads, intermediate } = SHAPE;
  return {
    'general.architecture': 'llama',
    'general.name': 'mlx-qlora demo',
    'general.file_type': { type: 'uint32', value: 0 },
    'llama.context_length': 512,
    'llama.embedding_length': hidden,
    'llama.block_count': layers,
    'llama.feed_forward_length': intermediate,
    'llama.rope.dimension_count': hidden / heads,
    'llama.attention.head_count': heads,
    'llama.attention.head_count_kv': kvHeads,
    'llama.attention.layer_norm_rms_epsilon': 1e-5,
    'llama.rope.freq_base': 10000,
    'llama.vocab_size': vocab.tokens.length,
    'tokenizer.ggml.model': 'llama',
    'tokenizer.ggml.pre': 'default',
    'tokenizer.ggml.tokens': vocab.tokens,
    'tokenizer.ggml.scores': vocab.scores,
    'tokenizer.ggml.token_type': vocab.types,
    'tokenizer.ggml.bos_token_id': 1,
    'tokenizer.ggml.eos_token_id': vocab.tokens.indexOf('<|im_end|>'),
    'tokenizer.ggml.unknown_token_id': 0,
    'tokenizer.ggml.padding_token_id': 2,
    'tokenizer.ggml.add_bos_token': true,
    'tokenizer.ggml.add_eos_token': false,
    'tokenizer.chat_template': BUILTIN_TEMPLATES.chatml,
  };
}

/** Random F32 tensors in llama.cpp's names; norms are ones. */
function tensors(vocabSize: number, seed: number): GgufTensorInput[] {
  const rng = mulberry32(seed);
  const { layers, hidden, heads, kvHeads, intermediate } = SHAPE;
  const kv = (hidden / heads) * kvHeads;
  const f32 = (name: string, shape: number[], scale: number | 'ones'): GgufTensorInput => {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(n);
    for (let i = 0; i < n; i++) values[i] = scale === 'ones' ? 1 : (rng() * 2 - 1) * scale;
    return { name, shape, type: 'F32', data: new Uint8Array(values.buffer) };
  };
  const out = [f32('token_embd.weight', [vocabSize, hidden], 0.5), f32('output_norm.weight', [hidden], 'ones'), f32('output.weight', [vocabSize, hidden], 0.5)];
  for (let l = 0; l < layers; l++) {
    const p = `blk.${l}.`;
    out.push(
      f32(`${p}attn_norm.weight`, [hidden], 'ones'),
      f32(`${p}attn_q.weight`, [hidden, hidden], 0.2),
      f32(`${p}attn_k.weight`, [kv, hidden], 0.2),
      f32(`${p}attn_v.weight`, [kv, hidden], 0.2),
      f32(`${p}attn_output.weight`, [hidden, hidden], 0.2),
      f32(`${p}ffn_norm.weight`, [hidden], 'ones'),
      f32(`${p}ffn_gate.weight`, [intermediate, hidden], 0.2),
      f32(`${p}ffn_up.weight`, [intermediate, hidden], 0.2),
      f32(`${p}ffn_down.weight`, [hidden, intermediate], 0.2),
    );
  }
  return out;
}

/** Writes the demo model to `path` (atomically) and returns its vocabulary size. */
export async function writeDemoModel(path: string, seed = 1): Promise<{ path: string; vocabSize: number; parameters: number }> {
  const vocab = demoVocab();
  const list = tensors(vocab.tokens.length, seed);
  await writeGguf(path, { metadata: metadata(vocab), tensors: list });
  const parameters = list.reduce((sum, t) => sum + (t.shape ?? []).reduce((a, b) => a * b, 1), 0);
  return { path, vocabSize: vocab.tokens.length, parameters };
}

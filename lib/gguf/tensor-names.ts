/**
 * Llama-family tensor names in both directions (HF `model.layers.N.self_attn.q_proj.weight` ↔
 * llama.cpp `blk.N.attn_q.weight`) and the Q/K row order llama.cpp's converter writes for the
 * `llama` architecture. Shared by the loader (GGUF → model) and the exporter (model → GGUF).
 */

const BLOCK_PARTS: Readonly<Record<string, string>> = {
  attn_norm: 'input_layernorm',
  ffn_norm: 'post_attention_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
};

const GGUF_PART_OF: ReadonlyMap<string, string> = new Map(Object.entries(BLOCK_PARTS).map(([gguf, hf]) => [hf, gguf]));

const TOP_LEVEL: Readonly<Record<string, string>> = {
  'token_embd.weight': 'model.embed_tokens.weight',
  'output_norm.weight': 'model.norm.weight',
  'output.weight': 'lm_head.weight',
};
const TOP_LEVEL_HF: ReadonlyMap<string, string> = new Map(Object.entries(TOP_LEVEL).map(([gguf, hf]) => [hf, gguf]));

/** The HF name of a llama.cpp tensor, or undefined for tensors the model recomputes (rope_freqs). */
export function ggufToHfName(name: string): string | undefined {
  const top = TOP_LEVEL[name];
  if (top !== undefined) return top;
  if (name === 'rope_freqs.weight') return undefined;
  const m = /^blk\.(\d+)\.(\w+)\.(weight|bias)$/.exec(name);
  const part = m ? BLOCK_PARTS[m[2]!] : undefined;
  if (!m || !part) throw new Error(`unexpected GGUF tensor '${name}' for a Llama-family model`);
  return `model.layers.${m[1]}.${part}.${m[3]}`;
}

/** llama.cpp's name of an HF Llama/Mistral/Qwen2 tensor, or undefined for tensors GGUF drops (rotary inv_freq). */
export function hfToGgufName(name: string): string | undefined {
  const top = TOP_LEVEL_HF.get(name);
  if (top !== undefined) return top;
  if (/\.rotary_emb\.inv_freq$/.test(name)) return undefined;
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(name);
  const part = m ? GGUF_PART_OF.get(m[2]!) : undefined;
  if (!m || !part) throw new Error(`unexpected HF tensor '${name}' for a Llama-family model`);
  return `blk.${m[1]}.${part}.${m[3]}`;
}

/**
 * For a q or k projection of `heads` heads (rows = heads·headDim): the HF row stored at each GGUF
 * row. llama.cpp's `LlamaModel.permute` turns each head's split halves into interleaved pairs:
 * GGUF row h·hd + 2i + j holds HF row h·hd + j·hd/2 + i.
 */
export function hfRowOfGgufRow(rows: number, heads: number): Int32Array {
  const headDim = rows / heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new Error(`cannot permute ${rows} rows into ${heads} heads of even size`);
  const half = headDim / 2;
  const map = new Int32Array(rows);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) map[h * headDim + 2 * i + j] = h * headDim + j * half + i;
    }
  }
  return map;
}

/** Rows of a row-major [rows, cols] matrix (or a [rows] vector) from HF order into GGUF order. */
export function permuteRowsToGguf(values: Float32Array, rows: number, heads: number): Float32Array {
  const cols = values.length / rows;
  const hfRow = hfRowOfGgufRow(rows, heads);
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) out.set(values.subarray(hfRow[r]! * cols, (hfRow[r]! + 1) * cols), r * cols);
  return out;
}

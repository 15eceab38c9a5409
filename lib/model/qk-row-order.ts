/**
 * Q/K output rows in HF order (split halves per head) or llama.cpp's GGUF order (interleaved
 * pairs): GGUF row h·hd + 2i + j holds HF row h·hd + j·hd/2 + i (gguf_ollama.md §3.2). A LoRA B
 * has the projection's outputs as its columns in mlx orientation (r, out), so only B moves.
 */
import { hfRowOfGgufRow } from '../gguf/tensor-names.js';
import type { QkRowOrder } from './adapter-config.js';
import type { Architecture } from './architecture.js';

export type { QkRowOrder };

/** The row order of a loaded base: GGUF Llama-family weights are interleaved (they run with traditional RoPE). */
export function qkRowOrderOf(base: Pick<Architecture, 'ropeTraditional'>): QkRowOrder {
  return base.ropeTraditional ? 'gguf' : 'hf';
}

/** The row order llama.cpp's GGUF files of this family use: permuted for llama, HF order for qwen2. */
export function ggufFileRowOrder(base: Pick<Architecture, 'family'>): QkRowOrder {
  return base.family === 'qwen2' ? 'hf' : 'gguf';
}


/**
 * The columns of a row-major (rows, cols) matrix whose columns are q/k outputs of `heads` heads,
 * moved from one row order to the other. Returns `values` itself when the orders agree.
 */
export function reorderOutputColumns(values: Float32Array, rows: number, cols: number, heads: number, from: QkRowOrder, to: QkRowOrder): Float32Array {
  if (from === to) return values;
  const hfOf = hfRowOfGgufRow(cols, heads);
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let g = 0; g < cols; g++) {
      if (to === 'gguf') out[base + g] = values[base + hfOf[g]!]!;
      else out[base + hfOf[g]!] = values[base + g]!;
    }
  }
  return out;
}

/**
 * An adapter folder (ours, mlx-lm's or PEFT's) as per-weight deltas scale·(A·B)ᵀ, computed with
 * MLX one weight at a time. The LoRA matrices are small and stay in memory; each delta is the size
 * of its weight and lives only until it is added.
 */
import { adapterForBase, readAdapter, type AdapterWeights } from '../model/adapter.js';
import { transpose } from '../model/adapter-weights.js';
import type { Architecture } from '../model/architecture.js';
import { ggufFileRowOrder } from '../model/qk-row-order.js';
import { matmul, tensor, type Tensor } from '../tensor.js';

export interface AdapterMerge {
  /** The adapter's weights file, for errors. */
  readonly file: string;
  readonly scale: number;
  /** HF names of the linear weights the adapter changes. */
  readonly adapted: ReadonlySet<string>;
  /** scale·(A·B)ᵀ as an [out, in] float32 tensor for this HF weight, or undefined if it is not adapted. Caller disposes. */
  delta(hfWeightName: string): Promise<Tensor | undefined>;
}

/**
 * Reads the adapter in `dir` for `base`. Its q/k lora_b columns are put in the row order of the
 * GGUF that is written (llama.cpp's interleaved order for llama, HF's for qwen2), which is the order
 * the base's weights are merged in.
 */
export async function openAdapterMerge(dir: string, base: Architecture): Promise<AdapterMerge> {
  const adapter: AdapterWeights = adapterForBase(await readAdapter(dir, { totalLayers: base.numLayers }), base, ggufFileRowOrder(base));
  const adapted = new Set<string>();
  for (const name of adapter.matrices.keys()) {
    if (name.endsWith('.lora_a')) adapted.add(name.replace(/\.lora_a$/, '.weight'));
  }
  return {
    file: adapter.weightsFile,
    scale: adapter.scale,
    adapted,
    async delta(hfWeightName) {
      if (!adapted.has(hfWeightName)) return undefined;
      const prefix = hfWeightName.replace(/\.weight$/, '');
      const a = adapter.matrices.get(`${prefix}.lora_a`)!;
      const b = adapter.matrices.get(`${prefix}.lora_b`)!;
      const [inF, rank] = a.shape as [number, number];
      const out = b.shape[1]!;
      const bt = transpose(b.values, rank, out);
      for (let i = 0; i < bt.length; i++) bt[i] = bt[i]! * adapter.scale;
      const left = await tensor(bt, [out, rank]);
      try {
        const right = await tensor(transpose(a.values, inF, rank), [rank, inF]);
        try {
          return await matmul(left, right);
        } finally {
          right.dispose();
        }
      } finally {
        left.dispose();
      }
    },
  };
}

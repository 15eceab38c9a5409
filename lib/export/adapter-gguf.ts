/**
 * A LoRA adapter as llama.cpp's adapter GGUF (what `llama-cli --lora` and Ollama's ADAPTER take),
 * laid out as convert_lora_to_gguf.py writes it (gguf_ollama.md §2.2-2.4): lora_a ne [in, r]
 * (PEFT's A), lora_b ne [r, out] (PEFT's B) with q/k outputs in the GGUF base's row order, and
 * adapter.lora.alpha = scale·r, so llama.cpp's alpha/rank gives back our scale.
 */
import { basename, resolve } from 'node:path';
import type { LoraTarget } from '../config/train-config.js';
import { f32ToF16Bits } from '../gguf/float16.js';
import type { GgufMetadataInput } from '../gguf/metadata-encoding.js';
import { writeGguf, type GgufTensorInput, type WrittenGguf } from '../gguf/writer.js';
import { adapterForBase, readAdapter, transpose, type AdapterWeights } from '../model/adapter-weights.js';
import type { Architecture } from '../model/architecture.js';
import { ggufFileRowOrder } from '../model/qk-row-order.js';
import { adapterTensorName } from '../model/adapter-config.js';

export interface AdapterGgufOptions {
  /** Encoding of the LoRA matrices; llama.cpp takes F32 and F16 adapters on any base. Default f32. */
  dtype?: 'f32' | 'f16';
  /** general.name; the adapter folder's name by default. */
  name?: string;
}

const GGUF_TENSOR_OF: Record<LoraTarget, string> = {
  q_proj: 'attn_q',
  k_proj: 'attn_k',
  v_proj: 'attn_v',
  o_proj: 'attn_output',
  gate_proj: 'ffn_gate',
  up_proj: 'ffn_up',
  down_proj: 'ffn_down',
};

/** llama.cpp's name of a LoRA matrix, e.g. `blk.3.attn_q.weight.lora_a`. */
export function ggufLoraTensorName(layer: number, target: LoraTarget, matrix: 'lora_a' | 'lora_b'): string {
  return `blk.${layer}.${GGUF_TENSOR_OF[target]}.weight.${matrix}`;
}

/** GGUF `general.architecture` of a base: llama.cpp runs Mistral as llama. */
export function ggufArchitectureOf(base: Pick<Architecture, 'family'>): 'llama' | 'qwen2' {
  return base.family === 'qwen2' ? 'qwen2' : 'llama';
}

function encode(values: Float32Array, dtype: 'f32' | 'f16'): Uint8Array {
  if (dtype === 'f32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const bits = Uint16Array.from(values, (v) => f32ToF16Bits(v));
  return new Uint8Array(bits.buffer);
}

/** The tensors of an adapter already in the GGUF base's row order, block by block. */
export function adapterGgufTensors(adapter: AdapterWeights, dtype: 'f32' | 'f16'): GgufTensorInput[] {
  const type = dtype === 'f32' ? 'F32' : 'F16';
  const tensors: GgufTensorInput[] = [];
  for (const layer of adapter.layers) {
    for (const target of adapter.targets) {
      for (const matrix of ['lora_a', 'lora_b'] as const) {
        const m = adapter.matrices.get(adapterTensorName(layer, target, matrix))!;
        const [rows, cols] = m.shape as [number, number];
        // mlx (in, r) / (r, out) → row-major [r, in] / [out, r], i.e. ggml ne [in, r] / [r, out].
        tensors.push({ name: ggufLoraTensorName(layer, target, matrix), shape: [cols, rows], type, data: encode(transpose(m.values, rows, cols), dtype) });
      }
    }
  }
  return tensors;
}

/** Writes the adapter in `adapterDir` (ours, mlx-lm's or PEFT's) for the GGUF of `base`, atomically. */
export async function writeAdapterGguf(adapterDir: string, base: Architecture, outPath: string, options: AdapterGgufOptions = {}): Promise<WrittenGguf> {
  const dtype = options.dtype ?? 'f32';
  const adapter = adapterForBase(await readAdapter(adapterDir, { totalLayers: base.numLayers }), base, ggufFileRowOrder(base));
  const metadata = new Map<string, GgufMetadataInput>([
    ['general.architecture', ggufArchitectureOf(base)],
    ['general.type', 'adapter'],
    ['general.name', options.name ?? basename(resolve(adapterDir))],
    ['general.quantization_version', 2],
    ['adapter.type', 'lora'],
    ['adapter.lora.alpha', { type: 'float32', value: adapter.scale * adapter.rank }],
  ]);
  return writeGguf(outPath, { metadata, tensors: adapterGgufTensors(adapter, dtype) });
}

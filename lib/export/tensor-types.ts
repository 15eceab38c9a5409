/**
 * Which ggml type each tensor of an exported GGUF gets: llama.cpp's choice in
 * `llama_model_quantize` (src/llama-quant.cpp: tensor_allows_quantization, llama_tensor_get_type,
 * tensor_type_fallback) for a dense llama-architecture model without an importance matrix, so that
 * our Q8_0/Q4_0/Q4_K_M files hold, tensor by tensor, the types llama.cpp writes.
 */
import { ggmlTypeByName, type GgmlTypeName } from '../gguf/ggml-type.js';

export type GgufExportType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_k_m';
export const GGUF_EXPORT_TYPES: readonly GgufExportType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_k_m'];

interface ExportTypeSpec {
  /** llama_ftype, written as general.file_type. */
  readonly fileType: number;
  /** The type of a quantizable tensor before the per-tensor rules (llama_ftype_get_default_type). */
  readonly defaultType: GgmlTypeName;
}

const SPECS: Readonly<Record<GgufExportType, ExportTypeSpec>> = {
  f32: { fileType: 0, defaultType: 'F32' },
  f16: { fileType: 1, defaultType: 'F16' },
  bf16: { fileType: 32, defaultType: 'BF16' },
  q8_0: { fileType: 7, defaultType: 'Q8_0' },
  q4_0: { fileType: 2, defaultType: 'Q4_0' },
  q4_k_m: { fileType: 15, defaultType: 'Q4_K' },
};

/** A type's fallback when a tensor's row length is not a multiple of its block (tensor_type_fallback). */
const SHAPE_FALLBACK: Partial<Record<GgmlTypeName, GgmlTypeName>> = { Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0' };

export function isGgufExportType(value: string): value is GgufExportType {
  return (GGUF_EXPORT_TYPES as readonly string[]).includes(value);
}

/** general.file_type of a file of this export type (llama_ftype). */
export function fileTypeOf(type: GgufExportType): number {
  return SPECS[type].fileType;
}

export interface TensorTypeModel {
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  /** No output.weight: token_embd.weight then serves as the output and is typed like it. */
  readonly tiedEmbeddings?: boolean;
}

export interface TensorShapeName {
  readonly name: string;
  /** ggml order: ne[0] is the row length. */
  readonly ne: readonly number[];
}

type Category = 'output' | 'token_embd' | 'attn_v' | 'ffn_down' | 'other';

// Substring tests in llama.cpp's order (tensor_get_category); attn_qkv and attn_kv_b count as attn_v.
function categoryOf(name: string): Category {
  if (name === 'output.weight') return 'output';
  if (name === 'token_embd.weight' || name === 'per_layer_token_embd.weight') return 'token_embd';
  if (['attn_qkv.weight', 'attn_kv_b.weight', 'attn_v.weight'].some((s) => name.includes(s))) return 'attn_v';
  if (['attn_k.weight', 'attn_q.weight', 'attn_output.weight', 'ffn_up', 'ffn_gate'].some((s) => name.includes(s))) return 'other';
  if (name.includes('ffn_down')) return 'ffn_down';
  return 'other';
}

/** Names llama.cpp never quantizes even when 2-D (the ones a llama-family model can have). */
const KEPT_NAME_PARTS = ['_norm.weight', 'ffn_gate_inp.weight', 'ffn_gate_tid2eid.weight', 'altup', 'laurel', 'per_layer_model_proj', 'ssm_conv1d', 'shortconv.conv.weight', 'attn_rel_b.weight', '.position_embd', '.rel_pos', '.patch_embd', '.patch_merger'];

/** tensor_allows_quantization: 2-D or more (ggml_n_dims ignores trailing 1s), a weight, not a norm. */
function allowsQuantization(t: TensorShapeName): boolean {
  let dims = t.ne.length;
  while (dims > 1 && t.ne[dims - 1] === 1) dims--;
  if (dims < 2 || !t.name.endsWith('weight')) return false;
  if (t.name === 'position_embd.weight' || t.name === 'token_types.weight') return false;
  return !KEPT_NAME_PARTS.some((part) => t.name.includes(part));
}

/** The first 1/8 of the layers, the last 1/8, and every third layer between (C integer division). */
export function useMoreBits(layer: number, layers: number): boolean {
  const eighth = Math.trunc(layers / 8);
  return layer < eighth || layer >= Math.trunc((7 * layers) / 8) || (layer - eighth) % 3 === 2;
}

function blockSize(type: GgmlTypeName): number {
  const info = ggmlTypeByName(type);
  if (info === undefined) throw new Error(`unknown ggml type ${type}`);
  return info.blockSize;
}

function layerOf(name: string): number {
  const m = /^blk\.(\d+)\./.exec(name);
  if (m === null) throw new Error(`tensor '${name}': no layer number (blk.N.) in its name`);
  return Number(m[1]);
}

/**
 * llama_tensor_get_type_impl for our file types. The attn_v and ffn_down counters llama.cpp keeps
 * (tensors seen so far, in layer order) equal the layer number when every layer has one of each,
 * as llama-family models do; llama.cpp counts ffn_down against the layer count and attn_v against
 * the number of attn_v tensors, which is the layer count too.
 */
function ruleType(t: TensorShapeName, type: GgufExportType, model: TensorTypeModel): GgmlTypeName {
  const base = SPECS[type].defaultType;
  const category = categoryOf(t.name);
  if (category === 'output' || (category === 'token_embd' && model.tiedEmbeddings === true)) {
    if ((t.ne[0] ?? 0) % blockSize(base) !== 0) return 'Q8_0';
    return base === 'Q8_0' ? 'Q8_0' : 'Q6_K';
  }
  if (type !== 'q4_k_m') return base;
  if (category === 'attn_v') {
    if (useMoreBits(layerOf(t.name), model.numLayers)) return 'Q6_K';
    // llama.cpp's LLM_TYPE_70B (80 layers with grouped-query attention) gives attn_v more bits.
    return model.numLayers === 80 && model.numHeads !== model.numKvHeads ? 'Q5_K' : base;
  }
  if (category === 'ffn_down' && useMoreBits(layerOf(t.name), model.numLayers)) return 'Q6_K';
  return base;
}

/** tensor_type_fallback: a type the row length cannot take becomes a 32-block type, else F16. */
function fitToRowLength(type: GgmlTypeName, rowLength: number): GgmlTypeName {
  if (rowLength % blockSize(type) === 0) return type;
  const fallback = SHAPE_FALLBACK[type] ?? type;
  return rowLength % blockSize(fallback) === 0 ? fallback : 'F16';
}

/**
 * The ggml type llama.cpp's llama_model_quantize gives this tensor (GGUF name, ggml ne order)
 * when it converts an F32 file to `type`, with its fallbacks for shapes a type cannot take;
 * 1-D tensors and norms stay F32.
 */
export function tensorTypeFor(t: TensorShapeName, type: GgufExportType, model: TensorTypeModel): GgmlTypeName {
  if (!allowsQuantization(t)) return 'F32';
  const base = SPECS[type].defaultType;
  if (blockSize(base) === 1) return base;
  return fitToRowLength(ruleType(t, type, model), t.ne[0] ?? 0);
}

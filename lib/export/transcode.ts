/**
 * A tensor from the bytes it is stored as (a GGUF tensor of any type we decode, or a safetensors
 * F32/F16/BF16 tensor) or from an MLX tensor, to the bytes of a GGUF type, in one native call: the
 * worker reads a few rows at a time, decodes them with llama.cpp's to_float arithmetic, reorders
 * rows, adds an adapter's delta and encodes them with the reference quantizers. Without a delta a
 * file-backed tensor never enters MLX or JavaScript as floats.
 */
import { z } from 'zod';
import type { GgmlTypeName } from '../gguf/ggml-type.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { ENCODABLE_GGML_TYPES, isEncodableGgmlType } from './quantize.js';

/** Where a tensor's bytes lie: a file, the absolute offset of its first byte, and the type they are in. */
export interface TensorBytes {
  readonly path: string;
  readonly offset: number;
  readonly type: GgmlTypeName;
}

/** The stored types the native decoders read (ggml's dequantize_row_*). */
export const TRANSCODABLE_SOURCE_TYPES = ['F32', 'F16', 'BF16', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'] as const satisfies readonly GgmlTypeName[];

export type TranscodableSourceType = (typeof TRANSCODABLE_SOURCE_TYPES)[number];

export function canTranscodeFrom(type: string): type is TranscodableSourceType {
  return (TRANSCODABLE_SOURCE_TYPES as readonly string[]).includes(type);
}

export interface TranscodeOptions {
  /** Worker threads; the hardware's thread count when not given. */
  threads?: number;
  /** Output row r is source row rowMap[r] (HF → GGUF Q/K order, say). */
  rowMap?: Int32Array;
  /** Added to the decoded values, in output row order: an adapter's scale·B·A, [rows, cols]. */
  delta?: Tensor;
}

const optionsSchema = z
  .object({
    threads: z.number().int().min(1).max(1024).optional(),
    rowMap: z.instanceof(Int32Array).optional(),
    delta: z.custom<Tensor>((v) => typeof v === 'object' && v !== null).optional(),
  })
  .strict();

/**
 * The bytes of `source` ([rows, cols] row-major, i.e. ggml ne = [cols, rows], or [n]) in `type`,
 * equal to what llama_model_quantize writes for the same values. Rejects, naming the row and column,
 * a NaN or infinite value and values too large for `type`; a file that ends early names the file.
 */
export async function transcodeTensor(source: TensorBytes | Tensor, shape: readonly number[], type: GgmlTypeName, options: TranscodeOptions = {}): Promise<Uint8Array> {
  if (!isEncodableGgmlType(type)) throw new TypeError(`transcodeTensor: cannot write GGUF type ${type} (supported: ${ENCODABLE_GGML_TYPES.join(', ')})`);
  if ('path' in source && !canTranscodeFrom(source.type)) {
    throw new TypeError(`transcodeTensor: ${source.path}: cannot decode GGUF type ${source.type} (supported: ${TRANSCODABLE_SOURCE_TYPES.join(', ')})`);
  }
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) throw new RangeError(`transcodeTensor: bad options: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const { threads, rowMap, delta } = parsed.data;
  const from = 'path' in source ? { path: source.path, offset: source.offset, type: source.type } : source;
  return native().ggufTranscode(from, [...shape], type, { ...(threads !== undefined ? { threads } : {}), ...(rowMap ? { rowMap } : {}), ...(delta ? { delta } : {}) });
}

/**
 * Rows [first, first + count) of a stored tensor transcoded into `into` (a reused buffer, so a
 * tensor streams through a few MiB of memory that is already mapped); resolves to the bytes written.
 */
export async function transcodeRowsInto(
  source: TensorBytes,
  shape: readonly number[],
  type: GgmlTypeName,
  rows: { first: number; count: number },
  into: Uint8Array,
  options: Omit<TranscodeOptions, 'delta'> = {},
): Promise<number> {
  if (!isEncodableGgmlType(type)) throw new TypeError(`transcodeRowsInto: cannot write GGUF type ${type} (supported: ${ENCODABLE_GGML_TYPES.join(', ')})`);
  if (!canTranscodeFrom(source.type)) throw new TypeError(`transcodeRowsInto: ${source.path}: cannot decode GGUF type ${source.type}`);
  const { threads, rowMap } = optionsSchema.parse(options);
  const from = { path: source.path, offset: source.offset, type: source.type };
  return native().ggufTranscode(from, [...shape], type, { ...(threads !== undefined ? { threads } : {}), ...(rowMap ? { rowMap } : {}), rows: [rows.first, rows.count], into });
}

/** A stored tensor's values as float32, exactly as llama.cpp's to_float computes them (row-major). */
export async function decodeTensorBytes(source: TensorBytes, shape: readonly number[], options: { threads?: number } = {}): Promise<Float32Array> {
  const bytes = await transcodeTensor(source, shape, 'F32', options);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

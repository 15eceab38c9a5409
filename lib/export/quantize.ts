/**
 * Dense tensors as GGUF tensor data: the native block encoders, whose bytes equal llama.cpp's
 * reference quantizers (what `llama_model_quantize` writes without an importance matrix).
 */
import { z } from 'zod';
import { ggmlTypeByName, type GgmlTypeName } from '../gguf/ggml-type.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';

/** The ggml types encodeTensor writes. */
export const ENCODABLE_GGML_TYPES = ['F32', 'F16', 'BF16', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q4_K', 'Q5_K', 'Q6_K'] as const satisfies readonly GgmlTypeName[];
export type EncodableGgmlType = (typeof ENCODABLE_GGML_TYPES)[number];

export interface EncodeTensorOptions {
  /** Encoder threads; the hardware's thread count when not given. */
  threads?: number;
}

const optionsSchema = z.object({ threads: z.number().int().min(1).max(1024).optional() }).strict();

export function isEncodableGgmlType(type: string): type is EncodableGgmlType {
  return (ENCODABLE_GGML_TYPES as readonly string[]).includes(type);
}

/** Bytes of a tensor of `rows` rows of `rowLength` values in `type` (rowLength a multiple of its block). */
export function encodedByteLength(type: EncodableGgmlType, rows: number, rowLength: number): number {
  const info = ggmlTypeByName(type);
  if (info === undefined || rowLength % info.blockSize !== 0) {
    throw new RangeError(`${type}: a row length of ${rowLength} is not a multiple of the block size`);
  }
  return rows * (rowLength / info.blockSize) * info.typeSize;
}

/**
 * ggml bytes of a dense tensor ([rows, cols] row-major, i.e. ggml ne = [cols, rows], or [n]) in
 * `type`, byte-identical to llama.cpp's reference quantizers. Any float dtype is read as float32.
 * Rejects (with the reason) a type it cannot write, a shape that is not 1-D or 2-D, a row length
 * that is not a multiple of the type's block size, a NaN or infinite value, and values too large
 * for the type (a half value or block scale that overflows, which llama.cpp refuses), naming the row.
 */
export async function encodeTensor(t: Tensor, type: GgmlTypeName, options: EncodeTensorOptions = {}): Promise<Uint8Array> {
  if (!isEncodableGgmlType(type)) {
    throw new TypeError(`encodeTensor: cannot write GGUF type ${type} (supported: ${ENCODABLE_GGML_TYPES.join(', ')})`);
  }
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) throw new RangeError(`encodeTensor: bad options: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return native().ggufEncode(t, type, parsed.data.threads);
}

import { resolveGgmlType, type GgmlTypeName } from './ggml-type.js';
import { Q2_K, Q3_K, Q4_K, Q5_K, Q6_K } from './dequantize-k.js';
import { Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 } from './dequantize-legacy.js';
import { BF16, F16, F32 } from './dequantize-scalar.js';

/**
 * Pure-TypeScript block decoders with the values of ggml-quants.c `dequantize_row_*`. Used for
 * the GGUF types that cannot be repacked into MLX's layout, so a whole 7B matrix may come
 * through here: decoders read bytes directly (no DataView, no per-element allocation), and
 * `dequantizeInto` lets a caller decode a tensor in chunks into one output.
 *
 * Q8_K is left out on purpose: ggml uses it only for activations, never in a model file.
 */

/** Decodes `blocks` whole blocks from the start of src into the start of dst. */
export type BlockDecoder = (src: Uint8Array, dst: Float32Array, blocks: number) => void;

export const DEQUANTIZABLE_TYPES = [
  'F32', 'F16', 'BF16', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K',
] as const satisfies readonly GgmlTypeName[];

export type DequantizableType = (typeof DEQUANTIZABLE_TYPES)[number];

const decoders: Record<DequantizableType, BlockDecoder> = { F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K };

export function canDequantize(type: GgmlTypeName | string | number): boolean {
  return Object.hasOwn(decoders, resolveGgmlType(type).name);
}

function decoderFor(type: GgmlTypeName | string | number, byteLength: number): { decode: BlockDecoder; blocks: number; blockSize: number } {
  const info = resolveGgmlType(type);
  const decode = (decoders as Record<string, BlockDecoder | undefined>)[info.name];
  if (decode === undefined) throw new Error(`dequantize: ${info.name} is not supported (only ${DEQUANTIZABLE_TYPES.join(', ')})`);
  if (byteLength % info.typeSize !== 0) {
    throw new Error(`dequantize: ${byteLength} bytes is not a whole number of ${info.name} blocks (${info.typeSize} bytes each)`);
  }
  return { decode, blocks: byteLength / info.typeSize, blockSize: info.blockSize };
}

/** Decodes whole blocks of `type` to float32; the byte length must be a whole number of blocks. */
export function dequantize(type: GgmlTypeName | string | number, bytes: Uint8Array): Float32Array {
  const { decode, blocks, blockSize } = decoderFor(type, bytes.byteLength);
  const out = new Float32Array(blocks * blockSize);
  decode(bytes, out, blocks);
  return out;
}

/** Like `dequantize`, into `dst` from element `at` on; returns the number of values written. */
export function dequantizeInto(type: GgmlTypeName | string | number, bytes: Uint8Array, dst: Float32Array, at = 0): number {
  const { decode, blocks, blockSize } = decoderFor(type, bytes.byteLength);
  const count = blocks * blockSize;
  if (at < 0 || at + count > dst.length) throw new RangeError(`dequantizeInto: ${count} values at ${at} do not fit in ${dst.length}`);
  decode(bytes, dst.subarray(at, at + count), blocks);
  return count;
}

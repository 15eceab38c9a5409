/**
 * Lossless repacking of GGUF Q4_0, Q4_1 and Q8_0 blocks into MLX's affine layout (group 32):
 * each block's scale d and offset become an MLX scale and bias, and its codes are re-laid as
 * little-endian bit fields. value = scale·code + bias holds exactly as llama.cpp defines it.
 *
 * Scales and biases stay float16 where that is exact (GGUF's scales and Q4_1's offsets are float16
 * already; −8·d and −128·d are float16 unless they overflow), which makes a 4-bit weight cost 5 bits
 * instead of 6. A tensor with any block that float16 cannot hold exactly keeps both in float32.
 */
import { f16BitsToF32, f32ToF16Bits } from '../gguf/float16.js';

/** Scales and biases: float16 bits (Uint16Array), or float32 where float16 would not be exact. */
export type ScaleParams = { dtype: 'float16'; scales: Uint16Array; biases: Uint16Array } | { dtype: 'float32'; scales: Float32Array; biases: Float32Array };

export type MlxQuantized = ScaleParams & {
  /** [rows, cols·bits/32] packed codes. */
  wq: Uint32Array;
  bits: 4 | 8;
  groupSize: 32;
};

/** A tensor's scales and biases ([rows, cols/32] each) as float32 values, whatever they are stored as. */
export function scaleValues(q: ScaleParams): { scales: Float32Array; biases: Float32Array } {
  if (q.dtype === 'float32') return { scales: q.scales, biases: q.biases };
  return { scales: Float32Array.from(q.scales, f16BitsToF32), biases: Float32Array.from(q.biases, f16BitsToF32) };
}

/**
 * Per-block scale bits and offsets (as float32 values, exact products of float16 scales) into the
 * narrowest exact storage: float16 when every offset rounds to itself, else float32 for both.
 */
function scaleParams(scaleBits: Uint16Array, biases: Float32Array): ScaleParams {
  const biasBits = new Uint16Array(biases.length);
  for (let i = 0; i < biases.length; i++) {
    const b = f32ToF16Bits(biases[i]!);
    if (f16BitsToF32(b) !== biases[i]) return { dtype: 'float32', scales: Float32Array.from(scaleBits, f16BitsToF32), biases };
    biasBits[i] = b;
  }
  return { dtype: 'float16', scales: scaleBits, biases: biasBits };
}

export const REPACKABLE_TYPES = ['Q4_0', 'Q4_1', 'Q8_0'] as const;
export type RepackableType = (typeof REPACKABLE_TYPES)[number];

export function isRepackable(type: string): type is RepackableType {
  return (REPACKABLE_TYPES as readonly string[]).includes(type);
}

const BLOCK = 32;

function check(type: string, bytes: Uint8Array, rows: number, cols: number, blockBytes: number): number {
  if (cols % BLOCK !== 0) throw new Error(`${type}: row length ${cols} is not a multiple of ${BLOCK}`);
  const blocks = (rows * cols) / BLOCK;
  if (bytes.length !== blocks * blockBytes) {
    throw new Error(`${type}: ${bytes.length} bytes for ${rows}×${cols}, expected ${blocks * blockBytes}`);
  }
  return blocks;
}

/** Q4_0 / Q4_1 blocks: [d (f16), (m (f16)), qs[16]]; element j < 16 is qs[j] & 15, element j + 16 is qs[j] >> 4. */
function repack4(type: 'Q4_0' | 'Q4_1', bytes: Uint8Array, rows: number, cols: number): MlxQuantized {
  const blockBytes = type === 'Q4_0' ? 18 : 20;
  const blocks = check(type, bytes, rows, cols, blockBytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint8Array(blocks * 16);
  const scales = new Uint16Array(blocks);
  const biases = new Float32Array(blocks);
  const codesAt = type === 'Q4_0' ? 2 : 4;
  for (let b = 0; b < blocks; b++) {
    const at = b * blockBytes;
    scales[b] = view.getUint16(at, true);
    biases[b] = type === 'Q4_0' ? -8 * f16BitsToF32(scales[b]!) : f16BitsToF32(view.getUint16(at + 2, true));
    const qs = at + codesAt;
    // MLX: byte k holds elements 2k (low nibble) and 2k + 1 (high nibble).
    for (let k = 0; k < 16; k++) {
      const e0 = 2 * k;
      const e1 = 2 * k + 1;
      const lo = e0 < 16 ? bytes[qs + e0]! & 15 : bytes[qs + e0 - 16]! >> 4;
      const hi = e1 < 16 ? bytes[qs + e1]! & 15 : bytes[qs + e1 - 16]! >> 4;
      out[b * 16 + k] = lo | (hi << 4);
    }
  }
  return { wq: new Uint32Array(out.buffer), ...scaleParams(scales, biases), bits: 4, groupSize: 32 };
}

/** Q8_0 blocks: [d (f16), qs int8[32]]; value = d·q = d·(q + 128) − 128·d. */
function repack8(bytes: Uint8Array, rows: number, cols: number): MlxQuantized {
  const blocks = check('Q8_0', bytes, rows, cols, 34);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint8Array(blocks * 32);
  const scales = new Uint16Array(blocks);
  const biases = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const at = b * 34;
    scales[b] = view.getUint16(at, true);
    biases[b] = -128 * f16BitsToF32(scales[b]!);
    for (let k = 0; k < 32; k++) out[b * 32 + k] = (bytes[at + 2 + k]! + 128) & 0xff;
  }
  return { wq: new Uint32Array(out.buffer), ...scaleParams(scales, biases), bits: 8, groupSize: 32 };
}

/** `bytes`: the tensor's data for a [rows, cols] matrix (cols contiguous, as GGUF stores it). */
export function repackGguf(type: RepackableType, bytes: Uint8Array, rows: number, cols: number): MlxQuantized {
  // Aligned copies: the Uint32Array view needs a 4-byte aligned buffer of its own.
  return type === 'Q8_0' ? repack8(bytes, rows, cols) : repack4(type, bytes, rows, cols);
}

import { f16Table32 } from './float16.js';
import type { BlockDecoder } from './dequantize.js';

/**
 * The 32-element block types (ggml-common.h `block_q{4,5,8}_{0,1}`). Codes are split by halves:
 * byte j holds element j in its low nibble and element j + 16 in its high nibble, and in Q5_x
 * bit j of the little-endian u32 `qh` is the fifth bit of element j.
 *
 * Rounding matches ggml's C: every code·d is exact in float32 (at most 5 + 11 bits), so a value
 * is exact or is one float32 rounding of code·d + m, which the store into dst performs (a double
 * result rounded to float32 is the correctly rounded float32 result for one +, −, ×).
 */

export const Q4_0: BlockDecoder = (src, dst, n) => {
  const t = f16Table32();
  for (let b = 0, o = 0, y = 0; b < n; b++, o += 18, y += 32) {
    const d = t[src[o]! | (src[o + 1]! << 8)]!;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 2 + j]!;
      dst[y + j] = ((q & 15) - 8) * d;
      dst[y + j + 16] = ((q >> 4) - 8) * d;
    }
  }
};

export const Q4_1: BlockDecoder = (src, dst, n) => {
  const t = f16Table32();
  for (let b = 0, o = 0, y = 0; b < n; b++, o += 20, y += 32) {
    const d = t[src[o]! | (src[o + 1]! << 8)]!;
    const m = t[src[o + 2]! | (src[o + 3]! << 8)]!;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 4 + j]!;
      dst[y + j] = (q & 15) * d + m;
      dst[y + j + 16] = (q >> 4) * d + m;
    }
  }
};

/** `d: half, qh: u8[4], qs: u8[16]`; x = (code − 16)·d with a 5-bit code. */
export const Q5_0: BlockDecoder = (src, dst, n) => {
  const t = f16Table32();
  for (let b = 0, o = 0, y = 0; b < n; b++, o += 22, y += 32) {
    const d = t[src[o]! | (src[o + 1]! << 8)]!;
    const qh = src[o + 2]! | (src[o + 3]! << 8) | (src[o + 4]! << 16) | (src[o + 5]! << 24);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 6 + j]!;
      dst[y + j] = (((q & 15) | (((qh >>> j) & 1) << 4)) - 16) * d;
      dst[y + j + 16] = (((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16) * d;
    }
  }
};

/** `d: half, m: half, qh: u8[4], qs: u8[16]`; x = code·d + m with a 5-bit code. */
export const Q5_1: BlockDecoder = (src, dst, n) => {
  const t = f16Table32();
  for (let b = 0, o = 0, y = 0; b < n; b++, o += 24, y += 32) {
    const d = t[src[o]! | (src[o + 1]! << 8)]!;
    const m = t[src[o + 2]! | (src[o + 3]! << 8)]!;
    const qh = src[o + 4]! | (src[o + 5]! << 8) | (src[o + 6]! << 16) | (src[o + 7]! << 24);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 8 + j]!;
      dst[y + j] = ((q & 15) | (((qh >>> j) & 1) << 4)) * d + m;
      dst[y + j + 16] = ((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) * d + m;
    }
  }
};

export const Q8_0: BlockDecoder = (src, dst, n) => {
  const t = f16Table32();
  for (let b = 0, o = 0, y = 0; b < n; b++, o += 34, y += 32) {
    const d = t[src[o]! | (src[o + 1]! << 8)]!;
    // (u << 24) >> 24 sign-extends the int8 code.
    for (let j = 0; j < 32; j++) dst[y + j] = ((src[o + 2 + j]! << 24) >> 24) * d;
  }
};

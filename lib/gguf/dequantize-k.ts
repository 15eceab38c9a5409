import { f16Table32 } from './float16.js';
import type { BlockDecoder } from './dequantize.js';

/**
 * K-quant super-blocks of 256 elements (ggml-common.h `block_q{2..6}_K`), decoded as
 * ggml-quants.c `dequantize_row_q*_K` defines the values.
 *
 * Rounding matches ggml's C: an f16 scale times a 4/6/8-bit sub-scale times a code fits in
 * float32 (Q6_K's product excepted, rounded once), so each value is exact or one float32
 * rounding of a·q − b; the store into dst performs that rounding, and a double result rounded
 * to float32 is the correctly rounded float32 result of one +, −, ×. No Math.fround is needed.
 *
 * Q2_K and Q3_K share a code layout: 2-bit codes, 4 per byte, in two halves of 128 elements
 * using 32 bytes each. Element e sits in byte 32·(e >> 7) + (e & 31) at bit 2·((e >> 5) & 3).
 */

/** Q4_K/Q5_K `get_scale_min_k4`: the 6-bit scale of sub-block j from the 12 packed bytes at s. */
function scaleK4(src: Uint8Array, s: number, j: number): number {
  return j < 4 ? src[s + j]! & 63 : (src[s + j + 4]! & 15) | ((src[s + j - 4]! >> 6) << 4);
}

/** The 6-bit min of sub-block j, packed alongside `scaleK4`. */
function minK4(src: Uint8Array, s: number, j: number): number {
  return j < 4 ? src[s + j + 4]! & 63 : (src[s + j + 4]! >> 4) | ((src[s + j]! >> 6) << 4);
}

/** `scales: u8[16], qs: u8[64], d: half, dmin: half`; 16 sub-blocks of 16: d·(sc & 15)·q − dmin·(sc >> 4). */
export const Q2_K: BlockDecoder = (src, dst, n) => {
  const t = f16Table32();
  for (let b = 0, o = 0, y = 0; b < n; b++, o += 84, y += 256) {
    const d = t[src[o + 80]! | (src[o + 81]! << 8)]!;
    const dmin = t[src[o + 82]! | (src[o + 83]! << 8)]!;
    for (let g = 0; g < 16; g++) {
      const sc = src[o + g]!;
      const dl = d * (sc & 15);
      const ml = dmin * (sc >> 4);
      const qs = o + 16 + (g >> 3) * 32 + (g & 1) * 16;
      const shift = ((g >> 1) & 3) * 2;
      const out = y + g * 16;
      for (let l = 0; l < 16; l++) dst[out + l] = dl * ((src[qs + l]! >> shift) & 3) - ml;
    }
  }
};

/**
 * `hmask: u8[32], qs: u8[64], scales: u8[12], d: half`; 16 sub-blocks of 16: d·(sc − 32)·(q − 4)
 * with a 3-bit code q whose high bit is bit e >> 5 of hmask[e & 31]. Scale g has its low 4 bits
 * in nibble g >> 3 of byte g & 7 and its high 2 bits at bit 2·(g >> 2) of byte 8 + (g & 3).
 */
export const Q3_K: BlockDecoder = (src, dst, n) => {
  const t = f16Table32();
  for (let b = 0, o = 0, y = 0; b < n; b++, o += 110, y += 256) {
    const d = t[src[o + 108]! | (src[o + 109]! << 8)]!;
    const s = o + 96;
    for (let g = 0; g < 16; g++) {
      const lo = g < 8 ? src[s + g]! & 15 : src[s + g - 8]! >> 4;
      const hi = (src[s + 8 + (g & 3)]! >> (2 * (g >> 2))) & 3;
      const dl = d * ((lo | (hi << 4)) - 32);
      const half16 = (g & 1) * 16;
      const qs = o + 32 + (g >> 3) * 32 + half16;
      const hm = o + half16;
      const shift = ((g >> 1) & 3) * 2;
      const bit = g >> 1; // = e >> 5 for every element e of this sub-block
      const out = y + g * 16;
      for (let l = 0; l < 16; l++) {
        dst[out + l] = dl * ((((src[qs + l]! >> shift) & 3) | (((src[hm + l]! >> bit) & 1) << 2)) - 4);
      }
    }
  }
};

/**
 * `d: half, dmin: half, scales: u8[12], qs: u8[128]`; 8 sub-blocks of 32: d·sc·q − dmin·m.
 * qs is 4 chunks of 32 bytes; in chunk c byte l holds element 64c + l (low nibble, sub-block 2c)
 * and element 64c + 32 + l (high nibble, sub-block 2c + 1).
 */
export const Q4_K: BlockDecoder = (src, dst, n) => {
  const t = f16Table32();
  for (let b = 0, o = 0, y = 0; b < n; b++, o += 144, y += 256) {
    const d = t[src[o]! | (src[o + 1]! << 8)]!;
    const dmin = t[src[o + 2]! | (src[o + 3]! << 8)]!;
    for (let c = 0; c < 4; c++) {
      const d1 = d * scaleK4(src, o + 4, 2 * c);
      const m1 = dmin * minK4(src, o + 4, 2 * c);
      const d2 = d * scaleK4(src, o + 4, 2 * c + 1);
      const m2 = dmin * minK4(src, o + 4, 2 * c + 1);
      const qs = o + 16 + c * 32;
      const out = y + c * 64;
      for (let l = 0; l < 32; l++) {
        const q = src[qs + l]!;
        dst[out + l] = d1 * (q & 15) - m1;
        dst[out + 32 + l] = d2 * (q >> 4) - m2;
      }
    }
  }
};

/**
 * `d: half, dmin: half, scales: u8[12], qh: u8[32], qs: u8[128]`; Q4_K plus a fifth bit:
 * element 64c + l takes bit 2c of qh[l], element 64c + 32 + l takes bit 2c + 1.
 */
export const Q5_K: BlockDecoder = (src, dst, n) => {
  const t = f16Table32();
  for (let b = 0, o = 0, y = 0; b < n; b++, o += 176, y += 256) {
    const d = t[src[o]! | (src[o + 1]! << 8)]!;
    const dmin = t[src[o + 2]! | (src[o + 3]! << 8)]!;
    for (let c = 0; c < 4; c++) {
      const d1 = d * scaleK4(src, o + 4, 2 * c);
      const m1 = dmin * minK4(src, o + 4, 2 * c);
      const d2 = d * scaleK4(src, o + 4, 2 * c + 1);
      const m2 = dmin * minK4(src, o + 4, 2 * c + 1);
      const qs = o + 48 + c * 32;
      const qh = o + 16;
      const out = y + c * 64;
      for (let l = 0; l < 32; l++) {
        const q = src[qs + l]!;
        const h = src[qh + l]! >> (2 * c);
        dst[out + l] = d1 * ((q & 15) | ((h & 1) << 4)) - m1;
        dst[out + 32 + l] = d2 * ((q >> 4) | ((h & 2) << 3)) - m2;
      }
    }
  }
};

/**
 * `ql: u8[128], qh: u8[64], scales: i8[16], d: half`; 16 sub-blocks of 16: d·sc·(q − 32).
 * Two halves of 128; in half h, for l < 32, elements l, l+32, l+64, l+96 take the low nibbles of
 * ql[l], ql[l+32], then their high nibbles, and bits 0-1, 2-3, 4-5, 6-7 of qh[l] as bits 4-5.
 */
export const Q6_K: BlockDecoder = (src, dst, n) => {
  const t = f16Table32();
  for (let b = 0, o = 0, y = 0; b < n; b++, o += 210, y += 256) {
    const d = t[src[o + 208]! | (src[o + 209]! << 8)]!;
    for (let half = 0; half < 2; half++) {
      const ql = o + half * 64;
      const qh = o + 128 + half * 32;
      const sc = o + 192 + half * 8;
      const out = y + half * 128;
      for (let is = 0; is < 2; is++) {
        // int8 scales, sign-extended.
        const s0 = d * ((src[sc + is]! << 24) >> 24);
        const s1 = d * ((src[sc + is + 2]! << 24) >> 24);
        const s2 = d * ((src[sc + is + 4]! << 24) >> 24);
        const s3 = d * ((src[sc + is + 6]! << 24) >> 24);
        for (let l = is * 16; l < is * 16 + 16; l++) {
          const h = src[qh + l]!;
          const lo0 = src[ql + l]!;
          const lo1 = src[ql + l + 32]!;
          dst[out + l] = s0 * (((lo0 & 15) | ((h & 3) << 4)) - 32);
          dst[out + l + 32] = s1 * (((lo1 & 15) | ((h & 12) << 2)) - 32);
          dst[out + l + 64] = s2 * (((lo0 >> 4) | (h & 48)) - 32);
          dst[out + l + 96] = s3 * (((lo1 >> 4) | ((h & 192) >> 2)) - 32);
        }
      }
    }
  }
};

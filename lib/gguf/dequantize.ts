import { bf16BitsToF32, f16Table32 } from './float16.js';
import { resolveGgmlType, type GgmlTypeName } from './ggml-type.js';

/**
 * Pure-TypeScript block decoders (ggml-quants.c `dequantize_row_*`) for tests and small
 * tensors; the native side handles real weights.
 */

export const DEQUANTIZABLE_TYPES = ['F32', 'F16', 'BF16', 'Q4_0', 'Q4_1', 'Q8_0', 'Q4_K', 'Q6_K'] as const satisfies readonly GgmlTypeName[];

type Decoder = (src: Uint8Array, dst: Float32Array, blocks: number) => void;

const decoders: Record<(typeof DEQUANTIZABLE_TYPES)[number], Decoder> = {
  F32: (src, dst, n) => {
    const v = view(src);
    for (let i = 0; i < n; i++) dst[i] = v.getFloat32(i * 4, true);
  },
  F16: (src, dst, n) => {
    const t = f16Table32();
    const v = view(src);
    for (let i = 0; i < n; i++) dst[i] = t[v.getUint16(i * 2, true)] as number;
  },
  BF16: (src, dst, n) => {
    const v = view(src);
    for (let i = 0; i < n; i++) dst[i] = bf16BitsToF32(v.getUint16(i * 2, true));
  },
  Q4_0: (src, dst, n) => {
    const t = f16Table32();
    const v = view(src);
    for (let b = 0; b < n; b++) {
      const o = b * 18;
      const d = t[v.getUint16(o, true)] as number;
      for (let j = 0; j < 16; j++) {
        const q = src[o + 2 + j] as number;
        dst[b * 32 + j] = ((q & 15) - 8) * d;
        dst[b * 32 + j + 16] = ((q >> 4) - 8) * d;
      }
    }
  },
  Q4_1: (src, dst, n) => {
    const t = f16Table32();
    const v = view(src);
    for (let b = 0; b < n; b++) {
      const o = b * 20;
      const d = t[v.getUint16(o, true)] as number;
      const m = t[v.getUint16(o + 2, true)] as number;
      for (let j = 0; j < 16; j++) {
        const q = src[o + 4 + j] as number;
        // Unfused multiply then add, as ggml's C does.
        dst[b * 32 + j] = Math.fround((q & 15) * d) + m;
        dst[b * 32 + j + 16] = Math.fround((q >> 4) * d) + m;
      }
    }
  },
  Q8_0: (src, dst, n) => {
    const t = f16Table32();
    const v = view(src);
    for (let b = 0; b < n; b++) {
      const o = b * 34;
      const d = t[v.getUint16(o, true)] as number;
      for (let j = 0; j < 32; j++) dst[b * 32 + j] = v.getInt8(o + 2 + j) * d;
    }
  },
  Q4_K: (src, dst, n) => {
    const t = f16Table32();
    const v = view(src);
    for (let b = 0; b < n; b++) {
      const o = b * 144;
      const d = t[v.getUint16(o, true)] as number;
      const dmin = t[v.getUint16(o + 2, true)] as number;
      const scales = src.subarray(o + 4, o + 16);
      const qs = src.subarray(o + 16, o + 144);
      for (let chunk = 0; chunk < 4; chunk++) {
        const [sc0, m0] = scaleMinK4(2 * chunk, scales);
        const [sc1, m1] = scaleMinK4(2 * chunk + 1, scales);
        // ggml rounds d*sc and dmin*m to float before the multiply-subtract.
        const d0 = Math.fround(d * sc0), min0 = Math.fround(dmin * m0);
        const d1 = Math.fround(d * sc1), min1 = Math.fround(dmin * m1);
        const out = b * 256 + chunk * 64;
        for (let l = 0; l < 32; l++) {
          const q = qs[chunk * 32 + l] as number;
          dst[out + l] = Math.fround(d0 * (q & 15)) - min0;
          dst[out + 32 + l] = Math.fround(d1 * (q >> 4)) - min1;
        }
      }
    }
  },
  Q6_K: (src, dst, n) => {
    const t = f16Table32();
    const v = view(src);
    for (let b = 0; b < n; b++) {
      const o = b * 210;
      const d = t[v.getUint16(o + 208, true)] as number;
      for (let half = 0; half < 2; half++) {
        const ql = o + half * 64;
        const qh = o + 128 + half * 32;
        const sc = o + 192 + half * 8;
        const out = b * 256 + half * 128;
        for (let l = 0; l < 32; l++) {
          const is = l >> 4;
          const h = src[qh + l] as number;
          const lo0 = src[ql + l] as number;
          const lo1 = src[ql + l + 32] as number;
          const q1 = ((lo0 & 15) | ((h & 3) << 4)) - 32;
          const q2 = ((lo1 & 15) | (((h >> 2) & 3) << 4)) - 32;
          const q3 = ((lo0 >> 4) | (((h >> 4) & 3) << 4)) - 32;
          const q4 = ((lo1 >> 4) | (((h >> 6) & 3) << 4)) - 32;
          dst[out + l] = Math.fround(d * v.getInt8(sc + is)) * q1;
          dst[out + l + 32] = Math.fround(d * v.getInt8(sc + is + 2)) * q2;
          dst[out + l + 64] = Math.fround(d * v.getInt8(sc + is + 4)) * q3;
          dst[out + l + 96] = Math.fround(d * v.getInt8(sc + is + 6)) * q4;
        }
      }
    }
  },
};

/** ggml `get_scale_min_k4`: 6-bit scale and min of Q4_K/Q5_K sub-block j. */
function scaleMinK4(j: number, q: Uint8Array): [number, number] {
  if (j < 4) return [(q[j] as number) & 63, (q[j + 4] as number) & 63];
  const a = q[j + 4] as number;
  return [(a & 15) | (((q[j - 4] as number) >> 6) << 4), (a >> 4) | (((q[j] as number) >> 6) << 4)];
}

function view(a: Uint8Array): DataView {
  return new DataView(a.buffer, a.byteOffset, a.byteLength);
}

export function canDequantize(type: GgmlTypeName | string | number): boolean {
  return Object.hasOwn(decoders, resolveGgmlType(type).name);
}

/** Decodes whole blocks of `type` to float32; the byte length must be a whole number of blocks. */
export function dequantize(type: GgmlTypeName | string | number, bytes: Uint8Array): Float32Array {
  const info = resolveGgmlType(type);
  const decoder = (decoders as Record<string, Decoder | undefined>)[info.name];
  if (decoder === undefined) throw new Error(`dequantize: ${info.name} is not supported (only ${DEQUANTIZABLE_TYPES.join(', ')})`);
  if (bytes.byteLength % info.typeSize !== 0) {
    throw new Error(`dequantize: ${bytes.byteLength} bytes is not a whole number of ${info.name} blocks (${info.typeSize} bytes each)`);
  }
  const blocks = bytes.byteLength / info.typeSize;
  const out = new Float32Array(blocks * info.blockSize);
  decoder(bytes, out, blocks);
  return out;
}

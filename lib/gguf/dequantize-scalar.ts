import { f16Table32 } from './float16.js';
import type { BlockDecoder } from './dequantize.js';

/** F32, F16 and BF16: one element per "block", little-endian. */

const littleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export const F32: BlockDecoder = (src, dst, n) => {
  if (littleEndianHost) {
    // The file's bytes already are the host's float32s: a memcpy, and src need not be 4-aligned.
    new Uint8Array(dst.buffer, dst.byteOffset, n * 4).set(src.subarray(0, n * 4));
    return;
  }
  const v = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let i = 0; i < n; i++) dst[i] = v.getFloat32(i * 4, true);
};

export const F16: BlockDecoder = (src, dst, n) => {
  const t = f16Table32();
  if (littleEndianHost && src.byteOffset % 2 === 0) {
    // One 16-bit load per value beats assembling two bytes.
    const h = new Uint16Array(src.buffer, src.byteOffset, n);
    for (let i = 0; i < n; i++) dst[i] = t[h[i]!]!;
    return;
  }
  for (let i = 0, o = 0; i < n; i++, o += 2) dst[i] = t[src[o]! | (src[o + 1]! << 8)]!;
};

export const BF16: BlockDecoder = (src, dst, n) => {
  // Writing the bits through a Uint32Array view of dst holds on either host byte order.
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, n);
  for (let i = 0, o = 0; i < n; i++, o += 2) bits[i] = (src[o]! << 16) | (src[o + 1]! << 24);
};

import { describe, expect, it } from 'vitest';
import {
  add,
  astype,
  dequantize,
  disposeAll,
  matmul,
  quantize,
  quantizedMatmul,
  randomNormal,
  tensor,
  toTypedArray,
} from '../../lib/index.js';
import {
  fromBfloat16Bits,
  fromFloat16Bits,
  matmulF64,
  relativeError,
  seededFloats,
  toBfloat16Bits,
  toFloat16Bits,
  unpackAffine,
} from '../helpers/reference.js';

describe('tensor ops against float64 references', () => {
  it('matmul of random matrices agrees to 1e-5', async () => {
    for (const [m, k, n, seed] of [
      [37, 53, 29, 1],
      [128, 256, 64, 2],
      [1, 300, 7, 3],
    ] as const) {
      const a = seededFloats(m * k, seed);
      const b = seededFloats(k * n, seed + 100);
      const ta = await tensor(a, [m, k]);
      const tb = await tensor(b, [k, n]);
      const tc = await matmul(ta, tb);
      expect(tc.shape).toEqual([m, n]);
      expect(tc.dtype).toBe('float32');
      const c = await toTypedArray(tc);
      expect(relativeError(c as Float32Array, matmulF64(a, b, m, k, n))).toBeLessThan(1e-5);
      disposeAll(ta, tb, tc);
    }
  });

  it('add broadcasts like the reference', async () => {
    const a = seededFloats(12, 5);
    const b = seededFloats(4, 6);
    const ta = await tensor(a, [3, 4]);
    const tb = await tensor(b, [4]);
    const sum = (await toTypedArray(await add(ta, tb))) as Float32Array;
    for (let i = 0; i < 12; i++) expect(sum[i]).toBe(Math.fround(a[i]! + b[i % 4]!));
  });

  it('astype to float16 and bfloat16 rounds like IEEE round-to-nearest-even', async () => {
    const values = Float32Array.from([0, -0, 1, -2.5, 65504, 1e-5, 3.14159, 1e-8, -123.456, 70000, 0.1]);
    const t = await tensor(values);
    const f16 = (await toTypedArray(await astype(t, 'float16'))) as Uint16Array;
    const bf16 = (await toTypedArray(await astype(t, 'bfloat16'))) as Uint16Array;
    for (let i = 0; i < values.length; i++) {
      expect(f16[i], `float16 of ${values[i]}`).toBe(toFloat16Bits(values[i]!));
      expect(bf16[i], `bfloat16 of ${values[i]}`).toBe(toBfloat16Bits(values[i]!));
    }
    const back = (await toTypedArray(await astype(await tensor(f16, [values.length], 'float16'), 'float32'))) as Float32Array;
    for (let i = 0; i < values.length; i++) expect(back[i]).toBe(Math.fround(fromFloat16Bits(f16[i]!)));
    const backBf = (await toTypedArray(await astype(await tensor(bf16, [values.length], 'bfloat16'), 'float32'))) as Float32Array;
    for (let i = 0; i < values.length; i++) expect(backBf[i]).toBe(fromBfloat16Bits(bf16[i]!));
  });

  it.each([
    [4, 64],
    [4, 32],
    [4, 128],
    [8, 128],
    [2, 64],
  ])('%i-bit group-%i quantize→dequantize stays within half a step, and the packing is little-endian', async (bits, group) => {
    const rows = 16;
    const cols = 256;
    const w = seededFloats(rows * cols, 42 + bits + group);
    const q = await quantize(await tensor(w, [rows, cols]), { bits, groupSize: group });
    expect(q.wq.dtype).toBe('uint32');
    expect(q.wq.shape).toEqual([rows, (cols * bits) / 32]);
    expect(q.scales.shape).toEqual([rows, cols / group]);
    const scales = (await toTypedArray(q.scales)) as Float32Array;
    const biases = (await toTypedArray(q.biases)) as Float32Array;
    const deq = (await toTypedArray(await dequantize(q, { bits, groupSize: group }))) as Float32Array;
    const codes = unpackAffine((await toTypedArray(q.wq)) as Uint32Array, rows, cols, bits);
    const top = 2 ** bits - 1;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const g = r * (cols / group) + Math.floor(c / group);
        const i = r * cols + c;
        const step = Math.abs(scales[g]!);
        // Our own unpacking of the words must reproduce MLX's dequantization exactly.
        expect(Math.fround(codes[i]! * scales[g]! + biases[g]!)).toBeCloseTo(deq[i]!, 6);
        const error = Math.abs(deq[i]! - w[i]!);
        const gridLow = Math.min(biases[g]!, biases[g]! + top * scales[g]!);
        const gridHigh = Math.max(biases[g]!, biases[g]! + top * scales[g]!);
        if (w[i]! >= gridLow - 1e-6 && w[i]! <= gridHigh + 1e-6) {
          expect(error).toBeLessThanOrEqual(step / 2 + 1e-6);
        } else {
          // MLX snaps the grid so that the group's larger-magnitude extreme is exact (bias = that
          // extreme); the other extreme can then lie just past the grid's far end and clips to it.
          expect(codes[i]).toBe(top);
          expect(error).toBeLessThan(step);
        }
      }
      // The group's larger-magnitude extreme is the bias itself, exactly.
      for (let g = 0; g < cols / group; g++) {
        const values = w.subarray(r * cols + g * group, r * cols + (g + 1) * group);
        const extreme = values.reduce((a, v) => (Math.abs(v) > Math.abs(a) ? v : a), 0);
        expect(biases[r * (cols / group) + g]).toBe(extreme);
      }
    }
  });

  it('quantized_matmul equals x @ dequantize(w)ᵀ', async () => {
    const [m, k, n] = [5, 128, 24];
    const x = seededFloats(m * k, 9);
    const w = seededFloats(n * k, 10);
    const q = await quantize(await tensor(w, [n, k]), { bits: 4, groupSize: 64 });
    const deq = (await toTypedArray(await dequantize(q, { bits: 4, groupSize: 64 }))) as Float32Array;
    const deqT = new Float32Array(k * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) deqT[j * n + i] = deq[i * k + j]!;
    const y = (await toTypedArray(await quantizedMatmul(await tensor(x, [m, k]), q, { bits: 4, groupSize: 64 }))) as Float32Array;
    expect(relativeError(y, matmulF64(x, deqT, m, k, n))).toBeLessThan(1e-5);
  });

  it('randomNormal is reproducible by seed and standard normal', async () => {
    const a = (await toTypedArray(await randomNormal([20000], { seed: 7 }))) as Float32Array;
    const b = (await toTypedArray(await randomNormal([20000], { seed: 7 }))) as Float32Array;
    const c = (await toTypedArray(await randomNormal([20000], { seed: 8 }))) as Float32Array;
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    expect(Buffer.from(a.buffer).equals(Buffer.from(c.buffer))).toBe(false);
    const mean = a.reduce((s, v) => s + v, 0) / a.length;
    const variance = a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(Math.sqrt(variance) - 1)).toBeLessThan(0.03);
    const shifted = (await toTypedArray(await randomNormal([4], { seed: 7, loc: 10, scale: 0 }))) as Float32Array;
    expect([...shifted]).toEqual([10, 10, 10, 10]);
  });
});

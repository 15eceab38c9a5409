import { afterAll, describe, expect, it } from 'vitest';
import { ENCODABLE_GGML_TYPES, encodeTensor, encodedByteLength, type EncodableGgmlType } from '../../lib/export/quantize.js';
import { disposeAll, tensor, type Tensor } from '../../lib/tensor.js';
import { llamaQuantizeOracle, type LlamaQuantizeOracle } from '../fixtures/llama-quantize-oracle.js';
import { createRng } from '../fixtures/rng.js';

/**
 * encodeTensor against ggml itself: ggml_quantize_chunk of the llama.cpp that node-llama-cpp ships,
 * called through a compiled C helper, on random rows and rows built to reach every branch of the
 * reference quantizers (ties, zero scales, tiny and huge values, f16 overflow, one-sided ranges).
 */

const ROW = 512; // two K-quant super-blocks, sixteen 32-value blocks

function row(fill: (i: number) => number): Float32Array {
  return Float32Array.from({ length: ROW }, (_, i) => fill(i));
}

/** Named rows, each of ROW values. */
function edgeRows(): Array<[string, Float32Array]> {
  const rng = createRng(7);
  const normal = (scale: number) => row(() => rng.normal() * scale);
  const rows: Array<[string, Float32Array]> = [
    ['random normal', normal(1)],
    ['random small weights', normal(0.02)],
    ['all zeros', row(() => 0)],
    ['all negative zeros', row(() => -0)],
    ['one positive value', row((i) => (i === 37 ? 0.75 : 0))],
    ['one negative value', row((i) => (i === 300 ? -2.5 : 0))],
    ['negative largest', row((i) => (i % 32 === 5 ? -4 : rng.uniform(-1, 3.9)))],
    ['equal magnitudes of both signs', row((i) => (i % 2 === 0 ? 1 : -1))],
    ['ties at half', row((i) => ((i % 17) - 8) * 0.5 + 0.25)],
    ['integer grid', row((i) => (i % 255) - 127)],
    ['half-integer grid', row((i) => (i % 32) - 15.5)],
    // max 127 makes Q8_0's d exactly 1: every other value is a tie that roundf takes away from zero.
    ['exact Q8_0 ties', row((i) => (i % 32 === 0 ? 127 : (i % 64) - 32 + 0.5))],
    ['tiny 1e-20', row(() => rng.normal() * 1e-20)],
    ['f32 subnormal', row((i) => (i % 3) * 1e-40)],
    ['below the all-zero threshold', row((i) => (i % 2 ? 5e-16 : -5e-16))],
    ['large 1e4', normal(1e4)],
    ['near the f16 maximum', row(() => rng.uniform(-65000, 65000))],
    ['constant positive', row(() => 0.3)],
    ['constant negative', row(() => -1.7)],
    ['positive only', row(() => rng.uniform(0.5, 2))],
    ['negative only', row(() => rng.uniform(-2, -0.5))],
    ['ramp', row((i) => i / ROW - 0.5)],
    ['half a block zero', row((i) => (i % 32 < 16 ? 0 : rng.normal()))],
    // One sub-block dwarfs the rest: their 6-bit scales round to 0 and keep the search's levels.
    ['one loud sub-block', row((i) => (i < 32 ? rng.normal() * 1000 : rng.normal() * 1e-3))],
    ['one loud 16-value group', row((i) => (i < 16 ? rng.normal() * 1e4 : rng.normal() * 0.1))],
    ['outliers', row((i) => (i % 61 === 0 ? 40 : rng.normal() * 0.1))],
  ];
  return rows;
}

function concat(rows: Float32Array[]): Float32Array {
  const out = new Float32Array(rows.length * ROW);
  rows.forEach((r, i) => out.set(r, i * ROW));
  return out;
}

// Undefined only when this machine has no C compiler: then the oracle tests are skipped.
const oracle: LlamaQuantizeOracle | undefined = await llamaQuantizeOracle();
const held: Tensor[] = [];

afterAll(() => disposeAll(held));

async function tensorOf(values: Float32Array, shape: number[]): Promise<Tensor> {
  const t = await tensor(values, shape);
  held.push(t);
  return t;
}

describe.skipIf(oracle === undefined)('encodeTensor equals ggml_quantize_chunk', () => {
  const rows = edgeRows();
  const values = concat(rows.map(([, r]) => r));

  it.each(ENCODABLE_GGML_TYPES.map((t) => [t]))('%s: every edge-case row, byte for byte', async (type: EncodableGgmlType) => {
    const t = await tensorOf(values, [rows.length, ROW]);
    const ours = await encodeTensor(t, type, { threads: 3 });
    const ggml = await oracle!.quantizeRows(type, values, ROW);
    const rowBytes = encodedByteLength(type, 1, ROW);
    expect(ours.length).toBe(rows.length * rowBytes);
    const differing = rows
      .map(([name], i) => [name, Buffer.compare(Buffer.from(ours.subarray(i * rowBytes, (i + 1) * rowBytes)), Buffer.from(ggml.subarray(i * rowBytes, (i + 1) * rowBytes)))] as const)
      .filter(([, c]) => c !== 0)
      .map(([name]) => name);
    expect(differing).toEqual([]);
    expect(Buffer.from(ours).equals(Buffer.from(ggml))).toBe(true);
  });

  it.each(ENCODABLE_GGML_TYPES.map((t) => [t]))('%s: random matrices of several widths, any thread count', async (type: EncodableGgmlType) => {
    const rng = createRng(100 + type.length);
    // 300 × 1024 is large enough to be split over several threads.
    for (const [rowsN, cols] of [
      [33, 768],
      [7, 256],
      [1, 4096],
      [300, 1024],
    ] as const) {
      const v = Float32Array.from({ length: rowsN * cols }, () => rng.normal() * 0.05);
      const ggml = Buffer.from(await oracle!.quantizeRows(type, v, cols));
      const t = await tensorOf(v, [rowsN, cols]);
      for (const threads of [1, 2, 5]) {
        expect(Buffer.from(await encodeTensor(t, type, { threads })).equals(ggml)).toBe(true);
      }
    }
  });
});

describe('encodeTensor inputs', () => {
  const withOracle = it.skipIf(oracle === undefined);
  withOracle('F16 and BF16 round every finite bit pattern as ggml does (subnormals, ties, the edges of the range)', async () => {
    const rng = createRng(3);
    // Mostly values in and around f16's range, a quarter of them exact f16 ties, and any bits at all.
    const bits = new Uint32Array(1 << 16);
    for (let i = 0; i < bits.length; i++) {
      const any = Math.floor(rng.next() * 2 ** 32) >>> 0;
      const exponent = rng.int(96, 142);
      let mantissa = rng.int(0, 0x7fffff);
      if (rng.next() < 0.25) mantissa = (mantissa & ~0x1fff) | 0x1000;
      bits[i] = i % 8 === 0 ? any : ((rng.int(0, 1) << 31) | (exponent << 23) | mantissa) >>> 0;
    }
    const special = [0x477fefff, 0xc77fefff, 0x33000000, 0x33000001, 0x38800000, 0x387fffff, 0x80000000, 0x00000001, 0x3f801000, 0x3f803000, 0x3f800001, 0x00400000, 0x80400000, 0x7f7f7fff];
    bits.set(special);
    // Values llama.cpp would refuse in each type (they become infinite) are tested further down.
    const finiteIn = { F16: (a: number) => a < 0x477ff000, BF16: (a: number) => a < 0x7f7f8000, F32: (a: number) => a < 0x7f800000 };
    for (const type of ['F16', 'BF16', 'F32'] as const) {
      const values = new Float32Array(Uint32Array.from(bits.filter((u) => finiteIn[type]((u & 0x7fffffff) >>> 0))).buffer);
      expect(values.length).toBeGreaterThan(1000);
      const t = await tensorOf(values, [values.length]);
      expect(Buffer.from(await encodeTensor(t, type)).equals(Buffer.from(await oracle!.quantizeRows(type, values, values.length)))).toBe(true);
    }
  });

  it('refuses, naming the row, what llama.cpp refuses: NaN, infinity, and scales beyond half precision', async () => {
    const rows = 4;
    const make = async (bad: number, where: number) => {
      const v = Float32Array.from({ length: rows * 256 }, (_, i) => Math.sin(i));
      v[where] = bad;
      return tensorOf(v, [rows, 256]);
    };
    for (const type of ENCODABLE_GGML_TYPES) {
      await expect(encodeTensor(await make(Number.NaN, 2 * 256 + 7), type)).rejects.toThrow(/row 2, column 7 is NaN or infinite/);
      await expect(encodeTensor(await make(-Infinity, 3 * 256), type)).rejects.toThrow(/row 3, column 0 is NaN or infinite/);
    }
    // −9e5 overflows f16 itself, Q4_0's d = max/−8 and Q4_1's m = min; Q8_0's d = max/127 fits.
    const big = await make(-9e5, 256 + 3);
    for (const [type, column] of [['F16', 3], ['Q4_0', 0], ['Q4_1', 0]] as const) {
      await expect(encodeTensor(big, type)).rejects.toThrow(new RegExp(`row 1, block from column ${column}: values too large for ${type}`));
    }
    for (const type of ['F32', 'BF16', 'Q8_0', 'Q5_0', 'Q4_K', 'Q6_K'] as const) expect((await encodeTensor(big, type)).length).toBeGreaterThan(0);
  });

  withOracle('reads float16 and bfloat16 tensors as their float32 values', async () => {
    const rng = createRng(11);
    const f32 = Float32Array.from({ length: 4 * 256 }, () => rng.normal());
    const expected = Buffer.from(await oracle!.quantizeRows('Q4_K', f32, 256));
    const t = await tensorOf(f32, [4, 256]);
    expect(Buffer.from(await encodeTensor(t, 'Q4_K')).equals(expected)).toBe(true);
    // A half tensor holds rounded values: encode those, as the f32 values they are.
    const { astype, toTypedArray } = await import('../../lib/tensor.js');
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const h = await astype(t, dtype);
      held.push(h);
      const back = await astype(h, 'float32');
      held.push(back);
      const rounded = (await toTypedArray(back)) as Float32Array;
      const want = Buffer.from(await oracle!.quantizeRows('Q6_K', rounded, 256));
      expect(Buffer.from(await encodeTensor(h, 'Q6_K')).equals(want)).toBe(true);
    }
  });

  it('encodes off the event loop, and the input may be disposed while it runs', async () => {
    const rng = createRng(21);
    const values = Float32Array.from({ length: 1024 * 1024 }, () => rng.normal());
    const t = await tensor(values, [1024, 1024]);
    const expected = Buffer.from(await encodeTensor(t, 'Q6_K', { threads: 1 }));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const pending = encodeTensor(t, 'Q6_K', { threads: 1 });
    t.dispose(); // the job holds its own reference
    const bytes = Buffer.from(await pending);
    clearInterval(timer);
    expect(bytes.equals(expected)).toBe(true);
    expect(ticks).toBeGreaterThan(2); // timers ran while a million values were encoded
    await expect(encodeTensor(t, 'Q6_K')).rejects.toThrow(/disposed/);
  });

  it('rejects a type it cannot write, a shape it cannot take and bad thread counts, naming them', async () => {
    const t = await tensorOf(new Float32Array(3 * 100), [3, 100]);
    await expect(encodeTensor(t, 'Q2_K')).rejects.toThrow(/cannot write GGUF type Q2_K/);
    await expect(encodeTensor(t, 'Q8_0')).rejects.toThrow(/Q8_0 needs a row length.*multiple of 32.*\[3, 100\]/);
    await expect(encodeTensor(t, 'Q4_K')).rejects.toThrow(/multiple of 256/);
    const cube = await tensorOf(new Float32Array(2 * 2 * 32), [2, 2, 32]);
    await expect(encodeTensor(cube, 'F16')).rejects.toThrow(/1-D or 2-D.*\[2, 2, 32\]/);
    const ok = await tensorOf(new Float32Array(32), [32]);
    await expect(encodeTensor(ok, 'Q8_0', { threads: 0 })).rejects.toThrow(/threads/);
    await expect(encodeTensor(ok, 'Q8_0', { threads: 1.5 })).rejects.toThrow(/threads/);
    expect((await encodeTensor(ok, 'Q8_0', { threads: 1 })).length).toBe(34);
    const empty = await tensorOf(new Float32Array(0), [0, 256]);
    expect((await encodeTensor(empty, 'Q6_K')).length).toBe(0);
  });
});

import { describe, expect, it } from 'vitest';
import { dequantize as ggufDequantize } from '../../lib/gguf/dequantize.js';
import { f32ToF16Bits } from '../../lib/gguf/float16.js';
import { repackGguf, scaleValues, type MlxQuantized, type RepackableType } from '../../lib/model/gguf-repack.js';
import { astype, dequantize, tensor, toTypedArray } from '../../lib/tensor.js';
import { seededFloats, unpackAffine } from '../helpers/reference.js';

/** Random but valid GGUF blocks: f16 scales (and mins) around `scale`, random code bytes. */
function randomBlocks(type: RepackableType, rows: number, cols: number, seed: number, scale = 0.05): Uint8Array {
  const blockBytes = { Q4_0: 18, Q4_1: 20, Q8_0: 34 }[type];
  const blocks = (rows * cols) / 32;
  const out = new Uint8Array(blocks * blockBytes);
  const view = new DataView(out.buffer);
  const r = seededFloats(blocks * blockBytes, seed);
  for (let b = 0; b < blocks; b++) {
    const at = b * blockBytes;
    view.setUint16(at, f32ToF16Bits((0.2 + Math.abs(r[at]!)) * scale), true);
    let codes = at + 2;
    if (type === 'Q4_1') {
      view.setUint16(at + 2, f32ToF16Bits(r[at + 1]! * 0.3), true);
      codes = at + 4;
    }
    for (let k = codes; k < at + blockBytes; k++) out[k] = Math.floor(((r[k]! + 1) / 2) * 256) & 0xff;
  }
  return out;
}

describe('GGUF → MLX repacking', () => {
  /** MLX's dequantization of `q`, its scales and biases widened to float32 first, as the model does. */
  async function mlxValues(q: MlxQuantized, rows: number, cols: number): Promise<number[]> {
    const scales = await astype(await tensor(q.scales, [rows, cols / 32], q.dtype), 'float32');
    const biases = await astype(await tensor(q.biases, [rows, cols / 32], q.dtype), 'float32');
    const wq = await tensor(q.wq, [rows, (cols * q.bits) / 32]);
    return [...((await toTypedArray(await dequantize({ wq, scales, biases }, { bits: q.bits, groupSize: 32 }))) as Float32Array)];
  }

  it.each(['Q4_0', 'Q4_1', 'Q8_0'] as const)('%s: float16 scales and biases, every value exact, in our unpacking and in MLX dequantize', async (type) => {
    const [rows, cols] = [6, 128];
    const bytes = randomBlocks(type, rows, cols, type.length * 7 + rows);
    const want = ggufDequantize(type, bytes);
    const q = repackGguf(type, bytes, rows, cols);
    expect(q.dtype).toBe('float16');
    expect(q.scales.BYTES_PER_ELEMENT * (q.scales.length + q.biases.length)).toBe(2 * 2 * ((rows * cols) / 32));
    const { scales, biases } = scaleValues(q);
    const codes = unpackAffine(q.wq, rows, cols, q.bits);
    for (let i = 0; i < rows * cols; i++) {
      const g = Math.floor(i / 32);
      expect(Math.fround(codes[i]! * scales[g]! + biases[g]!), `element ${i}`).toBe(want[i]);
    }
    expect(await mlxValues(q, rows, cols)).toEqual([...want]);
  });

  // −8·d (Q4_0) and −128·d (Q8_0) leave float16's range for |d| ≥ 8188 and ≥ 512.
  it.each([
    ['Q4_0', 20000],
    ['Q8_0', 2000],
  ] as const)('%s with scales near %d: offsets float16 cannot hold, so the tensor keeps float32, still exact', async (type, scale) => {
    const [rows, cols] = [2, 64];
    const bytes = randomBlocks(type, rows, cols, 5, scale);
    const q = repackGguf(type, bytes, rows, cols);
    expect(q.dtype).toBe('float32');
    expect(await mlxValues(q, rows, cols)).toEqual([...ggufDequantize(type, bytes)]);
    // The same scales an order of magnitude smaller fit float16.
    expect(repackGguf(type, randomBlocks(type, rows, cols, 5, scale / 16), rows, cols).dtype).toBe('float16');
  });

  it('rejects data of the wrong size and rows that are not whole blocks', () => {
    expect(() => repackGguf('Q4_0', new Uint8Array(17), 1, 32)).toThrow(/17 bytes for 1×32, expected 18/);
    expect(() => repackGguf('Q8_0', new Uint8Array(34), 1, 16)).toThrow(/not a multiple of 32/);
  });
});

import { describe, expect, it } from 'vitest';
import { dequantize as ggufDequantize } from '../../lib/gguf/dequantize.js';
import { f32ToF16Bits } from '../../lib/gguf/float16.js';
import { repackGguf, type RepackableType } from '../../lib/model/gguf-repack.js';
import { dequantize, tensor, toTypedArray } from '../../lib/tensor.js';
import { seededFloats, unpackAffine } from '../helpers/reference.js';

/** Random but valid GGUF blocks: f16 scales (and mins), random code bytes. */
function randomBlocks(type: RepackableType, rows: number, cols: number, seed: number): Uint8Array {
  const blockBytes = { Q4_0: 18, Q4_1: 20, Q8_0: 34 }[type];
  const blocks = (rows * cols) / 32;
  const out = new Uint8Array(blocks * blockBytes);
  const view = new DataView(out.buffer);
  const r = seededFloats(blocks * blockBytes, seed);
  for (let b = 0; b < blocks; b++) {
    const at = b * blockBytes;
    view.setUint16(at, f32ToF16Bits(0.01 + Math.abs(r[at]!) * 0.05), true);
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
  it.each(['Q4_0', 'Q4_1', 'Q8_0'] as const)('%s: every value survives exactly, in our unpacking and in MLX dequantize', async (type) => {
    const [rows, cols] = [6, 128];
    const bytes = randomBlocks(type, rows, cols, type.length * 7 + rows);
    const want = ggufDequantize(type, bytes);
    const q = repackGguf(type, bytes, rows, cols);
    const codes = unpackAffine(q.wq, rows, cols, q.bits);
    for (let i = 0; i < rows * cols; i++) {
      const g = Math.floor(i / 32);
      expect(Math.fround(codes[i]! * q.scales[g]! + q.biases[g]!), `element ${i}`).toBe(want[i]);
    }
    const mlx = await dequantize(
      {
        wq: await tensor(q.wq, [rows, (cols * q.bits) / 32]),
        scales: await tensor(q.scales, [rows, cols / 32]),
        biases: await tensor(q.biases, [rows, cols / 32]),
      },
      { bits: q.bits, groupSize: 32 },
    );
    expect([...((await toTypedArray(mlx)) as Float32Array)]).toEqual([...want]);
  });

  it('rejects data of the wrong size and rows that are not whole blocks', () => {
    expect(() => repackGguf('Q4_0', new Uint8Array(17), 1, 32)).toThrow(/17 bytes for 1×32, expected 18/);
    expect(() => repackGguf('Q8_0', new Uint8Array(34), 1, 16)).toThrow(/not a multiple of 32/);
  });
});

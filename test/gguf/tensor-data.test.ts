import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dequantize } from '../../lib/gguf/dequantize.js';
import { f32ToF16Bits } from '../../lib/gguf/float16.js';
import { readGguf } from '../../lib/gguf/reader.js';
import { readTensorBytes, readTensorFloat32 } from '../../lib/gguf/tensor-data.js';
import { writeGguf } from '../../lib/gguf/writer.js';
import { createRng } from '../fixtures/rng.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gguf-tensor-data-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readTensorFloat32', () => {
  it('decodes a tensor larger than its 4 MiB read chunk exactly as one whole decode does', async () => {
    // 1700 rows of 16 Q5_K blocks: 4,787,200 bytes, so the second chunk starts mid-row and is partial.
    const rows = 1700;
    const cols = 4096;
    const rng = createRng(7);
    const bytes = new Uint8Array((rows * cols * 176) / 256);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(0, 255);
    for (let o = 0; o < bytes.length; o += 176) {
      view.setUint16(o, f32ToF16Bits(rng.uniform(1e-4, 1e-3)), true);
      view.setUint16(o + 2, f32ToF16Bits(rng.uniform(1e-4, 1e-3)), true);
    }
    const path = join(dir, 'big.gguf');
    await writeGguf(path, {
      metadata: new Map([['general.architecture', 'llama']]),
      tensors: [
        { name: 'small', shape: [2, 32], type: 'Q8_0', data: new Uint8Array(68) },
        { name: 'big', shape: [rows, cols], type: 'Q5_K', data: bytes },
      ],
    });
    const f = await readGguf(path);
    const got = await readTensorFloat32(f, 'big');
    const want = dequantize('Q5_K', await readTensorBytes(f, 'big'));
    expect(got).toHaveLength(rows * cols);
    expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
    // Row 1500 starts at block 24000, inside the second chunk (a chunk is 23831 blocks).
    expect(got[cols * 1500 + 5]).toBe(dequantize('Q5_K', bytes.subarray(24000 * 176, 24001 * 176))[5]);
    expect([...(await readTensorFloat32(f, 'small'))]).toEqual(new Array(64).fill(0));
  });

  it('names the file, tensor and type it cannot decode, before reading', async () => {
    const path = join(dir, 'iq.gguf');
    await writeGguf(path, { metadata: new Map([['general.architecture', 'llama']]), tensors: [{ name: 'iq', shape: [32], type: 'IQ4_NL', data: new Uint8Array(18) }] });
    const f = await readGguf(path);
    await expect(readTensorFloat32(f, 'iq')).rejects.toThrow(`${path}: tensor 'iq' has type IQ4_NL, which cannot be decoded`);
  });
});

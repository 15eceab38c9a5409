import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PiecePool, transcodedPieces } from '../../lib/export/tensor-pieces.js';
import { transcodeRowsInto, transcodeTensor } from '../../lib/export/transcode.js';
import { ggmlTypeByName } from '../../lib/gguf/ggml-type.js';
import { hfRowOfGgufRow } from '../../lib/gguf/tensor-names.js';
import { tensor } from '../../lib/tensor.js';
import { llamaQuantizeOracle } from '../fixtures/llama-quantize-oracle.js';
import { createRng, type Rng } from '../fixtures/rng.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Stored bytes of one type → bytes of another, against llama.cpp itself: what ggml's
 * ggml_quantize_chunk writes from what ggml's to_float reads (llama_model_quantize's own two steps),
 * with rows reordered and a delta added where asked.
 */

const oracle = await llamaQuantizeOracle(); // undefined only without a C compiler
const ROWS = 24;
const COLS = 512;

/** Random blocks whose half scales are moderate normal numbers, as in a real weight file. */
function weightBlocks(type: string, rng: Rng): Uint8Array {
  const info = ggmlTypeByName(type)!;
  const blocks = (ROWS * COLS) / info.blockSize;
  const bytes = Uint8Array.from({ length: blocks * info.typeSize }, () => rng.int(0, 255));
  const view = new DataView(bytes.buffer);
  const half = () => (rng.int(0, 1) << 15) | (rng.int(8, 17) << 10) | rng.int(0, 1023);
  if (type === 'F16') for (let i = 0; i < blocks; i++) view.setUint16(2 * i, half(), true);
  if (type === 'BF16') for (let i = 0; i < blocks; i++) view.setUint16(2 * i, (rng.int(0, 1) << 15) | rng.int(0x3a00, 0x4000), true);
  const fields: Record<string, number[]> = { Q4_0: [0], Q8_0: [0], Q4_K: [0, 2], Q6_K: [208], Q5_K: [0, 2] };
  for (let b = 0; b < blocks; b++) for (const at of fields[type] ?? []) view.setUint16(b * info.typeSize + at, half(), true);
  return bytes;
}

async function storedFile(bytes: Uint8Array, pad = 32): Promise<string> {
  const path = join(tempDir('transcode-'), 'weights.bin');
  await writeFile(path, Buffer.concat([Buffer.alloc(pad), bytes]));
  return path;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

describe.skipIf(oracle === undefined)('transcodeTensor against llama.cpp (to_float, then ggml_quantize_chunk)', () => {
  const pairs: Array<[string, string]> = [
    ['Q4_0', 'Q8_0'], ['Q4_0', 'Q4_K'], ['Q4_0', 'Q6_K'], ['Q4_0', 'F16'], ['Q4_0', 'Q4_0'],
    ['Q6_K', 'Q6_K'], ['Q6_K', 'Q8_0'], ['Q4_K', 'Q5_K'], ['Q8_0', 'BF16'], ['F16', 'Q4_K'], ['BF16', 'Q8_0'], ['F16', 'F32'],
  ];
  it.each(pairs)('%s → %s: the bytes llama.cpp writes', async (from, to) => {
    const bytes = weightBlocks(from, createRng(ggmlTypeByName(from)!.id * 31 + ggmlTypeByName(to)!.id));
    const path = await storedFile(bytes);
    const ours = await transcodeTensor({ path, offset: 32, type: from as 'Q4_0' }, [ROWS, COLS], to as 'Q8_0', { threads: 2 });
    const theirs = to === 'F32' ? new Uint8Array((await oracle!.decodeBlocks(from, bytes)).buffer) : await oracle!.quantizeRows(to, await oracle!.decodeBlocks(from, bytes), COLS);
    expect(hex(ours)).toBe(hex(theirs));
  });

  it('a float type to itself keeps its bytes (llama_model_quantize copies such a tensor)', async () => {
    for (const type of ['F16', 'BF16'] as const) {
      const bytes = weightBlocks(type, createRng(9));
      const ours = await transcodeTensor({ path: await storedFile(bytes, 0), offset: 0, type }, [ROWS, COLS], type);
      expect(hex(ours)).toBe(hex(bytes));
    }
  });

  it('HF → GGUF row order and an adapter delta: requantized from the reordered sum', async () => {
    const bytes = weightBlocks('Q4_0', createRng(21));
    const rng = createRng(22);
    const deltaValues = Float32Array.from({ length: ROWS * COLS }, () => rng.normal() * 0.01);
    const rowMap = hfRowOfGgufRow(ROWS, 4);
    const delta = await tensor(deltaValues, [ROWS, COLS]);
    const ours = await transcodeTensor({ path: await storedFile(bytes), offset: 32, type: 'Q4_0' }, [ROWS, COLS], 'Q6_K', { rowMap, delta, threads: 2 });
    delta.dispose();
    const decoded = await oracle!.decodeBlocks('Q4_0', bytes);
    const expected = new Float32Array(ROWS * COLS);
    for (let r = 0; r < ROWS; r++) {
      for (let c = 0; c < COLS; c++) expected[r * COLS + c] = decoded[rowMap[r]! * COLS + c]! + deltaValues[r * COLS + c]!;
    }
    expect(hex(ours)).toBe(hex(await oracle!.quantizeRows('Q6_K', expected, COLS)));
  });

  it('an MLX tensor source with a row map equals the stored-bytes path', async () => {
    const bytes = weightBlocks('F16', createRng(5));
    const path = await storedFile(bytes);
    const rowMap = hfRowOfGgufRow(ROWS, 2);
    const fromFile = await transcodeTensor({ path, offset: 32, type: 'F16' }, [ROWS, COLS], 'Q4_K', { rowMap });
    const values = await oracle!.decodeBlocks('F16', bytes);
    const t = await tensor(values, [ROWS, COLS]);
    const fromTensor = await transcodeTensor(t, [ROWS, COLS], 'Q4_K', { rowMap });
    t.dispose();
    expect(hex(fromTensor)).toBe(hex(fromFile));
  });
});

describe('transcodeRowsInto: a tensor in pieces', () => {
  it('row ranges written into a reused buffer add up to the whole tensor, with and without a row map', async () => {
    const bytes = weightBlocks('Q4_0', createRng(31));
    const path = await storedFile(bytes);
    const source = { path, offset: 32, type: 'Q4_0' } as const;
    for (const rowMap of [undefined, hfRowOfGgufRow(ROWS, 4)]) {
      const whole = await transcodeTensor(source, [ROWS, COLS], 'Q6_K', rowMap ? { rowMap } : {});
      const rowBytes = whole.byteLength / ROWS;
      const into = new Uint8Array(7 * rowBytes + 5);
      const pieces: Buffer[] = [];
      for (let first = 0; first < ROWS; first += 7) {
        const count = Math.min(7, ROWS - first);
        const n = await transcodeRowsInto(source, [ROWS, COLS], 'Q6_K', { first, count }, into, { threads: 2, ...(rowMap ? { rowMap } : {}) });
        expect(n).toBe(count * rowBytes);
        pieces.push(Buffer.from(into.subarray(0, n)));
      }
      expect(hex(Buffer.concat(pieces))).toBe(hex(whole));
    }
  });

  it('transcodedPieces: a 16 MiB output in reused 8 MiB buffers equals the whole transcoding', async () => {
    const [rows, cols] = [2048, 2048];
    const rng = createRng(33);
    const bytes = new Uint8Array(rows * cols * 2);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < rows * cols; i++) view.setUint16(2 * i, (rng.int(0, 1) << 15) | (rng.int(8, 17) << 10) | rng.int(0, 1023), true);
    const stored = { path: await storedFile(bytes), offset: 32, type: 'F16' } as const;
    const whole = await transcodeTensor(stored, [rows, cols], 'F32', { rowMap: hfRowOfGgufRow(rows, 16) });
    const pieces: Buffer[] = [];
    // Copied: a piece is only valid until the generator resumes.
    for await (const piece of transcodedPieces({ name: 'w', shape: [rows, cols], stored, permuteHeads: 16 }, 'F32', new PiecePool(), 2)) pieces.push(Buffer.from(piece));
    expect(pieces.length).toBe(2);
    expect(Buffer.concat(pieces).equals(Buffer.from(whole))).toBe(true);
  });

  it('refuses a range outside the tensor, a buffer too small, and names the row of the whole tensor in errors', async () => {
    const bytes = weightBlocks('F16', createRng(32));
    new DataView(bytes.buffer).setUint16(2 * (20 * COLS + 3), 0x7e00, true);
    const source = { path: await storedFile(bytes), offset: 32, type: 'F16' } as const;
    await expect(transcodeRowsInto(source, [ROWS, COLS], 'Q8_0', { first: 20, count: 5 }, new Uint8Array(1 << 20))).rejects.toThrow(/within the tensor's 24 rows/);
    await expect(transcodeRowsInto(source, [ROWS, COLS], 'Q8_0', { first: 0, count: 4 }, new Uint8Array(100))).rejects.toThrow(/into has 100 bytes/);
    await expect(transcodeRowsInto(source, [ROWS, COLS], 'Q8_0', { first: 16, count: 8 }, new Uint8Array(1 << 20))).rejects.toThrow(/row 20, column 3 is NaN or infinite/);
  });
});

describe('transcodeTensor: bad input', () => {
  it('a file that ends inside the tensor names the file; a missing file too', async () => {
    const bytes = weightBlocks('Q4_0', createRng(1));
    const path = await storedFile(bytes);
    await truncate(path, 32 + bytes.length - 100);
    await expect(transcodeTensor({ path, offset: 32, type: 'Q4_0' }, [ROWS, COLS], 'Q8_0')).rejects.toThrow(new RegExp(`${path}: the file ends before row ${ROWS - 1}`));
    await expect(transcodeTensor({ path: `${path}.missing`, offset: 0, type: 'Q4_0' }, [ROWS, COLS], 'Q8_0')).rejects.toThrow(/weights\.bin\.missing: No such file/);
  });

  it('a stored NaN or infinity, and a sum that overflows, are refused naming row and column', async () => {
    const bytes = weightBlocks('F16', createRng(2));
    new DataView(bytes.buffer).setUint16(2 * (5 * COLS + 17), 0x7c00, true);
    const path = await storedFile(bytes);
    await expect(transcodeTensor({ path, offset: 32, type: 'F16' }, [ROWS, COLS], 'Q8_0')).rejects.toThrow(/row 5, column 17 is NaN or infinite/);
    await expect(transcodeTensor({ path, offset: 32, type: 'F16' }, [ROWS, COLS], 'F16')).rejects.toThrow(/row 5, column 17 is NaN or infinite/);
    const big = await tensor(new Float32Array(ROWS * COLS).fill(1e6), [ROWS, COLS]);
    const ok = weightBlocks('Q4_0', createRng(3));
    await expect(transcodeTensor({ path: await storedFile(ok), offset: 32, type: 'Q4_0' }, [ROWS, COLS], 'F16', { delta: big })).rejects.toThrow(/row 0, block from column 0: values too large for F16/);
    big.dispose();
  });

  it('types it cannot read or write, row lengths a block does not divide, a wrong delta or row map', async () => {
    const path = await storedFile(weightBlocks('Q4_0', createRng(4)));
    await expect(transcodeTensor({ path, offset: 32, type: 'IQ2_XXS' }, [ROWS, COLS], 'Q8_0')).rejects.toThrow(/cannot decode GGUF type IQ2_XXS/);
    await expect(transcodeTensor({ path, offset: 32, type: 'Q4_0' }, [ROWS, COLS], 'Q2_K')).rejects.toThrow(/cannot write GGUF type Q2_K/);
    await expect(transcodeTensor({ path, offset: 32, type: 'Q4_0' }, [ROWS * 16, 32], 'Q4_K')).rejects.toThrow(/Q4_K needs a row length.*multiple of 256/);
    const wrong = await tensor(new Float32Array(COLS), [1, COLS]);
    await expect(transcodeTensor({ path, offset: 32, type: 'Q4_0' }, [ROWS, COLS], 'Q8_0', { delta: wrong })).rejects.toThrow(/delta has shape \[1, 512\]/);
    wrong.dispose();
    await expect(transcodeTensor({ path, offset: 32, type: 'Q4_0' }, [ROWS, COLS], 'Q8_0', { rowMap: new Int32Array(ROWS).fill(ROWS) })).rejects.toThrow(/rowMap names row 24/);
  });
});

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeTensorBytes, TRANSCODABLE_SOURCE_TYPES } from '../../lib/export/transcode.js';
import { ggmlTypeByName } from '../../lib/gguf/ggml-type.js';
import { llamaQuantizeOracle } from '../fixtures/llama-quantize-oracle.js';
import { createRng, type Rng } from '../fixtures/rng.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * The native block decoders against ggml's own to_float (dequantize_row_* of the llama.cpp that
 * node-llama-cpp ships, called through the compiled oracle): random blocks of every type, compared
 * bit for bit, so -0, subnormal scales and the rounding of every product must match.
 */

const oracle = await llamaQuantizeOracle(); // undefined only without a C compiler

/** Byte offsets of each block's half-precision scale fields, which must stay finite. */
const HALF_FIELDS: Record<string, number[]> = {
  Q4_0: [0], Q4_1: [0, 2], Q5_0: [0], Q5_1: [0, 2], Q8_0: [0],
  Q2_K: [80, 82], Q3_K: [108], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208],
};

/** A finite half of any exponent (subnormals and zeros included), either sign. */
function finiteHalf(rng: Rng): number {
  return (rng.int(0, 1) << 15) | (rng.int(0, 30) << 10) | rng.int(0, 1023);
}

function randomBlocks(type: string, blocks: number, rng: Rng): Uint8Array {
  const info = ggmlTypeByName(type)!;
  const bytes = Uint8Array.from({ length: blocks * info.typeSize }, () => rng.int(0, 255));
  const view = new DataView(bytes.buffer);
  if (type === 'F16') for (let i = 0; i < blocks; i++) view.setUint16(2 * i, finiteHalf(rng), true);
  if (type === 'BF16') for (let i = 0; i < blocks; i++) view.setUint16(2 * i, (rng.int(0, 1) << 15) | rng.int(0, 0x7f7f), true);
  if (type === 'F32') for (let i = 0; i < blocks; i++) view.setFloat32(4 * i, rng.normal() * 10 ** rng.int(-30, 30), true);
  for (let b = 0; b < blocks; b++) {
    for (const at of HALF_FIELDS[type] ?? []) view.setUint16(b * info.typeSize + at, finiteHalf(rng), true);
  }
  return bytes;
}

function bits(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

describe.skipIf(oracle === undefined)('native GGUF decoding against ggml to_float', () => {
  it.each(TRANSCODABLE_SOURCE_TYPES.filter((t) => t !== 'F32'))('%s: bit-identical to dequantize_row_*', async (type) => {
    const info = ggmlTypeByName(type)!;
    const rowLength = Math.max(512, info.blockSize * 2);
    const rows = 37;
    const bytes = randomBlocks(type, (rows * rowLength) / info.blockSize, createRng(info.id + 11));
    const path = join(tempDir('decode-'), 'blocks.bin');
    // A leading pad, so the offset is honoured and is not a multiple of anything.
    await writeFile(path, Buffer.concat([Buffer.alloc(13, 0xee), bytes]));
    const ours = await decodeTensorBytes({ path, offset: 13, type }, [rows, rowLength], { threads: 2 });
    const theirs = await oracle!.decodeBlocks(type, bytes);
    expect(ours.length).toBe(rows * rowLength);
    const mismatch = bits(ours).findIndex((b, i) => b !== bits(theirs)[i]);
    expect(mismatch, mismatch >= 0 ? `first difference at ${mismatch}: ${ours[mismatch]} vs ${theirs[mismatch]}` : '').toBe(-1);
  });

  it('F32: the stored floats themselves', async () => {
    const bytes = randomBlocks('F32', 4096, createRng(3));
    const path = join(tempDir('decode-'), 'f32.bin');
    await writeFile(path, bytes);
    const ours = await decodeTensorBytes({ path, offset: 0, type: 'F32' }, [8, 512]);
    expect(Buffer.from(ours.buffer, ours.byteOffset, ours.byteLength).equals(Buffer.from(bytes))).toBe(true);
  });
});

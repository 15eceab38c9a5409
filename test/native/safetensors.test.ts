import { openSync, readdirSync, readFileSync, truncateSync, writeFileSync, closeSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSafetensors, saveSafetensors, tensor, tensorFromFile, toTypedArray, type DType, type TensorInput } from '../../lib/index.js';
import { tempDir } from '../helpers/temp-dir.js';

const dir = tempDir('mlxq-st-');
afterAll(() => undefined);

/** Random bytes for a dtype, avoiding NaN payloads so bit equality is meaningful for floats too. */
function sampleFor(dtype: DType, n: number): TensorInput {
  const bytes = new Uint8Array(n * 8);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 131 + 17) & 0xff;
  switch (dtype) {
    case 'bool':
      return Uint8Array.from({ length: n }, (_, i) => i % 3 === 0 ? 1 : 0);
    case 'uint8':
      return bytes.slice(0, n);
    case 'int8':
      return new Int8Array(bytes.buffer.slice(0, n));
    case 'uint16':
      return new Uint16Array(bytes.buffer.slice(0, 2 * n));
    case 'int16':
      return new Int16Array(bytes.buffer.slice(0, 2 * n));
    case 'uint32':
      return new Uint32Array(bytes.buffer.slice(0, 4 * n));
    case 'int32':
      return new Int32Array(bytes.buffer.slice(0, 4 * n));
    case 'uint64':
      return new BigUint64Array(bytes.buffer.slice(0, 8 * n));
    case 'int64':
      return new BigInt64Array(bytes.buffer.slice(0, 8 * n));
    case 'float16':
    case 'bfloat16':
      return Uint16Array.from({ length: n }, (_, i) => (i * 2654435761) & 0x3fff);
    case 'float32':
      return Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 1e3);
    case 'complex64':
      return Float32Array.from({ length: 2 * n }, (_, i) => Math.cos(i));
    default:
      throw new Error(dtype);
  }
}

const dtypes: DType[] = ['bool', 'uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'uint64', 'int64', 'float16', 'bfloat16', 'float32', 'complex64'];

/** An independent reading of the file: the 8-byte length, the JSON header, the raw data bytes. */
function parseFile(path: string): { header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> & { __metadata__?: Record<string, string> }; data: Buffer } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')), data: buf.subarray(8 + n) };
}

describe('safetensors', () => {
  it('round-trips every dtype bit-exactly, metadata included', async () => {
    const tensors: Record<string, Awaited<ReturnType<typeof tensor>>> = {};
    const inputs: Record<string, Uint8Array> = {};
    for (const dtype of dtypes) {
      const data = sampleFor(dtype, 12);
      tensors[`t.${dtype}`] = await tensor(data, [3, 4], dtype);
      inputs[`t.${dtype}`] = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    }
    const path = join(dir, 'all.safetensors');
    const metadata = { format: 'mlx', note: 'ünïcode ✓ 100%', empty: '' };
    await saveSafetensors(path, tensors, metadata);

    // An independent parse of what we wrote.
    const { header, data } = parseFile(path);
    expect(header.__metadata__).toEqual(metadata);
    const names: Record<string, string> = { bool: 'BOOL', uint8: 'U8', int8: 'I8', uint16: 'U16', int16: 'I16', uint32: 'U32', int32: 'I32', uint64: 'U64', int64: 'I64', float16: 'F16', bfloat16: 'BF16', float32: 'F32', complex64: 'C64' };
    for (const dtype of dtypes) {
      const entry = header[`t.${dtype}`]!;
      expect(entry.dtype).toBe(names[dtype]);
      expect(entry.shape).toEqual([3, 4]);
      const [begin, end] = entry.data_offsets;
      expect(Buffer.from(data.subarray(begin, end)).equals(Buffer.from(inputs[`t.${dtype}`]!))).toBe(true);
    }

    const loaded = await loadSafetensors(path);
    expect(loaded.metadata).toEqual(metadata);
    expect(Object.keys(loaded.tensors).sort()).toEqual(Object.keys(tensors).sort());
    for (const dtype of dtypes) {
      const t = loaded.tensors[`t.${dtype}`]!;
      expect(t.dtype).toBe(dtype);
      expect(t.shape).toEqual([3, 4]);
      const back = await toTypedArray(t);
      expect(Buffer.from(back.buffer, back.byteOffset, back.byteLength).equals(Buffer.from(inputs[`t.${dtype}`]!))).toBe(true);
    }
  });

  it('reads a file written by an independent writer', async () => {
    const values = Float32Array.from([1.5, -2, 3.25, 4]);
    const ints = Int32Array.from([7, -8]);
    const header = JSON.stringify({
      __metadata__: { source: 'hand-written' },
      b: { dtype: 'I32', shape: [2], data_offsets: [16, 24] },
      a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] },
    });
    const padded = header + ' '.repeat((8 - (header.length % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(padded.length));
    const path = join(dir, 'hand.safetensors');
    writeFileSync(path, Buffer.concat([len, Buffer.from(padded), Buffer.from(values.buffer), Buffer.from(ints.buffer)]));
    const loaded = await loadSafetensors(path);
    expect([...((await toTypedArray(loaded.tensors.a!)) as Float32Array)]).toEqual([1.5, -2, 3.25, 4]);
    expect([...((await toTypedArray(loaded.tensors.b!)) as Int32Array)]).toEqual([7, -8]);
    expect(loaded.metadata).toEqual({ source: 'hand-written' });
  });

  it('rejects truncated files at every kind of cut, naming the file', async () => {
    const path = join(dir, 'whole.safetensors');
    await saveSafetensors(path, { w: await tensor(new Float32Array(1000), [10, 100]) });
    const whole = readFileSync(path);
    const headerEnd = 8 + Number(whole.readBigUInt64LE(0));
    for (const cut of [0, 4, 8, 20, headerEnd - 1, headerEnd, headerEnd + 100, whole.length - 1]) {
      const cutPath = join(dir, `cut-${cut}.safetensors`);
      writeFileSync(cutPath, whole.subarray(0, cut));
      await expect(loadSafetensors(cutPath), `cut at ${cut}`).rejects.toThrow(cutPath);
    }
  });

  it('rejects a header that claims 2^60 bytes without allocating it', async () => {
    const path = join(dir, 'huge.safetensors');
    const buf = Buffer.alloc(64);
    buf.writeBigUInt64LE(1n << 60n);
    writeFileSync(path, buf);
    await expect(loadSafetensors(path)).rejects.toThrow(/huge\.safetensors.*(header|Header)/s);
  });

  it('rejects garbage JSON, wrong offsets, and missing files with the file named', async () => {
    const write = (name: string, header: string, dataBytes: number) => {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(header.length));
      const p = join(dir, name);
      writeFileSync(p, Buffer.concat([len, Buffer.from(header), Buffer.alloc(dataBytes)]));
      return p;
    };
    const garbage = write('garbage.safetensors', '{"a": {"dtype": "F32", "sha', 16);
    await expect(loadSafetensors(garbage)).rejects.toThrow(garbage);
    const offsets = write('offsets.safetensors', JSON.stringify({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 12] } }), 16);
    await expect(loadSafetensors(offsets)).rejects.toThrow(/offsets\.safetensors.*invalid data offsets/s);
    const past = write('past.safetensors', JSON.stringify({ a: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }), 16);
    await expect(loadSafetensors(past)).rejects.toThrow(/past\.safetensors.*exceeding the size of the file/s);
    await expect(loadSafetensors(join(dir, 'nope.safetensors'))).rejects.toThrow(/nope\.safetensors: cannot open/);
  });

  it('a failed save leaves the old file intact and no temporary files behind', async () => {
    const path = join(dir, 'keep.safetensors');
    await saveSafetensors(path, { w: await tensor(Float32Array.from([1, 2, 3])) }, { v: '1' });
    const good = readFileSync(path);
    const empty = await tensor(new Float32Array(0), [0]);
    await expect(saveSafetensors(path, { w: empty })).rejects.toThrow(/keep\.safetensors/);
    expect(readFileSync(path).equals(good)).toBe(true);
    await expect(saveSafetensors(join(dir, 'no-such-dir', 'x.safetensors'), { w: await tensor(new Float32Array(2)) })).rejects.toThrow(/no-such-dir/);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    // float64 is not a safetensors dtype MLX writes: rejected, and still nothing half-written.
    const f64 = await tensor(Float64Array.from([1, 2]));
    await expect(saveSafetensors(path, { w: f64 })).rejects.toThrow(/keep\.safetensors/);
    expect(readFileSync(path).equals(good)).toBe(true);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('reads a tensor from a byte range of a file, and rejects ranges past its end', async () => {
    const path = join(dir, 'blob.bin');
    const payload = Float32Array.from({ length: 64 }, (_, i) => i * 0.5);
    const fd = openSync(path, 'w');
    writeSync(fd, Buffer.alloc(123, 0xee));
    writeSync(fd, Buffer.from(payload.buffer));
    writeSync(fd, Buffer.alloc(7, 0xee));
    closeSync(fd);
    const t = await tensorFromFile(path, { offset: 123, length: 256, dtype: 'float32', shape: [8, 8] });
    expect(t.shape).toEqual([8, 8]);
    expect([...((await toTypedArray(t)) as Float32Array)]).toEqual([...payload]);
    await expect(tensorFromFile(path, { offset: 200, length: 256, dtype: 'float32', shape: [8, 8] })).rejects.toThrow(/blob\.bin: byte range \[200, 456\) is past the end of the file \(386 bytes\)/);
    await expect(tensorFromFile(path, { offset: 0, length: 100, dtype: 'float32', shape: [8, 8] })).rejects.toThrow(/does not match shape/);
    await expect(tensorFromFile(join(dir, 'missing.bin'), { offset: 0, length: 4, dtype: 'float32', shape: [1] })).rejects.toThrow(/missing\.bin: cannot open/);
    truncateSync(path, 10);
    await expect(tensorFromFile(path, { offset: 0, length: 16, dtype: 'float32', shape: [4] })).rejects.toThrow(/past the end/);
  });
});

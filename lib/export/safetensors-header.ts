/**
 * safetensors files read a tensor at a time: the JSON header gives each tensor's dtype, shape and
 * byte range, and a tensor is read from its range in chunks and decoded to float32. Nothing else
 * of the file is read, so a 7B shard is never in memory.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { z } from 'zod';
import { dequantizeInto } from '../gguf/dequantize.js';

export interface SafetensorsEntry {
  readonly file: string;
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Absolute byte range in the file. */
  readonly start: number;
  readonly end: number;
}

const entrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});

const MAX_HEADER_BYTES = 100 << 20;
const CHUNK_BYTES = 4 << 20;
const DTYPE_BYTES: Readonly<Record<string, number>> = { F32: 4, F16: 2, BF16: 2, U32: 4, I32: 4, U8: 1, I8: 1, F64: 8, I64: 8, U16: 2, I16: 2, BOOL: 1 };
/** safetensors dtype → the ggml decoder that reads it. */
const FLOAT_DECODER: Readonly<Record<string, 'F32' | 'F16' | 'BF16'>> = { F32: 'F32', F16: 'F16', BF16: 'BF16' };

async function readExactly(fh: FileHandle, path: string, into: Uint8Array, position: number, what: string): Promise<void> {
  let got = 0;
  while (got < into.length) {
    const { bytesRead } = await fh.read(into, got, into.length - got, position + got);
    if (bytesRead === 0) throw new Error(`${path}: file ends inside ${what} (truncated?)`);
    got += bytesRead;
  }
}

/** Every tensor entry of one safetensors file, checked against the file size. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsEntry[]> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    if (size < 8) throw new Error(`${path}: not a safetensors file (${size} bytes)`);
    const lenBytes = new Uint8Array(8);
    await readExactly(fh, path, lenBytes, 0, 'the header length');
    const headerLength = Number(new DataView(lenBytes.buffer).getBigUint64(0, true));
    if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > size) throw new Error(`${path}: safetensors header length ${headerLength} does not fit the ${size}-byte file`);
    const headerBytes = new Uint8Array(headerLength);
    await readExactly(fh, path, headerBytes, 8, 'the header');
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder().decode(headerBytes));
    } catch (error) {
      throw new Error(`${path}: safetensors header is not JSON (${(error as Error).message})`);
    }
    if (typeof header !== 'object' || header === null) throw new Error(`${path}: safetensors header is not an object`);
    const base = 8 + headerLength;
    const entries: SafetensorsEntry[] = [];
    for (const [name, raw] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const parsed = entrySchema.safeParse(raw);
      if (!parsed.success) throw new Error(`${path}: tensor '${name}': ${parsed.error.issues[0]?.message ?? 'invalid entry'}`);
      const { dtype, shape, data_offsets: [from, to] } = parsed.data;
      const itemBytes = DTYPE_BYTES[dtype];
      if (itemBytes === undefined) throw new Error(`${path}: tensor '${name}' has unknown dtype ${dtype}`);
      const elements = shape.reduce((a, b) => a * b, 1);
      if (to - from !== elements * itemBytes) throw new Error(`${path}: tensor '${name}' spans ${to - from} bytes, but ${dtype} [${shape.join(', ')}] needs ${elements * itemBytes}`);
      if (base + to > size) throw new Error(`${path}: tensor '${name}' data ends at byte ${base + to}, past the end of the ${size}-byte file (truncated?)`);
      entries.push({ file: path, name, dtype, shape, start: base + from, end: base + to });
    }
    return entries;
  } finally {
    await fh.close();
  }
}

/** One F32/F16/BF16 tensor as float32, row-major; read and decoded a few MiB at a time. */
export async function readSafetensorsFloat32(entry: SafetensorsEntry): Promise<Float32Array> {
  const decoder = FLOAT_DECODER[entry.dtype];
  if (decoder === undefined) throw new Error(`${entry.file}: tensor '${entry.name}' has dtype ${entry.dtype}, not a float type this exporter decodes (F32, F16, BF16)`);
  const itemBytes = DTYPE_BYTES[entry.dtype]!;
  const total = entry.end - entry.start;
  const out = new Float32Array(total / itemBytes);
  const fh = await open(entry.file, 'r');
  try {
    if (decoder === 'F32') {
      await readExactly(fh, entry.file, new Uint8Array(out.buffer), entry.start, `tensor '${entry.name}'`);
      return out;
    }
    const chunk = new Uint8Array(Math.min(CHUNK_BYTES, total));
    let at = 0;
    for (let done = 0; done < total; done += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, total - done));
      await readExactly(fh, entry.file, part, entry.start + done, `tensor '${entry.name}'`);
      at += dequantizeInto(decoder, part, out, at);
    }
    return out;
  } finally {
    await fh.close();
  }
}

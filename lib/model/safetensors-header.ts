/**
 * A safetensors file's header alone: tensor names, dtypes and shapes, without reading any tensor
 * data (the file may be gigabytes; the header is its first 8 + N bytes).
 */
import { open } from 'node:fs/promises';
import { z } from 'zod';

export interface SafetensorsEntry {
  name: string;
  /** As stored: F32, F16, BF16, U32, … */
  dtype: string;
  shape: number[];
}

const entrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().min(0)),
  data_offsets: z.tuple([z.number().int().min(0), z.number().int().min(0)]),
});

// A header larger than this is a corrupt length, not a real file's table of contents.
const MAX_HEADER_BYTES = 100 << 20;

export async function readSafetensorsHeader(path: string): Promise<SafetensorsEntry[]> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const prefix = Buffer.alloc(8);
    if ((await fh.read(prefix, 0, 8, 0)).bytesRead !== 8) throw new Error(`${path}: not a safetensors file (shorter than 8 bytes)`);
    const length = prefix.readBigUInt64LE(0);
    if (length > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) {
      throw new Error(`${path}: safetensors header length ${length} does not fit the ${size}-byte file`);
    }
    const bytes = Buffer.alloc(Number(length));
    await fh.read(bytes, 0, bytes.length, 8);
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch (error) {
      throw new Error(`${path}: safetensors header is not JSON (${(error as Error).message})`);
    }
    const header = z.record(z.string(), z.unknown()).safeParse(json);
    if (!header.success) throw new Error(`${path}: safetensors header is not an object`);
    const entries: SafetensorsEntry[] = [];
    for (const [name, value] of Object.entries(header.data)) {
      if (name === '__metadata__') continue;
      const entry = entrySchema.safeParse(value);
      if (!entry.success) throw new Error(`${path}: tensor '${name}': ${entry.error.issues[0]?.message ?? 'invalid entry'}`);
      entries.push({ name, dtype: entry.data.dtype, shape: entry.data.shape });
    }
    return entries;
  } finally {
    await fh.close();
  }
}

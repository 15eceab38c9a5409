/**
 * A safetensors file's header alone: each tensor's name, dtype, shape and byte range, checked
 * against the file's size, without reading any tensor data (the file may be gigabytes; the header is
 * its first 8 + N bytes).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { z } from 'zod';

export interface SafetensorsEntry {
  readonly file: string;
  readonly name: string;
  /** As stored: F32, F16, BF16, U32, … */
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

// A header larger than this is a corrupt length, not a real file's table of contents.
const MAX_HEADER_BYTES = 100 << 20;

/** Bytes per element of each safetensors dtype. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

/** Fills `into` from `position`, or names what the file ends inside. */
export async function readExactly(fh: FileHandle, path: string, into: Uint8Array, position: number, what: string): Promise<void> {
  let got = 0;
  while (got < into.length) {
    const { bytesRead } = await fh.read(into, got, into.length - got, position + got);
    if (bytesRead === 0) throw new Error(`${path}: file ends inside ${what} (truncated?)`);
    got += bytesRead;
  }
}

async function headerJson(fh: FileHandle, path: string, size: number): Promise<{ header: object; base: number }> {
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
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new Error(`${path}: safetensors header is not an object`);
  return { header, base: 8 + headerLength };
}

/**
 * Every tensor entry of one safetensors file, each checked against its dtype and shape, and unless
 * `requireData` is false (a summary of the header alone) against the file size.
 */
export async function readSafetensorsHeader(path: string, options: { requireData?: boolean } = {}): Promise<SafetensorsEntry[]> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const { header, base } = await headerJson(fh, path, size);
    const entries: SafetensorsEntry[] = [];
    for (const [name, raw] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const parsed = entrySchema.safeParse(raw);
      if (!parsed.success) throw new Error(`${path}: tensor '${name}': ${parsed.error.issues[0]?.message ?? 'invalid entry'}`);
      const { dtype, shape, data_offsets: [from, to] } = parsed.data;
      const itemBytes = SAFETENSORS_DTYPE_BYTES[dtype];
      if (itemBytes === undefined) throw new Error(`${path}: tensor '${name}' has unknown dtype ${dtype}`);
      const elements = shape.reduce((a, b) => a * b, 1);
      if (to - from !== elements * itemBytes) throw new Error(`${path}: tensor '${name}' spans ${to - from} bytes, but ${dtype} [${shape.join(', ')}] needs ${elements * itemBytes}`);
      if (options.requireData !== false && base + to > size) throw new Error(`${path}: tensor '${name}' data ends at byte ${base + to}, past the end of the ${size}-byte file (truncated?)`);
      entries.push({ file: path, name, dtype, shape, start: base + from, end: base + to });
    }
    return entries;
  } finally {
    await fh.close();
  }
}

/**
 * Small safetensors files (LoRA adapters) read into and written from Float32Arrays in plain
 * TypeScript: the exporters need the numbers in JavaScript anyway (transposes, row reordering,
 * float16), and a damaged file is reported by file and tensor before anything reaches MLX.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { bf16BitsToF32, f16BitsToF32 } from '../gguf/float16.js';

export interface DenseMatrix {
  /** Row-major shape. */
  readonly shape: readonly number[];
  readonly values: Float32Array;
}

export interface SafetensorsF32 {
  readonly tensors: Map<string, DenseMatrix>;
  readonly metadata: Record<string, string>;
}

const READABLE = { F32: 4, F16: 2, BF16: 2 } as const;

const entrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.int().min(0)),
  data_offsets: z.tuple([z.int().min(0), z.int().min(0)]),
});

function decode(bytes: Uint8Array, dtype: keyof typeof READABLE): Float32Array {
  const copy = new Uint8Array(bytes); // aligned, and detached from the file buffer
  if (dtype === 'F32') return new Float32Array(copy.buffer);
  const bits = new Uint16Array(copy.buffer);
  const toF32 = dtype === 'F16' ? f16BitsToF32 : bf16BitsToF32;
  return Float32Array.from(bits, (b) => toF32(b));
}

/** Every tensor of a safetensors file as float32; errors name the file and the tensor. */
export async function readSafetensorsF32(path: string): Promise<SafetensorsF32> {
  const file = await readFile(path).catch((error: NodeJS.ErrnoException) => {
    throw new Error(`${path}: ${error.code === 'ENOENT' ? 'not found' : error.message}`);
  });
  if (file.byteLength < 8) throw new Error(`${path}: truncated: ${file.byteLength} bytes, too short for a safetensors header`);
  const headerBytes = Number(file.readBigUInt64LE(0));
  if (8 + headerBytes > file.byteLength) {
    throw new Error(`${path}: truncated: the header claims ${headerBytes} bytes but the file has ${file.byteLength}`);
  }
  let header: Record<string, unknown>;
  try {
    header = z.record(z.string(), z.unknown()).parse(JSON.parse(file.subarray(8, 8 + headerBytes).toString('utf8')));
  } catch (error) {
    throw new Error(`${path}: the safetensors header is not a JSON object (${(error as Error).message.split('\n')[0]})`);
  }
  const data = file.subarray(8 + headerBytes);
  const metadata = z.record(z.string(), z.string()).safeParse(header.__metadata__ ?? {});
  const tensors = new Map<string, DenseMatrix>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const entry = entrySchema.safeParse(raw);
    if (!entry.success) throw new Error(`${path}: tensor '${name}': malformed header entry`);
    const { dtype, shape, data_offsets: [begin, end] } = entry.data;
    if (!(dtype in READABLE)) throw new Error(`${path}: tensor '${name}': dtype ${dtype} is not supported (F32, F16, BF16)`);
    const elements = shape.reduce((p, d) => p * d, 1);
    const size = READABLE[dtype as keyof typeof READABLE];
    if (end - begin !== elements * size || end < begin) {
      throw new Error(`${path}: tensor '${name}': ${end - begin} bytes for ${dtype} [${shape.join(', ')}], expected ${elements * size}`);
    }
    if (end > data.byteLength) {
      throw new Error(`${path}: truncated: tensor '${name}' ends at data byte ${end} but the file holds ${data.byteLength} data bytes`);
    }
    tensors.set(name, { shape, values: decode(data.subarray(begin, end), dtype as keyof typeof READABLE) });
  }
  return { tensors, metadata: metadata.success ? metadata.data : {} };
}

/** A float32 safetensors file's bytes, tensors in the given order, header space-padded to 8 bytes as HF does. */
export function encodeSafetensorsF32(tensors: ReadonlyMap<string, DenseMatrix>, metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, t] of tensors) {
    const elements = t.shape.reduce((p, d) => p * d, 1);
    if (elements !== t.values.length) throw new Error(`safetensors: '${name}' has ${t.values.length} values for shape [${t.shape.join(', ')}]`);
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.values.byteLength] };
    offset += t.values.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const head = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + head.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.byteLength), true);
  out.set(head, 8);
  let at = 8 + head.byteLength;
  for (const t of tensors.values()) {
    out.set(new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength), at);
    at += t.values.byteLength;
  }
  return out;
}

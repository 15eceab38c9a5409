import { open, type FileHandle } from 'node:fs/promises';
import { canDequantize, dequantizeInto } from './dequantize.js';
import { resolveGgmlType } from './ggml-type.js';
import { findTensor, type GgufFile, type GgufTensorInfo } from './reader.js';

/** Raw bytes per read when decoding: whole blocks, so a 7B matrix's file bytes are never all in memory at once. */
const DECODE_CHUNK_BYTES = 4 << 20;

function pick(file: GgufFile, tensor: GgufTensorInfo | string): GgufTensorInfo {
  if (typeof tensor !== 'string') return tensor;
  const t = findTensor(file, tensor);
  if (t === undefined) throw new Error(`${file.path}: no tensor named '${tensor}'`);
  return t;
}

async function readFully(fh: FileHandle, file: GgufFile, t: GgufTensorInfo, into: Uint8Array, position: number): Promise<void> {
  let got = 0;
  while (got < into.length) {
    const { bytesRead } = await fh.read(into, got, into.length - got, position + got);
    if (bytesRead === 0) throw new Error(`${file.path}: file ended inside tensor '${t.name}' (changed since it was read?)`);
    got += bytesRead;
  }
}

/** The raw bytes of one tensor. Meant for small tensors and tests: it allocates `nbytes`. */
export async function readTensorBytes(file: GgufFile, tensor: GgufTensorInfo | string): Promise<Uint8Array> {
  const t = pick(file, tensor);
  const out = new Uint8Array(t.nbytes);
  const fh = await open(file.path, 'r');
  try {
    await readFully(fh, file, t, out, t.offset);
  } finally {
    await fh.close();
  }
  return out;
}

/**
 * One tensor decoded to float32 in row-major order (`tensor.shape`). The file is read a few MiB
 * at a time and decoded into the output, so memory is the output plus one chunk.
 */
export async function readTensorFloat32(file: GgufFile, tensor: GgufTensorInfo | string): Promise<Float32Array> {
  const t = pick(file, tensor);
  const info = resolveGgmlType(t.ggmlType);
  if (!canDequantize(info.id)) throw new Error(`${file.path}: tensor '${t.name}' has type ${info.name}, which cannot be decoded`);
  const out = new Float32Array(t.elements);
  const step = Math.max(1, Math.floor(DECODE_CHUNK_BYTES / info.typeSize)) * info.typeSize;
  const chunk = new Uint8Array(Math.min(step, t.nbytes));
  const fh = await open(file.path, 'r');
  try {
    let at = 0;
    for (let done = 0; done < t.nbytes; done += step) {
      const part = chunk.subarray(0, Math.min(step, t.nbytes - done));
      await readFully(fh, file, t, part, t.offset + done);
      at += dequantizeInto(info.id, part, out, at);
    }
    if (at !== out.length) throw new Error(`${file.path}: tensor '${t.name}' decoded to ${at} values, expected ${out.length}`);
  } finally {
    await fh.close();
  }
  return out;
}

import { open } from 'node:fs/promises';
import { dequantize } from './dequantize.js';
import { findTensor, type GgufFile, type GgufTensorInfo } from './reader.js';

function pick(file: GgufFile, tensor: GgufTensorInfo | string): GgufTensorInfo {
  if (typeof tensor !== 'string') return tensor;
  const t = findTensor(file, tensor);
  if (t === undefined) throw new Error(`${file.path}: no tensor named '${tensor}'`);
  return t;
}

/** The raw bytes of one tensor. Meant for small tensors and tests: it allocates `nbytes`. */
export async function readTensorBytes(file: GgufFile, tensor: GgufTensorInfo | string): Promise<Uint8Array> {
  const t = pick(file, tensor);
  const out = new Uint8Array(t.nbytes);
  const fh = await open(file.path, 'r');
  try {
    let got = 0;
    while (got < t.nbytes) {
      const { bytesRead } = await fh.read(out, got, t.nbytes - got, t.offset + got);
      if (bytesRead === 0) throw new Error(`${file.path}: file ended inside tensor '${t.name}' (changed since it was read?)`);
      got += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return out;
}

/** One tensor decoded to float32 in row-major order (`tensor.shape`). */
export async function readTensorFloat32(file: GgufFile, tensor: GgufTensorInfo | string): Promise<Float32Array> {
  const t = pick(file, tensor);
  return dequantize(t.ggmlType, await readTensorBytes(file, t));
}

/**
 * safetensors tensors read one at a time: a tensor is read from the byte range its header entry gives
 * (lib/io/safetensors-header) in chunks and decoded to float32. Nothing else of the file is read, so
 * a 7B shard is never in memory.
 */
import { open } from 'node:fs/promises';
import { dequantizeInto } from '../gguf/dequantize.js';
import { readExactly, SAFETENSORS_DTYPE_BYTES, type SafetensorsEntry } from '../io/safetensors-header.js';

export { readSafetensorsHeader, type SafetensorsEntry } from '../io/safetensors-header.js';

const CHUNK_BYTES = 4 << 20;
/** safetensors dtype → the ggml decoder that reads it. */
const FLOAT_DECODER: Readonly<Record<string, 'F32' | 'F16' | 'BF16'>> = { F32: 'F32', F16: 'F16', BF16: 'BF16' };

/** One F32/F16/BF16 tensor as float32, row-major; read and decoded a few MiB at a time. */
export async function readSafetensorsFloat32(entry: SafetensorsEntry): Promise<Float32Array> {
  const decoder = FLOAT_DECODER[entry.dtype];
  if (decoder === undefined) throw new Error(`${entry.file}: tensor '${entry.name}' has dtype ${entry.dtype}, not a float type this exporter decodes (F32, F16, BF16)`);
  const itemBytes = SAFETENSORS_DTYPE_BYTES[entry.dtype]!;
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

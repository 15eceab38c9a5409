/**
 * GGUF tensors into the native model: F32/F16/BF16 straight from the file's bytes, Q4_0/Q4_1/Q8_0
 * linear weights and embedding repacked losslessly into MLX's quantized layout, and every other decodable type
 * (Q5_0, Q5_1, Q2_K–Q6_K, and Q4_0/Q4_1/Q8_0 outside linear weights) decoded to float32 here and,
 * for linear weights, quantized again natively. Q/K rows keep llama.cpp's order (RoPE runs
 * interleaved for them).
 */
import type { GgufFile, GgufTensorInfo } from '../gguf/reader.js';
import { canDequantize } from '../gguf/dequantize.js';
import { readTensorBytes, readTensorFloat32 } from '../gguf/tensor-data.js';
import { tensorFromFile } from '../io/safetensors.js';
import type { DType, NativeModel } from '../native.js';
import { ggufToHfName } from '../gguf/tensor-names.js';
import { tensor } from '../tensor.js';
import { isRepackable, repackGguf } from './gguf-repack.js';

export { ggufToHfName } from '../gguf/tensor-names.js';

const directTypes: Record<string, DType> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/** Weights the native model keeps quantized: the linears and the embedding (dequantized there if tied). */
function keptQuantized(hfName: string): boolean {
  return hfName === 'lm_head.weight' || hfName === 'model.embed_tokens.weight' || /_proj\.weight$/.test(hfName);
}

async function loadOne(model: NativeModel, file: GgufFile, t: GgufTensorInfo, hfName: string): Promise<void> {
  const direct = directTypes[t.typeName];
  if (direct) {
    const value = await tensorFromFile(file.path, { offset: t.offset, length: t.nbytes, dtype: direct, shape: t.shape });
    try {
      await model.setWeight(hfName, value);
    } finally {
      value.dispose();
    }
    return;
  }
  if (isRepackable(t.typeName) && keptQuantized(hfName) && t.shape.length === 2) {
    const [rows, cols] = t.shape as [number, number];
    const q = repackGguf(t.typeName, await readTensorBytes(file, t), rows, cols);
    const wq = await tensor(q.wq, [rows, (cols * q.bits) / 32]);
    const scales = await tensor(q.scales, [rows, cols / q.groupSize], q.dtype);
    const biases = await tensor(q.biases, [rows, cols / q.groupSize], q.dtype);
    try {
      await model.setQuantizedWeight(hfName, wq, scales, biases, q.bits, q.groupSize);
    } finally {
      wq.dispose();
      scales.dispose();
      biases.dispose();
    }
    return;
  }
  if (!canDequantize(t.typeName)) {
    throw new Error(`${file.path}: tensor '${t.name}' has type ${t.typeName}, which mlx-qlora cannot read`);
  }
  // Decoded in chunks straight from the file: the raw bytes of a big matrix never sit beside its floats.
  const value = await tensor(await readTensorFloat32(file, t), t.shape);
  try {
    await model.setWeight(hfName, value);
  } finally {
    value.dispose();
  }
}

/** Whether a tensor is decoded to float32 on its way in (see loadOne) rather than copied or repacked. */
function decodesToFloat32(t: GgufTensorInfo, hfName: string): boolean {
  if (directTypes[t.typeName]) return false;
  return !(isRepackable(t.typeName) && keptQuantized(hfName) && t.shape.length === 2);
}

/**
 * Loads every tensor of `file` into `model`, one at a time. Tensors decoded through float32 (in
 * Ollama's 7B files the embedding and the Q6_K output matrix: 0.5 GB of floats each, twice over
 * while they cross into MLX) go first, while the rest of the model is not yet resident, so their
 * transients do not stack on top of the whole model.
 */
export async function loadGgufWeights(model: NativeModel, file: GgufFile): Promise<void> {
  const named = file.tensors.flatMap((t) => {
    const hfName = ggufToHfName(t.name);
    return hfName === undefined ? [] : [{ t, hfName }];
  });
  const ordered = [...named.filter((n) => decodesToFloat32(n.t, n.hfName)), ...named.filter((n) => !decodesToFloat32(n.t, n.hfName))];
  for (const { t, hfName } of ordered) {
    try {
      await loadOne(model, file, t, hfName);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(message.startsWith(file.path) ? message : `${file.path}: ${message}`, { cause: error });
    }
  }
}

/** llama.cpp's rope_freqs.weight (llama3 scaling): per-pair factors on top of base^(2i/d). */
export async function ggufRopePeriods(file: GgufFile, headDim: number, theta: number): Promise<Float32Array | undefined> {
  const t = file.tensors.find((x) => x.name === 'rope_freqs.weight');
  if (!t) return undefined;
  const factors = await readTensorFloat32(file, t);
  if (factors.length !== headDim / 2) throw new Error(`${file.path}: rope_freqs.weight has ${factors.length} values, expected ${headDim / 2}`);
  return Float32Array.from(factors, (f, i) => theta ** ((2 * i) / headDim) * f);
}

/**
 * Tensors and the few operations JavaScript needs directly (tests, loaders, exporters). Model math
 * runs natively in whole steps; these are not a NumPy clone.
 */
import { native, type DType, type NativeTensor } from './native.js';

export type Tensor = NativeTensor;
export type { DType };

/** The typed array that holds one dtype's bytes; float16/bfloat16 come as raw bits in a Uint16Array. */
export interface TypedArrayFor {
  bool: Uint8Array;
  uint8: Uint8Array;
  uint16: Uint16Array;
  uint32: Uint32Array;
  uint64: BigUint64Array;
  int8: Int8Array;
  int16: Int16Array;
  int32: Int32Array;
  int64: BigInt64Array;
  float16: Uint16Array;
  float32: Float32Array;
  float64: Float64Array;
  bfloat16: Uint16Array;
  complex64: Float32Array;
}

export type TensorInput = TypedArrayFor[DType];

const views: { [K in DType]: (buffer: ArrayBuffer) => TypedArrayFor[K] } = {
  bool: (b) => new Uint8Array(b),
  uint8: (b) => new Uint8Array(b),
  uint16: (b) => new Uint16Array(b),
  uint32: (b) => new Uint32Array(b),
  uint64: (b) => new BigUint64Array(b),
  int8: (b) => new Int8Array(b),
  int16: (b) => new Int16Array(b),
  int32: (b) => new Int32Array(b),
  int64: (b) => new BigInt64Array(b),
  float16: (b) => new Uint16Array(b),
  float32: (b) => new Float32Array(b),
  float64: (b) => new Float64Array(b),
  bfloat16: (b) => new Uint16Array(b),
  complex64: (b) => new Float32Array(b),
};

function inferDtype(data: TensorInput): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Uint32Array) return 'uint32';
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof BigUint64Array) return 'uint64';
  throw new TypeError('a Uint16Array is ambiguous: pass dtype float16, bfloat16 or uint16');
}

/**
 * A tensor holding a copy of `data`. The dtype follows the array type unless given; a Uint16Array
 * needs one (float16, bfloat16 or uint16). The shape defaults to 1-D.
 */
export async function tensor(data: TensorInput, shape?: readonly number[], dtype?: DType): Promise<Tensor> {
  const resolved = dtype ?? inferDtype(data);
  return native().fromBytes(data, shape ? [...shape] : [data.length], resolved);
}

/** The tensor's values in row-major order, in the typed array of its dtype. */
export async function toTypedArray<D extends DType>(t: Tensor & { dtype: D }): Promise<TypedArrayFor[D]>;
export async function toTypedArray(t: Tensor): Promise<TensorInput>;
export async function toTypedArray(t: Tensor): Promise<TensorInput> {
  const bytes = await native().toBytes(t);
  return views[t.dtype](bytes);
}

// Async wrappers, so that a bad argument rejects like any other failure instead of throwing.
export const matmul = async (a: Tensor, b: Tensor): Promise<Tensor> => native().matmul(a, b);
export const add = async (a: Tensor, b: Tensor): Promise<Tensor> => native().add(a, b);
export const astype = async (t: Tensor, dtype: DType): Promise<Tensor> => native().astype(t, dtype);

export interface QuantizeOptions {
  /** 32, 64 or 128; MLX's default is 64. */
  groupSize?: number;
  /** 2, 3, 4, 5, 6 or 8; MLX's default is 4. */
  bits?: number;
}

/** MLX affine quantization along the last axis: packed uint32 weights plus per-group scales and biases. */
export async function quantize(w: Tensor, options: QuantizeOptions = {}): Promise<{ wq: Tensor; scales: Tensor; biases: Tensor }> {
  const [wq, scales, biases] = await native().quantize(w, options.groupSize, options.bits);
  return { wq, scales, biases };
}

export const dequantize = async (
  q: { wq: Tensor; scales: Tensor; biases: Tensor },
  options: QuantizeOptions & { dtype?: DType } = {},
): Promise<Tensor> => native().dequantize(q.wq, q.scales, q.biases, options.groupSize, options.bits, options.dtype);

/** x @ dequantize(w)ᵀ when `transpose` (weights stored [out, in]), else x @ dequantize(w). */
export const quantizedMatmul = async (
  x: Tensor,
  q: { wq: Tensor; scales: Tensor; biases: Tensor },
  options: QuantizeOptions & { transpose?: boolean } = {},
): Promise<Tensor> =>
  native().quantizedMatmul(x, q.wq, q.scales, q.biases, options.transpose ?? true, options.groupSize, options.bits);

/** Normal samples from an explicit seed: the same seed gives the same tensor. */
export const randomNormal = async (
  shape: readonly number[],
  options: { dtype?: DType; seed: number; loc?: number; scale?: number },
): Promise<Tensor> => native().randomNormal([...shape], options.dtype ?? 'float32', options.seed, options.loc, options.scale);

/** Disposes every tensor given, skipping undefined. */
export function disposeAll(...tensors: Array<Tensor | undefined | null | Iterable<Tensor>>): void {
  for (const t of tensors) {
    if (t == null) continue;
    if (Symbol.iterator in t) for (const u of t) u.dispose();
    else t.dispose();
  }
}

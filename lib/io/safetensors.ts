/**
 * safetensors files through MLX: every dtype MLX has but float64, string metadata included.
 * Saving is atomic: a temporary file is written, read back and renamed over the target.
 */
import { resolve } from 'node:path';
import { native } from '../native.js';
import type { DType, Tensor } from '../tensor.js';

export interface SafetensorsContents {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

/** Loads every tensor (evaluated, so a damaged file fails here and names itself). */
export async function loadSafetensors(path: string): Promise<SafetensorsContents> {
  return native().loadSafetensors(resolve(path));
}

export async function saveSafetensors(
  path: string,
  tensors: Record<string, Tensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  return native().saveSafetensors(resolve(path), tensors, metadata);
}

export interface FileRange {
  /** Absolute byte offset of the tensor's data in the file. */
  offset: number;
  length: number;
  dtype: DType;
  shape: readonly number[];
}

/** A tensor read straight from a byte range of a file (GGUF tensor data), never passing through JS. */
export async function tensorFromFile(path: string, range: FileRange): Promise<Tensor> {
  return native().tensorFromFile(resolve(path), range.offset, range.length, range.dtype, [...range.shape]);
}

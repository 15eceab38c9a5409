import type { GgufFile } from './reader.js';
import type { GgufValue, GgufValueType } from './value-type.js';

/**
 * Typed access to GGUF metadata. Each getter throws, naming the file and key, when the key holds
 * a different kind of value; the `optional*` forms return undefined only when the key is absent.
 */

function fail(file: GgufFile, key: string, expected: string): never {
  const type = file.metadataTypes.get(key);
  throw new Error(`${file.path}: metadata '${key}' ${type === undefined ? 'is missing' : `is ${type}`}, expected ${expected}`);
}

const INTEGER_TYPES: ReadonlySet<GgufValueType> = new Set(['uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'uint64', 'int64']);
const FLOAT_TYPES: ReadonlySet<GgufValueType> = new Set(['float32', 'float64']);

function toSafeNumber(file: GgufFile, key: string, v: number | bigint): number {
  if (typeof v === 'number') return v;
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new Error(`${file.path}: metadata '${key}' = ${v} does not fit a JS number`);
  }
  return Number(v);
}

export function optionalString(file: GgufFile, key: string): string | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') fail(file, key, 'string');
  return v;
}

export function requireString(file: GgufFile, key: string): string {
  return optionalString(file, key) ?? fail(file, key, 'string');
}

/** Any integer type (64-bit values must fit a safe integer). */
export function optionalInteger(file: GgufFile, key: string): number | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (!INTEGER_TYPES.has(file.metadataTypes.get(key) ?? 'string')) fail(file, key, 'an integer');
  return toSafeNumber(file, key, v as number | bigint);
}

export function requireInteger(file: GgufFile, key: string): number {
  return optionalInteger(file, key) ?? fail(file, key, 'an integer');
}

/** Any numeric type, integer or float. */
export function optionalNumber(file: GgufFile, key: string): number | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  const type = file.metadataTypes.get(key) ?? 'string';
  if (!INTEGER_TYPES.has(type) && !FLOAT_TYPES.has(type)) fail(file, key, 'a number');
  return toSafeNumber(file, key, v as number | bigint);
}

export function requireNumber(file: GgufFile, key: string): number {
  return optionalNumber(file, key) ?? fail(file, key, 'a number');
}

export function optionalBoolean(file: GgufFile, key: string): boolean | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') fail(file, key, 'bool');
  return v;
}

export function optionalStringArray(file: GgufFile, key: string): string[] | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (file.metadataTypes.get(key) !== 'string[]') fail(file, key, 'string[]');
  return v as string[];
}

export function requireStringArray(file: GgufFile, key: string): string[] {
  return optionalStringArray(file, key) ?? fail(file, key, 'string[]');
}

/** Any numeric array; 64-bit elements must fit safe integers. */
export function optionalNumberArray(file: GgufFile, key: string): number[] | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  const type = file.metadataTypes.get(key) ?? 'string';
  const elem = type.endsWith('[]') ? (type.slice(0, -2) as GgufValueType) : undefined;
  if (elem === undefined || (!INTEGER_TYPES.has(elem) && !FLOAT_TYPES.has(elem))) fail(file, key, 'a numeric array');
  const arr = v as (number | bigint)[];
  return typeof arr[0] === 'bigint' ? arr.map((x) => toSafeNumber(file, key, x)) : (arr as number[]);
}

export function requireNumberArray(file: GgufFile, key: string): number[] {
  return optionalNumberArray(file, key) ?? fail(file, key, 'a numeric array');
}

/** The raw value, whatever its type. */
export function metadataValue(file: GgufFile, key: string): GgufValue | undefined {
  return file.metadata.get(key);
}

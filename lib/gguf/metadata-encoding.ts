import type { ByteBuilder } from './byte-builder.js';
import { knownKeyType } from './known-key-types.js';
import {
  GGUF_ARRAY_TYPE_ID,
  GGUF_SCALAR_TYPE_IDS,
  elementType,
  isArrayType,
  isGgufValueType,
  type GgufScalar,
  type GgufScalarType,
  type GgufTypedValue,
  type GgufValue,
  type GgufValueType,
} from './value-type.js';

/** A plain value (type inferred or taken from llama.cpp's known keys) or an explicitly typed one. */
export type GgufMetadataInput = GgufValue | GgufTypedValue;

export interface GgufMetadataEntry {
  readonly key: string;
  readonly type: GgufValueType;
  readonly value: GgufValue;
}

const INT_RANGES: Partial<Record<GgufScalarType, readonly [number, number]>> = {
  uint8: [0, 0xff],
  int8: [-0x80, 0x7f],
  uint16: [0, 0xffff],
  int16: [-0x8000, 0x7fff],
  uint32: [0, 0xffffffff],
  int32: [-0x80000000, 0x7fffffff],
};
const BIGINT_RANGES: Partial<Record<GgufScalarType, readonly [bigint, bigint]>> = {
  uint64: [0n, (1n << 64n) - 1n],
  int64: [-(1n << 63n), (1n << 63n) - 1n],
};

export function isTypedValue(v: GgufMetadataInput): v is GgufTypedValue {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && 'type' in v && 'value' in v;
}

/**
 * Decides the stored type of one key: an explicit type wins, then llama.cpp's expected type for
 * a known key, then inference (integers → uint32 or int32, other numbers → float32, bigint →
 * uint64/int64). Throws, naming the key, when the value does not fit the type.
 */
export function resolveMetadataEntry(key: string, input: GgufMetadataInput): GgufMetadataEntry {
  if (key.length === 0 || Buffer.byteLength(key) > 65535) throw new Error(`GGUF metadata key ${JSON.stringify(key)} must be 1..65535 bytes`);
  let type: GgufValueType;
  let value: GgufValue;
  if (isTypedValue(input)) {
    if (!isGgufValueType(input.type)) throw new Error(`GGUF metadata '${key}': unknown type ${JSON.stringify(input.type)}`);
    type = input.type;
    value = input.value;
  } else {
    value = input;
    type = knownKeyType(key) ?? inferType(key, input);
  }
  if (isArrayType(type)) {
    if (!Array.isArray(value)) throw new Error(`GGUF metadata '${key}' has type ${type} but the value is not an array`);
    const elem = elementType(type);
    return { key, type, value: value.map((v, i) => checkScalar(`${key}[${i}]`, elem, v)) };
  }
  return { key, type, value: checkScalar(key, type, value) };
}

function inferType(key: string, value: GgufValue): GgufValueType {
  if (!Array.isArray(value)) return inferScalar(key, value);
  if (value.length === 0) throw new Error(`GGUF metadata '${key}' is an empty array: give its type, e.g. { type: 'uint32[]', value: [] }`);
  if (value.every((v) => typeof v === 'string')) return 'string[]';
  if (value.every((v) => typeof v === 'boolean')) return 'bool[]';
  if (value.every((v) => typeof v === 'bigint')) return value.some((v) => (v as bigint) < 0n) ? 'int64[]' : 'uint64[]';
  if (value.every((v) => typeof v === 'number')) {
    const nums = value as number[];
    if (nums.every(Number.isInteger)) {
      if (nums.every((v) => v >= 0 && v <= 0xffffffff)) return 'uint32[]';
      if (nums.every((v) => v >= -0x80000000 && v <= 0x7fffffff)) return 'int32[]';
      throw new Error(`GGUF metadata '${key}' has integers outside int32/uint32: give its type explicitly`);
    }
    return 'float32[]';
  }
  throw new Error(`GGUF metadata '${key}' mixes element kinds or nests arrays; GGUF arrays hold one scalar type`);
}

function inferScalar(key: string, value: GgufScalar): GgufScalarType {
  switch (typeof value) {
    case 'string':
      return 'string';
    case 'boolean':
      return 'bool';
    case 'bigint':
      return value < 0n ? 'int64' : 'uint64';
    case 'number':
      if (!Number.isInteger(value)) return 'float32';
      if (value >= 0 && value <= 0xffffffff) return 'uint32';
      if (value >= -0x80000000 && value < 0) return 'int32';
      throw new Error(`GGUF metadata '${key}' = ${value} is outside int32/uint32: give its type explicitly`);
  }
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkScalar(what: string, type: GgufScalarType, v: GgufValue): GgufScalar {
  const bad = (why: string): never => {
    throw new Error(`GGUF metadata '${what}' (${type}): ${why}`);
  };
  if (Array.isArray(v)) return bad('nested arrays are not allowed');
  switch (type) {
    case 'string':
      if (typeof v !== 'string') return bad(`expected a string, got ${typeof v}`);
      if (LONE_SURROGATE.test(v)) return bad('string has a lone surrogate and is not valid UTF-8');
      return v;
    case 'bool':
      if (typeof v !== 'boolean') return bad(`expected a boolean, got ${typeof v}`);
      return v;
    case 'float32':
    case 'float64':
      if (typeof v !== 'number') return bad(`expected a number, got ${typeof v}`);
      return v;
    case 'uint64':
    case 'int64': {
      const [lo, hi] = BIGINT_RANGES[type] as readonly [bigint, bigint];
      const b = typeof v === 'bigint' ? v : typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : bad(`expected a bigint or safe integer, got ${String(v)}`);
      if (b < lo || b > hi) bad(`${b} is out of range`);
      return b;
    }
    default: {
      const [lo, hi] = INT_RANGES[type] as readonly [number, number];
      const n = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : bad(`expected an integer, got ${typeof v}`);
      if (!Number.isInteger(n) || n < lo || n > hi) bad(`${String(v)} is not an integer in [${lo}, ${hi}]`);
      return n;
    }
  }
}

export function encodeMetadataEntry(b: ByteBuilder, e: GgufMetadataEntry): void {
  b.string(e.key);
  if (isArrayType(e.type)) {
    const elem = elementType(e.type);
    const arr = e.value as GgufScalar[];
    b.u32(GGUF_ARRAY_TYPE_ID);
    b.u32(GGUF_SCALAR_TYPE_IDS[elem]);
    b.u64(BigInt(arr.length));
    for (const v of arr) encodeScalar(b, elem, v);
  } else {
    b.u32(GGUF_SCALAR_TYPE_IDS[e.type]);
    encodeScalar(b, e.type, e.value as GgufScalar);
  }
}

function encodeScalar(b: ByteBuilder, type: GgufScalarType, v: GgufScalar): void {
  switch (type) {
    case 'uint8':
      return b.u8(v as number);
    case 'int8':
      return b.i8(v as number);
    case 'uint16':
      return b.u16(v as number);
    case 'int16':
      return b.i16(v as number);
    case 'uint32':
      return b.u32(v as number);
    case 'int32':
      return b.i32(v as number);
    case 'float32':
      return b.f32(v as number);
    case 'float64':
      return b.f64(v as number);
    case 'uint64':
      return b.u64(v as bigint);
    case 'int64':
      return b.i64(v as bigint);
    case 'bool':
      return b.u8(v ? 1 : 0);
    case 'string':
      return b.string(v as string);
  }
}

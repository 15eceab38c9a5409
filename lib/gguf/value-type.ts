/** GGUF metadata value types (gguf.h `enum gguf_type`) and the JS shapes they read into. */

export const GGUF_SCALAR_TYPE_IDS = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  uint64: 10,
  int64: 11,
  float64: 12,
} as const;

export const GGUF_ARRAY_TYPE_ID = 9;

export type GgufScalarType = keyof typeof GGUF_SCALAR_TYPE_IDS;
/** A scalar type, or an array of one (`'float32[]'`). ggml rejects nested arrays, so do we. */
export type GgufValueType = GgufScalarType | `${GgufScalarType}[]`;

/**
 * uint64/int64 read as bigint so no value is rounded; every other number as number.
 * Arrays hold scalars only.
 */
export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufValue[];

/** A value with its GGUF type spelled out, for the writer where a JS value is ambiguous. */
export interface GgufTypedValue {
  readonly type: GgufValueType;
  readonly value: GgufValue;
}

const scalarById = new Map<number, GgufScalarType>(
  Object.entries(GGUF_SCALAR_TYPE_IDS).map(([name, id]) => [id, name as GgufScalarType]),
);

export function scalarTypeById(id: number): GgufScalarType | undefined {
  return scalarById.get(id);
}

/** Encoded size of a fixed-size scalar; undefined for strings. */
export function scalarByteSize(type: GgufScalarType): number | undefined {
  switch (type) {
    case 'uint8':
    case 'int8':
    case 'bool':
      return 1;
    case 'uint16':
    case 'int16':
      return 2;
    case 'uint32':
    case 'int32':
    case 'float32':
      return 4;
    case 'uint64':
    case 'int64':
    case 'float64':
      return 8;
    case 'string':
      return undefined;
  }
}

export function isArrayType(type: GgufValueType): type is `${GgufScalarType}[]` {
  return type.endsWith('[]');
}

export function elementType(type: `${GgufScalarType}[]`): GgufScalarType {
  return type.slice(0, -2) as GgufScalarType;
}

export function isGgufValueType(type: string): type is GgufValueType {
  const scalar = type.endsWith('[]') ? type.slice(0, -2) : type;
  return Object.hasOwn(GGUF_SCALAR_TYPE_IDS, scalar);
}

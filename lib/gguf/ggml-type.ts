/**
 * ggml tensor element types (ggml.h `enum ggml_type`, sizes from ggml-common.h).
 * The sizes of every id are kept, even for types we cannot decode, so that a reader can
 * still lay out and skip such tensors; `supported` says whether this library handles them.
 */
export interface GgmlTypeInfo {
  readonly id: number;
  readonly name: string;
  /** Elements per block (1 for plain scalar types). */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
  /** False for the IQ/TQ/FP4 families and other types this library does not decode or encode. */
  readonly supported: boolean;
}

export const GGML_TYPES = [
  { id: 0, name: 'F32', blockSize: 1, typeSize: 4, supported: true },
  { id: 1, name: 'F16', blockSize: 1, typeSize: 2, supported: true },
  { id: 2, name: 'Q4_0', blockSize: 32, typeSize: 18, supported: true },
  { id: 3, name: 'Q4_1', blockSize: 32, typeSize: 20, supported: true },
  { id: 6, name: 'Q5_0', blockSize: 32, typeSize: 22, supported: true },
  { id: 7, name: 'Q5_1', blockSize: 32, typeSize: 24, supported: true },
  { id: 8, name: 'Q8_0', blockSize: 32, typeSize: 34, supported: true },
  { id: 9, name: 'Q8_1', blockSize: 32, typeSize: 36, supported: true },
  { id: 10, name: 'Q2_K', blockSize: 256, typeSize: 84, supported: true },
  { id: 11, name: 'Q3_K', blockSize: 256, typeSize: 110, supported: true },
  { id: 12, name: 'Q4_K', blockSize: 256, typeSize: 144, supported: true },
  { id: 13, name: 'Q5_K', blockSize: 256, typeSize: 176, supported: true },
  { id: 14, name: 'Q6_K', blockSize: 256, typeSize: 210, supported: true },
  { id: 15, name: 'Q8_K', blockSize: 256, typeSize: 292, supported: true },
  { id: 16, name: 'IQ2_XXS', blockSize: 256, typeSize: 66, supported: false },
  { id: 17, name: 'IQ2_XS', blockSize: 256, typeSize: 74, supported: false },
  { id: 18, name: 'IQ3_XXS', blockSize: 256, typeSize: 98, supported: false },
  { id: 19, name: 'IQ1_S', blockSize: 256, typeSize: 50, supported: false },
  { id: 20, name: 'IQ4_NL', blockSize: 32, typeSize: 18, supported: false },
  { id: 21, name: 'IQ3_S', blockSize: 256, typeSize: 110, supported: false },
  { id: 22, name: 'IQ2_S', blockSize: 256, typeSize: 82, supported: false },
  { id: 23, name: 'IQ4_XS', blockSize: 256, typeSize: 136, supported: false },
  { id: 24, name: 'I8', blockSize: 1, typeSize: 1, supported: true },
  { id: 25, name: 'I16', blockSize: 1, typeSize: 2, supported: true },
  { id: 26, name: 'I32', blockSize: 1, typeSize: 4, supported: true },
  { id: 27, name: 'I64', blockSize: 1, typeSize: 8, supported: true },
  { id: 28, name: 'F64', blockSize: 1, typeSize: 8, supported: true },
  { id: 29, name: 'IQ1_M', blockSize: 256, typeSize: 56, supported: false },
  { id: 30, name: 'BF16', blockSize: 1, typeSize: 2, supported: true },
  { id: 34, name: 'TQ1_0', blockSize: 256, typeSize: 54, supported: false },
  { id: 35, name: 'TQ2_0', blockSize: 256, typeSize: 66, supported: false },
  { id: 39, name: 'MXFP4', blockSize: 32, typeSize: 17, supported: false },
  { id: 40, name: 'NVFP4', blockSize: 64, typeSize: 36, supported: false },
  { id: 41, name: 'Q1_0', blockSize: 128, typeSize: 18, supported: false },
  { id: 42, name: 'Q2_0', blockSize: 64, typeSize: 18, supported: false },
] as const satisfies readonly GgmlTypeInfo[];

export type GgmlTypeName = (typeof GGML_TYPES)[number]['name'];

/** Ids ggml once used and has since removed (Q4_2, Q4_3, the Q4_0_x_y and IQ4_NL_x_y repacks). */
export const REMOVED_GGML_TYPE_IDS: ReadonlySet<number> = new Set([4, 5, 31, 32, 33, 36, 37, 38]);

const byId = new Map<number, GgmlTypeInfo>(GGML_TYPES.map((t) => [t.id, t]));
const byName = new Map<string, GgmlTypeInfo>(GGML_TYPES.map((t) => [t.name, t]));

export function ggmlTypeById(id: number): GgmlTypeInfo | undefined {
  return byId.get(id);
}

export function ggmlTypeByName(name: string): GgmlTypeInfo | undefined {
  return byName.get(name.toUpperCase());
}

/** Accepts a type name (case-insensitive) or id; throws for unknown or removed types. */
export function resolveGgmlType(type: GgmlTypeName | string | number): GgmlTypeInfo {
  const info = typeof type === 'number' ? byId.get(type) : byName.get(type.toUpperCase());
  if (info === undefined) {
    const removed = typeof type === 'number' && REMOVED_GGML_TYPE_IDS.has(type);
    throw new Error(`ggml type ${JSON.stringify(type)} is ${removed ? 'a removed type' : 'unknown'}`);
  }
  return info;
}

/**
 * Bytes of a tensor with ggml dims `ne` (ne[0] contiguous), or a string saying why the shape
 * is impossible for this type. BigInt so that corrupt dims cannot overflow silently.
 */
export function ggmlTensorBytes(type: GgmlTypeInfo, ne: readonly bigint[]): bigint | string {
  const ne0 = ne[0] ?? 1n;
  if (ne0 % BigInt(type.blockSize) !== 0n) {
    return `ne[0]=${ne0} is not a multiple of the ${type.name} block size ${type.blockSize}`;
  }
  let rows = 1n;
  for (let i = 1; i < ne.length; i++) rows *= ne[i] ?? 1n;
  return (ne0 / BigInt(type.blockSize)) * BigInt(type.typeSize) * rows;
}

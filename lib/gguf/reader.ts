import { open } from 'node:fs/promises';
import { FileCursor } from './file-cursor.js';
import { GgufFormatError } from './format-error.js';
import { REMOVED_GGML_TYPE_IDS, ggmlTensorBytes, ggmlTypeById } from './ggml-type.js';
import {
  GGUF_ARRAY_TYPE_ID,
  scalarByteSize,
  scalarTypeById,
  type GgufScalar,
  type GgufScalarType,
  type GgufValue,
  type GgufValueType,
} from './value-type.js';

export interface GgufTensorInfo {
  readonly name: string;
  /** ggml order: ne[0] is the contiguous (innermost) dimension. */
  readonly ne: readonly number[];
  /** Row-major order as numpy/torch/MLX use it: `ne` reversed, so a torch [out, in] weight is [out, in]. */
  readonly shape: readonly number[];
  readonly ggmlType: number;
  readonly typeName: string;
  /** Offset as stored, relative to `dataOffset`. */
  readonly relativeOffset: number;
  /** Absolute file offset of the first data byte. */
  readonly offset: number;
  readonly nbytes: number;
  readonly elements: number;
}

export interface GgufFile {
  readonly path: string;
  readonly version: 2 | 3;
  readonly alignment: number;
  /** Keys in file order. */
  readonly metadata: ReadonlyMap<string, GgufValue>;
  /** The stored type of each key, so a copy can keep it (llama.cpp checks types strictly). */
  readonly metadataTypes: ReadonlyMap<string, GgufValueType>;
  readonly tensors: readonly GgufTensorInfo[];
  /** Absolute file offset where tensor data starts. */
  readonly dataOffset: number;
  readonly fileSize: number;
}

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_NAME is 64 including the NUL. */
export const GGUF_MAX_TENSOR_NAME_BYTES = 63;
export const GGUF_MAX_DIMS = 4;
const MAX_KEY_BYTES = 65535;
// Caps that turn a corrupt length inside a multi-GB blob into an error instead of an allocation.
const MAX_STRING_BYTES = 256 << 20;
const MAX_ARRAY_ELEMENTS = 1 << 24;
const INT64_MAX = (1n << 63n) - 1n;
// Smallest encodings: key (8-byte length + 1 byte) + type + 1-byte value; tensor info with a
// 1-byte name, one dim.
const MIN_KV_BYTES = 8 + 1 + 4 + 1;
const MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 8 + 4 + 8;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads a GGUF file's header, metadata and tensor table (v3, and v2 which has the same layout).
 * Tensor data is not read. Every count, length and offset is checked against the file size
 * before anything is allocated, and tensor offsets must follow ggml's strict packed layout.
 */
export async function readGguf(path: string): Promise<GgufFile> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    return await parse(new FileCursor(fh, size, path));
  } finally {
    await fh.close();
  }
}

export function findTensor(file: GgufFile, name: string): GgufTensorInfo | undefined {
  return file.tensors.find((t) => t.name === name);
}

async function parse(c: FileCursor): Promise<GgufFile> {
  if (c.fileSize < 4) c.fail(`not a GGUF file: only ${c.fileSize} bytes`, 0);
  await c.ensure(4, 'magic');
  const magic = c.u32();
  if (magic !== GGUF_MAGIC) {
    c.fail(`not a GGUF file: magic is 0x${magic.toString(16).padStart(8, '0')}, expected "GGUF"`, 0);
  }
  await c.ensure(4 + 8 + 8, 'header');
  const version = c.u32();
  if (version === 1) c.fail('GGUF version 1 is not supported (only 2 and 3)', 4);
  if (version !== 0 && (version & 0xffff) === 0) c.fail('big-endian GGUF files are not supported', 4);
  if (version !== 2 && version !== 3) c.fail(`unsupported GGUF version ${version} (only 2 and 3)`, 4);
  const nTensors = c.u64();
  const nKv = c.u64();
  if (nKv * BigInt(MIN_KV_BYTES) + nTensors * BigInt(MIN_TENSOR_INFO_BYTES) > BigInt(c.remaining())) {
    c.fail(`header claims ${nTensors} tensors and ${nKv} metadata entries, more than the ${c.fileSize}-byte file can hold`, 8);
  }

  const metadata = new Map<string, GgufValue>();
  const metadataTypes = new Map<string, GgufValueType>();
  for (let i = 0; i < Number(nKv); i++) {
    const keyOffset = c.pos;
    const key = await readString(c, `metadata key #${i}`, MAX_KEY_BYTES);
    if (key.length === 0) c.fail(`metadata key #${i} is empty`, keyOffset);
    if (metadata.has(key)) c.fail(`duplicate metadata key '${key}'`, keyOffset);
    const { type, value } = await readValue(c, `metadata '${key}'`);
    metadata.set(key, value);
    metadataTypes.set(key, type);
  }

  const alignment = checkAlignment(c, metadata, metadataTypes);
  const infos = [];
  const names = new Set<string>();
  for (let i = 0; i < Number(nTensors); i++) {
    const info = await readTensorInfo(c, i);
    if (names.has(info.name)) c.fail(`duplicate tensor name '${info.name}'`, info.at);
    names.add(info.name);
    infos.push(info);
  }

  const headerEnd = c.pos;
  const dataOffset = infos.length > 0 ? alignUp(headerEnd, alignment) : headerEnd;
  if (dataOffset > c.fileSize) c.fail('file truncated in the padding before tensor data', headerEnd);

  const tensors: GgufTensorInfo[] = [];
  let expected = 0n;
  for (const info of infos) {
    const where = `tensor '${info.name}'`;
    if (info.relativeOffset % BigInt(alignment) !== 0n) {
      c.fail(`${where} has offset ${info.relativeOffset}, not a multiple of the alignment ${alignment}`, info.at);
    }
    if (info.relativeOffset !== expected) {
      c.fail(`${where} has offset ${info.relativeOffset}, expected ${expected} (tensors must be packed in order)`, info.at);
    }
    const start = BigInt(dataOffset) + info.relativeOffset;
    const end = start + info.nbytes;
    if (end > BigInt(c.fileSize)) {
      c.fail(`${where} data [${start}, ${end}) extends past the end of the ${c.fileSize}-byte file (truncated?)`, info.at);
    }
    expected += alignUpBig(info.nbytes, BigInt(alignment));
    tensors.push({
      name: info.name,
      ne: info.ne.map(Number),
      shape: info.ne.map(Number).reverse(),
      ggmlType: info.ggmlType,
      typeName: info.typeName,
      relativeOffset: Number(info.relativeOffset),
      offset: Number(start),
      nbytes: Number(info.nbytes),
      elements: Number(info.ne.reduce((a, b) => a * b, 1n)),
    });
  }

  return { path: c.path, version, alignment, metadata, metadataTypes, tensors, dataOffset, fileSize: c.fileSize };
}

function checkAlignment(
  c: FileCursor,
  metadata: ReadonlyMap<string, GgufValue>,
  types: ReadonlyMap<string, GgufValueType>,
): number {
  const value = metadata.get('general.alignment');
  if (value === undefined) return GGUF_DEFAULT_ALIGNMENT;
  const type = types.get('general.alignment');
  if (type !== 'uint32') c.fail(`general.alignment must be uint32, found ${type}`);
  const a = value as number;
  if (a === 0 || (a & (a - 1)) !== 0) c.fail(`general.alignment ${a} is not a power of two`);
  return a;
}

interface RawTensorInfo {
  name: string;
  ne: bigint[];
  ggmlType: number;
  typeName: string;
  relativeOffset: bigint;
  nbytes: bigint;
  /** File offset of the info record, for errors. */
  at: number;
}

async function readTensorInfo(c: FileCursor, index: number): Promise<RawTensorInfo> {
  const at = c.pos;
  const name = await readString(c, `tensor info #${index} name`, MAX_KEY_BYTES);
  const where = `tensor '${name}'`;
  if (name.length === 0) c.fail(`tensor info #${index} has an empty name`, at);
  if (Buffer.byteLength(name) > GGUF_MAX_TENSOR_NAME_BYTES) {
    c.fail(`${where}: name is longer than ${GGUF_MAX_TENSOR_NAME_BYTES} bytes`, at);
  }
  await c.ensure(4, `${where} n_dims`);
  const nDims = c.u32();
  if (nDims < 1 || nDims > GGUF_MAX_DIMS) c.fail(`${where} has ${nDims} dims (1..${GGUF_MAX_DIMS} allowed)`, at);
  await c.ensure(8 * nDims + 4 + 8, `${where} dims, type and offset`);
  const ne: bigint[] = [];
  let elements = 1n;
  for (let d = 0; d < nDims; d++) {
    const n = c.i64();
    if (n < 0n) c.fail(`${where} has negative ne[${d}]=${n}`, at);
    elements *= n;
    if (elements > INT64_MAX) c.fail(`${where} element count overflows int64`, at);
    ne.push(n);
  }
  const typeId = c.u32();
  const type = ggmlTypeById(typeId);
  if (type === undefined) {
    const why = REMOVED_GGML_TYPE_IDS.has(typeId) ? 'a removed ggml type' : 'an unknown ggml type';
    c.fail(`${where} has type id ${typeId}, ${why}`, at);
  }
  const relativeOffset = c.u64();
  const nbytes = ggmlTensorBytes(type, ne);
  if (typeof nbytes === 'string') c.fail(`${where} (${type.name}): ${nbytes}`, at);
  if (nbytes > BigInt(c.fileSize)) c.fail(`${where} needs ${nbytes} bytes, more than the whole file`, at);
  return { name, ne, ggmlType: typeId, typeName: type.name, relativeOffset, nbytes, at };
}

async function readValue(c: FileCursor, what: string): Promise<{ type: GgufValueType; value: GgufValue }> {
  await c.ensure(4, `${what} type`);
  const typeAt = c.pos;
  const typeId = c.u32();
  if (typeId === GGUF_ARRAY_TYPE_ID) return readArray(c, what);
  const type = scalarTypeById(typeId);
  if (type === undefined) c.fail(`${what} has unknown value type ${typeId}`, typeAt);
  return { type, value: await readScalar(c, type, what) };
}

async function readArray(c: FileCursor, what: string): Promise<{ type: GgufValueType; value: GgufValue }> {
  await c.ensure(4 + 8, `${what} array header`);
  const typeAt = c.pos;
  const elemId = c.u32();
  if (elemId === GGUF_ARRAY_TYPE_ID) c.fail(`${what} is a nested array, which GGUF readers reject`, typeAt);
  const elem = scalarTypeById(elemId);
  if (elem === undefined) c.fail(`${what} is an array of unknown value type ${elemId}`, typeAt);
  const count = c.u64();
  const size = scalarByteSize(elem);
  const minBytes = count * BigInt(size ?? 8);
  if (minBytes > BigInt(c.remaining())) {
    c.fail(`${what} claims ${count} ${elem} elements, more than the ${c.remaining()} bytes left in the file`, typeAt);
  }
  if (count > BigInt(MAX_ARRAY_ELEMENTS)) {
    c.fail(`${what} has ${count} elements, more than this reader's limit of ${MAX_ARRAY_ELEMENTS}`, typeAt);
  }
  const n = Number(count);
  const out: GgufScalar[] = new Array<GgufScalar>(n);
  if (size === undefined) {
    for (let i = 0; i < n; i++) {
      out[i] = tryReadBufferedString(c, `${what}[${i}]`) ?? (await readString(c, `${what}[${i}]`, MAX_STRING_BYTES));
    }
  } else {
    for (let i = 0; i < n; i++) {
      if (c.buffered() < size) await c.ensure(Math.min((n - i) * size, 1 << 20), `${what}[${i}]`);
      out[i] = readBufferedScalar(c, elem, `${what}[${i}]`);
    }
  }
  return { type: `${elem}[]`, value: out };
}

async function readScalar(c: FileCursor, type: GgufScalarType, what: string): Promise<GgufScalar> {
  if (type === 'string') return readString(c, what, MAX_STRING_BYTES);
  await c.ensure(scalarByteSize(type) ?? 0, what);
  return readBufferedScalar(c, type, what);
}

function readBufferedScalar(c: FileCursor, type: GgufScalarType, what: string): GgufScalar {
  switch (type) {
    case 'uint8':
      return c.u8();
    case 'int8':
      return c.i8();
    case 'uint16':
      return c.u16();
    case 'int16':
      return c.i16();
    case 'uint32':
      return c.u32();
    case 'int32':
      return c.i32();
    case 'float32':
      return c.f32();
    case 'uint64':
      return c.u64();
    case 'int64':
      return c.i64();
    case 'float64':
      return c.f64();
    case 'bool': {
      const b = c.u8();
      if (b > 1) c.fail(`${what} is a bool with byte value ${b}`, c.pos - 1);
      return b === 1;
    }
    case 'string':
      throw new Error('strings are not fixed-size');
  }
}

async function readString(c: FileCursor, what: string, maxBytes: number): Promise<string> {
  await c.ensure(8, `${what} length`);
  const len = checkStringLength(c, what, maxBytes);
  await c.ensure(len, what);
  return decode(c, len, what);
}

/** The string if its length and bytes are already buffered, else undefined with nothing consumed. */
function tryReadBufferedString(c: FileCursor, what: string): string | undefined {
  if (c.buffered() < 8) return undefined;
  const start = c.pos;
  const len = checkStringLength(c, what, MAX_STRING_BYTES);
  if (c.buffered() < len) {
    c.pos = start;
    return undefined;
  }
  return decode(c, len, what);
}

function checkStringLength(c: FileCursor, what: string, maxBytes: number): number {
  const at = c.pos;
  const len = c.u64();
  if (len > BigInt(c.remaining())) {
    c.fail(`${what} claims ${len} bytes, more than the ${c.remaining()} left in the file`, at);
  }
  if (len > BigInt(maxBytes)) c.fail(`${what} is ${len} bytes long, over the ${maxBytes}-byte limit`, at);
  return Number(len);
}

function decode(c: FileCursor, len: number, what: string): string {
  const at = c.pos;
  const bytes = c.bytes(len);
  try {
    return utf8.decode(bytes);
  } catch {
    throw new GgufFormatError(c.path, `${what} is not valid UTF-8`, at);
  }
}

export function alignUp(offset: number, alignment: number): number {
  return offset + ((alignment - (offset % alignment)) % alignment);
}

function alignUpBig(offset: bigint, alignment: bigint): bigint {
  return offset + ((alignment - (offset % alignment)) % alignment);
}

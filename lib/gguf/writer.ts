import { ByteBuilder } from './byte-builder.js';
import { AtomicFile } from '../io/atomic-file.js';
import { ggmlTensorBytes, resolveGgmlType, type GgmlTypeInfo, type GgmlTypeName } from './ggml-type.js';
import { encodeMetadataEntry, resolveMetadataEntry, type GgufMetadataEntry, type GgufMetadataInput } from './metadata-encoding.js';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_MAX_DIMS, GGUF_MAX_TENSOR_NAME_BYTES, alignUp } from './reader.js';

export interface GgufTensorInput {
  readonly name: string;
  /** Row-major shape (numpy/torch/MLX order, e.g. [out, in]); stored reversed as ggml `ne`. Give this or `ne`. */
  readonly shape?: readonly number[];
  /** ggml order (ne[0] contiguous), as llama.cpp documents tensors. Give this or `shape`. */
  readonly ne?: readonly number[];
  readonly type: GgmlTypeName | number;
  /** Exactly the tensor's bytes, whole or as a stream of chunks (read once, in order). */
  readonly data: Uint8Array | (() => AsyncIterable<Uint8Array>);
}

export interface WriteGgufOptions {
  /** Insertion order is file order. */
  readonly metadata?: ReadonlyMap<string, GgufMetadataInput> | Readonly<Record<string, GgufMetadataInput>>;
  readonly tensors?: readonly GgufTensorInput[];
  /** Data alignment; written as `general.alignment` when not the default 32. */
  readonly alignment?: number;
}

export interface WrittenGgufTensor {
  readonly name: string;
  /** Absolute file offset of the data. */
  readonly offset: number;
  readonly nbytes: number;
}

export interface WrittenGguf {
  readonly path: string;
  readonly size: number;
  readonly dataOffset: number;
  readonly alignment: number;
  readonly tensors: readonly WrittenGgufTensor[];
}

interface PlannedTensor {
  readonly input: GgufTensorInput;
  readonly type: GgmlTypeInfo;
  readonly ne: readonly number[];
  readonly nbytes: number;
  readonly relativeOffset: number;
}

/**
 * Writes a GGUF v3 file atomically: everything is validated first, the header is built in
 * memory, tensor data streams through, each tensor is padded to the alignment (after the last
 * one too, as ggml does), and the temp file is fsynced and renamed over `path`. On any error
 * the temp file is removed and an existing file at `path` is left untouched.
 */
export async function writeGguf(path: string, options: WriteGgufOptions): Promise<WrittenGguf> {
  const { entries, alignment } = planMetadata(options);
  const planned = planTensors(options.tensors ?? [], alignment);

  const header = new ByteBuilder();
  header.u32(GGUF_MAGIC);
  header.u32(3);
  header.u64(BigInt(planned.length));
  header.u64(BigInt(entries.length));
  for (const e of entries) encodeMetadataEntry(header, e);
  for (const t of planned) {
    header.string(t.input.name);
    header.u32(t.ne.length);
    for (const n of t.ne) header.u64(BigInt(n));
    header.u32(t.type.id);
    header.u64(BigInt(t.relativeOffset));
  }
  const dataOffset = planned.length > 0 ? alignUp(header.length, alignment) : header.length;
  header.zeros(dataOffset - header.length);

  const file = await AtomicFile.create(path);
  try {
    await file.write(header.bytes());
    for (const t of planned) {
      await writeTensorData(file, t, path);
      await file.zeros(alignUp(t.nbytes, alignment) - t.nbytes);
    }
    const size = file.written;
    await file.commit();
    return {
      path,
      size,
      dataOffset,
      alignment,
      tensors: planned.map((t) => ({ name: t.input.name, offset: dataOffset + t.relativeOffset, nbytes: t.nbytes })),
    };
  } catch (err) {
    await file.abort();
    throw err;
  }
}

function planMetadata(options: WriteGgufOptions): { entries: GgufMetadataEntry[]; alignment: number } {
  const raw = options.metadata ?? new Map<string, GgufMetadataInput>();
  const pairs: [string, GgufMetadataInput][] = raw instanceof Map ? [...raw.entries()] : Object.entries(raw);
  const entries = pairs.map(([k, v]) => resolveMetadataEntry(k, v));
  const stored = entries.find((e) => e.key === 'general.alignment');
  let alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (stored !== undefined) {
    if (stored.type !== 'uint32') throw new Error(`GGUF metadata 'general.alignment' must be uint32 (llama.cpp rejects ${stored.type})`);
    if (options.alignment !== undefined && options.alignment !== stored.value) {
      throw new Error(`alignment option ${options.alignment} disagrees with general.alignment ${String(stored.value)}`);
    }
    alignment = stored.value as number;
  } else if (alignment !== GGUF_DEFAULT_ALIGNMENT) {
    entries.push({ key: 'general.alignment', type: 'uint32', value: alignment });
  }
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new Error(`GGUF alignment ${alignment} is not a power of two`);
  }
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.key)) throw new Error(`duplicate GGUF metadata key '${e.key}'`);
    seen.add(e.key);
  }
  return { entries, alignment };
}

function planTensors(tensors: readonly GgufTensorInput[], alignment: number): PlannedTensor[] {
  const names = new Set<string>();
  let offset = 0;
  return tensors.map((input) => {
    const where = `GGUF tensor '${input.name}'`;
    if (input.name.length === 0 || Buffer.byteLength(input.name) > GGUF_MAX_TENSOR_NAME_BYTES) {
      throw new Error(`${where}: name must be 1..${GGUF_MAX_TENSOR_NAME_BYTES} bytes`);
    }
    if (names.has(input.name)) throw new Error(`duplicate ${where}`);
    names.add(input.name);
    if ((input.shape === undefined) === (input.ne === undefined)) throw new Error(`${where}: give exactly one of shape and ne`);
    const ne = input.ne ?? [...(input.shape ?? [])].reverse();
    if (ne.length < 1 || ne.length > GGUF_MAX_DIMS) throw new Error(`${where}: ${ne.length} dims (1..${GGUF_MAX_DIMS} allowed)`);
    if (!ne.every((n) => Number.isSafeInteger(n) && n >= 0)) throw new Error(`${where}: dims must be non-negative integers, got [${ne.join(', ')}]`);
    let type: GgmlTypeInfo;
    try {
      type = resolveGgmlType(input.type);
    } catch (err) {
      throw new Error(`${where}: ${(err as Error).message}`);
    }
    const bytes = ggmlTensorBytes(type, ne.map(BigInt));
    if (typeof bytes === 'string') throw new Error(`${where} (${type.name}): ${bytes}`);
    const nbytes = Number(bytes);
    if (input.data instanceof Uint8Array && input.data.byteLength !== nbytes) {
      throw new Error(`${where}: data is ${input.data.byteLength} bytes, but ${type.name} ne [${ne.join(', ')}] needs ${nbytes}`);
    }
    const planned: PlannedTensor = { input, type, ne, nbytes, relativeOffset: offset };
    offset += alignUp(nbytes, alignment);
    return planned;
  });
}

async function writeTensorData(file: AtomicFile, t: PlannedTensor, path: string): Promise<void> {
  const { data, name } = t.input;
  if (data instanceof Uint8Array) return file.write(data);
  let got = 0;
  for await (const chunk of data()) {
    got += chunk.byteLength;
    if (got > t.nbytes) throw new Error(`${path}: tensor '${name}' stream gave more than the ${t.nbytes} bytes its shape needs`);
    await file.write(chunk);
  }
  if (got !== t.nbytes) throw new Error(`${path}: tensor '${name}' stream gave ${got} bytes, expected ${t.nbytes}`);
}


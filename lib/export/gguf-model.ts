/**
 * A model as a GGUF file llama.cpp and Ollama run: the base's weights read tensor by tensor from
 * their files, an adapter merged in (W + scale·(A·B)ᵀ), HF-order Q/K rows put in llama.cpp's order,
 * each tensor encoded in the type llama.cpp's quantizer would give it, and streamed into
 * writeGguf, which plans the header from shapes alone and writes atomically. At any time the
 * exporter holds one weight (and its delta while merging), never the model.
 */
import type { GgmlTypeName } from '../gguf/ggml-type.js';
import { hfRowOfGgufRow } from '../gguf/tensor-names.js';
import { writeGguf, type GgufTensorInput, type WrittenGguf } from '../gguf/writer.js';
import type { LoadedModel } from '../model/load-model.js';
import { disposeAll, tensor, toTypedArray, type Tensor } from '../tensor.js';
import { openAdapterMerge, type AdapterMerge } from './adapter-merge.js';
import { modelMetadata } from './gguf-model-metadata.js';
import { fileTypeOf, tensorTypeFor, type GgufExportType } from './tensor-types.js';
import { PiecePool, transcodedPieces } from './tensor-pieces.js';
import { transcodeTensor, type TranscodeOptions } from './transcode.js';
import { openResolvedSource, openWeightSource, type SourceTensor, type WeightSource } from './weight-stream.js';

export interface GgufModelInput {
  /** An HF folder, a .gguf file or an Ollama model name. */
  readonly source: string;
  /** An adapter folder (ours, mlx-lm's or PEFT's) to merge in. */
  readonly adapter?: string;
  readonly ollamaModelsDir?: string;
}

export interface GgufModelProgress {
  /** The GGUF name of the tensor just written. */
  tensor: string;
  done: number;
  total: number;
  /** Tensor bytes written so far. */
  bytes: number;
}

export interface GgufModelExportOptions {
  type: GgufExportType;
  /** general.name. */
  name?: string;
  /** Replaces the source's tokenizer.chat_template. */
  chatTemplate?: string;
  /** Threads for the block encoders. */
  threads?: number;
  onProgress?: (p: GgufModelProgress) => void;
  signal?: AbortSignal;
}

const FLOAT_TYPES: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16']);
/**
 * A tensor's bytes go to the file in pieces of this size: Linux throttles a process that dirties
 * the page cache in one huge write() far harder than in many small ones (1.4 GB in 256 MiB writes
 * took 7–10 s here, in 4 MiB writes under 1 s).
 */
const WRITE_PIECE_BYTES = 4 << 20;

interface PlannedTensor {
  readonly source: SourceTensor;
  readonly type: GgmlTypeName;
}

function isLoadedModel(x: GgufModelInput | LoadedModel): x is LoadedModel {
  return 'native' in x;
}

/**
 * Writes the model GGUF at `outPath`. Given a source (and an adapter folder), weights stream from
 * the files; given a LoadedModel, each weight is taken dense from it (with its enabled LoRA merged),
 * which needs the whole model loaded and is kept for callers that already hold one.
 */
export async function writeGgufModel(input: GgufModelInput | LoadedModel, outPath: string, options: GgufModelExportOptions): Promise<WrittenGguf> {
  options.signal?.throwIfAborted();
  if (isLoadedModel(input)) return writeFromSource(fromLoadedModel(await openResolvedSource(input.source), input), undefined, outPath, options);
  const source = await openWeightSource(input.source, input.ollamaModelsDir ? { ollamaModelsDir: input.ollamaModelsDir } : {});
  const adapter = input.adapter === undefined ? undefined : await openAdapterMerge(input.adapter, source.architecture);
  return writeFromSource(source, adapter, outPath, options);
}

/** The same tensor list, each read dense from the loaded model (GGUF-loaded weights are already in GGUF row order). */
function fromLoadedModel(source: WeightSource, model: LoadedModel): WeightSource {
  const tensors = source.tensors.map((t): SourceTensor => {
    if (t.hfName === undefined) return t;
    const hfName = t.hfName;
    // Not `stored`: the model's weights may carry merged LoRA, so they are taken from the model.
    const { stored: _fileBytes, ...rest } = t;
    return {
      ...rest,
      dense: () => model.native.denseWeight(hfName, 'float32'),
      read: async () => {
        const dense = await model.native.denseWeight(hfName, 'float32');
        try {
          return (await toTypedArray(dense)) as Float32Array;
        } finally {
          dense.dispose();
        }
      },
    };
  });
  return { ...source, tensors };
}

function plan(source: WeightSource, adapter: AdapterMerge | undefined, type: GgufExportType): PlannedTensor[] {
  const a = source.architecture;
  const names = new Set(source.tensors.map((t) => t.hfName));
  if (adapter) {
    const stray = [...adapter.adapted].find((n) => !names.has(n));
    if (stray !== undefined) throw new Error(`${adapter.file}: adapts '${stray}', which ${source.source.path} does not have (wrong base model?)`);
  }
  const model = { numLayers: a.numLayers, numHeads: a.numHeads, numKvHeads: a.numKvHeads, tiedEmbeddings: a.tieWordEmbeddings };
  return source.tensors.map((t) => ({ source: t, type: tensorTypeFor({ name: t.name, ne: [...t.shape].reverse() }, type, model) }));
}

async function writeFromSource(source: WeightSource, adapter: AdapterMerge | undefined, outPath: string, options: GgufModelExportOptions): Promise<WrittenGguf> {
  const planned = plan(source, adapter, options.type);
  const metadata = await modelMetadata(source, {
    ...(options.name !== undefined ? { name: options.name } : {}),
    ...(options.chatTemplate !== undefined ? { chatTemplate: options.chatTemplate } : {}),
    fileType: fileTypeOf(options.type),
    quantized: planned.some((p) => !FLOAT_TYPES.has(p.type)),
  });
  let bytes = 0;
  // Stored tensors with nothing to merge stream in pieces; the others (merged, or computed by MLX)
  // are transcoded whole, the next one while this one is written.
  const inPieces = planned.map((p) => p.source.stored !== undefined && (adapter === undefined || p.source.hfName === undefined || !adapter.adapted.has(p.source.hfName)));
  const encoded = lookahead((index) => encodeOne(planned[index]!, adapter, options.threads), planned.length, (index) => !inPieces[index]);
  const pool = new PiecePool();
  const tensors: GgufTensorInput[] = planned.map((p, index) => ({
    name: p.source.name,
    shape: p.source.shape,
    type: p.type,
    data: async function* () {
      options.signal?.throwIfAborted();
      const pieces = inPieces[index] ? piecesOf(p, pool, options.threads) : wholeTensorPieces(encoded, index);
      for await (const piece of pieces) {
        bytes += piece.byteLength;
        yield piece;
      }
      options.onProgress?.({ tensor: p.source.name, done: index + 1, total: planned.length, bytes });
    },
  }));
  return writeGguf(outPath, { metadata, tensors });
}

async function* piecesOf(p: PlannedTensor, pool: PiecePool, threads: number | undefined): AsyncGenerator<Uint8Array> {
  const t = p.source;
  try {
    yield* transcodedPieces({ name: t.name, shape: t.shape, stored: t.stored!, permuteHeads: t.permuteHeads }, p.type, pool, threads);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`tensor '${t.name}': ${message}`, { cause: error });
  }
}

async function* wholeTensorPieces(encoded: (index: number) => Promise<Uint8Array>, index: number): AsyncGenerator<Uint8Array> {
  const bytesOfTensor = await encoded(index);
  for (let at = 0; at < bytesOfTensor.byteLength; at += WRITE_PIECE_BYTES) yield bytesOfTensor.subarray(at, at + WRITE_PIECE_BYTES);
}

/**
 * Results of `work(i)` for the indices `wanted`, taken in order, the next wanted one started as soon
 * as one is taken, so the next such tensor is transcoded while this one is written. A started one
 * that is never taken (the write failed) is left to finish; its error is not reported twice.
 */
function lookahead<T>(work: (index: number) => Promise<T>, count: number, wanted: (index: number) => boolean): (index: number) => Promise<T> {
  const started = new Map<number, Promise<T>>();
  const start = (index: number): void => {
    if (index >= count || started.has(index)) return;
    const promise = work(index);
    promise.catch(() => undefined);
    started.set(index, promise);
  };
  return async (index) => {
    start(index);
    const promise = started.get(index)!;
    started.delete(index);
    const result = await promise;
    let next = index + 1;
    while (next < count && !wanted(next)) next++;
    start(next);
    return result;
  };
}

/**
 * One tensor: its stored bytes (or its MLX values) transcoded natively to its GGUF type, rows put
 * in GGUF order and the adapter's delta added on the way. A stored tensor with no delta never
 * enters MLX; the delta is computed by MLX and read by the worker without a copy.
 */
async function encodeOne(p: PlannedTensor, adapter: AdapterMerge | undefined, threads: number | undefined): Promise<Uint8Array> {
  const { source: t } = p;
  const owned: Tensor[] = [];
  try {
    const rowMap = t.permuteHeads === undefined ? undefined : hfRowOfGgufRow(t.shape[0]!, t.permuteHeads);
    const delta = t.hfName === undefined || adapter === undefined ? undefined : await adapter.delta(t.hfName);
    if (delta) owned.push(delta);
    const options: TranscodeOptions = { ...(threads !== undefined ? { threads } : {}), ...(rowMap ? { rowMap } : {}), ...(delta ? { delta } : {}) };
    if (t.stored) return await transcodeTensor(t.stored, t.shape, p.type, options);
    const dense = t.dense ? await t.dense() : await tensor(await t.read(), t.shape);
    owned.push(dense);
    return await transcodeTensor(dense, t.shape, p.type, options);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`tensor '${t.name}': ${message}`, { cause: error });
  } finally {
    disposeAll(owned);
  }
}

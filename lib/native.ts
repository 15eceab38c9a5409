/**
 * The one place that loads the addon and types its surface. Everything native returns a Promise
 * settled from the MLX thread; nothing here blocks the event loop.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type DType =
  | 'bool'
  | 'uint8'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'float16'
  | 'float32'
  | 'float64'
  | 'bfloat16'
  | 'complex64';

/** A handle on one MLX array, owned by the MLX thread. Dispose it when done: V8 does not see MLX memory. */
export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: DType;
  readonly nbytes: number;
  readonly disposed: boolean;
  dispose(): void;
  [Symbol.dispose](): void;
}

export interface DeviceInfo {
  type: 'cpu' | 'gpu';
  name: string;
  architecture: string;
  /** Bytes of memory the device can use (the machine's RAM on the CPU backend). */
  memorySize: number;
}

export interface MemoryInfo {
  active: number;
  peak: number;
  cache: number;
  limit: number;
}

/** What the native decoder is built from (see lib/model/architecture.ts for where it comes from). */
export interface NativeModelConfig {
  vocabSize: number;
  /** Dimensions: see HF config.json (hidden_size, intermediate_size, …). */
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** true for GGUF (llama.cpp's Q/K row order, interleaved pairs), false for HF's split halves. */
  ropeTraditional: boolean;
  /** Multiplies positions; linear RoPE scaling is 1/factor. */
  ropePositionScale: number;
  /** Per-pair RoPE periods (head_dim/2) when a scaling scheme such as llama3 sets them. */
  ropePeriods?: Float32Array;
  tieWordEmbeddings: boolean;
  /** q/k/v biases (Qwen2). */
  attentionBias: boolean;
  slidingWindow?: number;
}

export interface NativeBuildOptions {
  /** 0 keeps base linear weights dense. */
  quantBits: number;
  quantGroupSize: number;
  computeDtype: DType;
  kernel: 'quantized-matmul' | 'dequantize-matmul';
  /** One matmul for q/k/v and one for gate/up over weights concatenated at finalize (default true). */
  fuseProjections?: boolean;
  /** SwiGLU's hand-written gradient and the loss's one-exp softmax gradient, as mlx_compile'd closures (default true). */
  compileElementwise?: boolean;
  /** Causal attention in query blocks of this many rows; 0 (default): 128 on the CPU, whole on a GPU; -1: whole. */
  attentionQueryBlock?: number;
  /** The whole training step as one mlx_compile'd closure per batch layout (default false). */
  compileStep?: boolean;
}

export interface NativeLoraOptions {
  rank: number;
  scale: number;
  dropout: number;
  targets: string[];
  numLayers: number;
  seed: number;
  dtype: DType;
}

/** Token batch: row-major [batch, length] arrays. */
export interface NativeBatch {
  shape: [number, number];
  tokens: Int32Array;
  targets?: Int32Array;
  mask?: Float32Array;
  positions?: Int32Array;
  segments?: Int32Array;
}

export interface NativeModelInfo {
  baseBytes: number;
  loraBytes: number;
  loraParameters: number;
  loraNames: string[];
  /** How the decoder's linear layers are stored, e.g. { "4-bit g64": 14 }. */
  linearStorage: Record<string, number>;
  /**
   * Activations, norms and dense weights are in this dtype; so are quantization scales, except
   * float16 scales of a float32 model, which are kept as stored and widened exactly at use.
   */
  computeDtype: DType;
}

export interface NativeGenerator {
  /** The next token of a one-prompt generator. */
  next(): Promise<number>;
  /**
   * Drops the prompts listed in `finished` (indices), then the next token of every prompt: -1 for
   * prompts no longer running. The first call runs the prefill.
   */
  step(finished?: Int32Array): Promise<Int32Array>;
  /** Float32 logits [prompts still running, vocab] (in prompt order) the last step sampled from. */
  logits(): Promise<NativeTensor>;
  dispose(): void;
}

export interface NativeModel {
  setWeight(name: string, tensor: NativeTensor): Promise<void>;
  setQuantizedWeight(name: string, wq: NativeTensor, scales: NativeTensor, biases: NativeTensor, bits: number, groupSize: number): Promise<void>;
  loadSafetensors(path: string): Promise<string[]>;
  finalize(): Promise<void>;
  logits(batch: NativeBatch, options?: { lora?: boolean }): Promise<NativeTensor>;
  loss(batch: NativeBatch): Promise<{ loss: number; tokens: number }>;
  lossAndGrads(
    batch: NativeBatch,
    options?: { dropoutSeed?: number; checkpoint?: boolean },
  ): Promise<{ loss: number; tokens: number; grads: Record<string, NativeTensor> }>;
  loraParameters(): Promise<Record<string, NativeTensor>>;
  setLoraParameters(params: Record<string, NativeTensor>): Promise<void>;
  setLoraEnabled(enabled: boolean): Promise<void>;
  /** Any weight by HF name, dense: dequantized, with the adapter merged into linear weights while LoRA is enabled. */
  denseWeight(name: string, dtype?: DType): Promise<NativeTensor>;
  weightNames(): Promise<string[]>;
  info(): Promise<NativeModelInfo>;
  /** Adds one micro-batch's gradients (of the summed loss) to the accumulator. */
  accumulateGradients(batch: NativeBatch, options?: { dropoutSeed?: number; checkpoint?: boolean }): Promise<{ loss: number; tokens: number }>;
  /** AdamW on the accumulated gradients divided by their supervised token count; clears them. */
  applyOptimizer(options: {
    learningRate: number;
    beta1?: number;
    beta2?: number;
    eps?: number;
    weightDecay?: number;
    maxGradNorm?: number;
  }): Promise<{ gradNorm: number; lossSum: number; tokens: number; skipped: boolean; step: number }>;
  clearGradients(): Promise<void>;
  /** One step's forward pass evaluated phase by phase, then its backward pass; then the same step whole. */
  profileStep(batch: NativeBatch): Promise<{
    loss: number;
    tokens: number;
    wholeStepSeconds: number;
    wholeStepPeakBytes: number;
    peakBytes: number;
    phases: { name: string; calls: number; seconds: number; retainedBytes: number; transientBytes: number }[];
  }>;
  /** Tokens per LM-head + cross-entropy chunk: 0 computes all logits at once, -1 (default) picks from the vocabulary. */
  setLossChunkTokens(tokens: number): Promise<void>;
  /** AdamW moments as m.<name> / v.<name>, and the update count. */
  optimizerState(): Promise<{ step: number; tensors: Record<string, NativeTensor> }>;
  setOptimizerState(tensors: Record<string, NativeTensor>, step: number): Promise<void>;
  generator(prompt: Int32Array, options?: { temperature?: number; topP?: number; topK?: number; seed?: number; lora?: boolean }): Promise<NativeGenerator>;
  /** Prompts generated together, left-padded into one batch with one KV cache; each row keyed by `seed` as alone. */
  batchGenerator(prompts: Int32Array[], options?: { temperature?: number; topP?: number; topK?: number; seed?: number; lora?: boolean }): Promise<NativeGenerator>;
  dispose(): void;
}

export interface NativeAddon {
  createModel(config: NativeModelConfig, build: NativeBuildOptions, lora: NativeLoraOptions): Promise<NativeModel>;
  Tensor: abstract new (...args: never[]) => NativeTensor;
  mlxVersion: string;
  /** A stable id of the process's one MLX thread, the same in every worker ('0' if none runs). */
  mlxThreadId(): string;
  /** Bytes V8 counts as external memory, which includes every live tensor's nbytes (synchronous). */
  externalMemory(): number;
  fromBytes(data: ArrayBufferView, shape: number[], dtype: DType): Promise<NativeTensor>;
  toBytes(t: NativeTensor): Promise<ArrayBuffer>;
  matmul(a: NativeTensor, b: NativeTensor): Promise<NativeTensor>;
  add(a: NativeTensor, b: NativeTensor): Promise<NativeTensor>;
  astype(t: NativeTensor, dtype: DType): Promise<NativeTensor>;
  quantize(w: NativeTensor, groupSize?: number, bits?: number): Promise<[NativeTensor, NativeTensor, NativeTensor]>;
  dequantize(
    wq: NativeTensor,
    scales: NativeTensor,
    biases: NativeTensor,
    groupSize?: number,
    bits?: number,
    dtype?: DType,
  ): Promise<NativeTensor>;
  quantizedMatmul(
    x: NativeTensor,
    wq: NativeTensor,
    scales: NativeTensor,
    biases: NativeTensor,
    transpose: boolean,
    groupSize?: number,
    bits?: number,
  ): Promise<NativeTensor>;
  randomNormal(shape: number[], dtype: DType, seed: number, loc?: number, scale?: number): Promise<NativeTensor>;
  device(): Promise<DeviceInfo>;
  useDevice(type: 'cpu' | 'gpu'): Promise<void>;
  memory(): Promise<MemoryInfo>;
  setMemoryLimit(bytes: number): Promise<number>;
  setCacheLimit(bytes: number): Promise<number>;
  resetPeakMemory(): Promise<void>;
  clearCache(): Promise<void>;
  loadSafetensors(path: string): Promise<{ tensors: Record<string, NativeTensor>; metadata: Record<string, string> }>;
  saveSafetensors(path: string, tensors: Record<string, NativeTensor>, metadata?: Record<string, string>): Promise<void>;
  tensorFromFile(path: string, offset: number, length: number, dtype: DType, shape: number[]): Promise<NativeTensor>;
  /**
   * A dense 1-D or 2-D tensor ([rows, row length], row-major) as the bytes of a GGUF tensor type
   * (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K), equal to llama.cpp's reference
   * quantizers. Encoded off the MLX thread on `threads` threads (default: the hardware's count).
   */
  ggufEncode(t: NativeTensor, type: string, threads?: number): Promise<Uint8Array>;
  /**
   * A tensor ([rows, cols] row-major, or [n]) as the bytes of a GGUF type, read from a file region
   * in a GGUF type (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K … Q6_K; safetensors floats are
   * the same bytes) or from a Tensor: a few rows at a time are read, decoded (llama.cpp's to_float),
   * put in `rowMap` order (output row r = source row rowMap[r]), summed with `delta` ([rows, cols],
   * output order) and encoded, on a libuv worker. A file source with no delta never enters MLX.
   */
  ggufTranscode(
    source: { path: string; offset: number; type: string } | NativeTensor,
    shape: number[],
    type: string,
    options?: { threads?: number; rowMap?: Int32Array; delta?: NativeTensor },
  ): Promise<Uint8Array>;
  /** The same for rows [first, first + count) of a file source (no delta), written into `into`; resolves to the bytes written. */
  ggufTranscode(
    source: { path: string; offset: number; type: string },
    shape: number[],
    type: string,
    options: { threads?: number; rowMap?: Int32Array; rows: [number, number]; into: Uint8Array },
  ): Promise<number>;
}

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function load(): NativeAddon {
  const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
  let addon: NativeAddon;
  try {
    addon = nodeGypBuild(packageRoot) as NativeAddon;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `mlx-qlora: the native addon could not be loaded (${reason}).\n` +
        `Build it with \`npm run build:native\` in ${packageRoot} (npm 11 skips dependency install ` +
        'scripts until approved: `npm install-scripts approve mlx-qlora`). See README, "Providing MLX".',
    );
  }
  const proto = addon.Tensor.prototype as NativeTensor;
  if (!(Symbol.dispose in proto)) {
    Object.defineProperty(proto, Symbol.dispose, {
      value(this: NativeTensor) {
        this.dispose();
      },
    });
  }
  return addon;
}

let cached: NativeAddon | undefined;

/** The addon, loaded on first use so that pure-TypeScript parts of the library work without it. */
export function native(): NativeAddon {
  cached ??= load();
  return cached;
}

/**
 * A model's weights as a list of tensors that can be read one at a time, straight from the files
 * they live in: an HF folder's safetensors (F32/F16/BF16, or MLX-quantized triples dequantized
 * natively) or a GGUF file's tensors (any type lib/gguf decodes). Shapes come from the headers,
 * so an export can plan its whole file before reading a single weight.
 */
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { canDequantize } from '../gguf/dequantize.js';
import { readGguf, type GgufFile } from '../gguf/reader.js';
import { optionalInteger, optionalString } from '../gguf/metadata.js';
import { readTensorFloat32 } from '../gguf/tensor-data.js';
import { ggufToHfName, hfToGgufName } from '../gguf/tensor-names.js';
import { tensorFromFile } from '../io/safetensors.js';
import { architectureFromGguf, architectureFromHf, type Architecture } from '../model/architecture.js';
import { hfWeightFiles } from '../model/load-model.js';
import { resolveModelSource, type ModelSource } from '../source/model-source.js';
import { dequantize, disposeAll, toTypedArray, type DType, type Tensor } from '../tensor.js';
import { readSafetensorsFloat32, readSafetensorsHeader, type SafetensorsEntry } from './safetensors-header.js';
import { canTranscodeFrom, type TensorBytes } from './transcode.js';

export interface SourceTensor {
  /** llama.cpp's name, as it is written. */
  readonly name: string;
  /** The HF name (adapters are keyed by it); undefined for rope_freqs. */
  readonly hfName: string | undefined;
  /** Row-major shape ([out, in] for a linear weight). */
  readonly shape: readonly number[];
  /** Heads to interleave Q/K rows over (HF order → llama.cpp order), when the source is in HF order. */
  readonly permuteHeads: number | undefined;
  /** The values as float32, row-major, in the source's own row order. */
  read(): Promise<Float32Array>;
  /** Where the values are stored in a type the native transcoder decodes, to be read straight from the file. */
  readonly stored?: TensorBytes;
  /** The values as an MLX tensor (source row order), for values MLX computes (dequantized MLX-quantized weights). Caller disposes. */
  readonly dense?: () => Promise<Tensor>;
}

export interface WeightSource {
  readonly source: ModelSource;
  readonly architecture: Architecture;
  readonly tensors: readonly SourceTensor[];
  /** The GGUF file for GGUF and Ollama sources (its metadata is copied). */
  readonly gguf?: GgufFile;
  /** config.json of an HF source. */
  readonly hfConfig?: Record<string, unknown>;
  /** A default general.name. */
  readonly displayName: string;
}

/** Opens `spec` (HF folder, .gguf file, Ollama name) and lists its tensors; reads no weight. */
export async function openWeightSource(spec: string, options: { ollamaModelsDir?: string } = {}): Promise<WeightSource> {
  const source = await resolveModelSource(spec, options.ollamaModelsDir ? { ollamaModelsDir: options.ollamaModelsDir } : {});
  return openResolvedSource(source);
}

/** Like openWeightSource, for a source already resolved. */
export async function openResolvedSource(source: ModelSource): Promise<WeightSource> {
  return source.kind === 'hf' ? openHf(source) : openGguf(source);
}

async function openGguf(source: ModelSource): Promise<WeightSource> {
  const file = await readGguf(source.path);
  const splits = optionalInteger(file, 'split.count');
  if (splits !== undefined && splits > 1) throw new Error(`${file.path}: a GGUF split into ${splits} files cannot be exported (merge it first)`);
  const architecture = architectureFromGguf(file);
  const tensors = file.tensors.map((t): SourceTensor => {
    let hfName: string | undefined;
    try {
      hfName = ggufToHfName(t.name);
    } catch (error) {
      throw new Error(`${file.path}: ${(error as Error).message}`);
    }
    // Checked before anything is written: an export must not fail halfway on a type it cannot read.
    if (!canDequantize(t.ggmlType)) throw new Error(`${file.path}: tensor '${t.name}' has type ${t.typeName}, which this exporter cannot decode`);
    const type = t.typeName;
    const stored = canTranscodeFrom(type) ? { stored: { path: file.path, offset: t.offset, type } } : {};
    return { name: t.name, hfName, shape: t.shape, permuteHeads: undefined, read: () => readTensorFloat32(file, t), ...stored };
  });
  const displayName = optionalString(file, 'general.name') ?? (source.kind === 'ollama' ? source.name : basename(source.path, '.gguf'));
  return { source, architecture, tensors, gguf: file, displayName };
}

/** The HF tensors a decoder of this architecture has, in llama.cpp's usual file order, with their shapes. */
export function expectedHfTensors(a: Architecture): { name: string; shape: number[] }[] {
  const q = a.numHeads * a.headDim;
  const kv = a.numKvHeads * a.headDim;
  const out: { name: string; shape: number[] }[] = [{ name: 'model.embed_tokens.weight', shape: [a.vocabSize, a.hiddenSize] }];
  for (let l = 0; l < a.numLayers; l++) {
    const p = `model.layers.${l}`;
    out.push({ name: `${p}.input_layernorm.weight`, shape: [a.hiddenSize] });
    out.push({ name: `${p}.self_attn.q_proj.weight`, shape: [q, a.hiddenSize] });
    if (a.attentionBias) out.push({ name: `${p}.self_attn.q_proj.bias`, shape: [q] });
    out.push({ name: `${p}.self_attn.k_proj.weight`, shape: [kv, a.hiddenSize] });
    if (a.attentionBias) out.push({ name: `${p}.self_attn.k_proj.bias`, shape: [kv] });
    out.push({ name: `${p}.self_attn.v_proj.weight`, shape: [kv, a.hiddenSize] });
    if (a.attentionBias) out.push({ name: `${p}.self_attn.v_proj.bias`, shape: [kv] });
    out.push({ name: `${p}.self_attn.o_proj.weight`, shape: [a.hiddenSize, q] });
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [a.hiddenSize] });
    out.push({ name: `${p}.mlp.gate_proj.weight`, shape: [a.intermediateSize, a.hiddenSize] });
    out.push({ name: `${p}.mlp.up_proj.weight`, shape: [a.intermediateSize, a.hiddenSize] });
    out.push({ name: `${p}.mlp.down_proj.weight`, shape: [a.hiddenSize, a.intermediateSize] });
  }
  out.push({ name: 'model.norm.weight', shape: [a.hiddenSize] });
  if (!a.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [a.vocabSize, a.hiddenSize] });
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}

const FLOAT_DTYPES: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16']);
const SAFETENSORS_DTYPE: Readonly<Record<string, DType>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', U32: 'uint32' };

function entryTensor(e: SafetensorsEntry): Promise<Tensor> {
  const dtype = SAFETENSORS_DTYPE[e.dtype];
  if (dtype === undefined) throw new Error(`${e.file}: tensor '${e.name}' has dtype ${e.dtype}, which an MLX-quantized triple cannot hold`);
  return tensorFromFile(e.file, { offset: e.start, length: e.end - e.start, dtype, shape: e.shape });
}

type QuantizedParts = { weight: SafetensorsEntry; scales: SafetensorsEntry; biases: SafetensorsEntry };

/** An MLX-quantized linear ([out, in]): packed weight, scales and biases, dequantized by MLX to a float32 tensor. */
async function denseMlxQuantized(dir: string, parts: QuantizedParts, shape: readonly number[]): Promise<Tensor> {
  const [out, inF] = shape as [number, number];
  const packed = parts.weight.shape[1] ?? 0;
  const groups = parts.scales.shape[1] ?? 0;
  const bits = (packed * 32) / inF;
  const groupSize = inF / groups;
  if (parts.weight.shape[0] !== out || !Number.isInteger(bits) || !Number.isInteger(groupSize) || !sameShape(parts.scales.shape, parts.biases.shape)) {
    throw new Error(`${dir}: quantized '${parts.weight.name}' (packed [${parts.weight.shape.join(', ')}], scales [${parts.scales.shape.join(', ')}]) does not fit [${out}, ${inF}]`);
  }
  const tensors: Tensor[] = [];
  try {
    const wq = await entryTensor(parts.weight);
    tensors.push(wq);
    const scales = await entryTensor(parts.scales);
    tensors.push(scales);
    const biases = await entryTensor(parts.biases);
    tensors.push(biases);
    return await dequantize({ wq, scales, biases }, { groupSize, bits, dtype: 'float32' });
  } finally {
    disposeAll(tensors);
  }
}

async function readMlxQuantized(dir: string, parts: QuantizedParts, shape: readonly number[]): Promise<Float32Array> {
  const dense = await denseMlxQuantized(dir, parts, shape);
  try {
    return (await toTypedArray(dense)) as Float32Array;
  } finally {
    dense.dispose();
  }
}

async function openHf(source: ModelSource): Promise<WeightSource> {
  const configPath = join(source.path, 'config.json');
  const text = await readFile(configPath, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${configPath}: ${e.code === 'ENOENT' ? 'not found' : e.message}`);
  });
  let hfConfig: Record<string, unknown>;
  try {
    hfConfig = JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`${configPath}: invalid JSON (${(error as Error).message})`);
  }
  const architecture = architectureFromHf(hfConfig, configPath);
  const entries = new Map<string, SafetensorsEntry>();
  for (const file of await hfWeightFiles(source.path)) {
    for (const e of await readSafetensorsHeader(file)) entries.set(e.name, e);
  }
  const permuted = architecture.family !== 'qwen2';
  const tensors: SourceTensor[] = [];
  if (architecture.ropePeriods) tensors.push(ropeFreqsTensor(architecture));
  for (const { name, shape } of expectedHfTensors(architecture)) {
    const heads = !permuted ? undefined : /\.q_proj\./.test(name) ? architecture.numHeads : /\.k_proj\./.test(name) ? architecture.numKvHeads : undefined;
    const ggufName = hfToGgufName(name)!;
    const entry = entries.get(name);
    const prefix = name.replace(/\.weight$/, '');
    const scales = entries.get(`${prefix}.scales`);
    const biases = entries.get(`${prefix}.biases`);
    if (entry && entry.dtype === 'U32' && scales && biases && shape.length === 2) {
      const parts = { weight: entry, scales, biases };
      tensors.push({ name: ggufName, hfName: name, shape, permuteHeads: heads, read: () => readMlxQuantized(source.path, parts, shape), dense: () => denseMlxQuantized(source.path, parts, shape) });
      continue;
    }
    if (!entry) throw new Error(`${source.path}: the safetensors have no tensor '${name}'`);
    if (!sameShape(entry.shape, shape)) throw new Error(`${entry.file}: tensor '${name}' has shape [${entry.shape.join(', ')}], config.json implies [${shape.join(', ')}]`);
    if (!FLOAT_DTYPES.has(entry.dtype)) throw new Error(`${entry.file}: tensor '${name}' has dtype ${entry.dtype} (F32, F16 or BF16 expected, or an MLX-quantized triple)`);
    const stored: TensorBytes = { path: entry.file, offset: entry.start, type: entry.dtype as 'F32' | 'F16' | 'BF16' };
    tensors.push({ name: ggufName, hfName: name, shape, permuteHeads: heads, read: () => readSafetensorsFloat32(entry), stored });
  }
  const named = typeof hfConfig._name_or_path === 'string' && hfConfig._name_or_path.length > 0 ? basename(hfConfig._name_or_path) : basename(source.path);
  return { source, architecture, tensors, hfConfig, displayName: named };
}

/** llama.cpp keeps llama3-style RoPE as per-pair divisors of base^(2i/d) in a rope_freqs tensor. */
function ropeFreqsTensor(a: Architecture): SourceTensor {
  const periods = a.ropePeriods!;
  const factors = Float32Array.from(periods, (p, i) => p / a.ropeTheta ** ((2 * i) / a.headDim));
  return { name: 'rope_freqs.weight', hfName: undefined, shape: [periods.length], permuteHeads: undefined, read: async () => factors.slice() };
}

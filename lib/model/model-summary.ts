/**
 * What a model is, from its metadata alone: the architecture, the parameter count, and the build
 * and storage the loader would give it (bytes, how each linear layer is kept), read from the
 * GGUF header or from config.json and the safetensors headers. No tensor data is read and no
 * native model is made, so a 7B model is described in milliseconds.
 *
 * The storage rules mirror the loader's (load-model.ts, gguf-weights.ts, native Model::set_weight):
 * dense linear weights are quantized with the build's bits when the group size divides their
 * inputs; GGUF Q4_0/Q4_1/Q8_0 linear weights (and the embedding, unless tied to the head) keep their
 * 4/8-bit group-32 blocks, Q4_0 and Q8_0 without biases (the native model makes them from the
 * scales); MLX-quantized triples keep their own bits and group size (the embedding dequantized when
 * tied); every other tensor is dense in the compute dtype.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { device } from '../device.js';
import { readGguf } from '../gguf/reader.js';
import type { DType, NativeBuildOptions } from '../native.js';
import { architectureFromGguf, architectureFromHf, type Architecture } from './architecture.js';
import { isRepackable } from './gguf-repack.js';
import { ggufToHfName } from './gguf-weights.js';
import { defaultBaseQuantization, defaultComputeDtype, ggufStoredQuantization, hfWeightFiles, type BaseQuantization } from './load-model.js';
import { readSafetensorsHeader } from '../io/safetensors-header.js';
import { resolveModelSource, type ModelSource } from '../source/model-source.js';

export interface SummaryOptions {
  /** As loadModel's: the QLoRA base quantization, or 'none' for a dense base; default the model as stored. */
  quantization?: BaseQuantization;
  computeDtype?: DType;
  ollamaModelsDir?: string;
}

export interface ModelSummary {
  source: ModelSource;
  architecture: Omit<Architecture, 'ropePeriods'> & { ropeScaled: boolean };
  build: NativeBuildOptions;
  /** Decoder parameters as the architecture defines them (LoRA excluded). */
  parameters: number;
  /** Bytes of the base weights as the loader would store them (native Model::base_bytes). */
  baseBytes: number;
  /** How the decoder blocks' linear layers would be stored, e.g. { "4-bit g64": 14 }. */
  linearStorage: Record<string, number>;
}

/** Parameters of the decoder as its architecture defines them (LoRA excluded). */
export function parameterCount(a: Omit<Architecture, 'ropePeriods'>): number {
  const q = a.numHeads * a.headDim;
  const kv = a.numKvHeads * a.headDim;
  const attention = a.hiddenSize * (q + 2 * kv) + q * a.hiddenSize + (a.attentionBias ? q + 2 * kv : 0);
  const mlp = 3 * a.hiddenSize * a.intermediateSize;
  const perLayer = attention + mlp + 2 * a.hiddenSize;
  const embeddings = a.vocabSize * a.hiddenSize * (a.tieWordEmbeddings ? 1 : 2);
  return a.numLayers * perLayer + embeddings + a.hiddenSize;
}

/** One tensor as the loader would hand it to the native model. */
type Placement =
  | { name: string; kind: 'dense'; shape: readonly number[] }
  | { name: string; kind: 'quantized'; out: number; in: number; bits: number; groupSize: number; halfScales: boolean; impliedBiases?: boolean };

const mlxQuantizationSchema = z.object({ group_size: z.number().int(), bits: z.number().int() }).loose();

function isLinearWeight(name: string): boolean {
  return name === 'lm_head.weight' || /_proj\.weight$/.test(name);
}

/** Weights the native model keeps quantized when they arrive quantized (an untied embedding too). */
function keepsQuantized(name: string, a: Omit<Architecture, 'ropePeriods'>): boolean {
  return isLinearWeight(name) || (name === 'model.embed_tokens.weight' && !a.tieWordEmbeddings);
}

function dtypeBytes(dtype: DType): number {
  return dtype === 'float16' || dtype === 'bfloat16' ? 2 : 4;
}

/** Input features of a linear weight (or the embedding), as the native model defines them. */
function inputFeatures(name: string, a: Omit<Architecture, 'ropePeriods'>): number {
  if (/down_proj\.weight$/.test(name)) return a.intermediateSize;
  if (/o_proj\.weight$/.test(name)) return a.numHeads * a.headDim;
  return a.hiddenSize;
}

function storageKey(p: Placement, build: NativeBuildOptions): string {
  if (p.kind === 'quantized') return `${p.bits}-bit g${p.groupSize}`;
  const [, inputs] = p.shape;
  return build.quantBits !== 0 && inputs !== undefined && inputs % build.quantGroupSize === 0
    ? `${build.quantBits}-bit g${build.quantGroupSize}`
    : 'dense';
}

function placementBytes(p: Placement, build: NativeBuildOptions): number {
  const scalar = dtypeBytes(build.computeDtype);
  // Scales stored in 16 bits stay 16-bit in a float32 model (widened exactly at use).
  if (p.kind === 'quantized') {
    const params = p.impliedBiases ? 1 : 2;
    return p.out * ((p.in * p.bits) / 32) * 4 + params * p.out * (p.in / p.groupSize) * (p.halfScales ? 2 : scalar);
  }
  const elements = p.shape.reduce((n, d) => n * d, 1);
  if (isLinearWeight(p.name) && storageKey(p, build) !== 'dense') {
    const [out, inputs] = p.shape as [number, number];
    return out * ((inputs * build.quantBits) / 32) * 4 + 2 * out * (inputs / build.quantGroupSize) * scalar;
  }
  return elements * scalar;
}

function storageOf(placements: readonly Placement[], build: NativeBuildOptions): Pick<ModelSummary, 'baseBytes' | 'linearStorage'> {
  let baseBytes = 0;
  const linearStorage: Record<string, number> = {};
  for (const p of placements) {
    baseBytes += placementBytes(p, build);
    if (/^model\.layers\.\d+\..*_proj\.weight$/.test(p.name)) {
      const key = storageKey(p, build);
      linearStorage[key] = (linearStorage[key] ?? 0) + 1;
    }
  }
  return { baseBytes, linearStorage };
}

/** The build loadModel would choose (its defaultBuild, without an adapter). */
async function buildFor(options: SummaryOptions, kind: ModelSource['kind'], stored: BaseQuantization): Promise<NativeBuildOptions> {
  const gpu = (await device()).type === 'gpu';
  const q = options.quantization ?? (await defaultBaseQuantization(stored));
  return {
    quantBits: q === 'none' ? 0 : q.bits,
    quantGroupSize: q === 'none' ? 64 : q.groupSize,
    computeDtype: options.computeDtype ?? defaultComputeDtype(gpu, kind),
    kernel: gpu ? 'quantized-matmul' : 'dequantize-matmul',
  };
}

async function hfPlacements(dir: string, a: Omit<Architecture, 'ropePeriods'>): Promise<Placement[]> {
  const entries = (await Promise.all((await hfWeightFiles(dir)).map((file) => readSafetensorsHeader(file, { requireData: false })))).flat();
  const byName = new Map(entries.map((e) => [e.name, e]));
  const placements: Placement[] = [];
  for (const e of entries) {
    if (e.name.endsWith('.scales') || e.name.endsWith('.biases') || /rotary_emb\.inv_freq$/.test(e.name)) continue;
    const prefix = e.name.slice(0, -'.weight'.length);
    const scales = byName.get(`${prefix}.scales`);
    if (e.name.endsWith('.weight') && e.dtype === 'U32' && scales) {
      const inputs = inputFeatures(e.name, a);
      const [out, packed] = e.shape as [number, number];
      const groups = scales.shape[1]!;
      const layout = { bits: (packed * 32) / inputs, groupSize: inputs / groups };
      placements.push(
        !keepsQuantized(e.name, a)
          ? { name: e.name, kind: 'dense', shape: [out, inputs] }
          : { name: e.name, kind: 'quantized', out, in: inputs, ...layout, halfScales: scales.dtype === 'F16' || scales.dtype === 'BF16' },
      );
      continue;
    }
    placements.push({ name: e.name, kind: 'dense', shape: e.shape });
  }
  return placements;
}

/** Describes the model `spec` names (HF folder, GGUF file, Ollama name) from its metadata alone. */
export async function summarizeModel(spec: string, options: SummaryOptions = {}): Promise<ModelSummary> {
  const source = await resolveModelSource(spec, options.ollamaModelsDir ? { ollamaModelsDir: options.ollamaModelsDir } : {});
  if (source.kind === 'hf') {
    const configPath = join(source.path, 'config.json');
    let json: unknown;
    try {
      json = JSON.parse(await readFile(configPath, 'utf8'));
    } catch (error) {
      throw new Error(`${configPath}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (error as Error).message}`);
    }
    const { ropePeriods, ...architecture } = architectureFromHf(json, configPath);
    const q = mlxQuantizationSchema.safeParse((json as { quantization?: unknown }).quantization);
    const build = await buildFor(options, source.kind, q.success ? { bits: q.data.bits, groupSize: q.data.group_size } : 'none');
    const placements = await hfPlacements(source.path, architecture);
    return { source, architecture: { ...architecture, ropeScaled: ropePeriods !== undefined }, build, parameters: parameterCount(architecture), ...storageOf(placements, build) };
  }
  const file = await readGguf(source.path);
  const { ropePeriods: _none, ...architecture } = architectureFromGguf(file);
  const build = await buildFor(options, source.kind, ggufStoredQuantization(file));
  const placements: Placement[] = [];
  for (const t of file.tensors) {
    const name = ggufToHfName(t.name);
    if (name === undefined) continue;
    if (isRepackable(t.typeName) && keepsQuantized(name, architecture) && t.shape.length === 2) {
      const [out, inputs] = t.shape as [number, number];
      // A repack keeps the blocks' float16 scales (the loader falls back to float32 only where
      // -8·scale overflows float16, which no trained model's weights come near).
      const impliedBiases = t.typeName !== 'Q4_1';
      placements.push({ name, kind: 'quantized', out, in: inputs, bits: t.typeName === 'Q8_0' ? 8 : 4, groupSize: 32, halfScales: true, impliedBiases });
    } else {
      placements.push({ name, kind: 'dense', shape: t.shape });
    }
  }
  const ropeScaled = file.tensors.some((t) => t.name === 'rope_freqs.weight');
  return { source, architecture: { ...architecture, ropeScaled }, build, parameters: parameterCount(architecture), ...storageOf(placements, build) };
}

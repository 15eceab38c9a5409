/**
 * An adapter folder of any format (see adapter-formats.ts) read into float32 matrices under
 * mlx-lm's names and orientation — `model.layers.N.self_attn.q_proj.lora_a` (in, r) and
 * `.lora_b` (r, out) — checked for completeness and shape, and put in a base's q/k row order.
 */
import type { LoraTarget } from '../config/train-config.js';
import { adaptedLayers, adapterTensorName, MLX_KEY_OF } from './adapter-config.js';
import { describeAdapter, type AdapterDescription } from './adapter-formats.js';
import { readSafetensorsF32, type DenseMatrix } from './adapter-safetensors.js';
import type { Architecture } from './architecture.js';
import { qkRowOrderOf, reorderOutputColumns, type QkRowOrder } from './qk-row-order.js';

export interface AdapterWeights extends AdapterDescription {
  /** The adapted blocks, ascending. */
  readonly layers: readonly number[];
  /** mlx name → matrix, in mlx orientation, in `rowOrder`; layer by layer, targets in LORA_TARGETS order, a before b. */
  readonly matrices: ReadonlyMap<string, DenseMatrix>;
}

const TARGET_OF_KEY = new Map(Object.entries(MLX_KEY_OF).map(([target, key]) => [key, target as LoraTarget]));
const MLX_NAME = /^model\.layers\.(\d+)\.((?:self_attn|mlp)\.[a-z_]+)\.lora_(a|b)$/;
const PEFT_NAME = /^base_model\.model\.model\.layers\.(\d+)\.((?:self_attn|mlp)\.[a-z_]+)\.lora_(A|B)(?:\.default)?\.weight$/;

/** PEFT's safetensors key of a LoRA matrix: A is [r, in], B is [out, r]. */
export function peftTensorName(layer: number, target: LoraTarget, matrix: 'A' | 'B'): string {
  return `base_model.model.model.layers.${layer}.${MLX_KEY_OF[target]}.lora_${matrix}.weight`;
}

export function transpose(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c]!;
  return out;
}

interface Found {
  layer: number;
  target: LoraTarget;
  matrix: 'lora_a' | 'lora_b';
  m: DenseMatrix;
}

/** Every tensor of the file as (layer, target, matrix) in mlx orientation; a tensor of any other kind is an error. */
function parseTensors(d: AdapterDescription, tensors: ReadonlyMap<string, DenseMatrix>): Found[] {
  const peft = d.format === 'peft';
  return [...tensors].map(([name, m]) => {
    const match = (peft ? PEFT_NAME : MLX_NAME).exec(name);
    const target = match ? TARGET_OF_KEY.get(match[2]!) : undefined;
    if (!match || !target) {
      throw new Error(`${d.weightsFile}: unexpected tensor '${name}' (only LoRA A/B matrices of ${[...TARGET_OF_KEY.keys()].join(', ')} are read)`);
    }
    if (m.shape.length !== 2) throw new Error(`${d.weightsFile}: tensor '${name}' has shape [${m.shape.join(', ')}], expected a matrix`);
    const a = match[3]!.toLowerCase() === 'a';
    const [rows, cols] = m.shape as [number, number];
    const rank = peft ? (a ? rows : cols) : a ? cols : rows;
    if (rank !== d.rank) {
      throw new Error(`${d.weightsFile}: tensor '${name}' has shape [${m.shape.join(', ')}], which is not rank ${d.rank} as ${d.configFile} says`);
    }
    // PEFT stores A [r, in] and B [out, r]: the transposes of mlx's lora_a (in, r) and lora_b (r, out).
    const mlx = peft ? { shape: [cols, rows], values: transpose(m.values, rows, cols) } : m;
    return { layer: Number(match[1]), target, matrix: a ? 'lora_a' : 'lora_b', m: mlx };
  });
}

function expectedLayers(d: AdapterDescription, inFile: readonly number[], totalLayers: number | undefined): readonly number[] {
  if (d.layers) return d.layers;
  if (totalLayers !== undefined) return adaptedLayers(d.numLayers, totalLayers);
  if (d.numLayers !== -1 && inFile.length !== d.numLayers) {
    throw new Error(`${d.weightsFile}: holds blocks ${inFile.join(', ')} but ${d.configFile} says num_layers ${d.numLayers}`);
  }
  return inFile;
}

/**
 * Reads the adapter in `dir` (ours, mlx-lm's or PEFT's) in its own q/k row order. `totalLayers`
 * (the base's block count) resolves "all blocks" when the config does not record it.
 */
export async function readAdapter(dir: string, options: { totalLayers?: number } = {}): Promise<AdapterWeights> {
  const d = await describeAdapter(dir);
  const found = parseTensors(d, (await readSafetensorsF32(d.weightsFile)).tensors);
  const inFile = [...new Set(found.map((f) => f.layer))].sort((a, b) => a - b);
  const layers = expectedLayers(d, inFile, options.totalLayers ?? d.totalLayers);
  const byName = new Map(found.map((f) => [adapterTensorName(f.layer, f.target, f.matrix), f]));
  const matrices = new Map<string, DenseMatrix>();
  for (const layer of layers) {
    for (const target of d.targets) {
      for (const matrix of ['lora_a', 'lora_b'] as const) {
        const name = adapterTensorName(layer, target, matrix);
        const f = byName.get(name);
        if (!f) throw new Error(`${d.weightsFile}: missing '${name}' (${d.configFile} adapts ${d.targets.join(', ')} in blocks ${layers.join(', ')})`);
        matrices.set(name, f.m);
      }
    }
  }
  const extra = [...byName.keys()].filter((n) => !matrices.has(n));
  if (extra.length) {
    throw new Error(`${d.weightsFile}: unexpected '${extra[0]}'${extra.length > 1 ? ` and ${extra.length - 1} more` : ''} (${d.configFile} adapts ${d.targets.join(', ')} in blocks ${layers.join(', ')})`);
  }
  return { ...d, layers, ...(options.totalLayers !== undefined ? { totalLayers: options.totalLayers } : {}), matrices };
}

/** (in, out) of a target's projection in `base`. */
function projectionShape(target: LoraTarget, a: Architecture): [number, number] {
  const q = a.numHeads * a.headDim;
  const kv = a.numKvHeads * a.headDim;
  const shapes: Record<LoraTarget, [number, number]> = {
    q_proj: [a.hiddenSize, q],
    k_proj: [a.hiddenSize, kv],
    v_proj: [a.hiddenSize, kv],
    o_proj: [q, a.hiddenSize],
    gate_proj: [a.hiddenSize, a.intermediateSize],
    up_proj: [a.hiddenSize, a.intermediateSize],
    down_proj: [a.intermediateSize, a.hiddenSize],
  };
  return shapes[target];
}

/**
 * The adapter checked against `base` (blocks, projection shapes) with its q/k lora_b columns in
 * row order `to` — by default the base's own, so the native model can take the matrices as they are.
 */
export function adapterForBase(adapter: AdapterWeights, base: Architecture, to: QkRowOrder = qkRowOrderOf(base)): AdapterWeights {
  const total = base.numLayers;
  const suffix = adaptedLayers(adapter.layers.length, total);
  if (adapter.layers.some((l) => l >= total)) {
    throw new Error(`${adapter.weightsFile}: adapts block ${Math.max(...adapter.layers)} but the base has ${total} blocks (wrong base model?)`);
  }
  if (adapter.layers.join() !== suffix.join()) {
    throw new Error(`${adapter.weightsFile}: adapts blocks ${adapter.layers.join(', ')}; only the last blocks of a model can be adapted (${suffix.join(', ')})`);
  }
  const matrices = new Map<string, DenseMatrix>();
  for (const layer of adapter.layers) {
    for (const target of adapter.targets) {
      const [inDim, outDim] = projectionShape(target, base);
      const aName = adapterTensorName(layer, target, 'lora_a');
      const bName = adapterTensorName(layer, target, 'lora_b');
      const a = adapter.matrices.get(aName)!;
      const b = adapter.matrices.get(bName)!;
      if (a.shape[0] !== inDim) throw new Error(`${adapter.weightsFile}: '${aName}' takes ${a.shape[0]} inputs but the base's ${target} takes ${inDim} (wrong base model?)`);
      if (b.shape[1] !== outDim) throw new Error(`${adapter.weightsFile}: '${bName}' gives ${b.shape[1]} outputs but the base's ${target} gives ${outDim} (wrong base model?)`);
      const heads = target === 'q_proj' ? base.numHeads : target === 'k_proj' ? base.numKvHeads : 0;
      const bValues = heads ? reorderOutputColumns(b.values, b.shape[0]!, outDim, heads, adapter.rowOrder, to) : b.values;
      matrices.set(aName, a);
      matrices.set(bName, { shape: b.shape, values: bValues });
    }
  }
  return { ...adapter, rowOrder: to, totalLayers: total, matrices };
}

/**
 * Several adapters on one loaded base: the native model is built with LoRA slots that hold any of
 * them (the largest rank, the union of targets and layers, scale 1), and an arm switches by
 * writing its matrices into the slots, zero-padded to that rank and with its own scale folded
 * into B; slots an adapter does not have stay zero. x·A′·B′ = scale·x·A·B exactly, so every
 * adapter computes what it computes alone, and the base weights are in memory once.
 */
import { LORA_TARGETS, type LoraTarget } from '../config/train-config.js';
import type { NativeModel } from '../native.js';
import { adapterForBase, readAdapter } from '../model/adapter-weights.js';
import type { Architecture } from '../model/architecture.js';
import type { LoraSettings } from '../model/lora-options.js';
import { tensor, type Tensor } from '../tensor.js';

export interface AdapterSpec {
  readonly name: string;
  readonly path: string;
}

interface Matrix {
  readonly shape: readonly number[];
  readonly values: Float32Array;
}

export interface ArmAdapter extends AdapterSpec {
  readonly rank: number;
  readonly scale: number;
  readonly targets: readonly LoraTarget[];
  readonly layers: readonly number[];
  /** mlx names (lora_a (in, r), lora_b (r, out)) in the base's q/k row order. */
  readonly matrices: ReadonlyMap<string, Matrix>;
}

export async function readArmAdapters(specs: readonly AdapterSpec[], base: Architecture): Promise<ArmAdapter[]> {
  const out: ArmAdapter[] = [];
  for (const spec of specs) {
    const a = adapterForBase(await readAdapter(spec.path, { totalLayers: base.numLayers }), base);
    out.push({ ...spec, rank: a.rank, scale: a.scale, targets: a.targets, layers: a.layers, matrices: a.matrices });
  }
  return out;
}

/** Slots that hold every adapter: largest rank, union of targets, the last blocks down to the lowest adapted one, scale 1. */
export function sharedLoraSettings(adapters: readonly ArmAdapter[], numLayers: number): LoraSettings | undefined {
  if (adapters.length === 0) return undefined;
  const rank = Math.max(...adapters.map((a) => a.rank));
  const targets = LORA_TARGETS.filter((t) => adapters.some((a) => a.targets.includes(t)));
  const lowest = Math.min(...adapters.flatMap((a) => a.layers));
  // alpha = rank gives scale alpha/rank = 1: each adapter's own scale goes into its B.
  return { rank, alpha: rank, rslora: false, dropout: 0, targets, layers: numLayers - lowest };
}

/** One adapter's matrices laid into slots of `shape`: A zero-padded in its columns, B scaled and zero-padded in its rows. */
function slotValues(name: string, shape: readonly number[], adapter: ArmAdapter): Float32Array {
  const out = new Float32Array(shape[0]! * shape[1]!);
  const m = adapter.matrices.get(name);
  if (!m) return out;
  const [rows, cols] = m.shape as [number, number];
  if (name.endsWith('.lora_a')) {
    if (rows !== shape[0] || cols > shape[1]!) throw new Error(`${adapter.path}: ${name} is [${rows}, ${cols}], the slot [${shape.join(', ')}]`);
    for (let r = 0; r < rows; r++) out.set(m.values.subarray(r * cols, (r + 1) * cols), r * shape[1]!);
  } else {
    if (cols !== shape[1] || rows > shape[0]!) throw new Error(`${adapter.path}: ${name} is [${rows}, ${cols}], the slot [${shape.join(', ')}]`);
    for (let i = 0; i < rows * cols; i++) out[i] = m.values[i]! * adapter.scale;
  }
  return out;
}

/** Switches one native model between its base (LoRA off) and each adapter. */
export class ArmSwitcher {
  private constructor(
    private readonly model: NativeModel,
    private readonly slots: ReadonlyMap<string, readonly number[]>,
  ) {}

  static async open(model: NativeModel, adapters: readonly ArmAdapter[]): Promise<ArmSwitcher> {
    const slots = new Map<string, readonly number[]>();
    if (adapters.length > 0) {
      const params = await model.loraParameters();
      for (const [name, t] of Object.entries(params)) {
        slots.set(name, [...t.shape]);
        t.dispose();
      }
      for (const a of adapters) {
        const unused = [...a.matrices.keys()].filter((n) => !slots.has(n));
        if (unused.length) throw new Error(`${a.path}: no LoRA slot for ${unused.slice(0, 3).join(', ')}${unused.length > 3 ? ', …' : ''}`);
      }
    }
    return new ArmSwitcher(model, slots);
  }

  /** Base alone (LoRA off), or `adapter` in the slots with LoRA on. */
  async use(adapter: ArmAdapter | undefined): Promise<void> {
    if (!adapter) return this.model.setLoraEnabled(false);
    const tensors: Record<string, Tensor> = {};
    try {
      for (const [name, shape] of this.slots) tensors[name] = await tensor(slotValues(name, shape, adapter), shape);
      await this.model.setLoraParameters(tensors);
    } finally {
      for (const t of Object.values(tensors)) t.dispose();
    }
    await this.model.setLoraEnabled(true);
  }
}

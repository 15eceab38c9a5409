/**
 * The native model's profiling and loss-chunk methods, typed here until lib/native.ts declares
 * them, and the packed batches and random adapters the profile and the chunked-loss test share.
 */
import { native, type NativeBatch, type NativeBuildOptions, type NativeModel } from '../lib/native.js';
import { tensor, type Tensor } from '../lib/tensor.js';

export interface PhaseCost {
  name: string;
  calls: number;
  seconds: number;
  /** Net bytes MLX held after the phase's evaluations minus before. */
  retainedBytes: number;
  /** Largest rise of MLX's peak above what was held when one of its evaluations began. */
  transientBytes: number;
}

export interface StepProfile {
  loss: number;
  tokens: number;
  phases: PhaseCost[];
  wholeStepSeconds: number;
  wholeStepPeakBytes: number;
  peakBytes: number;
}

export interface ProfilingModel extends NativeModel {
  /** One step's forward pass evaluated phase by phase, then its backward pass; then the same step whole. */
  profileStep(batch: NativeBatch): Promise<StepProfile>;
  /** Tokens per LM-head + cross-entropy chunk: 0 materialises all logits, -1 picks from the vocabulary. */
  setLossChunkTokens(tokens: number): Promise<void>;
}

export function profiling(model: NativeModel): ProfilingModel {
  const m = model as Partial<ProfilingModel> & NativeModel;
  if (typeof m.profileStep !== 'function' || typeof m.setLossChunkTokens !== 'function') {
    throw new Error('the native addon has no profileStep/setLossChunkTokens: rebuild it (npm run build:native)');
  }
  return m as ProfilingModel;
}

function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

/**
 * Rows packed with documents of random lengths (8 to `maxDoc` tokens): segments and positions as
 * the trainer's packing gives them, the last token of each document unsupervised.
 */
export function packedBatch(batch: number, length: number, vocab: number, seed: number, maxDoc = 200): NativeBatch {
  const next = xorshift(seed);
  const n = batch * length;
  const tokens = new Int32Array(n);
  const targets = new Int32Array(n);
  const mask = new Float32Array(n);
  const positions = new Int32Array(n);
  const segments = new Int32Array(n);
  for (let b = 0; b < batch; b++) {
    let doc = 0;
    for (let start = 0; start < length; doc++) {
      const docLength = Math.min(length - start, 8 + (next() % Math.max(1, maxDoc - 7)));
      for (let j = 0; j < docLength; j++) {
        const i = b * length + start + j;
        tokens[i] = next() % vocab;
        targets[i] = next() % vocab;
        mask[i] = j < docLength - 1 ? 1 : 0;
        positions[i] = j;
        segments[i] = doc;
      }
      start += docLength;
    }
  }
  return { shape: [batch, length], tokens, targets, mask, positions, segments };
}

/** Seeded non-zero LoRA A and B (B = 0, as initialised, would leave every A without a gradient). */
export async function randomAdapters(model: NativeModel, seed: number, scale = 0.05): Promise<void> {
  const params = await model.loraParameters();
  const next = xorshift(seed);
  const updates: Record<string, Tensor> = {};
  for (const [name, p] of Object.entries(params)) {
    const count = p.shape.reduce((a, b) => a * b, 1);
    const v = Float32Array.from({ length: count }, () => ((next() / 2 ** 32) * 2 - 1) * scale);
    updates[name] = await tensor(v, p.shape);
    p.dispose();
  }
  await model.setLoraParameters(updates);
  for (const t of Object.values(updates)) t.dispose();
}

/** The fusion switches of NativeBuildOptions, all off: the plain per-op step the fused one is measured against. */
export const unfused: FusionOptions = { fuseProjections: false, compileElementwise: false, attentionQueryBlock: -1 };

export type FusionOptions = Pick<NativeBuildOptions, 'fuseProjections' | 'compileElementwise' | 'attentionQueryBlock' | 'compileStep'>;


/**
 * AdamW in float64 as PyTorch and MLX define it, written independently of the native optimizer:
 *   g ← g·clip, m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g²,
 *   p ← p·(1 − lr·wd) − lr · (m / (1−β1ᵗ)) / (√(v / (1−β2ᵗ)) + ε)
 * with clip = maxNorm / (‖g‖ + 1e-6) when ‖g‖ > maxNorm. A `mistake` makes a plausible wrong
 * variant, so tests can show their tolerance would catch it.
 */
export interface AdamWOptions {
  learningRate: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 0 disables clipping. */
  maxGradNorm: number;
}

export const ADAMW_MISTAKES = ['no bias correction', 'ε added before bias correction', 'L2 decay through the gradient', 'no weight decay', 'no clipping'] as const;
export type AdamWMistake = (typeof ADAMW_MISTAKES)[number];

export function globalNorm(grads: ReadonlyMap<string, ArrayLike<number>>): number {
  let sq = 0;
  for (const g of grads.values()) for (let i = 0; i < g.length; i++) sq += g[i]! ** 2;
  return Math.sqrt(sq);
}

export class ReferenceAdamW {
  readonly params = new Map<string, Float64Array>();
  readonly m = new Map<string, Float64Array>();
  readonly v = new Map<string, Float64Array>();
  private t = 0;

  constructor(
    initial: ReadonlyMap<string, ArrayLike<number>>,
    private readonly mistake?: AdamWMistake,
  ) {
    for (const [name, p] of initial) {
      this.params.set(name, Float64Array.from(p));
      this.m.set(name, new Float64Array(p.length));
      this.v.set(name, new Float64Array(p.length));
    }
  }

  step(grads: ReadonlyMap<string, ArrayLike<number>>, o: AdamWOptions): void {
    this.t++;
    const norm = globalNorm(grads);
    const clip = o.maxGradNorm > 0 && norm > o.maxGradNorm && this.mistake !== 'no clipping' ? o.maxGradNorm / (norm + 1e-6) : 1;
    const corrected = this.mistake !== 'no bias correction';
    const bc1 = corrected ? 1 - o.beta1 ** this.t : 1;
    const bc2 = corrected ? 1 - o.beta2 ** this.t : 1;
    const decay = this.mistake === 'no weight decay' ? 0 : o.weightDecay;
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (g === undefined) throw new Error(`reference AdamW: no gradient for ${name}`);
      const m = this.m.get(name)!;
      const v = this.v.get(name)!;
      for (let i = 0; i < p.length; i++) {
        let gi = g[i]! * clip;
        if (this.mistake === 'L2 decay through the gradient') gi += decay * p[i]!;
        m[i] = o.beta1 * m[i]! + (1 - o.beta1) * gi;
        v[i] = o.beta2 * v[i]! + (1 - o.beta2) * gi * gi;
        const denom = this.mistake === 'ε added before bias correction' ? (Math.sqrt(v[i]!) + o.eps) / Math.sqrt(bc2) : Math.sqrt(v[i]! / bc2) + o.eps;
        const decayed = this.mistake === 'L2 decay through the gradient' ? p[i]! : p[i]! * (1 - o.learningRate * decay);
        p[i] = decayed - (o.learningRate * (m[i]! / bc1)) / denom;
      }
    }
  }
}

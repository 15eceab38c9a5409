/**
 * A plain float64 Llama/Mistral forward pass over HF-layout weights, written independently of the
 * native code (split-half RoPE, GQA by head grouping, SwiGLU), for parity tests.
 */
export interface ReferenceConfig {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  vocab: number;
  ropeTheta: number;
  rmsNormEps: number;
  tiedEmbeddings: boolean;
}

export interface ReferenceWeight {
  shape: readonly number[];
  values: ArrayLike<number>;
}

export type WeightMap = ReadonlyMap<string, ReferenceWeight>;

/** Extra low-rank terms: y += scale·(x·A)·B for the named projections. */
export interface ReferenceLora {
  scale: number;
  /** `model.layers.N.self_attn.q_proj` → A [in, r], B [r, out]. */
  adapters: ReadonlyMap<string, { a: ArrayLike<number>; b: ArrayLike<number>; rank: number }>;
}

function w(weights: WeightMap, name: string): ReferenceWeight {
  const t = weights.get(name);
  if (!t) throw new Error(`reference: missing ${name}`);
  return t;
}

/** x [n, in] · Wᵀ with W [out, in]. */
function linear(x: Float64Array, n: number, weight: ReferenceWeight): Float64Array {
  const [out, inDim] = weight.shape as [number, number];
  const y = new Float64Array(n * out);
  const v = weight.values;
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let k = 0; k < inDim; k++) s += x[i * inDim + k]! * v[o * inDim + k]!;
      y[i * out + o] = s;
    }
  }
  return y;
}

function project(x: Float64Array, n: number, weights: WeightMap, path: string, lora?: ReferenceLora): Float64Array {
  const weight = w(weights, `${path}.weight`);
  const y = linear(x, n, weight);
  const bias = weights.get(`${path}.bias`);
  if (bias) {
    const out = weight.shape[0]!;
    for (let i = 0; i < n; i++) for (let o = 0; o < out; o++) y[i * out + o]! += bias.values[o]!;
  }
  const ad = lora?.adapters.get(path);
  if (ad && lora) {
    const [out, inDim] = weight.shape as [number, number];
    for (let i = 0; i < n; i++) {
      const xa = new Float64Array(ad.rank);
      for (let r = 0; r < ad.rank; r++) {
        let s = 0;
        for (let k = 0; k < inDim; k++) s += x[i * inDim + k]! * ad.a[k * ad.rank + r]!;
        xa[r] = s;
      }
      for (let o = 0; o < out; o++) {
        let s = 0;
        for (let r = 0; r < ad.rank; r++) s += xa[r]! * ad.b[r * out + o]!;
        y[i * out + o]! += lora.scale * s;
      }
    }
  }
  return y;
}

function rmsNorm(x: Float64Array, n: number, d: number, weight: ReferenceWeight, eps: number): Float64Array {
  const y = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let k = 0; k < d; k++) ss += x[i * d + k]! ** 2;
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let k = 0; k < d; k++) y[i * d + k] = x[i * d + k]! * inv * weight.values[k]!;
  }
  return y;
}

/**
 * RoPE on [n, heads·hd] rows at the given positions. 'split-half' rotates (j, j + hd/2) as HF's
 * rotate_half does; 'interleaved' rotates (2j, 2j + 1) as llama.cpp does for GGUF-ordered rows.
 */
export type RopeStyle = 'split-half' | 'interleaved';

function rope(x: Float64Array, n: number, heads: number, hd: number, positions: readonly number[], period: (j: number) => number, style: RopeStyle): void {
  const half = hd / 2;
  for (let i = 0; i < n; i++) {
    for (let h = 0; h < heads; h++) {
      const base = i * heads * hd + h * hd;
      for (let j = 0; j < half; j++) {
        const angle = positions[i]! / period(j);
        const c = Math.cos(angle);
        const s = Math.sin(angle);
        const ia = style === 'split-half' ? base + j : base + 2 * j;
        const ib = style === 'split-half' ? base + j + half : base + 2 * j + 1;
        const a = x[ia]!;
        const b = x[ib]!;
        x[ia] = a * c - b * s;
        x[ib] = a * s + b * c;
      }
    }
  }
}

/** Row t of logits [n, vocab] (the prediction of token t + 1). */
export function logitsRow(logits: Float64Array, vocab: number, t: number): Float64Array {
  return logits.subarray(t * vocab, (t + 1) * vocab);
}

/**
 * Logits [n, vocab] for one sequence. `segments` (optional) restricts attention to tokens of the
 * same segment, and `positions` defaults to 0..n-1.
 */
export function referenceLogits(
  cfg: ReferenceConfig,
  weights: WeightMap,
  tokens: readonly number[],
  options: {
    positions?: readonly number[];
    segments?: readonly number[];
    lora?: ReferenceLora;
    ropeStyle?: RopeStyle;
    /** RoPE period of pair j; default theta^(2j/hd). */
    ropePeriod?: (j: number) => number;
    /** Attend only to the last `slidingWindow` positions (Mistral v0.1). */
    slidingWindow?: number;
  } = {},
): Float64Array {
  const n = tokens.length;
  const d = cfg.hidden;
  const hd = cfg.headDim;
  const positions = options.positions ?? tokens.map((_, i) => i);
  const embed = w(weights, 'model.embed_tokens.weight');
  let h = new Float64Array(n * d);
  tokens.forEach((t, i) => {
    for (let k = 0; k < d; k++) h[i * d + k] = embed.values[t * d + k]!;
  });
  const group = cfg.heads / cfg.kvHeads;
  for (let l = 0; l < cfg.layers; l++) {
    const p = `model.layers.${l}`;
    const x = rmsNorm(h, n, d, w(weights, `${p}.input_layernorm.weight`), cfg.rmsNormEps);
    const q = project(x, n, weights, `${p}.self_attn.q_proj`, options.lora);
    const k = project(x, n, weights, `${p}.self_attn.k_proj`, options.lora);
    const v = project(x, n, weights, `${p}.self_attn.v_proj`, options.lora);
    const style = options.ropeStyle ?? 'split-half';
    const period = options.ropePeriod ?? ((j: number) => cfg.ropeTheta ** ((2 * j) / hd));
    rope(q, n, cfg.heads, hd, positions, period, style);
    rope(k, n, cfg.kvHeads, hd, positions, period, style);
    const attn = new Float64Array(n * cfg.heads * hd);
    for (let head = 0; head < cfg.heads; head++) {
      const kvHead = Math.floor(head / group);
      for (let i = 0; i < n; i++) {
        const scores: number[] = [];
        for (let j = 0; j <= i; j++) {
          if ((options.segments && options.segments[j] !== options.segments[i]) || (options.slidingWindow !== undefined && i - j >= options.slidingWindow)) {
            scores.push(-Infinity);
            continue;
          }
          let s = 0;
          for (let e = 0; e < hd; e++) s += q[i * cfg.heads * hd + head * hd + e]! * k[j * cfg.kvHeads * hd + kvHead * hd + e]!;
          scores.push(s / Math.sqrt(hd));
        }
        const max = Math.max(...scores);
        const exps = scores.map((s) => Math.exp(s - max));
        const total = exps.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= i; j++) {
          const pj = exps[j]! / total;
          for (let e = 0; e < hd; e++) attn[i * cfg.heads * hd + head * hd + e]! += pj * v[j * cfg.kvHeads * hd + kvHead * hd + e]!;
        }
      }
    }
    const o = project(attn, n, weights, `${p}.self_attn.o_proj`, options.lora);
    h = h.map((val, idx) => val + o[idx]!);
    const x2 = rmsNorm(h, n, d, w(weights, `${p}.post_attention_layernorm.weight`), cfg.rmsNormEps);
    const g = project(x2, n, weights, `${p}.mlp.gate_proj`, options.lora);
    const u = project(x2, n, weights, `${p}.mlp.up_proj`, options.lora);
    const act = g.map((gv, idx) => (gv / (1 + Math.exp(-gv))) * u[idx]!);
    const down = project(act, n, weights, `${p}.mlp.down_proj`, options.lora);
    h = h.map((val, idx) => val + down[idx]!);
  }
  const hn = rmsNorm(h, n, d, w(weights, 'model.norm.weight'), cfg.rmsNormEps);
  return linear(hn, n, cfg.tiedEmbeddings ? embed : w(weights, 'lm_head.weight'));
}

/** Summed next-token cross-entropy of logits [n, vocab] over masked positions. */
export function referenceLoss(logits: Float64Array, vocab: number, targets: readonly number[], mask: readonly number[]): number {
  let total = 0;
  for (let i = 0; i < targets.length; i++) {
    if (!mask[i]) continue;
    const row = logits.subarray(i * vocab, (i + 1) * vocab);
    const max = Math.max(...row);
    let sum = 0;
    for (const x of row) sum += Math.exp(x - max);
    total += Math.log(sum) + max - row[targets[i]!]!;
  }
  return total;
}

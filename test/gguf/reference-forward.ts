/**
 * A plain float64 Llama/Mistral forward pass over HF-layout weights (split-half RoPE), written
 * from the HF modeling code's definitions and independent of llama.cpp and MLX. Slow; for tiny
 * models only.
 */

export interface ReferenceConfig {
  readonly layers: number;
  readonly hidden: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly intermediate: number;
  readonly vocab: number;
  readonly ropeTheta: number;
  readonly rmsNormEps: number;
  readonly tiedEmbeddings: boolean;
}

export interface ReferenceWeight {
  readonly shape: readonly number[];
  readonly values: ArrayLike<number>;
}

/** y = W·x for W of shape [out, in]. */
function linear(w: ReferenceWeight, x: Float64Array): Float64Array {
  const [out, inn] = w.shape as [number, number];
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < inn; i++) s += (w.values[o * inn + i] as number) * (x[i] as number);
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: ReferenceWeight, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * (w.values[i] as number));
}

/**
 * RoPE on one head vector, in place. 'split-half' is HF's rotate_half (pairs i, i + hd/2);
 * 'interleaved' rotates pairs (2i, 2i+1) as llama.cpp does on its permuted Q/K rows.
 */
function rope(v: Float64Array, offset: number, headDim: number, pos: number, theta: number, style: RopeStyle): void {
  const half = headDim / 2;
  for (let i = 0; i < half; i++) {
    const angle = pos * theta ** (-(2 * i) / headDim);
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    const ia = offset + (style === 'split-half' ? i : 2 * i);
    const ib = style === 'split-half' ? ia + half : ia + 1;
    const a = v[ia] as number;
    const b = v[ib] as number;
    v[ia] = a * c - b * s;
    v[ib] = b * c + a * s;
  }
}

export type RopeStyle = 'split-half' | 'interleaved';

/**
 * Logits at every position (row t predicts token t+1). HF-layout weights need 'split-half'
 * (the default); weights with llama.cpp's permuted Q/K rows need 'interleaved'.
 */
export function referenceLogits(cfg: ReferenceConfig, weights: ReadonlyMap<string, ReferenceWeight>, tokens: readonly number[], ropeStyle: RopeStyle = 'split-half'): Float64Array[] {
  const W = (name: string): ReferenceWeight => {
    const w = weights.get(name);
    if (w === undefined) throw new Error(`reference forward: missing ${name}`);
    return w;
  };
  const { hidden, headDim: hd, heads, kvHeads } = cfg;
  const embed = W('model.embed_tokens.weight');
  let xs = tokens.map((t) => Float64Array.from({ length: hidden }, (_, i) => embed.values[t * hidden + i] as number));
  for (let l = 0; l < cfg.layers; l++) {
    const p = `model.layers.${l}`;
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    const qs: Float64Array[] = [];
    xs.forEach((x, pos) => {
      const h = rmsNorm(x, W(`${p}.input_layernorm.weight`), cfg.rmsNormEps);
      const q = linear(W(`${p}.self_attn.q_proj.weight`), h);
      const k = linear(W(`${p}.self_attn.k_proj.weight`), h);
      for (let hh = 0; hh < heads; hh++) rope(q, hh * hd, hd, pos, cfg.ropeTheta, ropeStyle);
      for (let hh = 0; hh < kvHeads; hh++) rope(k, hh * hd, hd, pos, cfg.ropeTheta, ropeStyle);
      qs.push(q);
      ks.push(k);
      vs.push(linear(W(`${p}.self_attn.v_proj.weight`), h));
    });
    xs = xs.map((x, pos) => {
      const attn = new Float64Array(heads * hd);
      for (let hh = 0; hh < heads; hh++) {
        const kvh = Math.floor(hh / (heads / kvHeads));
        const scores = new Float64Array(pos + 1);
        for (let t = 0; t <= pos; t++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += (qs[pos]![hh * hd + d] as number) * (ks[t]![kvh * hd + d] as number);
          scores[t] = s / Math.sqrt(hd);
        }
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const sum = e.reduce((a, b) => a + b, 0);
        for (let t = 0; t <= pos; t++) {
          for (let d = 0; d < hd; d++) attn[hh * hd + d]! += ((e[t] as number) / sum) * (vs[t]![kvh * hd + d] as number);
        }
      }
      const o = linear(W(`${p}.self_attn.o_proj.weight`), attn);
      const r = x.map((v, i) => v + (o[i] as number));
      const h = rmsNorm(r, W(`${p}.post_attention_layernorm.weight`), cfg.rmsNormEps);
      const g = linear(W(`${p}.mlp.gate_proj.weight`), h);
      const u = linear(W(`${p}.mlp.up_proj.weight`), h);
      const act = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * (u[i] as number));
      const dn = linear(W(`${p}.mlp.down_proj.weight`), act);
      return r.map((v, i) => v + (dn[i] as number));
    });
  }
  const head = cfg.tiedEmbeddings ? embed : W('lm_head.weight');
  return xs.map((x) => linear(head, rmsNorm(x, W('model.norm.weight'), cfg.rmsNormEps)));
}

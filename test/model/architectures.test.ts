import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import { toTypedArray } from '../../lib/tensor.js';
import { writeSafetensorsModel } from '../fixtures/safetensors.js';
import { makeTinyModel, type TinyModel } from '../fixtures/tiny-model.js';
import { referenceLogits, type ReferenceConfig, type ReferenceWeight } from '../helpers/llama-reference.js';
import { relativeError, seededFloats } from '../helpers/reference.js';

const tokens = [1, 17, 42, 5, 260, 99, 3, 77, 150, 8, 201, 64];

async function logitsOf(model: LoadedModel): Promise<Float32Array> {
  const t = await model.native.logits({ shape: [1, tokens.length], tokens: Int32Array.from(tokens) });
  return (await toTypedArray(t)) as Float32Array;
}

/** A copy of the tiny model's HF folder with config changes and extra tensors. */
async function variant(tiny: TinyModel, name: string, config: Record<string, unknown>, extra: Map<string, ReferenceWeight> = new Map()): Promise<{ dir: string; weights: Map<string, ReferenceWeight> }> {
  const dir = join(tiny.root, name);
  await mkdir(dir, { recursive: true });
  const base = JSON.parse(await readFile(join(tiny.hfDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ...base, ...config }));
  const weights = new Map<string, ReferenceWeight>([...tiny.weights, ...extra]);
  await writeSafetensorsModel(dir, new Map([...weights].map(([k, v]) => [k, { shape: [...v.shape], values: Float32Array.from(v.values) }])), 'F32');
  return { dir, weights };
}

describe('architecture variants against the float64 reference', () => {
  let tiny: TinyModel;
  let cfg: ReferenceConfig;
  beforeAll(async () => {
    tiny = await makeTinyModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128, vocab: 300, seed: 17 });
    const c = tiny.config;
    cfg = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: c.headDim, intermediate: 128, vocab: 300, ropeTheta: c.ropeTheta, rmsNormEps: c.rmsNormEps, tiedEmbeddings: c.tiedEmbeddings };
  });
  afterAll(async () => tiny?.cleanup());

  it('Qwen2: q/k/v projections carry biases', async () => {
    const extra = new Map<string, ReferenceWeight>();
    let seed = 1;
    for (let l = 0; l < 2; l++) {
      for (const [p, out] of [['q_proj', 64], ['k_proj', 32], ['v_proj', 32]] as const) {
        extra.set(`model.layers.${l}.self_attn.${p}.bias`, { shape: [out], values: seededFloats(out, seed++).map((v) => v * 0.5) });
      }
    }
    const { dir, weights } = await variant(tiny, 'qwen2', { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' }, extra);
    const model = await loadModel(dir, { quantization: 'none' });
    try {
      expect(model.architecture.attentionBias).toBe(true);
      const ref = referenceLogits(cfg, weights, tokens);
      expect(relativeError(await logitsOf(model), ref)).toBeLessThan(1e-4);
      // And the biases matter: the reference without them is far off.
      expect(relativeError(await logitsOf(model), referenceLogits(cfg, tiny.weights, tokens))).toBeGreaterThan(1e-2);
    } finally {
      model.dispose();
    }
  });

  it('Mistral sliding window: tokens attend to the last `window` positions only', async () => {
    const { dir, weights } = await variant(tiny, 'swa', { sliding_window: 4 });
    const model = await loadModel(dir, { quantization: 'none' });
    try {
      expect(model.architecture.slidingWindow).toBe(4);
      const ref = referenceLogits(cfg, weights, tokens, { slidingWindow: 4 });
      expect(relativeError(await logitsOf(model), ref)).toBeLessThan(1e-4);
      expect(relativeError(await logitsOf(model), referenceLogits(cfg, weights, tokens))).toBeGreaterThan(1e-3);
    } finally {
      model.dispose();
    }
  });

  it('Llama 3 rope_scaling stretches low-frequency periods', async () => {
    // With head_dim 16 and theta 5e5 the wavelengths are 6.3, 32.5, 168, …: an original context of
    // 64 puts them in all three branches (kept, smoothed, stretched).
    const original = 64;
    const scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: original };
    const { dir, weights } = await variant(tiny, 'llama3', { architectures: ['LlamaForCausalLM'], model_type: 'llama', rope_theta: 500000, rope_scaling: scaling });
    const model = await loadModel(dir, { quantization: 'none' });
    try {
      // mlx-lm's Llama3RoPE, written out again here.
      const hd = cfg.headDim;
      const branches = new Set<string>();
      const period = (j: number) => {
        const base = 500000 ** ((2 * j) / hd);
        const wavelen = 2 * Math.PI * base;
        if (wavelen > original / 1) return branches.add('stretched'), base * 8;
        if (wavelen < original / 4) return branches.add('kept'), base;
        const smooth = (original / wavelen - 1) / (4 - 1);
        return branches.add('smoothed'), base / ((1 - smooth) / 8 + smooth);
      };
      const ref = referenceLogits({ ...cfg, ropeTheta: 500000 }, weights, tokens, { ropePeriod: period });
      expect([...branches].sort()).toEqual(['kept', 'smoothed', 'stretched']);
      expect(relativeError(await logitsOf(model), ref)).toBeLessThan(1e-4);
      expect(relativeError(await logitsOf(model), referenceLogits({ ...cfg, ropeTheta: 500000 }, weights, tokens))).toBeGreaterThan(1e-4);
    } finally {
      model.dispose();
    }
  });

  it('LoRA on the last N layers only, with rsLoRA scaling', async () => {
    const model = await loadModel(tiny.hfDir, { quantization: { bits: 3, groupSize: 32 }, lora: { rank: 4, alpha: 8, layers: 1, rslora: true, targets: ['up_proj'] } });
    try {
      const info = await model.native.info();
      expect(info.loraNames).toEqual(['model.layers.1.mlp.up_proj.lora_a', 'model.layers.1.mlp.up_proj.lora_b']);
      expect(info.linearStorage).toEqual({ '3-bit g32': 14 });
    } finally {
      model.dispose();
    }
  });
});

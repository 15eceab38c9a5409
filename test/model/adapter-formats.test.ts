import { mkdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LORA_TARGETS, type LoraTarget } from '../../lib/config/train-config.js';
import { detectAdapterFormat, loraSettingsOfAdapter, readAdapterTensors } from '../../lib/model/adapter.js';
import { adapterForBase, readAdapter } from '../../lib/model/adapter-weights.js';
import { architectureFromGguf, architectureFromHf } from '../../lib/model/architecture.js';
import { loadModel, type LoadedModel } from '../../lib/model/load-model.js';
import { roundToBf16 } from '../../lib/gguf/float16.js';
import { readGguf } from '../../lib/gguf/reader.js';
import { MLX_KEY_OF } from '../../lib/model/adapter-config.js';
import { disposeAll, toTypedArray } from '../../lib/tensor.js';
import { writeSafetensors, type SafetensorsDtype, type SafetensorsTensor } from '../fixtures/safetensors.js';
import { makeTinyModel, qkPermutation, type TinyModel } from '../fixtures/tiny-model.js';
import { referenceLogits, type ReferenceConfig, type ReferenceLora } from '../helpers/llama-reference.js';
import { seededFloats } from '../helpers/reference.js';
import { tempDir } from '../helpers/temp-dir.js';

const tokens = [1, 17, 42, 5, 260, 99, 3, 77, 150, 8];
const seq = Int32Array.from(tokens);
const batch = { shape: [1, seq.length] as [number, number], tokens: seq };

let tiny: TinyModel;
let refCfg: ReferenceConfig;

/** in/out of each projection of the tiny model. */
function dims(target: LoraTarget): [number, number] {
  const c = tiny.config;
  const q = c.heads * c.headDim;
  const kv = c.kvHeads * c.headDim;
  const table: Record<LoraTarget, [number, number]> = {
    q_proj: [c.hidden, q],
    k_proj: [c.hidden, kv],
    v_proj: [c.hidden, kv],
    o_proj: [q, c.hidden],
    gate_proj: [c.hidden, c.intermediate],
    up_proj: [c.hidden, c.intermediate],
    down_proj: [c.intermediate, c.hidden],
  };
  return table[target];
}

interface HandAdapter {
  rank: number;
  /** `model.layers.N.self_attn.q_proj` → A [r, in], B [out, r] (PEFT/torch orientation), seeded. */
  peft: Map<string, { A: Float32Array; B: Float32Array; inDim: number; outDim: number }>;
}

function handAdapter(rank: number, layers: readonly number[], targets: readonly LoraTarget[], seed: number): HandAdapter {
  const peft: HandAdapter['peft'] = new Map();
  let s = seed;
  for (const l of layers) {
    for (const t of targets) {
      const [inDim, outDim] = dims(t);
      const A = seededFloats(rank * inDim, s++).map((x) => x * 0.5);
      const B = seededFloats(outDim * rank, s++).map((x) => x * 0.2);
      peft.set(`model.layers.${l}.${MLX_KEY_OF[t]}`, { A, B, inDim, outDim });
    }
  }
  return { rank, peft };
}

/** The same adapter as the float64 reference takes it: a [in, r] = Aᵀ, b [r, out] = Bᵀ, transposed here by index. */
function referenceLora(h: HandAdapter, rank: number, scale: number): ReferenceLora {
  const adapters = new Map<string, { a: Float64Array; b: Float64Array; rank: number }>();
  for (const [path, { A, B, inDim, outDim }] of h.peft) {
    const a = new Float64Array(inDim * rank);
    const b = new Float64Array(rank * outDim);
    for (let r = 0; r < rank; r++) {
      for (let i = 0; i < inDim; i++) a[i * rank + r] = A[r * inDim + i]!;
      for (let o = 0; o < outDim; o++) b[r * outDim + o] = B[o * rank + r]!;
    }
    adapters.set(path, { a, b, rank });
  }
  return { scale, adapters };
}

async function writePeftFolder(dir: string, h: HandAdapter, config: Record<string, unknown>, dtype: SafetensorsDtype = 'F32'): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tensors = new Map<string, SafetensorsTensor>();
  const rank = h.rank;
  for (const [path, { A, B, inDim, outDim }] of h.peft) {
    tensors.set(`base_model.model.${path}.lora_A.weight`, { shape: [rank, inDim], values: A });
    tensors.set(`base_model.model.${path}.lora_B.weight`, { shape: [outDim, rank], values: B });
  }
  await writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors, dtype);
  await writeFile(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', bias: 'none', lora_dropout: 0.05, base_model_name_or_path: 'tiny', ...config }));
}

/** mlx-lm's layout: lora_a (in, r) = Aᵀ, lora_b (r, out) = Bᵀ under `model.layers.N…lora_a`. */
async function writeMlxLmFolder(dir: string, h: HandAdapter, config: Record<string, unknown>, rank: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [path, { A, B, inDim, outDim }] of h.peft) {
    const a = new Float32Array(inDim * rank);
    const b = new Float32Array(rank * outDim);
    for (let r = 0; r < rank; r++) {
      for (let i = 0; i < inDim; i++) a[i * rank + r] = A[r * inDim + i]!;
      for (let o = 0; o < outDim; o++) b[r * outDim + o] = B[o * rank + r]!;
    }
    tensors.set(`${path}.lora_a`, { shape: [inDim, rank], values: a });
    tensors.set(`${path}.lora_b`, { shape: [rank, outDim], values: b });
  }
  await writeSafetensors(join(dir, 'adapters.safetensors'), tensors, 'F32');
  await writeFile(join(dir, 'adapter_config.json'), JSON.stringify(config, null, 4));
}

async function logitsOf(model: LoadedModel): Promise<Float32Array> {
  const t = await model.native.logits(batch);
  try {
    return (await toTypedArray(t)) as Float32Array;
  } finally {
    t.dispose();
  }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Max |ours − reference| over every position, relative to the reference's logit range. */
function relativeToRange(got: Float32Array, want: Float64Array): number {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of want) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  return maxAbsDiff(got, want) / (hi - lo);
}

beforeAll(async () => {
  tiny = await makeTinyModel({ layers: 3, hidden: 64, heads: 4, kvHeads: 2, intermediate: 96, vocab: 300, seed: 41 });
  const c = tiny.config;
  refCfg = { layers: c.layers, hidden: c.hidden, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, intermediate: c.intermediate, vocab: c.vocab, ropeTheta: c.ropeTheta, rmsNormEps: c.rmsNormEps, tiedEmbeddings: c.tiedEmbeddings };
});
afterAll(async () => tiny?.cleanup());

describe('adapter folders: formats and errors (no MLX)', () => {
  it('tells ours, mlx-lm and PEFT apart, and names the file that is missing or wrong', async () => {
    const root = tempDir('adapter-detect-');
    const h = handAdapter(2, [2], ['q_proj'], 1);
    await writePeftFolder(join(root, 'peft'), h, { r: 2, lora_alpha: 4, target_modules: ['q_proj'], layers_to_transform: [2] });
    await writeMlxLmFolder(join(root, 'mlx-lm'), h, { num_layers: 1, lora_parameters: { rank: 2, scale: 2, dropout: 0, keys: ['self_attn.q_proj'] }, model: 'x' }, 2);
    await writeMlxLmFolder(join(root, 'ours'), h, { num_layers: 1, lora_parameters: { rank: 2, scale: 2, dropout: 0, keys: ['self_attn.q_proj'] }, base_model: { source: tiny.hfDir, num_hidden_layers: 3, quantization: null } }, 2);
    expect(await detectAdapterFormat(join(root, 'peft'))).toBe('peft');
    expect(await detectAdapterFormat(join(root, 'mlx-lm'))).toBe('mlx-lm');
    expect(await detectAdapterFormat(join(root, 'ours'))).toBe('mlx-qlora');
    await expect(detectAdapterFormat(join(root, 'nope'))).rejects.toThrow(`${join(root, 'nope')}: not an adapter folder`);
    await mkdir(join(root, 'empty'));
    await expect(detectAdapterFormat(join(root, 'empty'))).rejects.toThrow(`${join(root, 'empty', 'adapter_config.json')}: not found`);
    await mkdir(join(root, 'other'));
    await writeFile(join(root, 'other', 'adapter_config.json'), '{"hello": 1}');
    await expect(detectAdapterFormat(join(root, 'other'))).rejects.toThrow(`${join(root, 'other', 'adapter_config.json')}: neither a PEFT config`);
    await mkdir(join(root, 'bin'));
    await writeFile(join(root, 'bin', 'adapter_config.json'), '{"peft_type": "LORA"}');
    await writeFile(join(root, 'bin', 'adapter_model.bin'), 'pickle');
    await expect(detectAdapterFormat(join(root, 'bin'))).rejects.toThrow(/adapter_model\.safetensors: not found \(adapter_model\.bin, a PyTorch pickle/);
  });

  it('reads an mlx-lm folder without keys as every linear layer of its last num_layers blocks', async () => {
    const dir = join(tempDir('adapter-mlxlm-'), 'a');
    const h = handAdapter(4, [1, 2], LORA_TARGETS, 7);
    // mlx-lm dumps every training argument into the config; no base_model, no keys.
    await writeMlxLmFolder(dir, h, { adapter_path: 'adapters', batch_size: 4, fine_tune_type: 'lora', iters: 100, lora_parameters: { rank: 4, scale: 20.0, dropout: 0.0 }, model: 'mistralai/Mistral-7B-v0.1', num_layers: 2, seed: 0 }, 4);
    const adapter = await readAdapter(dir);
    expect(adapter.format).toBe('mlx-lm');
    expect(adapter.targets).toEqual([...LORA_TARGETS]);
    expect(adapter.layers).toEqual([1, 2]);
    expect(adapter.scale).toBe(20);
    expect(adapter.rowOrder).toBe('hf');
    expect(adapter.baseModel).toBe('mistralai/Mistral-7B-v0.1');
    // lora_a of block 2's gate_proj is Aᵀ: element (i, r) = A[r, i].
    const { A, inDim } = h.peft.get('model.layers.2.mlp.gate_proj')!;
    const a = adapter.matrices.get('model.layers.2.mlp.gate_proj.lora_a')!;
    expect(a.shape).toEqual([inDim, 4]);
    expect(a.values[5 * 4 + 3]).toBe(A[3 * inDim + 5]);
    expect(await loraSettingsOfAdapter(dir, 3)).toEqual({ rank: 4, alpha: 80, rslora: false, dropout: 0, targets: [...LORA_TARGETS], layers: 2 });
  });

  it('reads a PEFT folder (bf16 tensors) into mlx orientation, with rsLoRA scale alpha/√r', async () => {
    const dir = join(tempDir('adapter-peft-'), 'a');
    const h = handAdapter(4, [0, 1, 2], ['q_proj', 'v_proj'], 3);
    await writePeftFolder(dir, h, { r: 4, lora_alpha: 6, use_rslora: true, target_modules: ['q_proj', 'v_proj'] }, 'BF16');
    const adapter = await readAdapter(dir, { totalLayers: 3 });
    expect(adapter.format).toBe('peft');
    expect(adapter.scale).toBe(3); // 6 / √4
    expect(adapter.alpha).toBe(6);
    expect(adapter.rslora).toBe(true);
    expect(adapter.layers).toEqual([0, 1, 2]);
    expect(adapter.targets).toEqual(['q_proj', 'v_proj']);
    const { B, outDim } = h.peft.get('model.layers.1.self_attn.v_proj')!;
    const b = adapter.matrices.get('model.layers.1.self_attn.v_proj.lora_b')!;
    expect(b.shape).toEqual([4, outDim]);
    // (r, o) = B[o, r], rounded to bfloat16 as stored.
    expect(b.values[2 * outDim + 7]).toBe(roundToBf16(B[7 * 4 + 2]!));
    expect(b.values[2 * outDim + 7]).not.toBe(0);
    expect(await loraSettingsOfAdapter(dir, 3)).toMatchObject({ rank: 4, alpha: 6, rslora: true, layers: 3, targets: ['q_proj', 'v_proj'] });
  });

  it('puts lora_b of q/k (only) in llama.cpp row order for a GGUF base', async () => {
    const dir = join(tempDir('adapter-order-'), 'a');
    const h = handAdapter(2, [0, 1, 2], ['q_proj', 'k_proj', 'v_proj'], 9);
    await writePeftFolder(dir, h, { r: 2, lora_alpha: 2, target_modules: ['q_proj', 'k_proj', 'v_proj'] });
    const gguf = architectureFromGguf(await readGguf(tiny.ggufPath));
    const hf = architectureFromHf(tiny.hfConfig, 'config.json');
    const own = await readAdapter(dir, { totalLayers: 3 });
    const forGguf = adapterForBase(own, gguf);
    expect(forGguf.rowOrder).toBe('gguf');
    expect(adapterForBase(own, hf).matrices.get('model.layers.0.self_attn.q_proj.lora_b')!.values).toBe(own.matrices.get('model.layers.0.self_attn.q_proj.lora_b')!.values);
    for (const [target, heads] of [['q_proj', 4], ['k_proj', 2]] as const) {
      const { B, outDim } = h.peft.get(`model.layers.1.self_attn.${target}`)!;
      const map = qkPermutation(outDim, heads); // the fixture's own permutation of base weight rows
      const b = forGguf.matrices.get(`model.layers.1.self_attn.${target}.lora_b`)!.values;
      for (let g = 0; g < outDim; g++) for (let r = 0; r < 2; r++) expect(b[r * outDim + g]).toBe(B[map[g]! * 2 + r]);
      expect(forGguf.matrices.get(`model.layers.1.self_attn.${target}.lora_a`)).toBe(own.matrices.get(`model.layers.1.self_attn.${target}.lora_a`));
    }
    expect(forGguf.matrices.get('model.layers.1.self_attn.v_proj.lora_b')!.values).toBe(own.matrices.get('model.layers.1.self_attn.v_proj.lora_b')!.values);
    // And back: HF order again is the file's numbers.
    const back = adapterForBase(forGguf, hf);
    expect(back.matrices.get('model.layers.2.self_attn.k_proj.lora_b')!.values).toEqual(own.matrices.get('model.layers.2.self_attn.k_proj.lora_b')!.values);
  });

  it('infers the row order of older adapters of ours from the base they name', async () => {
    const root = tempDir('adapter-infer-');
    const h = handAdapter(2, [2], ['q_proj'], 1);
    const config = (source: string, extra = {}) => ({ num_layers: 1, lora_parameters: { rank: 2, scale: 2, dropout: 0, keys: ['self_attn.q_proj'] }, base_model: { source, num_hidden_layers: 3, quantization: null, ...extra } });
    await writeMlxLmFolder(join(root, 'gguf'), h, config(tiny.ggufPath), 2);
    await writeMlxLmFolder(join(root, 'ollama'), h, config('dolphin-mistral:7b'), 2);
    await writeMlxLmFolder(join(root, 'hf'), h, config(tiny.hfDir), 2);
    await writeMlxLmFolder(join(root, 'qwen'), h, config('qwen2.5:0.5b', { architecture: 'qwen2' }), 2);
    await writeMlxLmFolder(join(root, 'recorded'), h, config(tiny.ggufPath, { qk_row_order: 'hf' }), 2);
    await writeMlxLmFolder(join(root, 'gone-hf'), h, config(join(root, 'gone', 'hf-folder')), 2);
    await writeMlxLmFolder(join(root, 'gone-gguf'), h, config(join(root, 'gone', 'model.Q4_0.gguf')), 2);
    expect((await readAdapter(join(root, 'gguf'))).rowOrder).toBe('gguf');
    expect((await readAdapter(join(root, 'ollama'))).rowOrder).toBe('gguf');
    expect((await readAdapter(join(root, 'hf'))).rowOrder).toBe('hf');
    expect((await readAdapter(join(root, 'qwen'))).rowOrder).toBe('hf');
    expect((await readAdapter(join(root, 'recorded'))).rowOrder).toBe('hf');
    expect((await readAdapter(join(root, 'gone-hf'))).rowOrder).toBe('hf');
    expect((await readAdapter(join(root, 'gone-gguf'))).rowOrder).toBe('gguf');
  });

  it('rejects inconsistent folders with the file and the key at fault', async () => {
    const root = tempDir('adapter-bad-');
    const h = handAdapter(2, [1, 2], ['q_proj', 'v_proj'], 5);
    const peft = (name: string, config: Record<string, unknown>, adapter = h) => writePeftFolder(join(root, name), adapter, { r: 2, lora_alpha: 4, target_modules: ['q_proj', 'v_proj'], layers_to_transform: [1, 2], ...config });
    const weights = (name: string) => join(root, name, 'adapter_model.safetensors');
    const cfg = (name: string) => join(root, name, 'adapter_config.json');

    await peft('missing', { target_modules: ['q_proj', 'v_proj', 'o_proj'] });
    await expect(readAdapter(join(root, 'missing'))).rejects.toThrow(`${weights('missing')}: missing 'model.layers.1.self_attn.o_proj.lora_a'`);
    await peft('extra', { target_modules: ['q_proj'] });
    await expect(readAdapter(join(root, 'extra'))).rejects.toThrow(`${weights('extra')}: unexpected 'model.layers.1.self_attn.v_proj.lora_a'`);
    await peft('rank', { r: 3 });
    await expect(readAdapter(join(root, 'rank'))).rejects.toThrow(`${weights('rank')}: tensor 'base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight' has shape [2, 64], which is not rank 3`);
    await peft('module', { target_modules: ['q_proj', 'lm_head'] });
    await expect(readAdapter(join(root, 'module'))).rejects.toThrow(`${cfg('module')}: target_modules: lm_head cannot be adapted`);
    await peft('dora', { use_dora: true });
    await expect(readAdapter(join(root, 'dora'))).rejects.toThrow(`${cfg('dora')}: use_dora: DoRA adapters are not supported`);
    await peft('middle', { layers_to_transform: [0, 1] }, handAdapter(2, [0, 1], ['q_proj', 'v_proj'], 5));
    const middle = await readAdapter(join(root, 'middle'));
    expect(() => adapterForBase(middle, architectureFromHf(tiny.hfConfig, 'config.json'))).toThrow(`${weights('middle')}: adapts blocks 0, 1; only the last blocks of a model can be adapted (1, 2)`);
    const wrongBase = architectureFromHf({ ...tiny.hfConfig, hidden_size: 128 }, 'config.json');
    expect(() => adapterForBase(middle, { ...wrongBase, numLayers: 2 })).toThrow(`'model.layers.0.self_attn.q_proj.lora_a' takes 64 inputs but the base's q_proj takes 128 (wrong base model?)`);

    await peft('truncated', {});
    await truncate(weights('truncated'), (await readFile(weights('truncated'))).byteLength - 10);
    await expect(readAdapter(join(root, 'truncated'))).rejects.toThrow(new RegExp(`^${weights('truncated').replace(/[.]/g, '\\.')}: truncated: tensor '[^']+' ends at data byte`));
    await truncate(weights('truncated'), 5);
    await expect(readAdapter(join(root, 'truncated'))).rejects.toThrow(`${weights('truncated')}: truncated: 5 bytes`);
  });
});

describe('adapter folders in the model (MLX)', () => {
  it('a PEFT folder made by hand gives the logits of a float64 forward with W + (α/√r)·BA, on the HF and the GGUF base', async () => {
    const dir = join(tempDir('adapter-peft-logits-'), 'a');
    const rank = 4;
    const h = handAdapter(rank, [1, 2], ['q_proj', 'k_proj', 'o_proj', 'up_proj', 'down_proj'], 21);
    await writePeftFolder(dir, h, { r: rank, lora_alpha: 3, use_rslora: true, target_modules: ['q_proj', 'k_proj', 'o_proj', 'up_proj', 'down_proj'], layers_to_transform: [1, 2] });
    const want = referenceLogits(refCfg, tiny.weights, tokens, { lora: referenceLora(h, rank, 3 / Math.sqrt(rank)) });
    const base = referenceLogits(refCfg, tiny.weights, tokens);
    for (const source of [tiny.hfDir, tiny.ggufPath]) {
      const model = await loadModel(source, { quantization: 'none', adapter: dir });
      try {
        const got = await logitsOf(model);
        expect(relativeToRange(got, want)).toBeLessThan(1e-4);
        // The adapter matters: the plain base is far from it.
        expect(relativeToRange(got, base)).toBeGreaterThan(1e-2);
      } finally {
        model.dispose();
      }
    }
  });

  it('an mlx-lm folder without keys loads as every linear layer with its scale', async () => {
    const dir = join(tempDir('adapter-mlxlm-logits-'), 'a');
    const h = handAdapter(2, [2], LORA_TARGETS, 31);
    await writeMlxLmFolder(dir, h, { fine_tune_type: 'lora', lora_parameters: { rank: 2, scale: 1.5, dropout: 0.0 }, num_layers: 1, model: 'some/model' }, 2);
    const want = referenceLogits(refCfg, tiny.weights, tokens, { lora: referenceLora(h, 2, 1.5) });
    const model = await loadModel(tiny.ggufPath, { quantization: 'none', adapter: dir });
    try {
      expect(relativeToRange(await logitsOf(model), want)).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }
  });

  it('readAdapterTensors gives tensors for the base: the same adapter on the HF and on the GGUF base gives the same logits', async () => {
    const dir = join(tempDir('adapter-tensors-'), 'a');
    const h = handAdapter(2, [0, 1, 2], ['q_proj', 'k_proj'], 51);
    await writePeftFolder(dir, h, { r: 2, lora_alpha: 8, target_modules: ['q_proj', 'k_proj'] });
    const gguf = architectureFromGguf(await readGguf(tiny.ggufPath));
    const { settings, scale, tensors } = await readAdapterTensors(dir, gguf);
    try {
      expect(scale).toBe(4);
      expect(settings).toMatchObject({ rank: 2, alpha: 8, layers: 3, targets: ['q_proj', 'k_proj'] });
      expect(Object.keys(tensors)).toHaveLength(12);
      expect(tensors['model.layers.0.self_attn.k_proj.lora_b']!.shape).toEqual([2, 32]);
    } finally {
      disposeAll(Object.values(tensors));
    }
    const onHf = await loadModel(tiny.hfDir, { quantization: 'none', adapter: dir });
    const onGguf = await loadModel(tiny.ggufPath, { quantization: 'none', adapter: dir });
    try {
      const a = await logitsOf(onHf);
      const b = await logitsOf(onGguf);
      const want = referenceLogits(refCfg, tiny.weights, tokens, { lora: referenceLora(h, 2, 4) });
      expect(relativeToRange(a, want)).toBeLessThan(1e-4);
      expect(relativeToRange(b, want)).toBeLessThan(1e-4);
    } finally {
      onHf.dispose();
      onGguf.dispose();
    }
  });

  it('a truncated adapters.safetensors fails loadModel with the file named', async () => {
    const dir = join(tempDir('adapter-trunc-'), 'a');
    await writeMlxLmFolder(dir, handAdapter(2, [2], ['q_proj'], 1), { num_layers: 1, lora_parameters: { rank: 2, scale: 2, dropout: 0, keys: ['self_attn.q_proj'] } }, 2);
    const file = join(dir, 'adapters.safetensors');
    await truncate(file, (await readFile(file)).byteLength - 4);
    await expect(loadModel(tiny.hfDir, { quantization: 'none', adapter: dir })).rejects.toThrow(`${file}: truncated`);
  });
});

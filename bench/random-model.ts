/**
 * Models with random weights for benchmarks, built in place: dense linears drawn by MLX and
 * quantized at load, or (for 7B) 4-bit codes written directly as packed integers, so the float
 * matrix of a 7B model never exists.
 */
import { native, type NativeBuildOptions, type NativeModel, type NativeModelConfig } from '../lib/native.js';
import { randomNormal, tensor } from '../lib/tensor.js';
import { nativeLoraOptions, type LoraSettings } from '../lib/model/lora-options.js';

/** The ~60M Mistral-shaped reference model the model, profile and trainer benchmarks measure. */
export const reference: NativeModelConfig = {
  vocabSize: 32000,
  hiddenSize: 512,
  intermediateSize: 1536,
  numLayers: 8,
  numHeads: 8,
  numKvHeads: 2,
  headDim: 64,
  rmsNormEps: 1e-5,
  ropeTheta: 1e6,
  ropeTraditional: false,
  ropePositionScale: 1,
  tieWordEmbeddings: false,
  attentionBias: false,
};

export interface RandomModelOptions {
  bits: number;
  groupSize: number;
  kernel: 'quantized-matmul' | 'dequantize-matmul';
  lora: LoraSettings;
  /** Write 4-bit codes directly instead of quantizing a random float matrix. */
  packedDirectly: boolean;
  /** Build switches on top of the defaults (fusion, compilation, attention blocks). */
  build?: Partial<NativeBuildOptions>;
}

type Dims = (c: NativeModelConfig) => [number, number];
const projections: ReadonlyArray<readonly [string, Dims]> = [
  ['self_attn.q_proj', (c: NativeModelConfig) => [c.numHeads * c.headDim, c.hiddenSize]],
  ['self_attn.k_proj', (c: NativeModelConfig) => [c.numKvHeads * c.headDim, c.hiddenSize]],
  ['self_attn.v_proj', (c: NativeModelConfig) => [c.numKvHeads * c.headDim, c.hiddenSize]],
  ['self_attn.o_proj', (c: NativeModelConfig) => [c.hiddenSize, c.numHeads * c.headDim]],
  ['mlp.gate_proj', (c: NativeModelConfig) => [c.intermediateSize, c.hiddenSize]],
  ['mlp.up_proj', (c: NativeModelConfig) => [c.intermediateSize, c.hiddenSize]],
  ['mlp.down_proj', (c: NativeModelConfig) => [c.hiddenSize, c.intermediateSize]],
];

let state = 0x9e3779b9;
function fillRandomWords(words: Uint32Array): void {
  // xorshift32: fast and good enough for benchmark weights.
  let s = state;
  for (let i = 0; i < words.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    words[i] = s >>> 0;
  }
  state = s;
}

async function setLinear(model: NativeModel, name: string, rows: number, cols: number, o: RandomModelOptions, seed: number): Promise<void> {
  const std = 1 / Math.sqrt(cols);
  if (!o.packedDirectly) {
    const w = await randomNormal([rows, cols], { seed, scale: std });
    await model.setWeight(name, w);
    w.dispose();
    return;
  }
  const words = new Uint32Array((rows * cols * o.bits) / 32);
  fillRandomWords(words);
  const groups = cols / o.groupSize;
  // Codes uniform in [0, 2^bits): scale and bias map them onto about ±2σ.
  const levels = 2 ** o.bits - 1;
  const scales = new Float32Array(rows * groups).fill((4 * std) / levels);
  const biases = new Float32Array(rows * groups).fill(-2 * std);
  const wq = await tensor(words, [rows, (cols * o.bits) / 32]);
  const s = await tensor(scales, [rows, groups]);
  const b = await tensor(biases, [rows, groups]);
  await model.setQuantizedWeight(name, wq, s, b, o.bits, o.groupSize);
  wq.dispose();
  s.dispose();
  b.dispose();
}

export async function randomModel(config: NativeModelConfig, o: RandomModelOptions): Promise<NativeModel> {
  const model = await native().createModel(
    config,
    { quantBits: o.bits, quantGroupSize: o.groupSize, computeDtype: 'float32', kernel: o.kernel, ...o.build },
    nativeLoraOptions(o.lora, config.numLayers),
  );
  let seed = 1;
  const ones = await tensor(new Float32Array(config.hiddenSize).fill(1));
  const embed = await randomNormal([config.vocabSize, config.hiddenSize], { seed: seed++, scale: 0.02 });
  await model.setWeight('model.embed_tokens.weight', embed);
  embed.dispose();
  await model.setWeight('model.norm.weight', ones);
  for (let l = 0; l < config.numLayers; l++) {
    await model.setWeight(`model.layers.${l}.input_layernorm.weight`, ones);
    await model.setWeight(`model.layers.${l}.post_attention_layernorm.weight`, ones);
    for (const [path, dims] of projections) {
      const [rows, cols] = dims(config);
      await setLinear(model, `model.layers.${l}.${path}.weight`, rows, cols, o, seed++);
    }
  }
  if (!config.tieWordEmbeddings) await setLinear(model, 'lm_head.weight', config.vocabSize, config.hiddenSize, o, seed++);
  ones.dispose();
  await model.finalize();
  return model;
}

export function randomBatch(batch: number, length: number, vocab: number, seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % vocab;
  };
  const n = batch * length;
  const tokens = Int32Array.from({ length: n }, next);
  const targets = Int32Array.from({ length: n }, next);
  return { shape: [batch, length] as [number, number], tokens, targets, mask: new Float32Array(n).fill(1) };
}

/** Matmul FLOPs of one training step (forward + input gradients; frozen weights get none). */
export function loraStepFlops(c: NativeModelConfig, batch: number, length: number, rank: number, adaptedPerLayer: number): number {
  const t = batch * length;
  const perLayer = projections.reduce((s, [, dims]) => {
    const [rows, cols] = dims(c);
    return s + rows * cols;
  }, 0);
  const linearParams = perLayer * c.numLayers + c.vocabSize * c.hiddenSize;
  const attention = 2 * 2 * batch * length * length * c.numHeads * c.headDim * c.numLayers;
  const forward = 2 * t * linearParams + attention;
  // LoRA branch: x·A and ·B forward, and their backward (inputs and parameters): ~3× forward.
  const lora = 3 * 2 * t * rank * (c.hiddenSize * 2) * adaptedPerLayer * c.numLayers;
  return 2 * forward + lora;
}

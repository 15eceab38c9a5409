/**
 * Issue 3's benchmarks. (1) One linear layer of the reference model by the three kernels. (2) A
 * training step (forward + backward) of the ~60M Mistral-shaped reference model, 4-bit base,
 * LoRA r16 on every linear, batch 4 × 512: tokens/s, peak memory, and model FLOP utilisation
 * against the float32 matmul rate measured here. (3) Mistral-7B at full size, random 4-bit
 * weights written as packed codes, one QLoRA step at 1 × 256 with checkpointing (skip with
 * MLXQ_BENCH_7B=0).
 */
import { device, memory, resetPeakMemory, clearCache } from '../lib/device.js';
import type { NativeModelConfig } from '../lib/native.js';
import { dequantize, matmul, quantize, quantizedMatmul, randomNormal } from '../lib/tensor.js';
import { loraStepFlops, randomBatch, randomModel, reference } from './random-model.js';
import type { BenchRow, BenchTable } from './table.js';

const GB = 1e9;

async function timeIt(runs: number, fn: () => Promise<void>): Promise<number> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    times.push(performance.now() - start);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)]! / 1000;
}

async function kernelRows(): Promise<{ rows: BenchRow[]; matmulRate: number }> {
  const [m, k, n] = [2048, 512, 1536];
  const x = await randomNormal([m, k], { seed: 1 });
  const wt = await randomNormal([k, n], { seed: 3 });
  // Quantized along n here, so that both 4-bit paths multiply x by a [k, n] matrix.
  const q = await quantize(wt, { bits: 4, groupSize: 64 });
  const flops = 2 * m * k * n;
  const f32 = await timeIt(5, async () => (await matmul(x, wt)).dispose());
  const deq = await timeIt(5, async () => {
    const d = await dequantize(q, { bits: 4, groupSize: 64 });
    (await matmul(x, d)).dispose();
    d.dispose();
  });
  const qmm = await timeIt(1, async () => (await quantizedMatmul(x, q, { bits: 4, groupSize: 64, transpose: false })).dispose());
  const rows: BenchRow[] = [
    { name: 'f32 matmul 2048×512 · 512×1536', value: f32 * 1e3, unit: 'ms' },
    { name: 'f32 matmul rate (the MFU yardstick)', value: flops / f32 / GB, unit: 'GFLOP/s' },
    { name: '4-bit: dequantize, then matmul', value: deq * 1e3, unit: 'ms' },
    { name: '4-bit: quantized_matmul', value: qmm * 1e3, unit: 'ms' },
  ];
  for (const t of [x, wt, q.wq, q.scales, q.biases]) t.dispose();
  return { rows, matmulRate: flops / f32 };
}


const mistral7b: NativeModelConfig = {
  ...reference,
  vocabSize: 32000,
  hiddenSize: 4096,
  intermediateSize: 14336,
  numLayers: 32,
  numHeads: 32,
  numKvHeads: 8,
  headDim: 128,
};

export default async function bench(): Promise<BenchTable> {
  const dev = await device();
  const kernel = dev.type === 'gpu' ? 'quantized-matmul' : 'dequantize-matmul';
  const { rows, matmulRate } = await kernelRows();
  const notes = [`device: ${dev.type} (${dev.name}); kernel chosen for this backend: ${kernel}`];

  for (const checkpoint of [false, true]) {
    const model = await randomModel(reference, {
      bits: 4,
      groupSize: 64,
      kernel,
      lora: { rank: 16, alpha: 32, targets: 'all-linear' },
      packedDirectly: false,
    });
    const batch = randomBatch(4, 512, reference.vocabSize, 7);
    await clearCache();
    await resetPeakMemory();
    const step = await timeIt(3, async () => {
      const r = await model.lossAndGrads(batch, { checkpoint });
      for (const g of Object.values(r.grads)) g.dispose();
    });
    const peak = (await memory()).peak;
    const flops = loraStepFlops(reference, 4, 512, 16, 7);
    const label = checkpoint ? ', checkpointed' : '';
    rows.push({ name: `60M step 4×512${label}`, value: step, unit: 's/step' });
    rows.push({
      name: `60M tokens/s${label}`,
      value: 2048 / step,
      unit: 'tok/s',
      baseline: 18,
      baselineLabel: "mlx-lm's trainer, same MLX CPU build",
    });
    rows.push({ name: `60M peak MLX memory${label}`, value: peak / 2 ** 20, unit: 'MiB' });
    rows.push({
      name: `60M model FLOP utilisation${label}`,
      value: flops / step / matmulRate,
      unit: 'of f32 matmul',
      goal: { op: '>=', target: 0.4 },
    });
    model.dispose();
  }
  notes.push('Step FLOPs: 2×(forward matmuls + attention) for the frozen base (forward and input gradients) plus the LoRA branches; recomputation under checkpointing is not counted.');

  if (process.env.MLXQ_BENCH_7B !== '0') {
    const built = performance.now();
    const model = await randomModel(mistral7b, {
      bits: 4,
      groupSize: 64,
      kernel,
      lora: { rank: 64, alpha: 128, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] },
      packedDirectly: true,
    });
    const buildSeconds = (performance.now() - built) / 1000;
    const info = await model.info();
    const batch = randomBatch(1, 256, mistral7b.vocabSize, 11);
    await clearCache();
    await resetPeakMemory();
    const start = performance.now();
    const r = await model.lossAndGrads(batch, { checkpoint: true });
    const seconds = (performance.now() - start) / 1000;
    for (const g of Object.values(r.grads)) g.dispose();
    const peak = (await memory()).peak;
    rows.push({ name: 'Mistral-7B base held (4-bit g64 + f32 embedding)', value: info.baseBytes / GB, unit: 'GB' });
    rows.push({ name: 'Mistral-7B QLoRA step 1×256, checkpointed', value: seconds, unit: 's/step' });
    rows.push({ name: 'Mistral-7B peak MLX memory', value: peak / GB, unit: 'GB', goal: { op: '<=', target: 8 } });
    rows.push({ name: 'Mistral-7B process max RSS', value: (process.resourceUsage().maxRSS * 1024) / GB, unit: 'GB' });
    notes.push(`Mistral-7B: LoRA r64 on q/k/v/o (${(info.loraParameters / 1e6).toFixed(1)}M parameters); building the random model took ${buildSeconds.toFixed(0)} s.`);
    model.dispose();
  }
  return { title: 'Model: kernels, training step, Mistral-7B', rows, notes };
}

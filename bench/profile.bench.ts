/**
 * `npm run bench -- profile [--small] [--json path]`: one training step of the 60M reference model
 * (hidden 512, 8 layers, vocab 32000, 4-bit g64 base, LoRA r16 on every linear, 4 × 512 packed)
 * broken down by phase, with the chunked LM-head loss and with whole logits, measured in one run;
 * MFU against the float32 matmul rate measured in this process; and the chunked loss checked
 * against the whole-logits one on this model. `--small` (or MLXQ_PROFILE_SMALL=1): a 2-layer model
 * at 2 × 128 for quick runs.
 */
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { device, memory, resetPeakMemory } from '../lib/device.js';
import type { NativeBatch, NativeModelConfig } from '../lib/native.js';
import { matmul, randomNormal, toTypedArray } from '../lib/tensor.js';
import { loraStepFlops, randomModel, reference } from './random-model.js';
import { packedBatch, profiling, randomAdapters, unfused, type ProfilingModel, type StepProfile } from './step-profile.js';
import type { BenchRow, BenchTable } from './table.js';

const MiB = 2 ** 20;
const RANK = 16;
const ADAPTED_PER_LAYER = 7;

const small: NativeModelConfig = { ...reference, numLayers: 2 };

const ISOLATION =
  'Phases isolated by a native probe: value_and_grad runs the forward pass once, and the probe mlx_evals each ' +
  "phase's outputs as soon as the graph has them (inputs already evaluated), timing each eval; graph building " +
  'between evals is "host: graph building"; "backward" is the eval of the gradients after value_and_grad returns ' +
  '(its graph building included in the host row). MLX fuses nothing across these cuts on the CPU backend without ' +
  'mlx_compile, so the pieces add up to about the whole step, which is also run unpieced (time and peak) right after.';

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function matmulRate(): Promise<number> {
  const [m, k, n] = [2048, 512, 1536];
  const x = await randomNormal([m, k], { seed: 1 });
  const w = await randomNormal([k, n], { seed: 3 });
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    const start = performance.now();
    (await matmul(x, w)).dispose();
    if (i > 0) times.push(performance.now() - start);
  }
  x.dispose();
  w.dispose();
  const median = times.sort((a, b) => a - b)[Math.floor(times.length / 2)]! / 1000;
  return (2 * m * k * n) / median;
}

interface LoopCosts {
  accumulateSeconds: number;
  optimizerSeconds: number;
  optimizerPeakRiseBytes: number;
}

/** accumulateGradients + applyOptimizer as the trainer calls them, timed from JavaScript. */
async function loopStep(model: ProfilingModel, batch: NativeBatch): Promise<LoopCosts> {
  const t0 = performance.now();
  await model.accumulateGradients(batch);
  const t1 = performance.now();
  const held = (await memory()).active;
  await resetPeakMemory();
  const t2 = performance.now();
  await model.applyOptimizer({ learningRate: 1e-4, maxGradNorm: 1 });
  const t3 = performance.now();
  const peak = (await memory()).peak;
  return { accumulateSeconds: (t1 - t0) / 1000, optimizerSeconds: (t3 - t2) / 1000, optimizerPeakRiseBytes: Math.max(0, peak - held) };
}

/** Fastest of two accumulateGradients calls per loss mode, alternating: the machine's load varies. */
async function stepWalls(model: ProfilingModel, batch: NativeBatch): Promise<{ chunked: number; whole: number }> {
  const best = { chunked: Infinity, whole: Infinity };
  for (let i = 0; i < 2; i++) {
    for (const mode of ['chunked', 'whole'] as const) {
      await model.setLossChunkTokens(mode === 'chunked' ? -1 : 0);
      const start = performance.now();
      await model.accumulateGradients(batch);
      best[mode] = Math.min(best[mode], (performance.now() - start) / 1000);
      await model.clearGradients();
    }
  }
  return best;
}

interface FusionWalls {
  plain: number;
  fused: number;
  /** The process's CPU seconds (user + system, every thread) of the same calls, fewest of three. */
  plainCpu: number;
  fusedCpu: number;
}

/**
 * Fastest of three accumulateGradients calls of each model, alternating, chunked loss: plain /
 * fused; with the CPU time they took, which other processes' load inflates less than wall time.
 */
async function fusionWalls(plain: ProfilingModel, fused: ProfilingModel, batch: NativeBatch): Promise<FusionWalls> {
  const best = { plain: Infinity, fused: Infinity, plainCpu: Infinity, fusedCpu: Infinity };
  for (let i = 0; i < 3; i++) {
    for (const [key, model] of [['plain', plain], ['fused', fused]] as const) {
      const start = performance.now();
      const cpu = process.cpuUsage();
      await model.accumulateGradients(batch);
      const used = process.cpuUsage(cpu);
      best[key] = Math.min(best[key], (performance.now() - start) / 1000);
      best[`${key}Cpu`] = Math.min(best[`${key}Cpu`], (used.user + used.system) / 1e6);
      await model.clearGradients();
    }
  }
  return best;
}

/** Relative differences of the fused step's loss and LoRA gradients from the plain step's (same weights and adapters). */
async function fusedVersusPlain(plain: ProfilingModel, fused: ProfilingModel, batch: NativeBatch): Promise<{ loss: number; grads: number }> {
  await randomAdapters(plain, 5);
  await randomAdapters(fused, 5);
  const a = await gradsOf(plain, batch, -1);
  const b = await gradsOf(fused, batch, -1);
  return { loss: Math.abs(b.loss - a.loss) / Math.abs(a.loss), grads: worstRelative(a.grads, b.grads) };
}

function worstRelative(reference: Map<string, Float32Array>, other: Map<string, Float32Array>): number {
  let worst = 0;
  for (const [name, g] of reference) {
    const c = other.get(name)!;
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < g.length; i++) {
      scale = Math.max(scale, Math.abs(g[i]!));
      diff = Math.max(diff, Math.abs(g[i]! - c[i]!));
    }
    worst = Math.max(worst, diff / scale);
  }
  return worst;
}

async function gradsOf(model: ProfilingModel, batch: NativeBatch, chunk: number): Promise<{ loss: number; grads: Map<string, Float32Array> }> {
  await model.setLossChunkTokens(chunk);
  const r = await model.lossAndGrads(batch);
  const grads = new Map<string, Float32Array>();
  for (const [name, g] of Object.entries(r.grads)) {
    grads.set(name, (await toTypedArray(g)) as Float32Array);
    g.dispose();
  }
  return { loss: r.loss, grads };
}

/** Relative differences of the chunked loss's loss and LoRA gradients from the whole-logits ones. */
async function chunkedVersusWhole(model: ProfilingModel, batch: NativeBatch): Promise<{ loss: number; grads: number }> {
  await randomAdapters(model, 5);
  const whole = await gradsOf(model, batch, 0);
  const chunked = await gradsOf(model, batch, -1);
  return { loss: Math.abs(chunked.loss - whole.loss) / Math.abs(whole.loss), grads: worstRelative(whole.grads, chunked.grads) };
}

function phaseRows(p: StepProfile, label: string): BenchRow[] {
  const total = p.phases.reduce((s, x) => s + x.seconds, 0);
  return p.phases.map((x) => ({
    name: `${label} ${x.name} (${x.calls ? `${x.calls}×, ` : ''}${((100 * x.seconds) / total).toFixed(1)}%)`,
    value: x.seconds * 1000,
    unit: `ms · kept ${(x.retainedBytes / MiB).toFixed(1)} MiB · transient ${(x.transientBytes / MiB).toFixed(1)} MiB`,
  }));
}

interface Measured {
  profiles: Record<'chunked' | 'whole' | 'plain', StepProfile>;
  stepWall: { chunked: number; whole: number };
  fusion: FusionWalls;
  loop: LoopCosts;
  host: number;
  equal: { loss: number; grads: number };
  fusedEqual: { loss: number; grads: number };
}

/** Everything one run measures: the fused (default) model throughout, the plain one for its profile, walls and gradients. */
async function measure(model: ProfilingModel, plain: ProfilingModel, batch: NativeBatch): Promise<Measured> {
  // Warm-up: MLX's first allocations and caches, and the compiled kernels' first build.
  for (const m of [model, plain]) for (const g of Object.values((await m.lossAndGrads(batch)).grads)) g.dispose();
  const profiles: Record<'chunked' | 'whole' | 'plain', StepProfile> = {
    chunked: (await model.setLossChunkTokens(-1), await model.profileStep(batch)),
    whole: (await model.setLossChunkTokens(0), await model.profileStep(batch)),
    plain: await plain.profileStep(batch),
  };
  const stepWall = await stepWalls(model, batch);
  await model.setLossChunkTokens(-1);
  const fusion = await fusionWalls(plain, model, batch);
  const loop = await loopStep(model, batch);
  const host = Math.max(0, loop.accumulateSeconds - profiles.chunked.wholeStepSeconds);
  const equal = await chunkedVersusWhole(model, batch);
  const fusedEqual = await fusedVersusPlain(plain, model, batch);
  return { profiles, stepWall, fusion, loop, host, equal, fusedEqual };
}

function benchRows(r: Measured, rate: number, flops: number): BenchRow[] {
  const { profiles, stepWall, fusion, loop, host, equal, fusedEqual } = r;
  const mfuOf = (seconds: number) => flops / (seconds + loop.optimizerSeconds) / rate;
  return [
    ...phaseRows(profiles.chunked, '[chunked]'),
    { name: '[chunked] optimizer: AdamW + clipping (applyOptimizer)', value: loop.optimizerSeconds * 1000, unit: `ms · transient ${(loop.optimizerPeakRiseBytes / MiB).toFixed(1)} MiB` },
    { name: '[chunked] host side: accumulateGradients wall − native step', value: host * 1000, unit: 'ms' },
    ...phaseRows(profiles.whole, '[whole logits]'),
    ...phaseRows(profiles.plain, '[unfused, chunked]'),
    { name: 'step, unpieced, chunked loss (native)', value: profiles.chunked.wholeStepSeconds, unit: 's' },
    { name: 'step, unpieced, whole logits (native)', value: profiles.whole.wholeStepSeconds, unit: 's' },
    { name: 'step, unpieced, unfused, chunked loss (native)', value: profiles.plain.wholeStepSeconds, unit: 's' },
    { name: 'training step (accumulate + optimizer, JS wall)', value: loop.accumulateSeconds + loop.optimizerSeconds, unit: 's' },
    { name: 'accumulateGradients wall, chunked loss (best of 2)', value: stepWall.chunked, unit: 's' },
    { name: 'accumulateGradients wall, whole logits (best of 2)', value: stepWall.whole, unit: 's', baseline: stepWall.chunked, baselineLabel: 'chunked' },
    { name: 'accumulateGradients wall, unfused (best of 3)', value: fusion.plain, unit: 's' },
    { name: 'accumulateGradients wall, fused (best of 3)', value: fusion.fused, unit: 's', baseline: fusion.plain, baselineLabel: 'unfused' },
    { name: 'accumulateGradients CPU time, unfused (least of 3)', value: fusion.plainCpu, unit: 'CPU s' },
    { name: 'accumulateGradients CPU time, fused (least of 3)', value: fusion.fusedCpu, unit: 'CPU s', baseline: fusion.plainCpu, baselineLabel: 'unfused' },
    { name: 'f32 matmul rate (2048×512 · 512×1536)', value: rate / 1e9, unit: 'GFLOP/s' },
    { name: 'MFU, unfused (best wall + optimizer)', value: mfuOf(fusion.plain), unit: 'of f32 matmul' },
    { name: 'MFU, fused (best wall + optimizer)', value: mfuOf(fusion.fused), unit: 'of f32 matmul', baseline: 0.169, baselineLabel: 'issue', goal: { op: '>=', target: 0.4 / 0.169 } },
    { name: 'model FLOP utilisation (training step, one JS-timed step)', value: mfuOf(loop.accumulateSeconds), unit: 'of f32 matmul' },
    { name: 'peak MLX memory, chunked loss', value: profiles.chunked.wholeStepPeakBytes / MiB, unit: 'MiB' },
    { name: 'peak MLX memory, whole logits', value: profiles.whole.wholeStepPeakBytes / MiB, unit: 'MiB' },
    { name: 'peak MLX memory, unfused, chunked loss', value: profiles.plain.wholeStepPeakBytes / MiB, unit: 'MiB' },
    { name: 'peak memory ratio chunked / whole', value: profiles.chunked.wholeStepPeakBytes / profiles.whole.wholeStepPeakBytes, unit: 'ratio' },
    { name: 'chunked vs whole: loss, relative', value: equal.loss, unit: 'rel', goal: { op: '<=', target: 1e-5 } },
    { name: 'chunked vs whole: LoRA gradients, max relative', value: equal.grads, unit: 'rel', goal: { op: '<=', target: 1e-5 } },
    { name: 'fused vs unfused: loss, relative', value: fusedEqual.loss, unit: 'rel', goal: { op: '<=', target: 1e-5 } },
    { name: 'fused vs unfused: LoRA gradients, max relative', value: fusedEqual.grads, unit: 'rel', goal: { op: '<=', target: 1e-5 } },
  ];
}

export default async function bench(): Promise<BenchTable> {
  const quick = process.argv.includes('--small') || process.env.MLXQ_PROFILE_SMALL === '1';
  const config = quick ? small : reference;
  const [b, l] = quick ? [2, 128] : [4, 512];
  const dev = await device();
  const kernel = dev.type === 'gpu' ? 'quantized-matmul' : 'dequantize-matmul';
  const rate = await matmulRate();
  const options = { bits: 4, groupSize: 64, kernel, lora: { rank: RANK, alpha: 32, targets: 'all-linear' }, packedDirectly: false } as const;
  const model = profiling(await randomModel(config, options));
  const plain = profiling(await randomModel(config, { ...options, build: unfused }));
  try {
    const batch = packedBatch(b, l, config.vocabSize, 7);
    const measured = await measure(model, plain, batch);
    const flops = loraStepFlops(config, b, l, RANK, ADAPTED_PER_LAYER);
    const mfu = flops / (measured.fusion.fused + measured.loop.optimizerSeconds) / rate;
    const out = option('--json') ?? process.env.MLXQ_PROFILE_JSON ?? join(tmpdir(), 'mlx-qlora-profile.json');
    const report = { config, batch: [b, l], rank: RANK, kernel, device: dev, isolation: ISOLATION, matmulRate: rate, flops, mfu, unfused, ...measured };
    await writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
    const tokens = b * l;
    return {
      title: `Profile: one training step, ${quick ? 'small (2 layers, 2 × 128)' : 'reference 60M (4 × 512 packed)'}, 4-bit g64, LoRA r${RANK} all-linear, ${kernel}`,
      rows: benchRows(measured, rate, flops),
      notes: [
        ISOLATION,
        `Loss chunk: automatic (2^21 float32 logits a chunk, ${Math.floor(2 ** 21 / config.vocabSize)} tokens here); whole logits are ${((tokens * config.vocabSize * 4) / MiB).toFixed(0)} MiB in float32, and so is their gradient.`,
        `Fused (the default build): q/k/v and gate/up as one matmul each, LoRA A's of a group in one matmul and added by addmm, SwiGLU's hand-written gradient (custom VJP) and the loss's one-exp softmax gradient (mlx_compile'd closures, which MLX runs as plain ops inside value_and_grad), causal attention in query blocks (attentionQueryBlock 0: 128 rows on the CPU). Unfused: ${JSON.stringify(unfused)}, the same weights' per-op step, measured alternately in this run.`,
        `MFU: ${(flops / 1e9).toFixed(1)} GFLOP per step (bench/random-model.ts loraStepFlops) / (best accumulateGradients wall + optimizer) / the f32 matmul rate; the issue's goal is 0.40 (ratio ${(0.4 / 0.169).toFixed(2)} of its 0.169).`,
        "CPU time: the whole process's, so it includes OpenBLAS's worker threads, which spin while waiting for work; with OPENBLAS_NUM_THREADS=1 it is the step's work alone, and least disturbed by other processes' load.",
        'Host side: wall time of accumulateGradients from JavaScript minus the native unpieced step (batch copy, queueing, settling); both single runs, so on a loaded machine this is noise (clamped at 0).',
        "Inside value_and_grad an evaluated array keeps its inputs, so the pieced run's kept/transient bytes overstate what the unpieced step holds (the chunked loss's chunks most of all); the unpieced peaks are the memory figures.",
        `JSON written to ${out}`,
      ],
    };
  } finally {
    model.dispose();
    plain.dispose();
  }
}

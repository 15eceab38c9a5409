/**
 * Generation speed of the evaluation path: greedy tokens/s of the reference model (hidden 512,
 * 8 layers, vocab 32000) from one F32 GGUF, by our generator (one prompt at a time) and by
 * llama.cpp (node-llama-cpp's prebuilt CPU binary) in the same process at the same thread count.
 * Options: --prompts N (default 2), --new-tokens N (default 48), --prompt-tokens N (default 32),
 * --threads N (llama.cpp's threads; default the machine's cores, which MLX's CPU backend also uses).
 */
import { availableParallelism } from 'node:os';
import { generate } from '../lib/model/generate.js';
import { loadModel, type LoadedModel } from '../lib/model/load-model.js';
import { openLlamaCppOracle } from '../test/fixtures/llama-cpp-oracle.js';
import { makeTinyModel } from '../test/fixtures/tiny-model.js';
import type { BenchRow, BenchTable } from './table.js';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`);
  return value;
}

function prompts(count: number, length: number, vocab: number): number[][] {
  return Array.from({ length: count }, (_, p) => [1, ...Array.from({ length: length - 1 }, (_, i) => 3 + ((p * 7919 + i * 104729) % (vocab - 3)))]);
}

/** Seconds for `run` over every prompt, after one untimed warm-up on the first. */
async function timed(all: number[][], run: (prompt: number[]) => Promise<number[]>): Promise<{ seconds: number; outputs: number[][] }> {
  await run(all[0]!);
  const start = performance.now();
  const outputs: number[][] = [];
  for (const p of all) outputs.push(await run(p));
  return { seconds: (performance.now() - start) / 1000, outputs };
}

async function ours(model: LoadedModel, all: number[][], newTokens: number) {
  return timed(all, async (p) => (await generate(model.native, p, { maxTokens: newTokens, lora: false })).tokens);
}

export default async function bench(): Promise<BenchTable> {
  const count = option('prompts', 2);
  const newTokens = option('new-tokens', 48);
  const promptTokens = option('prompt-tokens', 32);
  const threads = option('threads', availableParallelism());
  const tiny = await makeTinyModel({ layers: 8, hidden: 512, heads: 8, kvHeads: 2, intermediate: 1536, vocab: 32000, seed: 11, ggufType: 'F32', contextLength: 1024 });
  try {
    const all = prompts(count, promptTokens, 32000);
    const total = count * newTokens;
    const dense = await loadModel(tiny.ggufPath, { quantization: 'none' });
    const mlxDense = await ours(dense, all, newTokens).finally(() => dense.dispose());
    const q4 = await loadModel(tiny.ggufPath, { quantization: { bits: 4, groupSize: 64 } });
    const mlxQ4 = await ours(q4, all, newTokens).finally(() => q4.dispose());
    const oracle = await openLlamaCppOracle(tiny.ggufPath, { contextSize: promptTokens + newTokens + 8, threads });
    const cpp = await timed(all, (p) => oracle.greedy(p, newTokens)).finally(() => oracle.dispose());
    const cppRate = cpp.outputs.reduce((n, o) => n + o.length, 0) / cpp.seconds;
    const agree = mlxDense.outputs.filter((o, i) => o.join() === cpp.outputs[i]!.join()).length;
    const rows: BenchRow[] = [
      { name: 'llama.cpp, F32 GGUF, one prompt at a time', value: cppRate, unit: 'tokens/s' },
      { name: 'mlx-qlora, F32 (dense), one prompt at a time', value: total / mlxDense.seconds, unit: 'tokens/s', baseline: cppRate, baselineLabel: 'llama.cpp', goal: { op: '>=', target: 1 } },
      { name: 'mlx-qlora, 4-bit base, one prompt at a time', value: total / mlxQ4.seconds, unit: 'tokens/s', baseline: cppRate, baselineLabel: 'llama.cpp' },
    ];
    return {
      title: 'eval: greedy generation speed, reference model (hidden 512, 8 layers, vocab 32000)',
      rows,
      notes: [
        `${count} prompts of ${promptTokens} tokens, ${newTokens} new tokens each, prompts' prefill included; llama.cpp on ${threads} threads (F32 KV cache), MLX on its CPU backend.`,
        `Greedy continuations equal to llama.cpp's: ${agree} of ${count} prompts.`,
        'Batched generation (several prompts in one cache) is not built: prompts run one at a time.',
        "llama.cpp's worker threads spin while waiting: on a machine whose cores are busy with other work its rate with 2 threads drops far below its rate with 1 (compare --threads 1).",
      ],
    };
  } finally {
    await tiny.cleanup();
  }
}

/**
 * `npm run bench -- export [--layers N] [--threads N] [--gen-threads N]`: a Mistral-7B-shaped model of random
 * weights, written as the Q4_0 GGUF Ollama ships, exported to F16, Q8_0 and Q4_K_M. Each export
 * runs in a child process (wall time and peak RSS of that process alone), next to llama.cpp's
 * llama_model_quantize of our F16 file to the same type in the same run at the same thread count,
 * and a plain copy of the output. Then llama.cpp's generation speed with the base alone, the base
 * plus our adapter GGUF, and our fused Q4_K_M; and each block encoder alone on one thread against
 * ggml_quantize_chunk. `--layers` cuts the decoder blocks for a quick run
 * (the largest tensors, embedding and output, keep their full size).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { getLlama, LlamaLogLevel, type Llama } from 'node-llama-cpp';
import type { ExportOptionsInput } from '../lib/export/export-options.js';
import { LLAMA_FTYPES, llamaQuantizeOracle } from '../test/fixtures/llama-quantize-oracle.js';
import { encoderRows } from './export-encoders.js';
import { largestTensorElements, MISTRAL_7B, writeRandomAdapter, writeSourceGguf, type SourceShape } from './export-source.js';
import type { BenchRow, BenchTable } from './table.js';

const run = promisify(execFile);
const GB = 1e9;
const CHILD = join(import.meta.dirname, 'export-child.ts');
const TYPES = ['f16', 'q8_0', 'q4_k_m'] as const;

function flag(name: string): number | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i === -1) return undefined;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: expected a positive integer, got ${process.argv[i + 1]}`);
  return n;
}

interface Measured {
  seconds: number;
  maxRssBytes: number;
}

/** exportModel() in a child process; its own wall time (module loading excluded) and peak RSS. */
async function exportInChild(options: ExportOptionsInput): Promise<Measured & { bytes: number; commitSeconds: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`export ${JSON.stringify(options)} failed (exit ${code}): ${stderr.slice(-2000)}`);
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as Measured & { bytes: number; commitSeconds: number };
}

/** A command under /usr/bin/time: wall seconds and the peak RSS of the process. */
async function timed(command: string, args: string[]): Promise<Measured> {
  const { stderr } = await run('/usr/bin/time', ['-f', 'TIME %e %M', command, ...args], { maxBuffer: 64 << 20 });
  const m = /TIME ([\d.]+) (\d+)\s*$/.exec(stderr);
  if (!m) throw new Error(`${command}: no /usr/bin/time line in ${stderr.slice(-500)}`);
  return { seconds: Number(m[1]), maxRssBytes: Number(m[2]) * 1024 };
}

/** The compiled llama_model_quantize helper the byte-identity tests use (built on first use). */
async function quantizeBinary(): Promise<string> {
  if (!(await llamaQuantizeOracle())) throw new Error('no C compiler: the llama.cpp quantize helper cannot be built');
  const dirs = (await readdir(tmpdir())).filter((d) => d.startsWith('mlx-qlora-quantize-oracle-'));
  const withTimes = await Promise.all(dirs.map(async (d) => ({ path: join(tmpdir(), d, 'oracle'), mtime: (await stat(join(tmpdir(), d, 'oracle')).catch(() => undefined))?.mtimeMs ?? -1 })));
  const newest = withTimes.filter((x) => x.mtime >= 0).sort((a, b) => b.mtime - a.mtime)[0];
  if (!newest) throw new Error(`no compiled quantize helper under ${tmpdir()}`);
  return newest.path;
}

async function tokensPerSecond(llama: Llama, modelPath: string, threads: number, lora?: string): Promise<number> {
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  try {
    const context = await model.createContext({ contextSize: 256, batchSize: 64, threads, ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}) });
    const sequence = context.getSequence();
    const generate = 32;
    let produced = 0;
    let start = 0;
    for await (const _token of sequence.evaluate(model.tokenize('the glaciers of greenland'), { temperature: 0 })) {
      // The clock starts at the first generated token: the prompt's evaluation is not generation.
      if (produced === 0) start = performance.now();
      if (++produced > generate) break;
    }
    const seconds = (performance.now() - start) / 1000;
    await context.dispose();
    return generate / seconds;
  } finally {
    await model.dispose();
  }
}

interface TypeResult {
  ours: Measured & { commitSeconds: number };
  llama: Measured;
  copy: Measured;
  bytes: number;
}

async function measureType(work: string, source: string, type: (typeof TYPES)[number], threads: number, binary: string): Promise<TypeResult> {
  const ours = join(work, `ours-${type}.gguf`);
  const theirs = join(work, `llama-${type}.gguf`);
  const copy = join(work, `copy-${type}.gguf`);
  const exported = await exportInChild({ model: source, gguf: type, out: ours, threads });
  // llama.cpp quantizes the same F16 file (ours, written first) to the same type.
  const llama = await timed(binary, ['file', join(work, 'ours-f16.gguf'), theirs, String(LLAMA_FTYPES[type]), String(threads)]);
  await rm(theirs, { force: true });
  const copied = await timed('cp', [ours, copy]);
  await rm(copy, { force: true });
  if (type !== 'f16') await rm(ours, { force: true });
  return { ours: exported, llama, copy: copied, bytes: exported.bytes };
}

function typeRows(type: string, r: TypeResult, rssGoal: number): BenchRow[] {
  const label = type.toUpperCase();
  return [
    { name: `export → ${label}: wall time`, value: r.ours.seconds, unit: 's', baseline: r.llama.seconds, baselineLabel: 'llama_model_quantize of our F16', goal: { op: '<=', target: 1 } },
    { name: `export → ${label}: of which after the last tensor (fsync, rename)`, value: r.ours.commitSeconds, unit: 's' },
    { name: `export → ${label}: peak RSS`, value: r.ours.maxRssBytes / GB, unit: 'GB', goal: { op: '<=', target: rssGoal / GB } },
    { name: `llama_model_quantize → ${label}: peak RSS`, value: r.llama.maxRssBytes / GB, unit: 'GB' },
    { name: `cp of the ${label} output (${(r.bytes / GB).toFixed(2)} GB)`, value: r.copy.seconds, unit: 's' },
  ];
}

/** The adapter GGUF and the fused Q4_K_M export, then llama.cpp's generation speed with each. */
async function adapterRows(work: string, source: string, shape: SourceShape, threads: number, genThreads: number, rssGoal: number, rows: BenchRow[]): Promise<void> {
  const adapterDir = join(work, 'adapter');
  await writeRandomAdapter(adapterDir, source, shape, 16);
  const adapterGguf = join(work, 'adapter.gguf');
  await exportInChild({ adapter: adapterDir, gguf: 'adapter', out: adapterGguf });
  const fused = join(work, 'fused-q4_k_m.gguf');
  const fusedRun = await exportInChild({ adapter: adapterDir, gguf: 'q4_k_m', out: fused, threads });
  rows.push({ name: 'export → fused Q4_K_M (adapter merged): wall time', value: fusedRun.seconds, unit: 's' });
  rows.push({ name: 'export → fused Q4_K_M: peak RSS', value: fusedRun.maxRssBytes / GB, unit: 'GB', goal: { op: '<=', target: rssGoal / GB } });
  const llama = await getLlama({ gpu: false, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error });
  const baseSpeed = await tokensPerSecond(llama, source, genThreads);
  rows.push({ name: 'llama.cpp generation: base Q4_0', value: baseSpeed, unit: 'tok/s' });
  rows.push({ name: 'llama.cpp generation: base Q4_0 + adapter GGUF (r16 q/k/v/o)', value: await tokensPerSecond(llama, source, genThreads, adapterGguf), unit: 'tok/s', baseline: baseSpeed, baselineLabel: 'base alone' });
  rows.push({ name: 'llama.cpp generation: fused Q4_K_M', value: await tokensPerSecond(llama, fused, genThreads), unit: 'tok/s', baseline: baseSpeed, baselineLabel: 'base alone' });
}

export default async function bench(): Promise<BenchTable> {
  const layers = flag('layers') ?? MISTRAL_7B.layers;
  const threads = flag('threads') ?? availableParallelism();
  // ggml's threads spin at their barriers: on cores other processes share, one thread generates
  // several times faster than two (17 against 4 tok/s measured here), so generation defaults to one.
  const genThreads = flag('gen-threads') ?? 1;
  const shape: SourceShape = { ...MISTRAL_7B, layers };
  const work = await mkdtemp(join(tmpdir(), 'mlxq-export-bench-'));
  try {
    const binary = await quantizeBinary();
    const source = join(work, 'base-q4_0.gguf');
    const built = performance.now();
    const sourceBytes = await writeSourceGguf(source, shape);
    const buildSeconds = (performance.now() - built) / 1000;
    const rssGoal = 3 * largestTensorElements(shape) * 4 + GB;
    const rows: BenchRow[] = [];
    const sizes: string[] = [];
    for (const type of TYPES) {
      const r = await measureType(work, source, type, threads, binary);
      rows.push(...typeRows(type, r, rssGoal));
      process.stderr.write(`export bench: ${type}: ours ${r.ours.seconds.toFixed(1)} s / ${(r.ours.maxRssBytes / GB).toFixed(2)} GB, llama_model_quantize ${r.llama.seconds.toFixed(1)} s, cp ${r.copy.seconds.toFixed(1)} s\n`);
      sizes.push(`${type} ${(r.bytes / GB).toFixed(2)} GB`);
    }
    await rm(join(work, 'ours-f16.gguf'), { force: true });
    rows.push(...(await encoderRows((await llamaQuantizeOracle())!)));
    const notes: string[] = [];
    // The adapter half reports what it measured even when a later step fails.
    await adapterRows(work, source, shape, threads, genThreads, rssGoal, rows).catch((error: Error) => notes.push(`adapter and generation rows stopped: ${error.message.split('\n')[0]}`));
    return {
      title: `Export: ${layers === MISTRAL_7B.layers ? 'Mistral-7B' : `Mistral-7B shape cut to ${layers} of 32 layers`}, random Q4_0 base → F16, Q8_0, Q4_K_M`,
      rows,
      notes: [
        ...notes,
        `layers used: ${layers} (--layers N; the full model has 32); threads: ${threads} for our encoders and llama_model_quantize`,
        `source: Q4_0 GGUF, output.weight Q6_K, ${(sourceBytes / GB).toFixed(2)} GB, written in ${buildSeconds.toFixed(0)} s; outputs: ${sizes.join(', ')}`,
        `peak RSS goal: 3 × the largest tensor in f32 (${((largestTensorElements(shape) * 4) / GB).toFixed(2)} GB) + 1 GB = ${(rssGoal / GB).toFixed(2)} GB; ours is the exporting process's own maxRSS (Node, MLX and the module graph included)`,
        'our wall time is exportModel() inside its process (Node start-up and module loading excluded); llama_model_quantize and cp are timed as whole processes by /usr/bin/time',
        'our export transcodes each stored tensor natively (its file bytes read a few rows at a time, decoded with ggml\'s to_float arithmetic, encoded in the same worker); only the adapter\'s delta is computed by MLX',
        'encoder rows: one thread on both sides, best of 5; ours reads the f32 rows from a cached file, ggml quantizes them from memory',
        `generation: 32 greedy tokens after a 6-token prompt, context 256, CPU, ${genThreads} thread(s) (--gen-threads N)`,
      ],
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * `npm run bench -- seven-b [--layers N] [--tokens 256,2048] [--dir path] [--whole]`: a QLoRA step of a
 * Mistral-7B-shaped model (hidden 4096, FFN 14336, 32 heads, 8 kv heads, vocab 32000) from a
 * random Q4_0 GGUF (output Q6_K, as Ollama ships dolphin-mistral:7b), LoRA r64 on q/k/v/o,
 * checkpointed, batch 1. Each token count runs in a child process (bench/seven-b-child.ts) so its
 * peak RSS is its own. With fewer than 32 layers the 32-layer peak is also extrapolated: the
 * measured peak plus, per missing layer, its base weights, LoRA parameters, gradients and AdamW
 * moments, and its checkpointed hidden state. `--whole` also runs each step with quantized weights
 * dequantized whole (MLXQ_DEQUANT_BLOCK_ELEMENTS beyond any weight: the code before block-by-block
 * dequantization), as the baseline of the ratios, in the same run.
 */
import { spawn } from 'node:child_process';
import { mkdir, rename, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MISTRAL_7B, writeSourceGguf } from './export-source.js';
import type { BenchRow, BenchTable } from './table.js';

const GB = 1e9;
const RANK = 64;
/** The issue's goals on the process's peak RSS. */
const GOAL_BYTES: Readonly<Record<number, number>> = { 256: 5.4 * GB, 2048: 6.5 * GB };

export interface SevenBResult {
  loadSeconds: number;
  loadPeakRss: number;
  stepPeakRss: number;
  mlxPeak: number;
  stepSeconds: number;
  userSeconds: number;
  systemSeconds: number;
  loss: number;
  baseBytes: number;
  loraBytes: number;
  linearStorage: Record<string, number>;
}

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** The random GGUF, written once per layer count and kept for later runs (~4 GB at 32 layers). */
async function sourceGguf(dir: string, layers: number): Promise<string> {
  const path = join(dir, `mistral-7b-shape-${layers}l-q4_0.gguf`);
  if (await stat(path).catch(() => undefined)) return path;
  await mkdir(dir, { recursive: true });
  await writeSourceGguf(`${path}.partial`, { ...MISTRAL_7B, layers });
  await rename(`${path}.partial`, path);
  return path;
}

/** Block size that leaves every weight whole. */
const WHOLE = '1000000000000';

async function runChild(gguf: string, tokens: number, whole: boolean): Promise<SevenBResult> {
  const env = whole ? { ...process.env, MLXQ_DEQUANT_BLOCK_ELEMENTS: WHOLE } : process.env;
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'seven-b-child.ts'), JSON.stringify({ gguf, tokens, rank: RANK })], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`7B step child (${tokens} tokens) exited with ${code}: ${stderr.slice(-2000)}`);
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as SevenBResult;
}

/**
 * Bytes one more decoder layer would hold through a step: its base weights (the base less the
 * Q4_0 embedding, 4.5 bits a weight, and the Q6_K head re-quantized to 6 bits at g32 with float32
 * scales, 8 bits a weight), LoRA parameters with their gradients and AdamW moments, and the hidden
 * state its checkpoint keeps.
 */
function perLayerBytes(r: SevenBResult, layers: number, tokens: number): number {
  const s = MISTRAL_7B;
  const outside = s.vocab * s.hidden * (4.5 / 8 + 1);
  const base = (r.baseBytes - outside) / layers;
  return base + (4 * r.loraBytes) / layers + tokens * s.hidden * 4;
}

/** Baseline fields of a row: the same measurement with whole dequantization, when it ran. */
function against(value: number | undefined, label = 'whole'): Pick<BenchRow, 'baseline' | 'baselineLabel'> {
  return value === undefined ? {} : { baseline: value, baselineLabel: label };
}

function rowsFor(tokens: number, r: SevenBResult, layers: number, w?: SevenBResult): BenchRow[] {
  const peakOf = (x: SevenBResult) => Math.max(x.loadPeakRss, x.stepPeakRss);
  const peak = peakOf(r);
  const goal = GOAL_BYTES[tokens];
  const t = `1 × ${tokens}`;
  const rows: BenchRow[] = [
    { name: `${t}: peak RSS, ${layers} layers (load and step)`, value: peak / GB, unit: 'GB', ...against(w && peakOf(w) / GB) },
    { name: `${t}: peak RSS during load`, value: r.loadPeakRss / GB, unit: 'GB', ...against(w && w.loadPeakRss / GB) },
    { name: `${t}: peak RSS during the step`, value: r.stepPeakRss / GB, unit: 'GB', ...against(w && w.stepPeakRss / GB) },
    { name: `${t}: MLX peak during the step`, value: r.mlxPeak / GB, unit: 'GB', ...against(w && w.mlxPeak / GB) },
    { name: `${t}: step time (fwd + bwd + AdamW)`, value: r.stepSeconds, unit: 's', ...against(w?.stepSeconds) },
    { name: `${t}: user CPU in the step`, value: r.userSeconds, unit: 's', ...against(w?.userSeconds) },
    { name: `${t}: system CPU in the step`, value: r.systemSeconds, unit: 's', ...against(w?.systemSeconds) },
    { name: `${t}: system share of the step's CPU`, value: r.systemSeconds / (r.userSeconds + r.systemSeconds), unit: '', ...against(w && w.systemSeconds / (w.userSeconds + w.systemSeconds)) },
    { name: `${t}: cores busy in the step (CPU / wall)`, value: (r.userSeconds + r.systemSeconds) / r.stepSeconds, unit: 'cores' },
    { name: `${t}: load time`, value: r.loadSeconds, unit: 's' },
  ];
  if (layers < MISTRAL_7B.layers) {
    const extra = (MISTRAL_7B.layers - layers) * perLayerBytes(r, layers, tokens);
    rows.push({ name: `${t}: peak RSS extrapolated to 32 layers`, value: (peak + extra) / GB, unit: 'GB', ...against(goal! / GB, 'goal'), goal: { op: '<=', target: 1 } });
  } else if (goal) {
    rows.push({ name: `${t}: peak RSS vs the goal`, value: peak / GB, unit: 'GB', ...against(goal / GB, 'goal'), goal: { op: '<=', target: 1 } });
  }
  return rows;
}

export async function sevenB(): Promise<BenchTable> {
  const layers = Number(option('--layers') ?? MISTRAL_7B.layers);
  const tokenCounts = (option('--tokens') ?? '256,2048').split(',').map(Number);
  const gguf = await sourceGguf(option('--dir') ?? join(tmpdir(), 'mlxq-seven-b'), layers);
  const rows: BenchRow[] = [];
  const notes: string[] = [];
  const whole = process.argv.includes('--whole');
  for (const tokens of tokenCounts) {
    const w = whole ? await runChild(gguf, tokens, true) : undefined;
    const r = await runChild(gguf, tokens, false);
    rows.push(...rowsFor(tokens, r, layers, w));
    notes.push(`1 × ${tokens}: base ${(r.baseBytes / GB).toFixed(3)} GB (${Object.entries(r.linearStorage).map(([k, v]) => `${v} × ${k}`).join(', ')}), LoRA ${(r.loraBytes / GB).toFixed(3)} GB, loss ${r.loss.toFixed(3)}`);
  }
  notes.push(`${layers} of 32 layers, LoRA r${RANK} on q/k/v/o, checkpointed, one step; CPU times from getrusage around the step (all threads).`);
  notes.push('The cores are shared with other work on this machine: times are noisy.');
  return { title: `7B QLoRA step from a Q4_0 GGUF (${layers} layers)`, rows, notes };
}

export default sevenB;

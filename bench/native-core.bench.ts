/**
 * Issue 2's benchmark: matmul through the addon (JS → MLX thread → Promise) against the same mlx-c
 * calls from a C++ program built here, and the per-call overhead of a tiny op.
 * Rounds alternate between the two so that drift on a shared machine hits both alike.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { add, matmul, randomNormal, tensor, type Tensor } from '../lib/index.js';
import type { BenchRow, BenchTable } from './table.js';

const here = dirname(fileURLToPath(import.meta.url));
const buildDir = join(here, '.build', 'cpp');
const addonBuildDir = join(here, '..', 'build');

/**
 * CMake arguments that give the baseline the MLX and mlx-c the addon was built with. When the
 * addon's build fetched them, its build tree holds their sources (and those of MLX's own
 * dependencies) as _deps/<name>-src: the baseline builds from those, offline. Otherwise the addon
 * linked an installed mlx-c, and so does the baseline. Every switch is passed each time, so a
 * cache left by the other mode does not carry over.
 */
export function baselineCmakeArgs(addonBuild: string): string[] {
  const deps = join(addonBuild, '_deps');
  const fetched = existsSync(join(deps, 'mlx-src')) && existsSync(join(deps, 'mlxc-src'));
  if (!fetched) return ['-DMLX_QLORA_NO_FETCH=ON', '-DMLX_QLORA_FORCE_FETCH=OFF'];
  const sources = readdirSync(deps)
    .filter((d) => d.endsWith('-src'))
    .map((d) => `-DFETCHCONTENT_SOURCE_DIR_${d.slice(0, -'-src'.length).toUpperCase().replace(/-/g, '_')}=${join(deps, d)}`);
  return ['-DMLX_QLORA_NO_FETCH=OFF', '-DMLX_QLORA_FORCE_FETCH=ON', ...sources];
}

function buildBaseline(): string {
  mkdirSync(buildDir, { recursive: true });
  const args = ['-S', join(here, 'cpp'), '-B', buildDir, '-DCMAKE_BUILD_TYPE=Release', ...baselineCmakeArgs(addonBuildDir)];
  execFileSync('cmake', args, { stdio: 'pipe' });
  execFileSync('cmake', ['--build', buildDir, '-j', '2'], { stdio: 'pipe' });
  const exe = join(buildDir, 'mlxc_ops_bench');
  if (!existsSync(exe)) throw new Error(`baseline did not build: ${exe}`);
  return exe;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function cppSecondsPerCall(exe: string, op: 'matmul' | 'add', n: number, calls: number): number {
  const out = execFileSync(exe, [op, String(n), String(calls), '1'], { encoding: 'utf8' });
  return Number(out.trim());
}

async function addonSecondsPerCall(op: (a: Tensor, b: Tensor) => Promise<Tensor>, a: Tensor, b: Tensor, calls: number): Promise<number> {
  // One untimed call first, as the C++ program warms up in each of its runs: after the other
  // side's round, BLAS threads have gone to sleep and caches hold the other process's data.
  (await op(a, b)).dispose();
  const start = performance.now();
  for (let i = 0; i < calls; i++) (await op(a, b)).dispose();
  return (performance.now() - start) / 1000 / calls;
}

export default async function bench(): Promise<BenchTable> {
  const exe = buildBaseline();
  const rows: BenchRow[] = [];
  const rounds = 9;
  for (const [n, calls] of [
    [1024, 40],
    [2048, 8],
  ] as const) {
    const a = await randomNormal([n, n], { seed: 1 });
    const b = await randomNormal([n, n], { seed: 2 });
    await addonSecondsPerCall(matmul, a, b, 2);
    const addon: number[] = [];
    const cpp: number[] = [];
    for (let r = 0; r < rounds; r++) {
      cpp.push(cppSecondsPerCall(exe, 'matmul', n, calls));
      addon.push(await addonSecondsPerCall(matmul, a, b, calls));
    }
    const flops = 2 * n ** 3;
    rows.push({
      name: `matmul ${n}² f32, addon`,
      value: median(addon) * 1e3,
      unit: 'ms/call',
      baseline: median(cpp) * 1e3,
      baselineLabel: 'C++ on mlx-c',
      goal: { op: '<=', target: 1.03 },
    });
    rows.push({ name: `matmul ${n}² f32, addon rate`, value: flops / median(addon) / 1e9, unit: 'GFLOP/s' });
    a.dispose();
    b.dispose();
  }
  const x = await tensor(new Float32Array([1]), [1, 1]);
  const y = await tensor(new Float32Array([2]), [1, 1]);
  await addonSecondsPerCall(add, x, y, 200);
  const addonTiny: number[] = [];
  const cppTiny: number[] = [];
  for (let r = 0; r < rounds; r++) {
    cppTiny.push(cppSecondsPerCall(exe, 'add', 1, 2000));
    addonTiny.push(await addonSecondsPerCall(add, x, y, 2000));
  }
  rows.push({ name: '1-element add, addon round trip', value: median(addonTiny) * 1e6, unit: 'µs/call' });
  rows.push({ name: '1-element add, C++ on mlx-c', value: median(cppTiny) * 1e6, unit: 'µs/call' });
  rows.push({ name: 'per-call overhead of the addon', value: (median(addonTiny) - median(cppTiny)) * 1e6, unit: 'µs/call' });
  return {
    title: 'Native core: addon vs C++ on mlx-c (median of 9 alternating rounds)',
    rows,
    notes: ['The addon path includes the job queue, the thread-safe-function hop back to JS, the Promise and a new Tensor object per call.'],
  };
}

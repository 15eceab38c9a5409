#!/usr/bin/env node
// Builds the addon with cmake-js (the only build path). Extra arguments go to cmake-js, e.g.
// `--debug` or `--CDMLX_QLORA_NO_FETCH=ON`. Environment: MLX_C_DIR (an mlx-c install prefix),
// MLX_QLORA_NO_FETCH=1 / MLX_QLORA_FORCE_FETCH=1 (never / always fetch the pinned MLX and mlx-c).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');

const extra = process.argv.slice(2);
if (process.env.MLX_QLORA_NO_FETCH === '1') extra.push('--CDMLX_QLORA_NO_FETCH=ON');
// For a machine whose installed mlx-c is not the pinned one (e.g. Homebrew's follows releases).
if (process.env.MLX_QLORA_FORCE_FETCH === '1') extra.push('--CDMLX_QLORA_FORCE_FETCH=ON');
if (process.env.MLX_C_DIR) extra.push(`--CDMLX_C_DIR=${process.env.MLX_C_DIR}`);
const jobs = process.env.CMAKE_BUILD_PARALLEL_LEVEL ?? '2';

const result = spawnSync(process.execPath, [cmakeJs, 'compile', '--parallel', jobs, ...extra], {
  cwd: root,
  stdio: 'inherit',
});
if (result.status !== 0) {
  console.error(`
mlx-qlora: the native addon did not build.
  It needs mlx-c (ml-explore/mlx-c at fba4470) with MLX v0.31.2: installed (set MLX_C_DIR to its
  prefix if it is not in /usr/local or Homebrew's prefix), or fetched by CMake from GitHub, which
  needs a network connection, git, CMake >= 3.25 and a C++20 compiler (on Linux also BLAS, LAPACK
  and LAPACKE, e.g. Debian's libopenblas-dev liblapacke-dev). See README, "Providing MLX".`);
  process.exit(result.status ?? 1);
}

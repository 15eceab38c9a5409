#!/usr/bin/env node
// `npm run prebuilds`: a self-contained prebuilt addon in prebuilds/<platform>-<arch>/ through
// prebuildify, which calls this file in place of node-gyp so that CMake stays the only build.
// MLX is fetched and linked statically; on macOS mlx.metallib is copied beside the .node.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

if (process.argv[2] === 'rebuild') {
  // Invoked by prebuildify as its "node-gyp": build with cmake-js, static MLX.
  // MLX_QLORA_PREBUILD_USE_INSTALLED=1 links the installed mlx-c instead (a prebuild for this machine only).
  const mode = process.env.MLX_QLORA_PREBUILD_USE_INSTALLED === '1' ? [] : ['--CDMLX_QLORA_FORCE_FETCH=ON'];
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), ...mode], {
    stdio: 'inherit',
    cwd: root,
  });
  process.exit(r.status ?? 1);
}

const prebuildify = join(dirname(require.resolve('prebuildify/package.json')), 'bin.js');
const r = spawnSync(process.execPath, [prebuildify, '--napi', '--strip', '--node-gyp', fileURLToPath(import.meta.url)], {
  stdio: 'inherit',
  cwd: root,
});
if (r.status !== 0) process.exit(r.status ?? 1);
const metallib = join(root, 'build', 'Release', 'mlx.metallib');
if (existsSync(metallib)) {
  const target = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  mkdirSync(target, { recursive: true });
  copyFileSync(metallib, join(target, 'mlx.metallib'));
}
console.log(readdirSync(join(root, 'prebuilds'), { recursive: true }).join('\n'));

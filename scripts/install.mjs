#!/usr/bin/env node
// `npm install` hook: use a prebuilt addon for this platform when the package ships one,
// otherwise build from source.
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const prebuildDir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const hasPrebuild = existsSync(prebuildDir) && readdirSync(prebuildDir).some((f) => f.endsWith('.node'));

if (hasPrebuild && process.env.MLX_QLORA_BUILD_FROM_SOURCE !== '1') {
  console.log(`mlx-qlora: using the prebuilt addon in ${prebuildDir}`);
} else {
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { stdio: 'inherit', cwd: root });
  process.exit(r.status ?? 1);
}

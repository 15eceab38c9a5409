/**
 * The built package (dist/), as a user runs it: `npx mlx-qlora` runs dist/cli/main.js and
 * `import … from 'mlx-qlora'` loads dist/index.js. CI builds it before the tests (`npm run
 * build:ts`); a local run rebuilds it here when any lib/ source is newer than the build.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const repoRoot = join(import.meta.dirname, '..', '..');
export const cliPath = join(repoRoot, 'dist', 'cli', 'main.js');

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

function isFresh(): boolean {
  const built = existsSync(cliPath) ? statSync(join(repoRoot, 'dist', 'index.js')).mtimeMs : 0;
  return built >= newestSource(join(repoRoot, 'lib'));
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Builds dist/ if it is missing or older than lib/; returns the CLI's path. Test files run in
 * parallel: a lock folder keeps two of them from writing dist/ at once (one that a crash left
 * behind is taken over after ten minutes).
 */
export function ensureBuiltPackage(): string {
  const lock = join(repoRoot, 'dist', '.build-lock');
  for (;;) {
    if (isFresh()) return cliPath;
    mkdirSync(join(repoRoot, 'dist'), { recursive: true });
    try {
      mkdirSync(lock);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const held = statSync(lock, { throwIfNoEntry: false });
      if (held && Date.now() - held.mtimeMs > 600_000) rmSync(lock, { recursive: true, force: true });
      sleep(500);
    }
  }
  try {
    if (isFresh()) return cliPath;
    const tsc = spawnSync(process.execPath, [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
      cwd: repoRoot,
      encoding: 'utf8',
    });
    // Type errors still emit; only a build with no CLI at all is unusable.
    if (!existsSync(cliPath)) throw new Error(`npm run build:ts did not produce ${cliPath}:\n${tsc.stdout}${tsc.stderr}`);
    return cliPath;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

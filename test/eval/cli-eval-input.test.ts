import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/temp-dir.js';

const cli = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'main.ts');
const run = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', cli, 'eval', ...args], { encoding: 'utf8' });

describe('mlx-qlora eval: export-check inputs are refused before any model work', () => {
  it('names a missing --gguf file, an unknown --gguf-arm, and a repeated arm name', async () => {
    const dir = tempDir('eval-cli-');
    const gguf = join(dir, 'x.gguf');
    await writeFile(gguf, 'not read');
    const common = ['--model', join(dir, 'no-model'), '--data', join(dir, 'no.jsonl'), '--out', join(dir, 'out')];
    const missing = run([...common, '--gguf', join(dir, 'nope.gguf')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toBe(`mlx-qlora: --gguf ${join(dir, 'nope.gguf')}: no such file\n`);
    const arm = run([...common, '--adapter', `tuned=${dir}`, '--gguf', gguf, '--gguf-arm', 'other']);
    expect(arm.stderr).toBe('mlx-qlora: --gguf-arm other: no such arm (arms: base, tuned)\n');
    const twice = run([...common, '--adapter', `a=${dir}`, '--adapter', `a=${dir}`]);
    expect(twice.stderr).toBe("mlx-qlora: arm name 'a' is used twice ('base' is the base)\n");
  }, 60_000);
});

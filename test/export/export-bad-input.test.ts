/**
 * Bad input to exportModel(): a truncated adapter, a missing base, a chat template the Modelfile
 * cannot carry, a full disk. Each is a clear error naming the file, key or path at fault, and
 * leaves nothing at --out (an older file there stays byte for byte), no Modelfile, and no hidden
 * temporary file beside it.
 */
import { execFileSync } from 'node:child_process';
import { cp, mkdir, readdir, readFile, truncate, writeFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportModel } from '../../lib/export/export-model.js';
import { closedPort } from '../fixtures/fake-ollama.js';
import { tempDir } from '../helpers/temp-dir.js';
import { makeExportRun, type ExportRun } from './export-run-fixture.js';

let fx: ExportRun;
const OLD = 'an earlier export, which a failed one must not touch\n';

beforeAll(async () => {
  fx = await makeExportRun();
}, 300_000);

/** A fresh output folder holding an older file at the --out name. */
async function outputWithOldFile(): Promise<{ dir: string; out: string }> {
  const dir = tempDir('export-out-');
  const out = join(dir, 'model.gguf');
  await writeFile(out, OLD);
  return { dir, out };
}

/** The old file is intact and nothing else is in the folder: no Modelfile, no staged or temp file. */
async function expectUntouched(dir: string, out: string): Promise<void> {
  expect(await readFile(out, 'utf8')).toBe(OLD);
  expect(await readdir(dir)).toEqual(['model.gguf']);
}

async function copyAdapter(name: string): Promise<string> {
  const dir = join(tempDir('export-bad-'), name);
  await cp(join(fx.runDir, 'adapter'), dir, { recursive: true });
  return dir;
}

describe('export: bad input', () => {
  it.each(['adapter', 'f16'] as const)('a truncated adapter (--gguf %s) names the file and writes nothing', async (gguf) => {
    const adapter = await copyAdapter('truncated');
    const weights = join(adapter, 'adapters.safetensors');
    await truncate(weights, Math.floor((await stat(weights)).size * 0.6));
    const { dir, out } = await outputWithOldFile();
    const error = await exportModel({ adapter, model: fx.modelDir, gguf, out, ...(gguf === 'f16' ? { modelfile: true } : {}) }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toContain(weights);
    expect(error?.message).toMatch(/truncated|ends inside|file ends/);
    await expectUntouched(dir, out);
  }, 120_000);

  it('a truncated checkpoint is refused by its size manifest, naming the checkpoint and file', async () => {
    const run = join(tempDir('export-bad-run-'), 'run');
    await cp(fx.runDir, run, { recursive: true });
    const weights = join(run, 'checkpoints', 'step-000002', 'adapters.safetensors');
    const size = (await stat(weights)).size;
    await truncate(weights, size - 100);
    const { dir, out } = await outputWithOldFile();
    await expect(exportModel({ run, checkpoint: 'step-2', gguf: 'adapter', out })).rejects.toThrow(
      `${join(run, 'checkpoints', 'step-000002')}: adapters.safetensors is ${size - 100} bytes, the manifest says ${size}`,
    );
    await expectUntouched(dir, out);
  });

  it('a missing base names the base and the adapter config key that named it', async () => {
    const adapter = await copyAdapter('orphan');
    const configPath = join(adapter, 'adapter_config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { model: string; base_model: { source: string } };
    const gone = join(fx.root, 'deleted-base');
    config.model = gone;
    config.base_model.source = gone;
    await writeFile(configPath, JSON.stringify(config));
    const { dir, out } = await outputWithOldFile();
    for (const gguf of ['adapter', 'q4_k_m'] as const) {
      await expect(exportModel({ adapter, gguf, out, modelfile: true })).rejects.toThrow(
        `base model '${gone}' (named by ${configPath} (base_model.source)) cannot be loaded: ${gone}: no such file or folder; pass --model to name the base`,
      );
    }
    await expectUntouched(dir, out);
  });

  it('a step failing after the GGUF is written (the PEFT folder) takes the GGUF and the Modelfile back with it', async () => {
    const { dir, out } = await outputWithOldFile();
    const blocker = join(tempDir('export-peft-'), 'a-file');
    await writeFile(blocker, 'not a folder');
    const peft = join(blocker, 'peft');
    await expect(exportModel({ run: fx.runDir, gguf: 'f16', out, modelfile: true, peft })).rejects.toThrow(new RegExp(`^--peft ${peft}: .*(EEXIST|ENOTDIR)`));
    await expectUntouched(dir, out);
  }, 120_000);

  it('Ollama not running: an error naming the host before anything is written', async () => {
    const port = await closedPort();
    const { dir, out } = await outputWithOldFile();
    await expect(exportModel({ run: fx.runDir, gguf: 'f16', out, ollama: 'iceburg-v', ollamaHost: `127.0.0.1:${port}` })).rejects.toThrow(
      `http://127.0.0.1:${port}`,
    );
    await expectUntouched(dir, out);
  });

  it('a chat template the Modelfile cannot translate names where it came from and asks for --template; nothing is written', async () => {
    const base = join(tempDir('export-odd-template-'), 'hf');
    await cp(fx.modelDir, base, { recursive: true });
    const configPath = join(base, 'tokenizer_config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
    config.chat_template = '{% for m in messages %}<<{{ m.role }}>> {{ m.content }}\n{% endfor %}';
    await writeFile(configPath, JSON.stringify(config));
    const { dir, out } = await outputWithOldFile();
    const error = await exportModel({ run: fx.runDir, model: base, gguf: 'f16', out, modelfile: true }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toContain(`${base} (chat template from ${configPath})`);
    expect(error?.message).toMatch(/not one we can translate.*--template FILE/s);
    await expectUntouched(dir, out);
  });
});

describe('export: a full disk', () => {
  let mountPoint: string | undefined;

  beforeAll(() => {
    const dir = tempDir('export-tmpfs-');
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'pipe' });
      mountPoint = dir;
    } catch {
      mountPoint = undefined; // not root, or no tmpfs here: the tests below skip
    }
  });

  afterAll(() => {
    if (mountPoint) execFileSync('umount', [mountPoint]);
  });

  for (const gguf of ['adapter', 'f16'] as const) {
    it(`ENOSPC while writing --gguf ${gguf}: the error names --out, the old file stays, no temp file is left`, async (ctx) => {
      if (!mountPoint) return ctx.skip('cannot mount a tmpfs here (needs root)');
      const dir = join(mountPoint, gguf);
      await mkdir(dir);
      const out = join(dir, 'model.gguf');
      await writeFile(out, OLD);
      const error = await exportModel({ run: fx.runDir, gguf, out }).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(error?.message).toContain(out);
      expect(error?.message).toMatch(/ENOSPC|no space left/);
      await expectUntouched(dir, out);
    }, 120_000);
  }
});

/**
 * `mlx-qlora export` as a child process: a run folder to a fused F16 GGUF with its Modelfile (plain
 * progress lines on a non-terminal stderr, a summary on stdout), and bad input ending with exit
 * code 1, a message naming the file at fault and nothing at --out. Flag values are refused by the
 * flags themselves, in-process.
 */
import { spawn } from 'node:child_process';
import { cp, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { beforeAll, describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { progressView, register } from '../../lib/cli/commands/export.js';
import type { ExportProgress } from '../../lib/export/export-options.js';
import { readGguf } from '../../lib/gguf/reader.js';
import { optionalInteger, optionalString } from '../../lib/gguf/metadata.js';
import { tempDir } from '../helpers/temp-dir.js';
import { makeExportRun, type ExportRun } from './export-run-fixture.js';

const cli = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'main.ts');
let fx: ExportRun;

beforeAll(async () => {
  fx = await makeExportRun();
}, 300_000);

async function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', cli, 'export', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
  return { code, stdout, stderr };
}

/** Runs `export ...args` in-process up to commander's parsing; resolves to its error output. */
async function parseOnly(args: string[]): Promise<string> {
  let stderr = '';
  const program = new Command('mlx-qlora').exitOverride().configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => {} });
  register(program);
  program.commands.forEach((c) => c.exitOverride().configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => {} }));
  try {
    await program.parseAsync(['node', 'mlx-qlora', 'export', ...args]);
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
  }
  return stderr;
}

/** A stream that records what is written; a terminal (with the cursor calls cli-progress makes) when `tty`. */
function recordingStream(tty: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  const s = new PassThrough();
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString()));
  const done = (cb?: () => void) => (cb?.(), true);
  Object.assign(s, { isTTY: tty, columns: 120, cursorTo: (_x: number, _y?: unknown, cb?: () => void) => done(cb), clearLine: (_d: number, cb?: () => void) => done(cb), moveCursor: () => true });
  return { stream: s as unknown as NodeJS.WriteStream, text: () => text };
}

const EVENTS: ExportProgress[] = [
  { phase: 'load', what: 'base X' },
  ...[1, 2, 3].map((i): ExportProgress => ({ phase: 'tensors', file: 'o.gguf', tensor: `t${i}`, done: i, total: 3, bytes: i * 2 ** 20 })),
  { phase: 'ollama', status: 'pushing sha256:ab', completed: 5, total: 10 },
  { phase: 'ollama', status: 'success' },
];

describe('export progress', () => {
  it('a terminal gets bars (tensors, then the Ollama upload), anything else plain lines', async () => {
    const tty = recordingStream(true);
    const bars = progressView(tty.stream);
    for (const e of EVENTS) bars.update(e);
    bars.stop();
    const plain = recordingStream(false);
    const lines = progressView(plain.stream);
    for (const e of EVENTS) lines.update(e);
    await new Promise((resolve) => setImmediate(resolve));
    expect(tty.text()).toMatch(/tensors 3\/3 \|█+\| 3\.0 MiB \| t3/);
    expect(tty.text()).toMatch(/ollama pushing sha256:ab \|█+░+\| 50%/);
    expect(tty.text()).toMatch(/ollama: success\n$/);
    expect(plain.text()).toBe('loading base X\no.gguf: 1/3 tensors, 1.0 MiB\no.gguf: 2/3 tensors, 2.0 MiB\no.gguf: 3/3 tensors, 3.0 MiB\nollama: pushing sha256:ab\nollama: success\n');
  });
});

describe('mlx-qlora export', () => {
  it('--run --checkpoint best → fused F16 GGUF, Modelfile and PEFT folder; plain progress lines when stderr is not a terminal', async () => {
    const dir = tempDir('cli-export-');
    const out = join(dir, 'iceburg.gguf');
    const r = await runCli(['--run', fx.runDir, '--checkpoint', 'best', '--gguf', 'f16', '--out', out, '--modelfile', '--system', 'You are terse.', '--threads', '2', '--peft', join(dir, 'peft')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^exported run .*step-00000[24] \(best, val_loss [\d.]+\) on base /m);
    expect(r.stdout).toContain(`wrote ${out} (f16, 21 tensors, `);
    expect(r.stdout).toContain(`wrote ${join(dir, 'iceburg.Modelfile')}`);
    expect(r.stderr).toMatch(new RegExp(`^${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: 21/21 tensors, `, 'm'));
    expect(r.stderr).not.toMatch(/\x1b\[/);
    const file = await readGguf(out);
    expect(optionalInteger(file, 'general.file_type')).toBe(1);
    expect(optionalString(file, 'tokenizer.chat_template')).toContain('<|im_start|>');
    const modelfile = await readFile(join(dir, 'iceburg.Modelfile'), 'utf8');
    expect(modelfile).toMatch(/^FROM \.\/iceburg\.gguf$/m);
    expect(modelfile).toMatch(/^SYSTEM """You are terse\."""$/m);
    expect(r.stdout).toContain(`wrote PEFT adapter ${join(dir, 'peft')}`);
    const peftConfig = JSON.parse(await readFile(join(dir, 'peft', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    expect(peftConfig).toMatchObject({ peft_type: 'LORA', base_model_name_or_path: fx.modelDir, r: 8 });
    expect((await readdir(join(dir, 'peft'))).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect((await readdir(dir)).sort()).toEqual(['iceburg.Modelfile', 'iceburg.gguf', 'peft']);
  }, 180_000);

  it('a missing base: exit 1, the base and the config naming it in the message, nothing at --out', async () => {
    const adapter = join(tempDir('cli-export-bad-'), 'adapter');
    await cp(join(fx.runDir, 'adapter'), adapter, { recursive: true });
    const config = JSON.parse(await readFile(join(adapter, 'adapter_config.json'), 'utf8')) as { base_model: { source: string } };
    config.base_model.source = '/nowhere/base';
    await writeFile(join(adapter, 'adapter_config.json'), JSON.stringify(config));
    const dir = tempDir('cli-export-out-');
    const r = await runCli(['--adapter', adapter, '--gguf', 'adapter', '--out', join(dir, 'a.gguf')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`mlx-qlora: base model '/nowhere/base' (named by ${join(adapter, 'adapter_config.json')} (base_model.source)) cannot be loaded`);
    expect(await readdir(dir)).toEqual([]);
  }, 60_000);

  it.each([
    [['--model', 'm', '--gguf', 'q5_k', '--out', 'x.gguf'], /--gguf <type>' argument 'q5_k' is invalid\. Allowed choices are adapter, f32, f16, bf16, q8_0, q4_0, q4_k_m/],
    [['--run', 'r', '--checkpoint', 'newest', '--gguf', 'f16', '--out', 'x.gguf'], /--checkpoint <which>' argument 'newest' is invalid\. expected best, latest or step-N/],
    [['--model', 'm', '--gguf', 'f16', '--out', 'x.gguf', '--threads', '0'], /--threads <n>' argument '0' is invalid\. expected an integer >= 1/],
    [['--model', 'm', '--gguf', 'adapter', '--out', 'x.gguf', '--fallback', 'merge'], /--fallback <what>' argument 'merge' is invalid/],
    [['--model', 'm', '--out', 'x.gguf'], /required option '--gguf <type>' not specified/],
  ])('%j is refused by its flag', async (args, message) => {
    expect(await parseOnly(args as string[])).toMatch(message);
  });
});

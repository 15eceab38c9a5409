/**
 * A new user's first day, as the README tells it: the commands of its "whole flow" block, in the
 * README's order, run through the built CLI (what `npx mlx-qlora` runs) on a tiny model made here:
 * prepare with the defaults (2048 tokens) → inspect → train at 256 tokens → generate with the run's
 * adapter → info. Each must exit 0 with the output the README promises. (fuse, the block's last
 * line, has tests of its own and is left out to keep CI short.)
 *
 * The README's text is run as written, with these substitutions only:
 * - `npx mlx-qlora` → `node dist/cli/main.js` (the package's bin);
 * - the model name `dolphin-mistral:7b` → the tiny model's folder (it has a ChatML tokenizer);
 * - `train.yaml` is the README's example config with the tiny run's settings over it: the model,
 *   `data.max_seq_length: 256` and a two-step run (`training.max_steps: 2`, batch 2, no warmup).
 * `data/fine_tuning/` and every output folder are relative paths in the test's working folder,
 * which holds conversations of which some are longer than 256 tokens.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { conversation, makeTrainFixture, type TrainFixture } from '../fixtures/train-fixture.js';
import { tempDir } from '../helpers/temp-dir.js';
import { ensureBuiltPackage, repoRoot } from './built-cli.js';

const run = promisify(execFile);

function readmeBlocks(readme: string, lang: string): string[] {
  return [...readme.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);
}

/** The `npx mlx-qlora …` lines of the README's step-by-step block, comments dropped, split into words. */
function readmeFlow(readme: string): string[][] {
  const block = readmeBlocks(readme, 'sh').find((b) => b.includes('npx mlx-qlora prepare') && b.includes('npx mlx-qlora info'));
  if (!block) throw new Error('README: no sh block with the prepare … info flow');
  return block
    .split('\n')
    .map((line) => line.replace(/\s+#.*$/, '').trim())
    .filter((line) => line.startsWith('npx mlx-qlora '))
    .map((line) => [...line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!).slice(2));
}

/** A conversation whose assistant turn alone is several hundred tokens. */
function longConversation(i: number): { messages: Array<{ role: string; content: string }> } {
  const facts = Array.from({ length: 60 }, (_, k) => `Glacier ${i}.${k} moved ${k * 3 + i} metres last winter.`).join(' ');
  return { messages: [{ role: 'user', content: `List everything about glacier ${i}.` }, { role: 'assistant', content: facts }] };
}

interface Step {
  args: string[];
  stdout: string;
  stderr: string;
}

describe('a new user follows the README', () => {
  let fx: TrainFixture;
  let work: string;
  let cli: string;
  let flow: string[][];
  const done: Step[] = [];

  beforeAll(async () => {
    cli = ensureBuiltPackage();
    const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
    flow = readmeFlow(readme).filter((args) => ['prepare', 'inspect', 'train', 'generate', 'info'].includes(args[0]!));
    fx = await makeTrainFixture(8);
    work = tempDir('mlxq-new-user-');
    await mkdir(join(work, 'data', 'fine_tuning'), { recursive: true });
    const records = [...Array.from({ length: 30 }, (_, i) => conversation(i)), ...Array.from({ length: 6 }, (_, i) => longConversation(i))];
    await writeFile(join(work, 'data', 'fine_tuning', 'export.jsonl'), records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const example = parse(readmeBlocks(readme, 'yaml')[0]!) as Record<string, Record<string, unknown>>;
    const { epochs: _epochs, ...training } = example.training!;
    const config = {
      ...example,
      model: fx.modelDir,
      data: { ...example.data, max_seq_length: 256 },
      training: { ...training, max_steps: 2, batch_size: 2, grad_accumulation: 1, warmup_steps: 0 },
    };
    await writeFile(join(work, 'train.yaml'), stringify(config));
  }, 600_000);
  afterAll(async () => {
    await fx?.cleanup();
  });

  async function runStep(args: string[]): Promise<Step> {
    const substituted = args.map((a) => (a === 'dolphin-mistral:7b' ? fx.modelDir : a));
    try {
      const { stdout, stderr } = await run(process.execPath, [cli, ...substituted], {
        cwd: work,
        env: { ...process.env, NO_COLOR: '1' },
        maxBuffer: 64 << 20,
        timeout: 300_000,
      });
      const step = { args, stdout, stderr };
      done.push(step);
      return step;
    } catch (error) {
      const e = error as { code?: number; stdout?: string; stderr?: string };
      throw new Error(`mlx-qlora ${args.join(' ')} exited with ${e.code}:\n${e.stderr ?? ''}${e.stdout ?? ''}`);
    }
  }

  it('runs prepare → inspect → train → generate → info in the README\'s order', async () => {
    expect(flow.map((args) => args[0])).toEqual(['prepare', 'inspect', 'train', 'generate', 'info']);
    for (const args of flow) {
      const step = await runStep(args);
      const out = join(work, ...(args[0] === 'train' ? ['runs', 'iceburg-v1'] : ['prepared']));
      switch (args[0]) {
        case 'prepare': {
          // "tokenized, masked, deduplicated train/valid/test shards + report"
          expect(existsSync(join(out, 'manifest.json')) && existsSync(join(out, 'report.json'))).toBe(true);
          expect(existsSync(join(out, 'train-00000.tokens.i32'))).toBe(true);
          const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { maxSeqLength?: number };
          expect(manifest.maxSeqLength ?? 2048).toBe(2048);
          break;
        }
        case 'inspect':
          // "rendered samples, trained spans highlighted"
          expect(step.stdout).toMatch(/Fact \d+|Glacier \d+/);
          break;
        case 'train': {
          // "trains, checkpoints, writes the adapter"
          expect(existsSync(join(out, 'adapter', 'adapters.safetensors'))).toBe(true);
          expect(existsSync(join(out, 'adapter', 'adapter_config.json'))).toBe(true);
          type Counts = { truncated: number; truncated_away: number } | null;
          type Event = { type: string; step?: number; overlong?: { policy: string; train: Counts; valid: Counts; test: Counts } };
          const events = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Event);
          expect(events.filter((e) => e.type === 'step').map((e) => e.step)).toEqual([1, 2]);
          // The conversations longer than 256 tokens were cut to fit, and the run says so.
          const overlong = events.find((e) => e.type === 'start')?.overlong;
          expect(overlong?.policy).toBe('truncate');
          const cut = [overlong?.train, overlong?.valid, overlong?.test].reduce((n, c) => n + (c ? c.truncated + c.truncated_away : 0), 0);
          expect(cut).toBeGreaterThan(0);
          expect(events.at(-1)?.type).toBe('done');
          break;
        }
        case 'generate':
          expect(step.stdout.trim().length).toBeGreaterThan(0);
          break;
        case 'info':
          // "architecture, parameters, sizes, quantization"
          expect(step.stdout).toMatch(/^architecture: +mistral, 2 layers, hidden 64/m);
          expect(step.stdout).toMatch(/^parameters: +\d+\.\d{3}B/m);
          expect(step.stdout).toMatch(/^base weights: +[\d.]+ GiB, linears 14× dense/m);
          break;
      }
    }
    expect(done.map((s) => s.args[0])).toEqual(['prepare', 'inspect', 'train', 'generate', 'info']);
  }, 900_000);
});

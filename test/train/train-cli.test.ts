import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunEvent } from '../../lib/train/run-events.js';
import { makeTrainFixture, type TrainFixture } from '../fixtures/train-fixture.js';

const cli = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'main.ts');
let fx: TrainFixture;

async function runCli(args: string[], onEvent?: (e: RunEvent, kill: () => void) => void): Promise<{ code: number | null; events: RunEvent[]; stderr: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const events: RunEvent[] = [];
  for await (const line of createInterface({ input: proc.stdout })) {
    const e = JSON.parse(line) as RunEvent;
    events.push(e);
    onEvent?.(e, () => proc.kill('SIGINT'));
  }
  return { code: await exited, events, stderr };
}

describe('mlx-qlora train', () => {
  beforeAll(async () => {
    fx = await makeTrainFixture();
  }, 120_000);
  afterAll(async () => fx?.cleanup());

  it('Ctrl+C checkpoints and exits cleanly; --resume finishes the run', async () => {
    const output = join(fx.tiny.root, 'cli-run');
    const configPath = join(fx.tiny.root, 'train.json');
    await writeFile(
      configPath,
      JSON.stringify({
        model: fx.modelDir,
        data: { train: fx.prepared, max_seq_length: 64 },
        lora: { rank: 4, alpha: 8 },
        training: { max_steps: 8, warmup_steps: 1, batch_size: 2, grad_accumulation: 1 },
        eval: { every_steps: 0 },
        checkpoint: { every_steps: 0, keep_last: 2 },
        output,
      }),
    );
    let sent = false;
    const first = await runCli(['train', '--config', configPath, '--json'], (e, interrupt) => {
      if (e.type === 'step' && !sent) {
        sent = true;
        interrupt();
      }
    });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/stopping after this step/);
    const checkpoint = first.events.find((e) => e.type === 'checkpoint');
    expect(checkpoint).toMatchObject({ reason: 'abort' });
    expect(first.events.at(-1)).toMatchObject({ type: 'done', reason: 'aborted' });
    const stoppedAt = first.events.at(-1)!.step;
    expect(stoppedAt).toBeLessThan(8);

    const second = await runCli(['train', '--config', configPath, '--json', '--resume']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.events[0]).toMatchObject({ type: 'start', step: stoppedAt });
    expect(second.events.at(-1)).toMatchObject({ type: 'done', reason: 'completed', step: 8 });
  }, 180_000);

  it('a config error names the key and exits non-zero', async () => {
    const configPath = join(fx.tiny.root, 'bad.yaml');
    await writeFile(configPath, `model: ${fx.modelDir}\ndata:\n  train: ${fx.prepared}\ntraining:\n  schedule: cosin\noutput: ${join(fx.tiny.root, 'bad-run')}\n`);
    const r = await runCli(['train', '--config', configPath]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad\.yaml:5: training\.schedule: expected one of cosine \| linear \| constant, got "cosin"/);
  }, 60_000);
});

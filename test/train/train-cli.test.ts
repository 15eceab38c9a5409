import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointStore } from '../../lib/train/checkpoint-store.js';
import { CHECKPOINT_FILES } from '../../lib/train/run-checkpoint.js';
import type { RunEvent } from '../../lib/train/run-events.js';
import { makeTrainFixture, type TrainFixture } from '../fixtures/train-fixture.js';

const cli = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'main.ts');
let fx: TrainFixture;

interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  events: RunEvent[];
  stderr: string;
  /** performance.now() when the process exited. */
  exitedAt: number;
}

async function runCli(args: string[], onEvent?: (e: RunEvent, proc: ChildProcess, stderr: () => string) => void): Promise<CliRun> {
  const proc = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; exitedAt: number }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal, exitedAt: performance.now() })),
  );
  const events: RunEvent[] = [];
  for await (const line of createInterface({ input: proc.stdout })) {
    const e = JSON.parse(line) as RunEvent;
    events.push(e);
    onEvent?.(e, proc, () => stderr);
  }
  return { ...(await exited), events, stderr };
}

async function until(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const start = performance.now();
  while (!condition()) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
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
    const first = await runCli(['train', '--config', configPath, '--json'], (e, proc) => {
      if (e.type === 'step' && !sent) {
        sent = true;
        proc.kill('SIGINT');
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

  it('a second Ctrl+C ends the process at once; --resume continues from the last whole checkpoint', async () => {
    const output = join(fx.tiny.root, 'cli-twice');
    const configPath = join(fx.tiny.root, 'train-twice.json');
    // Three micro-batches per update: steps long enough that the second Ctrl+C lands while the
    // first is still waiting for the step in flight.
    await writeFile(
      configPath,
      JSON.stringify({
        model: fx.modelDir,
        data: { train: fx.prepared, max_seq_length: 64 },
        lora: { rank: 4, alpha: 8 },
        training: { max_steps: 4, warmup_steps: 1, batch_size: 2, grad_accumulation: 3 },
        eval: { every_steps: 0 },
        checkpoint: { every_steps: 1, keep_last: 2 },
        output,
      }),
    );
    let secondAt = 0;
    const first = await runCli(['train', '--config', configPath, '--json'], (e, proc, stderr) => {
      if (e.type !== 'checkpoint' || secondAt !== 0) return;
      secondAt = -1;
      proc.kill('SIGINT');
      // The second one only once the first was handled: two signals sent back to back can merge.
      void until(() => stderr().includes('stopping after this step'), 'the first SIGINT to be handled').then(() => {
        secondAt = performance.now();
        proc.kill('SIGINT');
      });
    });
    expect(secondAt, first.stderr).toBeGreaterThan(0);
    // Killed by the re-raised signal, not an exit() that waits for the MLX thread.
    expect({ code: first.code, signal: first.signal }, first.stderr).toEqual({ code: null, signal: 'SIGINT' });
    expect(first.exitedAt - secondAt).toBeLessThan(2_000);
    expect(first.events.some((e) => e.type === 'done')).toBe(false);
    const saved = first.events.filter((e) => e.type === 'checkpoint').map((e) => e.step);
    expect(saved.length).toBeGreaterThan(0);
    // The lock of the killed run is left behind, stale.
    expect(await readdir(output)).toContain('run.lock');

    const store = await CheckpointStore.open(join(output, 'checkpoints'), { keepLast: 2, requiredFiles: [...CHECKPOINT_FILES], readOnly: true });
    const { checkpoint, skipped } = await store.loadLatest();
    expect(skipped).toEqual([]);
    expect(checkpoint!.step).toBeGreaterThanOrEqual(saved.at(-1)!);
    const second = await runCli(['train', '--config', configPath, '--json', '--resume']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.events[0]).toMatchObject({ type: 'start', step: checkpoint!.step, resumed_from: checkpoint!.dir });
    expect(second.events.at(-1)).toMatchObject({ type: 'done', reason: 'completed', step: 4 });
    expect(await readdir(output)).not.toContain('run.lock');
  }, 180_000);

  it('a config error names the key and exits non-zero', async () => {
    const configPath = join(fx.tiny.root, 'bad.yaml');
    await writeFile(configPath, `model: ${fx.modelDir}\ndata:\n  train: ${fx.prepared}\ntraining:\n  schedule: cosin\noutput: ${join(fx.tiny.root, 'bad-run')}\n`);
    const r = await runCli(['train', '--config', configPath]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad\.yaml:5: training\.schedule: expected one of cosine \| linear \| constant, got "cosin"/);
  }, 60_000);
});

import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainConfigInput } from '../../lib/config/train-config.js';
import { CheckpointStore } from '../../lib/train/checkpoint-store.js';
import { CHECKPOINT_FILES } from '../../lib/train/run-checkpoint.js';
import type { RunEvent, StepEvent } from '../../lib/train/run-events.js';
import { train } from '../../lib/train/trainer.js';
import { makeTrainFixture, shortRunConfig, type TrainFixture } from '../fixtures/train-fixture.js';

const child = join(import.meta.dirname, 'fixtures', 'train-run.ts');
let fx: TrainFixture;

const config = (output: string): TrainConfigInput => shortRunConfig(fx, output);

/** Runs the child; kills it with SIGKILL `delayMs` after its `checkpoints`-th checkpoint event. */
async function runChild(configPath: string, resume: boolean, kill?: { checkpoints: number; delayMs: number }): Promise<RunEvent[]> {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, configPath, ...(resume ? ['resume'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const events: RunEvent[] = [];
  let seen = 0;
  for await (const line of createInterface({ input: proc.stdout })) {
    const event = JSON.parse(line) as RunEvent;
    events.push(event);
    if (kill && event.type === 'checkpoint' && ++seen === kill.checkpoints) {
      // The next checkpoint is already being written, or soon will be: kill somewhere inside it.
      setTimeout(() => proc.kill('SIGKILL'), kill.delayMs);
    }
  }
  const code = await new Promise<number | null>((resolve) => (proc.exitCode !== null || proc.signalCode !== null ? resolve(proc.exitCode) : proc.once('exit', (c) => resolve(c))));
  if (!kill && code !== 0) throw new Error(`child failed (${code}): ${stderr}`);
  return events;
}

describe('a training process killed while checkpointing', () => {
  beforeAll(async () => {
    fx = await makeTrainFixture();
  }, 120_000);
  afterAll(async () => fx?.cleanup());

  it('leaves a loadable checkpoint, and --resume finishes with the uninterrupted losses', async () => {
    const referenceOut = join(fx.tiny.root, 'kill-reference');
    const reference: StepEvent[] = [];
    for await (const e of train(config(referenceOut))) if (e.type === 'step') reference.push(e);
    expect(reference).toHaveLength(24);

    const output = join(fx.tiny.root, 'kill-run');
    const configPath = join(fx.tiny.root, 'kill-config.json');
    await writeFile(configPath, JSON.stringify(config(output)));
    const losses = new Map<number, number>();
    let killedAt = 0;
    for (const [checkpoints, delayMs] of [
      [3, 0],
      [2, 7],
      [4, 23],
    ] as const) {
      const events = await runChild(configPath, killedAt > 0, { checkpoints, delayMs });
      for (const e of events) if (e.type === 'step') losses.set(e.step, e.loss);
      expect(events.some((e) => e.type === 'done')).toBe(false);
      // Whatever the kill interrupted, the store offers a whole checkpoint to resume from.
      const store = await CheckpointStore.open(join(output, 'checkpoints'), { keepLast: 2, requiredFiles: [...CHECKPOINT_FILES], readOnly: true });
      const { checkpoint } = await store.loadLatest();
      expect(checkpoint).toBeDefined();
      expect(checkpoint!.step).toBeGreaterThan(killedAt);
      killedAt = checkpoint!.step;
    }
    const final = await runChild(configPath, true);
    expect(final[0]).toMatchObject({ type: 'start', step: killedAt });
    const done = final.find((e) => e.type === 'done');
    expect(done).toMatchObject({ reason: 'completed', step: 24 });
    for (const e of final) if (e.type === 'step') losses.set(e.step, e.loss);
    for (const r of reference) expect(Math.abs(losses.get(r.step)! - r.loss), `step ${r.step}`).toBeLessThan(1e-6);
  }, 240_000);
});

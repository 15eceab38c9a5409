import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainConfigInput } from '../../lib/config/train-config.js';
import { openPreparedDataset } from '../../lib/data/prepared-dataset.js';
import { datasetLoss } from '../../lib/eval/dataset-loss.js';
import { loadModel } from '../../lib/model/load-model.js';
import { readMetricsLog } from '../../lib/train/metrics-log.js';
import type { RunEvent, StepEvent } from '../../lib/train/run-events.js';
import { train } from '../../lib/train/trainer.js';
import { makeTrainFixture, type TrainFixture } from '../fixtures/train-fixture.js';

let fx: TrainFixture;
let runs = 0;

function config(overrides: { training?: Partial<NonNullable<TrainConfigInput['training']>>; [k: string]: unknown } = {}): TrainConfigInput {
  const { training, ...rest } = overrides;
  return {
    model: fx.modelDir,
    data: { train: fx.prepared, max_seq_length: 64 },
    lora: { rank: 8, alpha: 16, dropout: 0, targets: 'all-linear' },
    quantization: 'none',
    training: { learning_rate: 1e-2, batch_size: 4, grad_accumulation: 1, max_steps: 12, warmup_steps: 2, schedule: 'constant', seed: 7, grad_checkpointing: false, ...training },
    eval: { every_steps: 0, early_stopping_patience: 0 },
    checkpoint: { every_steps: 0, keep_last: 3 },
    output: join(fx.tiny.root, `run-${runs++}`),
    ...rest,
  } as TrainConfigInput;
}

async function collect(handle: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const events: RunEvent[] = [];
  for await (const e of handle) events.push(e);
  return events;
}

const stepsOf = (events: RunEvent[]) => events.filter((e): e is StepEvent => e.type === 'step');

describe('trainer', () => {
  beforeAll(async () => {
    fx = await makeTrainFixture();
  }, 120_000);
  afterAll(async () => fx?.cleanup());

  it('overfits a small fixed data set: final loss below 10% of the first', async () => {
    const cfg = config({ training: { max_steps: 40 } });
    const handle = train(cfg);
    const events = await collect(handle);
    const done = await handle.done;
    const steps = stepsOf(events);
    expect(steps).toHaveLength(40);
    expect(steps[steps.length - 1]!.loss).toBeLessThan(0.1 * steps[0]!.loss);
    expect(done.reason).toBe('completed');
    // Every event is also a line of metrics.jsonl.
    const logged = await readMetricsLog(join(cfg.output!, 'metrics.jsonl'));
    expect(logged.map((e) => e.type)).toEqual(events.map((e) => e.type));
    // The final adapter, loaded onto the base from disk, carries what was learned.
    const data = openPreparedDataset(fx.prepared);
    const base = await loadModel(fx.modelDir, { quantization: 'none' });
    const tuned = await loadModel(fx.modelDir, { quantization: 'none', adapter: done.adapter_path! });
    try {
      const opts = { batchSize: 4, maxSeqLength: 64, padId: 0 };
      const before = await datasetLoss(base.native, data.split('train'), opts);
      const after = await datasetLoss(tuned.native, data.split('train'), opts);
      expect(after.loss).toBeLessThan(0.2 * before.loss);
    } finally {
      base.dispose();
      tuned.dispose();
      data.close();
    }
  }, 120_000);

  it('stop at step k, resume, finish: the losses equal the uninterrupted run', async () => {
    const base = { training: { max_steps: 10, grad_accumulation: 2, batch_size: 2, schedule: 'cosine' as const, warmup_steps: 3 }, lora: { rank: 8, alpha: 16, dropout: 0.1, targets: ['q_proj', 'v_proj'] } };
    const whole = stepsOf(await collect(train(config(base))));
    expect(whole).toHaveLength(10);

    const cfg = config({ ...base, checkpoint: { every_steps: 4, keep_last: 2 } });
    const controller = new AbortController();
    const first: StepEvent[] = [];
    const handle = train(cfg, { signal: controller.signal });
    for await (const e of handle) {
      if (e.type === 'step') {
        first.push(e);
        if (e.step === 6) controller.abort();
      }
    }
    expect((await handle.done).reason).toBe('aborted');
    // The abort lands after the step in progress when the consumer saw step 6.
    const stoppedAt = first.length;
    expect(stoppedAt).toBeGreaterThanOrEqual(6);
    expect(stoppedAt).toBeLessThan(10);
    const resumed = train(cfg, { resume: true });
    const events = await collect(resumed);
    expect(events[0]).toMatchObject({ type: 'start', step: stoppedAt });
    const rest = stepsOf(events);
    const all = [...first, ...rest];
    expect(all.map((s) => s.step)).toEqual(whole.map((s) => s.step));
    for (let i = 0; i < whole.length; i++) {
      expect(Math.abs(all[i]!.loss - whole[i]!.loss), `step ${i + 1}`).toBeLessThan(1e-6);
      expect(all[i]!.lr).toBe(whole[i]!.lr);
    }
    // A resumed run appends to metrics.jsonl.
    const logged = await readMetricsLog(join(cfg.output!, 'metrics.jsonl'));
    expect(logged.filter((e) => e.type === 'step')).toHaveLength(10);
  }, 180_000);

  it('evaluates, keeps the best, and stops early when validation stops improving', async () => {
    const cfg = config({ training: { max_steps: 60, learning_rate: 5e-2 }, eval: { every_steps: 2, early_stopping_patience: 2 }, checkpoint: { every_steps: 2, keep_last: 1 } });
    const handle = train(cfg);
    const events = await collect(handle);
    const done = await handle.done;
    const evals = events.filter((e) => e.type === 'eval');
    expect(evals.length).toBeGreaterThan(1);
    expect(done.reason).toBe('early_stopping');
    const bestLoss = Math.min(...evals.map((e) => (e.type === 'eval' ? e.val_loss : Infinity)));
    expect(done.best?.val_loss).toBe(bestLoss);
    const lastTwo = evals.slice(-2);
    expect(lastTwo.every((e) => e.type === 'eval' && !e.is_best)).toBe(true);
    // Retention kept the newest checkpoint and the best one.
    const ckpts = (await readFile(join(cfg.output!, 'checkpoints', 'latest'), 'utf8')).trim();
    expect(ckpts).toMatch(/^step-\d{6}$/);
  }, 180_000);

  it('trains from raw JSONL, preparing it into the run folder with the model tokenizer', async () => {
    const cfg = config({ data: { train: fx.jsonl, valid: fx.jsonl, max_seq_length: 64 }, training: { max_steps: 3 }, eval: { every_steps: 3, early_stopping_patience: 0 } });
    const events = await collect(train(cfg));
    expect(stepsOf(events)).toHaveLength(3);
    expect(events.filter((e) => e.type === 'eval')).toHaveLength(1);
    const manifest = JSON.parse(await readFile(join(cfg.output!, 'prepared-train', 'manifest.json'), 'utf8')) as { counts?: unknown; tokenizer: { model: string } };
    expect(manifest.tokenizer.model).toBe(fx.modelDir);
  }, 120_000);

  it('every config error names its key', async () => {
    await expect(train({ ...config(), training: { schedule: 'cosin' } } as never).done).rejects.toThrow(/training\.schedule/);
    await expect(train({ ...config(), lora: { rank: 0 } } as never).done).rejects.toThrow(/lora\.rank/);
    await expect(train({ ...config(), bogus: 1 } as never).done).rejects.toThrow(/bogus/);
  });
});

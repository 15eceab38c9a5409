import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainConfigInput } from '../../lib/config/train-config.js';
import { recordPositions } from '../../lib/data/batch-plan.js';
import { EpochIterator } from '../../lib/data/epoch-iterator.js';
import { readManifest } from '../../lib/data/manifest.js';
import { prepareDataset } from '../../lib/data/prepare.js';
import { openPreparedDataset } from '../../lib/data/prepared-dataset.js';
import { memory } from '../../lib/device.js';
import { datasetLoss } from '../../lib/train/dataset-loss.js';
import { loadModel } from '../../lib/model/load-model.js';
import { readMetricsLog } from '../../lib/train/metrics-log.js';
import type { CheckpointEvent, EvalEvent, RunEvent, StepEvent } from '../../lib/train/run-events.js';
import type { TrainerState } from '../../lib/train/trainer-state.js';
import { train } from '../../lib/train/trainer.js';
import { makeTrainFixture, type TrainFixture } from '../fixtures/train-fixture.js';
import { prepareVariedLengths, writeNanModel } from './fixtures/training-sets.js';

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

  it('evaluates, keeps the best checkpoint and the newest, and stops early when validation stops improving', async () => {
    // Evaluations every 2 steps, checkpoints every 3: most evaluations fall between checkpoints.
    const cfg = config({ training: { max_steps: 60, learning_rate: 5e-2 }, eval: { every_steps: 2, early_stopping_patience: 2 }, checkpoint: { every_steps: 3, keep_last: 1 } });
    const handle = train(cfg);
    const events = await collect(handle);
    const done = await handle.done;
    const evals = events.filter((e): e is EvalEvent => e.type === 'eval');
    expect(evals.length).toBeGreaterThan(2);
    expect(done.reason).toBe('early_stopping');
    const bestLoss = Math.min(...evals.map((e) => e.val_loss!));
    const bestEval = evals.find((e) => e.val_loss === bestLoss)!;
    expect(done.best).toEqual({ step: bestEval.step, val_loss: bestLoss });
    expect(evals.slice(-2).every((e) => !e.is_best)).toBe(true);
    // Every new best got a checkpoint at its step, on the interval or not.
    const checkpoints = events.filter((e): e is CheckpointEvent => e.type === 'checkpoint');
    expect(checkpoints.some((c) => c.reason === 'best')).toBe(true);
    for (const e of evals.filter((x) => x.is_best)) {
      expect(checkpoints.find((c) => c.step === e.step)?.reason, `step ${e.step}`).toBe(e.step % 3 === 0 ? 'interval' : 'best');
    }
    // Retention kept exactly the newest (keep_last 1, the final one at the early stop) and the best.
    const final = checkpoints.at(-1)!;
    expect(final).toMatchObject({ step: done.step, reason: 'final' });
    const dir = join(cfg.output!, 'checkpoints');
    const kept = (await readdir(dir)).filter((name) => name.startsWith('step-')).sort();
    expect(kept).toEqual([...new Set([bestEval.step, done.step])].sort((a, b) => a - b).map((step) => `step-${String(step).padStart(6, '0')}`));
    expect((await readFile(join(dir, 'latest'), 'utf8')).trim()).toBe(`step-${String(done.step).padStart(6, '0')}`);
    const stateOf = async (step: number) => JSON.parse(await readFile(join(dir, `step-${String(step).padStart(6, '0')}`, 'trainer-state.json'), 'utf8')) as TrainerState;
    expect((await stateOf(bestEval.step)).eval_loss).toBe(bestLoss);
    // The final checkpoint carries the evaluation of its own step.
    expect((await stateOf(done.step)).eval_loss).toBe(evals.at(-1)!.val_loss);
  }, 180_000);

  it('packing + epochs: every epoch counts its own batches, and a resume in epoch 2 equals the whole run', async () => {
    const prepared = await prepareVariedLengths(fx);
    const accumulation = 3;
    const base = {
      data: { train: prepared, max_seq_length: 64, packing: true },
      training: { epochs: 2, max_steps: undefined, batch_size: 1, grad_accumulation: accumulation, seed: 1, schedule: 'cosine' as const, warmup_steps: 2 },
      lora: { rank: 8, alpha: 16, dropout: 0.1, targets: ['q_proj', 'v_proj'] },
    };
    // The premise: the two epochs' packed plans need different numbers of updates.
    const data = openPreparedDataset(prepared);
    const split = data.split('train');
    const plans = new EpochIterator(split, { mode: 'pack', batchSize: 1, maxSeqLength: 64, seed: 1 });
    const perEpoch = [0, 1].map((e) => Math.ceil(plans.batchesInEpoch(e) / accumulation));
    let positions = 0;
    for (let i = 0; i < split.size; i++) positions += recordPositions(split.length(i));
    data.close();
    expect(perEpoch[0]).not.toBe(perEpoch[1]);
    const total = perEpoch[0]! + perEpoch[1]!;

    const consumesEveryEpoch = (steps: StepEvent[]) => {
      for (const epoch of [0, 1]) {
        const inEpoch = steps.filter((s) => s.epoch === epoch);
        expect(inEpoch, `epoch ${epoch}`).toHaveLength(perEpoch[epoch]!);
        // Each epoch feeds every record through once.
        expect(inEpoch.reduce((sum, s) => sum + s.tokens, 0), `epoch ${epoch}`).toBe(positions);
      }
    };
    const wholeEvents = await collect(train(config(base)));
    expect(wholeEvents[0]).toMatchObject({ type: 'start', total_steps: total });
    const whole = stepsOf(wholeEvents);
    expect(whole.map((s) => s.step)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    consumesEveryEpoch(whole);

    const cfg = config(base);
    const controller = new AbortController();
    const first: StepEvent[] = [];
    const handle = train(cfg, { signal: controller.signal });
    for await (const e of handle) {
      if (e.type !== 'step') continue;
      first.push(e);
      if (e.epoch === 1) controller.abort();
    }
    expect((await handle.done).reason).toBe('aborted');
    expect(first.at(-1)!.epoch).toBe(1);
    expect(first.length).toBeLessThan(total);
    const events = await collect(train(cfg, { resume: true }));
    expect(events[0]).toMatchObject({ type: 'start', step: first.length, total_steps: total });
    const all = [...first, ...stepsOf(events)];
    expect(all.map((s) => s.step)).toEqual(whole.map((s) => s.step));
    for (let i = 0; i < whole.length; i++) {
      expect(Math.abs(all[i]!.loss - whole[i]!.loss), `step ${i + 1}`).toBeLessThan(1e-6);
      expect(all[i]!.lr, `step ${i + 1}`).toBe(whole[i]!.lr);
    }
    consumesEveryEpoch(all);

    // A checkpoint whose schedule disagrees with the recomputed one is refused, not silently followed.
    const statePath = join(cfg.output!, 'checkpoints', `step-${String(total).padStart(6, '0')}`, 'trainer-state.json');
    const state = JSON.parse(await readFile(statePath, 'utf8')) as TrainerState;
    await writeFile(statePath, JSON.stringify({ ...state, schedule: { ...state.schedule, total_steps: total + 1 } }));
    await expect(train(cfg, { resume: true }).done).rejects.toMatchObject({
      code: 'schedule_changed',
      message: expect.stringMatching(new RegExp(`trainer-state\\.json has schedule\\.total_steps ${total + 1}, but this run counts ${total} steps`)),
    });
  }, 300_000);

  it('a NaN validation loss is recorded as null, never best, and the run goes on', async () => {
    const model = await writeNanModel(fx);
    const cfg = config({ model, training: { max_steps: 3, max_nonfinite_steps: 10 }, eval: { every_steps: 1, early_stopping_patience: 0 } });
    const handle = train(cfg);
    const events = await collect(handle);
    const done = await handle.done;
    expect(done).toMatchObject({ reason: 'completed', step: 3, best: null });
    const evals = events.filter((e): e is EvalEvent => e.type === 'eval');
    expect(evals.map((e) => [e.step, e.val_loss, e.val_loss_nonfinite, e.is_best, e.best_val_loss, e.evals_since_best])).toEqual([
      [1, null, true, false, null, 1],
      [2, null, true, false, null, 2],
      [3, null, true, false, null, 3],
    ]);
    const logged = await readMetricsLog(join(cfg.output!, 'metrics.jsonl'));
    expect(logged.filter((e) => e.type === 'eval')).toEqual(evals);
    const state = JSON.parse(await readFile(join(cfg.output!, 'checkpoints', 'step-000003', 'trainer-state.json'), 'utf8')) as TrainerState;
    expect([state.eval_loss, state.best, state.nonfinite_count]).toEqual([null, null, 3]);
  }, 120_000);

  it('stops with the nonfinite error once more than max_nonfinite_steps updates were skipped', async () => {
    const cfg = config({ model: await writeNanModel(fx), training: { max_steps: 10, max_nonfinite_steps: 2 } });
    const handle = train(cfg);
    const events: RunEvent[] = [];
    await expect(
      (async () => {
        for await (const e of handle) events.push(e);
      })(),
    ).rejects.toMatchObject({ code: 'nonfinite_limit', message: expect.stringContaining('3 updates had a NaN/Inf loss or gradient (training.max_nonfinite_steps is 2)') });
    await expect(handle.done).rejects.toMatchObject({ code: 'nonfinite_limit' });
    expect(events.filter((e) => e.type === 'nonfinite').map((e) => [e.step, e.type === 'nonfinite' && e.count])).toEqual([
      [0, 1],
      [1, 2],
      [2, 3],
    ]);
    expect(stepsOf(events)).toEqual([]);
    const logged = await readMetricsLog(join(cfg.output!, 'metrics.jsonl'));
    expect(logged.at(-1)).toMatchObject({ type: 'error', code: 'nonfinite_limit', step: 2 });
  }, 120_000);

  it('refuses a fresh run into a folder with checkpoints, and any run into a folder another run holds', async () => {
    const cfg = config();
    const output = cfg.output!;
    await mkdir(join(output, 'checkpoints', 'step-000004'), { recursive: true });
    await expect(train(cfg).done).rejects.toMatchObject({
      code: 'output_has_checkpoints',
      message: expect.stringMatching(new RegExp(`output folder ${output.replace(/[.]/g, '\\.')} already has checkpoints.*use --resume.*or a new output folder`)),
    });
    // Refused before anything was written.
    expect((await readdir(output)).sort()).toEqual(['checkpoints']);

    // A live run's lock (this very process stands in for it), and its checkpoint in progress.
    const inProgress = join(output, 'checkpoints', '.tmp-step-000005-0a1b2c3d');
    await mkdir(inProgress);
    await writeFile(join(output, 'run.lock'), JSON.stringify({ pid: process.pid, host: hostname(), started: new Date().toISOString(), token: 'other-run' }));
    await expect(train(cfg, { resume: true }).done).rejects.toMatchObject({
      code: 'output_locked',
      message: expect.stringContaining(`output folder ${output} is in use by another training run (pid ${process.pid}`),
    });
    expect((await readdir(join(output, 'checkpoints'))).sort()).toEqual(['.tmp-step-000005-0a1b2c3d', 'step-000004']);
  });

  it('sets the configured memory limit for the run and restores the previous one after it', async () => {
    const before = (await memory()).limit;
    const limit = before === 3_000_000_000 ? 3_100_000_000 : 3_000_000_000;
    let during: number | undefined;
    const handle = train(config({ training: { max_steps: 2 }, memory: { limit } }));
    for await (const e of handle) if (e.type === 'step' && during === undefined) during = (await memory()).limit;
    await handle.done;
    expect(during).toBe(limit);
    expect((await memory()).limit).toBe(before);
  }, 120_000);

  it('trains from raw JSONL, preparing it into the run folder with the model tokenizer', async () => {
    const cfg = config({ data: { train: fx.jsonl, valid: fx.jsonl, max_seq_length: 64 }, training: { max_steps: 3 }, eval: { every_steps: 3, early_stopping_patience: 0 } });
    const events = await collect(train(cfg));
    expect(stepsOf(events)).toHaveLength(3);
    expect(events.filter((e) => e.type === 'eval')).toHaveLength(1);
    const manifest = JSON.parse(await readFile(join(cfg.output!, 'prepared-train', 'manifest.json'), 'utf8')) as { counts?: unknown; tokenizer: { model: string } };
    expect(manifest.tokenizer.model).toBe(fx.modelDir);
  }, 120_000);

  it('splits raw JSONL by content hash when no valid files are given, with data.prepare options', async () => {
    const cfg = config({
      data: { train: fx.jsonl, max_seq_length: 64, prepare: { valid_fraction: 0.25, test_fraction: 0, near_duplicate_threshold: null, train_on: 'all' } },
      training: { max_steps: 2 },
      eval: { every_steps: 2, early_stopping_patience: 0 },
    });
    const events = await collect(train(cfg));
    expect(events.filter((e) => e.type === 'eval')).toHaveLength(1);
    const manifest = readManifest(join(cfg.output!, 'prepared'));
    expect(manifest.options.trainOn).toBe('all');
    expect(manifest.options.splitFractions).toEqual({ valid: 0.25, test: 0 });
    expect(manifest.splits.train.records + manifest.splits.valid.records).toBe(24);
    expect(manifest.splits.valid.records).toBeGreaterThan(0);
    // The same hash split as the prepare command gives for these files.
    const alone = join(fx.tiny.root, 'prepared-alone');
    await prepareDataset({ model: fx.modelDir, inputs: [fx.jsonl], outDir: alone, maxSeqLength: 64, split: { valid: 0.25, test: 0 }, nearDuplicateThreshold: null, trainOn: 'all' });
    const reference = readManifest(alone);
    expect(manifest.splits.valid.shards.map((s) => s.sha256)).toEqual(reference.splits.valid.shards.map((s) => s.sha256));
  }, 120_000);

  it('every config error names its key', async () => {
    await expect(train({ ...config(), training: { schedule: 'cosin' } } as never).done).rejects.toThrow(/training\.schedule/);
    await expect(train({ ...config(), lora: { rank: 0 } } as never).done).rejects.toThrow(/lora\.rank/);
    await expect(train({ ...config(), bogus: 1 } as never).done).rejects.toThrow(/bogus/);
  });
});

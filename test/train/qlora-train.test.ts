/**
 * The trainer on a 4-bit base (QLoRA), as users run it: the other trainer tests keep the base dense.
 * The run must learn a small data set, and the adapter it saves must carry that learning onto a
 * freshly loaded 4-bit base.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainConfigInput } from '../../lib/config/train-config.js';
import { openPreparedDataset } from '../../lib/data/prepared-dataset.js';
import { datasetLoss } from '../../lib/train/dataset-loss.js';
import { loadModel } from '../../lib/model/load-model.js';
import type { RunEvent, StepEvent } from '../../lib/train/run-events.js';
import { train } from '../../lib/train/trainer.js';
import { makeTrainFixture, type TrainFixture } from '../fixtures/train-fixture.js';

const QUANTIZATION = { bits: 4, group_size: 32 } as const;

describe('QLoRA training on a 4-bit base', () => {
  let fx: TrainFixture;
  beforeAll(async () => {
    fx = await makeTrainFixture();
  }, 120_000);
  afterAll(async () => fx?.cleanup());

  it('overfits a small data set, and the saved adapter lowers the loss of a fresh 4-bit base', async () => {
    const config: TrainConfigInput = {
      model: fx.modelDir,
      data: { train: fx.prepared, max_seq_length: 64 },
      lora: { rank: 8, alpha: 16, dropout: 0, targets: 'all-linear' },
      quantization: QUANTIZATION,
      training: { learning_rate: 1e-2, batch_size: 4, grad_accumulation: 1, max_steps: 40, warmup_steps: 2, schedule: 'constant', seed: 7, grad_checkpointing: true },
      eval: { every_steps: 0, early_stopping_patience: 0 },
      checkpoint: { every_steps: 0, keep_last: 1 },
      output: join(fx.tiny.root, 'qlora-run'),
    };
    const handle = train(config);
    const events: RunEvent[] = [];
    for await (const e of handle) events.push(e);
    const done = await handle.done;
    expect(done.reason).toBe('completed');
    const steps = events.filter((e): e is StepEvent => e.type === 'step');
    expect(steps).toHaveLength(40);
    expect(steps.at(-1)!.loss, `loss ${steps[0]!.loss} → ${steps.at(-1)!.loss}`).toBeLessThan(0.1 * steps[0]!.loss);

    const quantization = { bits: QUANTIZATION.bits, groupSize: QUANTIZATION.group_size };
    const data = openPreparedDataset(fx.prepared);
    const base = await loadModel(fx.modelDir, { quantization });
    const tuned = await loadModel(fx.modelDir, { quantization, adapter: done.adapter_path! });
    try {
      expect((await tuned.native.info()).linearStorage).toEqual({ '4-bit g32': 14 });
      const opts = { batchSize: 4, maxSeqLength: 64, padId: 0 };
      const before = await datasetLoss(base.native, data.split('train'), opts);
      const after = await datasetLoss(tuned.native, data.split('train'), opts);
      expect(after.loss, `dataset loss ${before.loss} → ${after.loss}`).toBeLessThan(0.2 * before.loss);
    } finally {
      base.dispose();
      tuned.dispose();
      data.close();
    }
  }, 180_000);
});

/**
 * Continued training: a run given lora.init_adapter starts from that adapter's weights, so its
 * first loss is the parent adapter's loss on the same batch, computed here apart from the trainer
 * (the base and the adapter loaded by loadModel, the native loss over the whole train split,
 * which the run's one batch holds). The parent is read as ours and as a PEFT folder.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainConfigInput } from '../../lib/config/train-config.js';
import { writePeftAdapter } from '../../lib/export/peft.js';
import { openPreparedDataset } from '../../lib/data/prepared-dataset.js';
import { loadModel } from '../../lib/model/load-model.js';
import { datasetLoss } from '../../lib/train/dataset-loss.js';
import type { StepEvent } from '../../lib/train/run-events.js';
import { train } from '../../lib/train/trainer.js';
import { makeTrainFixture, shortRunConfig, type TrainFixture } from '../fixtures/train-fixture.js';
import { tempDir } from '../helpers/temp-dir.js';

let fx: TrainFixture;
let parentAdapter: string;
const BATCH = 32;

function runConfig(output: string, overrides: { lora?: Partial<NonNullable<TrainConfigInput['lora']>>; maxSteps: number; batchSize?: number }): TrainConfigInput {
  const base = shortRunConfig(fx, output);
  return {
    ...base,
    lora: { ...(base.lora as object), dropout: 0, ...overrides.lora },
    training: { ...(base.training as object), max_steps: overrides.maxSteps, batch_size: overrides.batchSize ?? 2, grad_accumulation: 1, warmup_steps: 0 },
    checkpoint: { every_steps: 0, keep_last: 1 },
  };
}

async function firstLoss(config: TrainConfigInput): Promise<number> {
  const run = train(config);
  const steps: StepEvent[] = [];
  for await (const e of run) if (e.type === 'step') steps.push(e);
  await run.done;
  return steps[0]!.loss;
}

beforeAll(async () => {
  fx = await makeTrainFixture(20);
  const run = train(runConfig(join(tempDir('init-parent-'), 'run'), { maxSteps: 6 }));
  parentAdapter = (await run.done).adapter_path!;
}, 240_000);

afterAll(() => fx?.cleanup());

describe('train with lora.init_adapter', () => {
  it("starts at the parent adapter's loss on the same batch", async () => {
    const data = openPreparedDataset(fx.prepared);
    const train = data.split('train');
    expect(train.size).toBeLessThanOrEqual(BATCH);
    const parent = await loadModel(fx.modelDir, { quantization: { bits: 4, groupSize: 32 }, adapter: parentAdapter });
    let parentLoss: number;
    try {
      parentLoss = (await datasetLoss(parent.native, train, { batchSize: BATCH, maxSeqLength: 64, padId: 0 })).loss;
    } finally {
      parent.dispose();
      data.close();
    }
    const continued = await firstLoss(runConfig(join(tempDir('init-child-'), 'run'), { maxSteps: 1, batchSize: BATCH, lora: { init_adapter: parentAdapter } }));
    const fresh = await firstLoss(runConfig(join(tempDir('init-fresh-'), 'run'), { maxSteps: 1, batchSize: BATCH }));
    // The same adapter written as a PEFT folder (adapter_model.safetensors, HF names) starts there too.
    const peft = join(tempDir('init-peft-'), 'peft');
    await writePeftAdapter(parentAdapter, peft);
    const fromPeft = await firstLoss(runConfig(join(tempDir('init-child-peft-'), 'run'), { maxSteps: 1, batchSize: BATCH, lora: { init_adapter: peft } }));
    expect(Math.abs(continued - parentLoss)).toBeLessThan(1e-4 * parentLoss);
    expect(Math.abs(fromPeft - parentLoss)).toBeLessThan(1e-4 * parentLoss);
    // The parent learned something: a fresh start is measurably elsewhere.
    expect(fresh - parentLoss).toBeGreaterThan(0.05);
  }, 240_000);

  it('refuses an adapter whose LoRA settings differ, naming both', async () => {
    const run = train(runConfig(join(tempDir('init-bad-'), 'run'), { maxSteps: 1, lora: { rank: 4, init_adapter: parentAdapter } }));
    await expect(run.done).rejects.toThrow(/adapter has rank 8, scale 2,.*config's lora section builds rank 4, scale 4/);
  }, 120_000);

  it('names a missing folder', async () => {
    const run = train(runConfig(join(tempDir('init-missing-'), 'run'), { maxSteps: 1, lora: { init_adapter: join(tempDir('init-none-'), 'nope') } }));
    await expect(run.done).rejects.toThrow(/lora.init_adapter .*nope: no such adapter folder/);
  }, 120_000);
});

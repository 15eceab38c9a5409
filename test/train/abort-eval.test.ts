/**
 * Ctrl+C during a validation pass: the run stops within the batch in flight, records no partial
 * evaluation, and ends "aborted" with a checkpoint, instead of finishing the whole pass first.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareDataset } from '../../lib/data/prepare.js';
import { openPreparedDataset } from '../../lib/data/prepared-dataset.js';
import { datasetLoss } from '../../lib/train/dataset-loss.js';
import { loadModel } from '../../lib/model/load-model.js';
import type { RunEvent } from '../../lib/train/run-events.js';
import { train } from '../../lib/train/trainer.js';
import { conversation, makeTrainFixture, type TrainFixture } from '../fixtures/train-fixture.js';

let fx: TrainFixture;
let prepared: string;
const lora = { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'] as ['q_proj', 'v_proj'] };

describe('aborting during validation', () => {
  beforeAll(async () => {
    fx = await makeTrainFixture();
    const jsonl = join(fx.tiny.root, 'many.jsonl');
    await writeFile(jsonl, `${Array.from({ length: 400 }, (_, i) => JSON.stringify(conversation(i))).join('\n')}\n`);
    prepared = join(fx.tiny.root, 'prepared-big-valid');
    // Most records in validation: one pass is hundreds of batches.
    await prepareDataset({ model: fx.modelDir, inputs: [jsonl], outDir: prepared, maxSeqLength: 64, split: { valid: 0.75, test: 0 }, nearDuplicateThreshold: null });
  }, 120_000);
  afterAll(async () => fx?.cleanup());

  it('returns within about one batch, with no evaluation recorded', async () => {
    // What a validation batch costs here, measured apart over a sample of the pass.
    const ds = openPreparedDataset(prepared);
    const model = await loadModel(fx.modelDir, { quantization: 'none', lora: { ...lora, seed: 1 } });
    const batches = ds.split('valid').size;
    let batchMs: number;
    try {
      const t0 = performance.now();
      const r = await datasetLoss(model.native, ds.split('valid'), { batchSize: 1, maxSeqLength: 64, padId: 0, maxBatches: 30 });
      batchMs = (performance.now() - t0) / r.batches;
    } finally {
      model.dispose();
      ds.close();
    }
    expect(batches).toBeGreaterThan(200);

    const controller = new AbortController();
    const events: RunEvent[] = [];
    let abortedAt = 0;
    const run = train(
      {
        model: fx.modelDir,
        data: { train: prepared, max_seq_length: 64 },
        lora,
        quantization: 'none',
        training: { learning_rate: 1e-3, batch_size: 1, grad_accumulation: 1, max_steps: 5, warmup_steps: 0, seed: 2, grad_checkpointing: false },
        eval: { every_steps: 1, early_stopping_patience: 0 },
        checkpoint: { every_steps: 0, keep_last: 1 },
        output: join(fx.tiny.root, 'abort-run'),
      },
      { signal: controller.signal },
    );
    for await (const e of run) {
      events.push(e);
      // The step event comes just before step 1's validation pass starts.
      if (e.type === 'step' && abortedAt === 0) {
        abortedAt = performance.now();
        controller.abort();
      }
    }
    const stoppedMs = performance.now() - abortedAt;
    const done = await run.done;
    expect(done.reason).toBe('aborted');
    expect(done.step).toBe(1);
    expect(events.filter((e) => e.type === 'eval')).toEqual([]);
    expect(events.filter((e) => e.type === 'checkpoint').map((e) => (e.type === 'checkpoint' ? e.reason : ''))).toEqual(['abort']);
    // The batch in flight, a checkpoint and the adapter: a few batches' time, not the pass's hundreds.
    expect(stoppedMs).toBeLessThan((batchMs * batches) / 10);
    console.log(`validation: ${batches} batches of ${batchMs.toFixed(1)} ms; stopped ${stoppedMs.toFixed(0)} ms after the abort`);
  }, 180_000);
});

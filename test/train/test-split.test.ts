/**
 * data.test (or a prepared folder's test split) is evaluated once after training: loss and
 * perplexity in the done event and metrics.jsonl, equal to the final adapter's loss over it.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainConfigInput } from '../../lib/config/train-config.js';
import { prepareDataset } from '../../lib/data/prepare.js';
import { openPreparedDataset } from '../../lib/data/prepared-dataset.js';
import { datasetLoss } from '../../lib/train/dataset-loss.js';
import { loadModel } from '../../lib/model/load-model.js';
import { readMetricsLog } from '../../lib/train/metrics-log.js';
import type { DoneEvent } from '../../lib/train/run-events.js';
import { train } from '../../lib/train/trainer.js';
import { conversation, makeTrainFixture, type TrainFixture } from '../fixtures/train-fixture.js';

let fx: TrainFixture;
let withTest: string;
let runs = 0;

function config(data: TrainConfigInput['data']): TrainConfigInput {
  return {
    model: fx.modelDir,
    data,
    lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'] },
    quantization: 'none',
    training: { learning_rate: 5e-3, batch_size: 2, grad_accumulation: 1, max_steps: 4, warmup_steps: 0, schedule: 'constant', seed: 9, grad_checkpointing: false },
    eval: { every_steps: 0, early_stopping_patience: 0 },
    checkpoint: { every_steps: 0, keep_last: 1 },
    output: join(fx.tiny.root, `test-split-run-${runs++}`),
  };
}

/** The final adapter's loss over a prepared split, computed apart from the run. */
async function adapterLoss(adapter: string, dir: string, split: 'train' | 'test'): Promise<{ loss: number; tokens: number; records: number }> {
  const model = await loadModel(fx.modelDir, { quantization: 'none', adapter });
  const ds = openPreparedDataset(dir);
  try {
    const source = ds.split(split);
    const r = await datasetLoss(model.native, source, { batchSize: 2, maxSeqLength: 64, padId: ds.manifest.tokenizer.padId ?? 0 });
    return { loss: r.loss, tokens: r.tokens, records: source.size };
  } finally {
    ds.close();
    model.dispose();
  }
}

async function done(cfg: TrainConfigInput): Promise<DoneEvent> {
  const result = await train(cfg).done;
  const logged = (await readMetricsLog(join(cfg.output, 'metrics.jsonl'))).filter((e) => e.type === 'done');
  expect(logged).toEqual([result]);
  return result;
}

describe('the test split', () => {
  beforeAll(async () => {
    fx = await makeTrainFixture();
    withTest = join(fx.tiny.root, 'prepared-with-test');
    await prepareDataset({ model: fx.modelDir, inputs: [fx.jsonl], outDir: withTest, maxSeqLength: 64, split: { valid: 0.15, test: 0.25 }, nearDuplicateThreshold: null });
  }, 120_000);
  afterAll(async () => fx?.cleanup());

  it("a prepared folder's test split: loss and perplexity of the final adapter in the done event and metrics.jsonl", async () => {
    const result = await done(config({ train: withTest, max_seq_length: 64 }));
    const expected = await adapterLoss(result.adapter_path!, withTest, 'test');
    expect(expected.records).toBeGreaterThan(0);
    expect(result.test).not.toBeNull();
    expect(result.test!.records).toBe(expected.records);
    expect(result.test!.tokens).toBe(expected.tokens);
    expect(result.test!.loss).toBeCloseTo(expected.loss, 5);
    expect(result.test!.perplexity).toBeCloseTo(Math.exp(expected.loss), 3);
  }, 180_000);

  it('data.test as JSONL is prepared whole and evaluated', async () => {
    const testJsonl = join(fx.tiny.root, 'held-out.jsonl');
    await writeFile(testJsonl, `${Array.from({ length: 5 }, (_, i) => JSON.stringify(conversation(500 + i))).join('\n')}\n`);
    const cfg = config({ train: fx.prepared, test: testJsonl, max_seq_length: 64 });
    const result = await done(cfg);
    const expected = await adapterLoss(result.adapter_path!, join(cfg.output, 'prepared-test'), 'train');
    expect(expected.records).toBe(5);
    expect(result.test).toMatchObject({ records: 5, tokens: expected.tokens });
    expect(result.test!.loss).toBeCloseTo(expected.loss, 5);
  }, 180_000);

  it('no test split: test is null', async () => {
    const result = await done(config({ train: fx.prepared, max_seq_length: 64 }));
    expect(result.test).toBeNull();
  }, 180_000);
});

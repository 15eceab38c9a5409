/**
 * Training on a folder prepared at a longer length than the run's data.max_seq_length: the
 * data.overlong policy, its counts in the start event, metrics.jsonl and the CLI log, and
 * supervised-token counts that match the cut masks exactly.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainConfigInput } from '../../lib/config/train-config.js';
import { fitRecords } from '../../lib/data/overlong.js';
import { prepareDataset } from '../../lib/data/prepare.js';
import { openPreparedDataset, type RecordSource, type TokenRecord } from '../../lib/data/prepared-dataset.js';
import { overlongLines } from '../../lib/cli/commands/train.js';
import { readMetricsLog } from '../../lib/train/metrics-log.js';
import type { RunEvent, StartEvent, StepEvent } from '../../lib/train/run-events.js';
import { train } from '../../lib/train/trainer.js';
import { makeTrainFixture, type TrainFixture } from '../fixtures/train-fixture.js';

const MAX = 32;
const words = (n: number, salt: number) => Array.from({ length: n }, (_, k) => `w${(k * 7 + salt) % 41}`).join(' ');

/** Short records, records whose answer runs past MAX tokens, and records whose prompt alone does. */
function conversations(): string[] {
  const lines: string[] = [];
  for (let i = 0; i < 10; i++) lines.push(JSON.stringify({ messages: [{ role: 'user', content: `Q${i}` }, { role: 'assistant', content: `A${i} ok` }] }));
  for (let i = 0; i < 6; i++) lines.push(JSON.stringify({ messages: [{ role: 'user', content: `Tell ${i}` }, { role: 'assistant', content: words(40 + i, i) }] }));
  for (let i = 0; i < 3; i++) lines.push(JSON.stringify({ messages: [{ role: 'user', content: words(50 + i, 100 + i) }, { role: 'assistant', content: `Short ${i}` }] }));
  return lines;
}

/** The counts and supervised tokens expected from the records themselves. */
function expectedFit(source: RecordSource, max: number) {
  let truncated = 0;
  let truncatedAway = 0;
  let overlong = 0;
  let supervisedIfTruncated = 0;
  let supervisedIfDropped = 0;
  for (let i = 0; i < source.size; i++) {
    const { tokens, mask } = source.read(i);
    // A record of n tokens predicts tokens 1…n-1: mask[0] never counts.
    const supervised = (end: number) => mask.subarray(1, end).reduce((a, b) => a + b, 0);
    if (tokens.length <= max) {
      supervisedIfTruncated += supervised(tokens.length);
      supervisedIfDropped += supervised(tokens.length);
      continue;
    }
    overlong++;
    if (supervised(max) > 0) {
      truncated++;
      supervisedIfTruncated += supervised(max);
    } else truncatedAway++;
  }
  return { truncated, truncatedAway, overlong, supervisedIfTruncated, supervisedIfDropped };
}

let fx: TrainFixture;
let prepared: string;
let runs = 0;

function config(data: Partial<TrainConfigInput['data']>): TrainConfigInput {
  return {
    model: fx.modelDir,
    data: { train: prepared, max_seq_length: MAX, ...data },
    lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'] },
    quantization: 'none',
    training: { learning_rate: 1e-3, batch_size: 2, grad_accumulation: 1, epochs: 1, warmup_steps: 0, schedule: 'constant', seed: 3, grad_checkpointing: false },
    eval: { every_steps: 0, early_stopping_patience: 0 },
    checkpoint: { every_steps: 0, keep_last: 1 },
    output: join(fx.tiny.root, `overlong-run-${runs++}`),
  };
}

async function collect(handle: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const events: RunEvent[] = [];
  for await (const e of handle) events.push(e);
  return events;
}

describe('records longer than data.max_seq_length', () => {
  beforeAll(async () => {
    fx = await makeTrainFixture();
    const jsonl = join(fx.tiny.root, 'long.jsonl');
    await writeFile(jsonl, `${conversations().join('\n')}\n`);
    prepared = join(fx.tiny.root, 'prepared-2048');
    // prepare's defaults: records up to 2048 tokens.
    await prepareDataset({ model: fx.modelDir, inputs: [jsonl], outDir: prepared, split: { valid: 0, test: 0 }, nearDuplicateThreshold: null });
  }, 120_000);
  afterAll(async () => fx?.cleanup());

  it('truncate (the default): cut records train on their cut masks; records with nothing supervised left are counted out', async () => {
    const ds = openPreparedDataset(prepared);
    const expected = expectedFit(ds.split('train'), MAX);
    // fitRecords reads only the mask prefix that survives the cut.
    const split = ds.split('train');
    for (let i = 0; i < split.size; i++) expect(Array.from(split.maskPrefix(i, MAX))).toEqual(Array.from(split.read(i).mask.subarray(0, MAX)));
    ds.close();
    // The corpus has all three kinds, or this test would prove little.
    expect(expected.truncated).toBeGreaterThan(0);
    expect(expected.truncatedAway).toBeGreaterThan(0);
    expect(expected.overlong).toBeLessThan(19);

    const cfg = config({});
    const events = await collect(train(cfg));
    const start = events.find((e): e is StartEvent => e.type === 'start')!;
    expect(start.overlong).toEqual({
      policy: 'truncate',
      max_seq_length: MAX,
      train: { truncated: expected.truncated, truncated_away: expected.truncatedAway, dropped: 0 },
      valid: null,
      test: null,
    });
    const steps = events.filter((e): e is StepEvent => e.type === 'step');
    // One epoch of batches of 2 over the records kept.
    expect(steps).toHaveLength(Math.ceil((19 - expected.truncatedAway) / 2));
    expect(steps.reduce((n, s) => n + s.supervised_tokens, 0)).toBe(expected.supervisedIfTruncated);
    const logged = await readMetricsLog(join(cfg.output, 'metrics.jsonl'));
    expect(logged.find((e) => e.type === 'start')).toEqual(start);
    expect(overlongLines(start)).toEqual([
      `train: records longer than data.max_seq_length ${MAX}: ${expected.truncated} cut to ${MAX} tokens, ${expected.truncatedAway} left out (nothing supervised within ${MAX} tokens)`,
    ]);
  }, 180_000);

  it('drop: every overlong record is left out and counted', async () => {
    const ds = openPreparedDataset(prepared);
    const expected = expectedFit(ds.split('train'), MAX);
    ds.close();
    const events = await collect(train(config({ overlong: 'drop' })));
    const start = events.find((e): e is StartEvent => e.type === 'start')!;
    expect(start.overlong?.train).toEqual({ truncated: 0, truncated_away: 0, dropped: expected.overlong });
    const steps = events.filter((e): e is StepEvent => e.type === 'step');
    expect(steps).toHaveLength(Math.ceil((19 - expected.overlong) / 2));
    expect(steps.reduce((n, s) => n + s.supervised_tokens, 0)).toBe(expected.supervisedIfDropped);
    expect(overlongLines(start)).toEqual([`train: records longer than data.max_seq_length ${MAX}: ${expected.overlong} left out (data.overlong: drop)`]);
  }, 180_000);
});

describe('fitRecords', () => {
  const record = (tokens: number[], mask: number[]): TokenRecord => ({ tokens: Int32Array.from(tokens), mask: Uint8Array.from(mask) });
  const records = [
    record([1, 2, 3], [0, 1, 1]),
    record([1, 2, 3, 4, 5, 6], [0, 0, 1, 1, 1, 1]), // cut to 4: mask 0 0 1 1, two supervised left
    record([1, 2, 3, 4, 5, 6, 7], [0, 0, 0, 0, 1, 1, 1]), // cut to 4: nothing supervised left
    record([1, 2, 3, 4], [0, 1, 0, 1]),
  ];
  const source: RecordSource = { size: records.length, length: (i) => records[i]!.tokens.length, read: (i) => records[i]! };

  it('truncate keeps the cut prefix of tokens and mask, drop leaves the record out', async () => {
    const cut = await fitRecords(source, 4, 'truncate');
    expect(cut.counts).toEqual({ truncated: 1, truncatedAway: 1, dropped: 0 });
    expect(cut.source.size).toBe(3);
    expect([0, 1, 2].map((i) => cut.source.length(i))).toEqual([3, 4, 4]);
    expect(Array.from(cut.source.read(1).tokens)).toEqual([1, 2, 3, 4]);
    expect(Array.from(cut.source.read(1).mask)).toEqual([0, 0, 1, 1]);
    expect(Array.from(cut.source.read(2).mask)).toEqual([0, 1, 0, 1]);
    const dropped = await fitRecords(source, 4, 'drop');
    expect(dropped.counts).toEqual({ truncated: 0, truncatedAway: 0, dropped: 2 });
    expect([0, 1].map((i) => dropped.source.length(i))).toEqual([3, 4]);
  });

  it('a source with nothing overlong is returned as it is', async () => {
    const fitted = await fitRecords(source, 7, 'truncate');
    expect(fitted.source).toBe(source);
    expect(fitted.counts).toEqual({ truncated: 0, truncatedAway: 0, dropped: 0 });
  });
});

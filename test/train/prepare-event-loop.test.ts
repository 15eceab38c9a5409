/**
 * train() on raw JSONL prepares it in the host's process: the event loop must stay free through
 * prepare's passes (lag under 50 ms), as it does through the training steps.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareDataset } from '../../lib/data/prepare.js';
import { loadModelTokenizer } from '../../lib/tokenizer/load-tokenizer.js';
import { train } from '../../lib/train/trainer.js';
import { conversation, makeTrainFixture, shortRunConfig, type TrainFixture } from '../fixtures/train-fixture.js';

let fx: TrainFixture;
let jsonl: string;
const RECORDS = 3000;

/**
 * Worst lag of a 5 ms timer, by a timer of our own and by perf_hooks' histogram, while `work` runs
 * and, when `inWindow` is given, only at ticks where it says so.
 */
async function worstLag(work: () => Promise<void>, inWindow: () => boolean = () => true): Promise<{ timerMs: number; histogramMs: number; ticks: number }> {
  const histogram = monitorEventLoopDelay({ resolution: 5 });
  let last = performance.now();
  let worst = 0;
  let ticks = 0;
  let was = false;
  const timer = setInterval(() => {
    const t = performance.now();
    const now = inWindow();
    // A tick counts when the window was open for the whole gap before it.
    if (was && now) {
      worst = Math.max(worst, t - last - 5);
      ticks++;
    }
    if (now && !was) histogram.enable();
    if (!now && was) histogram.disable();
    was = now;
    last = t;
  }, 5);
  try {
    await work();
  } finally {
    histogram.disable();
    clearInterval(timer);
  }
  return { timerMs: worst, histogramMs: histogram.max / 1e6, ticks };
}

describe('the event loop during prepare', () => {
  beforeAll(async () => {
    fx = await makeTrainFixture();
    jsonl = join(fx.tiny.root, 'many.jsonl');
    // Long enough that each pass takes far more than 50 ms; every record distinct.
    await writeFile(jsonl, `${Array.from({ length: RECORDS }, (_, i) => JSON.stringify(conversation(i))).join('\n')}\n`);
  }, 120_000);
  afterAll(async () => fx?.cleanup());

  it('prepare alone never holds the loop 50 ms', async () => {
    const tokenizer = await loadModelTokenizer(fx.modelDir);
    let records = 0;
    const lag = await worstLag(async () => {
      const { report } = await prepareDataset({ inputs: [jsonl], outDir: join(fx.tiny.root, 'alone'), maxSeqLength: 64 }, { tokenizer });
      records = report.totals.kept;
    });
    expect(records).toBeGreaterThan(RECORDS * 0.9);
    expect(lag.ticks).toBeGreaterThan(100);
    expect(lag.timerMs).toBeLessThan(50);
    expect(lag.histogramMs).toBeLessThan(50);
  }, 120_000);

  it("train() on raw JSONL keeps the loop free through prepare's passes", async () => {
    const output = join(fx.tiny.root, 'raw-run');
    const config = { ...shortRunConfig(fx, output), data: { train: jsonl, max_seq_length: 64 }, training: { ...shortRunConfig(fx, '').training, max_steps: 2 } };
    // From the moment prepare has its tokenizer and opens rejections.jsonl until it writes manifest.json.
    const folder = join(output, 'prepared');
    const inPrepare = () => existsSync(join(folder, 'rejections.jsonl')) && !existsSync(join(folder, 'manifest.json'));
    let started = false;
    // Stopped at the first step, and awaited: a run left going would still be writing its folder.
    const abort = new AbortController();
    const lag = await worstLag(async () => {
      const run = train(config, { signal: abort.signal });
      for await (const e of run) {
        if (e.type === 'start') started = true;
        if (e.type === 'step') abort.abort();
      }
      expect((await run.done).reason).toBe('aborted');
    }, inPrepare);
    expect(started).toBe(true);
    // Prepare of 3,000 records takes about a second on a quiet machine: the window held many
    // ticks (about 100 there), so the lag figure measured a real stretch of prepare.
    expect(lag.ticks).toBeGreaterThan(50);
    expect(lag.timerMs).toBeLessThan(50);
    expect(lag.histogramMs).toBeLessThan(50);
  }, 180_000);
});

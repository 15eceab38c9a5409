import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { train } from '../../lib/train/trainer.js';
import type { RunEvent } from '../../lib/train/run-events.js';
import type { RunReport } from '../../lib/eval/report/run-report.js';
import { makeTrainFixture, shortRunConfig, type TrainFixture } from '../fixtures/train-fixture.js';
import { tempDir } from '../helpers/temp-dir.js';
import { openInChromium, CHROMIUM } from '../fixtures/chromium.js';

const cli = join(import.meta.dirname, '..', '..', 'lib', 'cli', 'main.ts');

describe('mlx-qlora report --run', () => {
  let fx: TrainFixture;
  let output: string;
  let events: RunEvent[];

  beforeAll(async () => {
    fx = await makeTrainFixture(24);
    output = join(tempDir('run-report-'), 'run');
    const config = shortRunConfig(fx, output);
    const run = train({ ...config, training: { ...config.training, max_steps: 6 }, eval: { every_steps: 2, early_stopping_patience: 0 }, checkpoint: { every_steps: 3, keep_last: 1 } });
    for await (const _ of run) void _;
    await run.done;
    const lines = (await readFile(join(output, 'metrics.jsonl'), 'utf8')).trim().split('\n');
    events = lines.map((l) => JSON.parse(l) as RunEvent);
  }, 300_000);
  afterAll(() => fx?.cleanup());

  it('writes report.json whose numbers are the run’s own, recomputed here from metrics.jsonl', async () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', cli, 'report', '--run', output], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^6 steps, loss /);
    const report = JSON.parse(await readFile(join(output, 'report.json'), 'utf8')) as RunReport;
    const steps = events.filter((e) => e.type === 'step');
    const evals = events.filter((e) => e.type === 'eval');
    expect(report.steps.map((s) => [s.step, s.loss, s.lr])).toEqual(steps.map((s) => [s.step, s.loss, s.lr]));
    expect(report.summary.first_loss).toBe(steps[0]!.loss);
    expect(report.summary.last_loss).toBe(steps.at(-1)!.loss);
    const best = evals.reduce((b, e) => (e.val_loss! < b.val_loss! ? e : b));
    expect([report.summary.best_val_loss, report.summary.best_step]).toEqual([best.val_loss, best.step]);
    expect(report.summary.mean_tokens_per_sec).toBeCloseTo(steps.reduce((a, s) => a + s.tokens_per_sec, 0) / steps.length, 9);
    expect(report.summary.peak_memory_bytes).toBe(Math.max(...steps.map((s) => s.peak_memory_bytes)));
    expect(report.evals).toHaveLength(3);
    const md = await readFile(join(output, 'report.md'), 'utf8');
    expect(md).toContain(`| best validation loss | ${Number(best.val_loss!.toPrecision(4))} at step ${best.step} |`);
  }, 120_000);

  it.skipIf(!existsSync(CHROMIUM))('opens in chromium with no console errors and one point mark per value', async () => {
    // Kept outside the temp folder so a person can look at it after the run.
    const screenshot = join(import.meta.dirname, '..', '..', 'test-output', 'run-report.png');
    const page = await openInChromium(join(output, 'report.html'), screenshot);
    try {
      expect(page.errors).toEqual([]);
      expect(page.svgCount).toBe(4);
      // Loss: 6 train points + 3 validation points; learning rate and tokens/s: 6; memory: 2 × 6.
      expect(page.pointMarksPerSvg).toEqual([9, 6, 6, 12]);
      expect(existsSync(screenshot)).toBe(true);
    } finally {
      await page.close();
    }
  }, 120_000);
});

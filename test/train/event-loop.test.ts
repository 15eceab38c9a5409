import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { train } from '../../lib/train/trainer.js';
import { makeTrainFixture, shortRunConfig, type TrainFixture } from '../fixtures/train-fixture.js';

// Alone in its file (and run in the 'timing' project): a training run earlier in the same process
// adds a one-off pause of up to ~70 ms at the next run's first step, which is not what this measures.
let fx: TrainFixture;

describe('a training run in the host process', () => {
  beforeAll(async () => {
    fx = await makeTrainFixture();
  }, 120_000);
  afterAll(async () => fx?.cleanup());

  it('keeps the event loop free while a run streams steps', async () => {
    let last = performance.now();
    let worst = 0;
    let started = false;
    const timer = setInterval(() => {
      const t = performance.now();
      if (started) worst = Math.max(worst, t - last - 10);
      last = t;
    }, 10);
    try {
      let steps = 0;
      for await (const e of train({ ...shortRunConfig(fx, join(fx.tiny.root, 'lag-run')), checkpoint: { every_steps: 8, keep_last: 1 } })) {
        if (e.type === 'start') {
          started = true;
          last = performance.now();
        }
        if (e.type === 'step') steps++;
      }
      expect(steps).toBe(24);
      expect(worst).toBeLessThan(50);
    } finally {
      clearInterval(timer);
    }
  }, 120_000);
});

import { describe, expect, it } from 'vitest';
import { learningRateAt, totalTrainingSteps, type LrScheduleParams } from '../../lib/train/schedule.js';

// Peak 1, floor 0.1, 4 warmup updates, 14 in all: decay covers T − W = 10 updates.
const params = (schedule: LrScheduleParams['schedule']): LrScheduleParams => ({
  learning_rate: 1,
  min_lr: 0.1,
  warmup_steps: 4,
  schedule,
  total_steps: 14,
});

describe('learningRateAt', () => {
  it.each(['cosine', 'linear', 'constant'] as const)('%s warms up linearly from (k+1)/W', (schedule) => {
    expect(learningRateAt(0, params(schedule))).toBeCloseTo(0.25, 12);
    expect(learningRateAt(1, params(schedule))).toBeCloseTo(0.5, 12);
    expect(learningRateAt(2, params(schedule))).toBeCloseTo(0.75, 12);
    expect(learningRateAt(3, params(schedule))).toBeCloseTo(1, 12);
  });

  it('cosine decays to min_lr by 0.1 + 0.9·(1 + cos(π·p))/2', () => {
    const lr = (k: number) => learningRateAt(k, params('cosine'));
    expect(lr(4)).toBeCloseTo(1, 12); // p = 0
    expect(lr(6)).toBeCloseTo(0.914057647, 8); // p = 0.2, cos 36° = 0.809017
    expect(lr(9)).toBeCloseTo(0.55, 12); // p = 0.5
    expect(lr(13)).toBeCloseTo(0.122024568, 8); // p = 0.9, cos 162° = −0.951057
    expect(lr(14)).toBeCloseTo(0.1, 12); // p = 1
    expect(lr(1000)).toBeCloseTo(0.1, 12); // past the end: stays at the floor
  });

  it('linear decays by 0.1 + 0.9·(1 − p)', () => {
    const lr = (k: number) => learningRateAt(k, params('linear'));
    expect(lr(4)).toBeCloseTo(1, 12);
    expect(lr(6)).toBeCloseTo(0.82, 12);
    expect(lr(9)).toBeCloseTo(0.55, 12);
    expect(lr(13)).toBeCloseTo(0.19, 12);
    expect(lr(20)).toBeCloseTo(0.1, 12);
  });

  it('constant holds the peak after warmup', () => {
    for (const k of [4, 5, 13, 14, 500]) expect(learningRateAt(k, params('constant'))).toBe(1);
  });

  it('matches the default schedule (2e-4, 100 warmup, cosine to 0) over 1000 updates', () => {
    const defaults: LrScheduleParams = { learning_rate: 2e-4, min_lr: 0, warmup_steps: 100, schedule: 'cosine', total_steps: 1000 };
    expect(learningRateAt(0, defaults)).toBeCloseTo(2e-6, 15);
    expect(learningRateAt(49, defaults)).toBeCloseTo(1e-4, 15);
    expect(learningRateAt(99, defaults)).toBeCloseTo(2e-4, 15);
    expect(learningRateAt(100, defaults)).toBeCloseTo(2e-4, 15);
    expect(learningRateAt(550, defaults)).toBeCloseTo(1e-4, 15);
    expect(learningRateAt(999, defaults)).toBeCloseTo(2e-4 * (1 + Math.cos((Math.PI * 899) / 900)) / 2, 18);
  });

  it('without warmup starts at the peak', () => {
    expect(learningRateAt(0, { ...params('cosine'), warmup_steps: 0 })).toBe(1);
    expect(learningRateAt(7, { ...params('linear'), warmup_steps: 0 })).toBeCloseTo(0.1 + 0.9 * 0.5, 12);
  });

  it('is monotone: non-decreasing in warmup, non-increasing after', () => {
    for (const schedule of ['cosine', 'linear'] as const) {
      const rates = Array.from({ length: 20 }, (_, k) => learningRateAt(k, params(schedule)));
      for (let k = 1; k < 4; k++) expect(rates[k]).toBeGreaterThan(rates[k - 1] ?? Infinity);
      for (let k = 5; k < 20; k++) expect(rates[k]).toBeLessThanOrEqual(rates[k - 1] ?? -Infinity);
    }
  });

  it.each([-1, 1.5, Number.NaN])('rejects step %d', (step) => {
    expect(() => learningRateAt(step, params('cosine'))).toThrow(RangeError);
  });
});

describe('totalTrainingSteps', () => {
  it('uses max_steps when given', () => {
    expect(totalTrainingSteps({ max_steps: 250, grad_accumulation: 4 }, () => 1)).toBe(250);
  });

  it('sums ceil(micro-batches / accumulation) over the epochs', () => {
    expect(totalTrainingSteps({ epochs: 3, grad_accumulation: 4 }, () => 8)).toBe(6);
    expect(totalTrainingSteps({ epochs: 3, grad_accumulation: 4 }, () => 10)).toBe(9);
    expect(totalTrainingSteps({ epochs: 1, grad_accumulation: 1 }, () => 7)).toBe(7);
    // Packing: each epoch has its own count, and each epoch's short last group is an update.
    const packed = [47, 45, 46];
    expect(totalTrainingSteps({ epochs: 3, grad_accumulation: 3 }, (e) => packed[e]!)).toBe(16 + 15 + 16);
  });

  it('rejects an empty epoch, naming it', () => {
    expect(() => totalTrainingSteps({ epochs: 2, grad_accumulation: 1 }, (e) => (e === 1 ? 0 : 3))).toThrow(/at least one batch, got 0 in epoch 1/);
  });
});

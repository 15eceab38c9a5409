import { describe, expect, it } from 'vitest';
import { ValidationTracker } from '../../lib/train/validation-tracker.js';

describe('ValidationTracker', () => {
  it('keeps the lowest loss, the earlier step on a tie, and counts evaluations since', () => {
    const tracker = new ValidationTracker();
    expect(tracker.record(2, 3.0)).toEqual({ loss: 3.0, isBest: true });
    expect(tracker.record(4, 2.5)).toEqual({ loss: 2.5, isBest: true });
    expect(tracker.record(6, 2.5)).toEqual({ loss: 2.5, isBest: false });
    expect(tracker.record(8, 2.7)).toEqual({ loss: 2.7, isBest: false });
    expect(tracker.best).toEqual({ metric: 2.5, step: 4 });
    expect(tracker.evalsSinceBest).toBe(2);
  });

  it('records a NaN/Inf loss as null, never as best, and counts it towards early stopping', () => {
    const tracker = new ValidationTracker();
    expect(tracker.record(1, Number.NaN)).toEqual({ loss: null, isBest: false });
    expect(tracker.best).toBeNull();
    expect(tracker.evalsSinceBest).toBe(1);
    expect(tracker.record(2, 4.0)).toEqual({ loss: 4.0, isBest: true });
    // NaN < x and x < NaN are both false: without the check a NaN best could never be beaten.
    expect(tracker.record(3, Number.POSITIVE_INFINITY)).toEqual({ loss: null, isBest: false });
    expect(tracker.record(4, Number.NaN)).toEqual({ loss: null, isBest: false });
    expect(tracker.best).toEqual({ metric: 4.0, step: 2 });
    expect(tracker.evalsSinceBest).toBe(2);
    expect(tracker.record(5, 3.9)).toEqual({ loss: 3.9, isBest: true });
  });

  it('continues from a checkpoint state', () => {
    const tracker = new ValidationTracker({ metric: 1.5, step: 10 }, 1);
    expect(tracker.record(12, 1.6).isBest).toBe(false);
    expect(tracker.evalsSinceBest).toBe(2);
  });
});

import { describe, expect, it } from 'vitest';
import { classifyUpdate } from '../../lib/train/update-outcome.js';

describe('classifyUpdate', () => {
  it('gives the per-token loss of an applied update', () => {
    expect(classifyUpdate({ lossSum: 30, tokens: 12, gradNorm: 0.5 })).toEqual({ kind: 'applied', loss: 2.5, gradNorm: 0.5 });
  });

  it('tells a group without supervised tokens from a NaN/Inf one', () => {
    // The native step reports lossSum 0 and gradNorm 0 then: finite, yet nothing was learned.
    expect(classifyUpdate({ lossSum: 0, tokens: 0, gradNorm: 0 })).toEqual({ kind: 'empty' });
    expect(classifyUpdate({ lossSum: Number.NaN, tokens: 8, gradNorm: 1 })).toEqual({ kind: 'nonfinite', loss: null, gradNorm: 1 });
    expect(classifyUpdate({ lossSum: 16, tokens: 8, gradNorm: Number.POSITIVE_INFINITY })).toEqual({ kind: 'nonfinite', loss: 2, gradNorm: null });
  });
});

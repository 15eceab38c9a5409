import { describe, expect, it } from 'vitest';
import { parseRolloutPlan } from '../../lib/rollout/plan.js';
import { summarizeOutcomes } from '../../lib/rollout/summary.js';
import type { OutcomeRecord } from '../../lib/rollout/outcome-log.js';

const plan = (share: number, extra: Record<string, unknown> = {}) =>
  parseRolloutPlan({ control: 'v1', candidate: 'v2', salt: 's', share, min_samples: 100, max_regression: 0.02, ...extra });

/** `good` of `n` positive feedback events (and n answered requests) on one arm. */
function arm(which: 'control' | 'candidate', n: number, good: number, failed = 0): OutcomeRecord[] {
  const model = which === 'control' ? 'v1' : 'v2';
  const out: OutcomeRecord[] = [];
  for (let i = 0; i < n; i++) {
    out.push({ time: 't', key: `${which}${i}`, arm: which, model, ok: i >= failed, latencyMs: 100 + i, tokens: 10 });
    out.push({ time: 't', key: `${which}${i}`, arm: which, model, score: i < good ? 1 : 0 });
  }
  return out;
}

describe('summarizeOutcomes', () => {
  it('counts per arm with Wilson intervals', () => {
    const s = summarizeOutcomes([...arm('control', 263, 81), ...arm('candidate', 148, 15, 3)], plan(0.1));
    expect(s.arms.control.feedback.low).toBeCloseTo(0.2553, 4);
    expect(s.arms.control.feedback.high).toBeCloseTo(0.3662, 4);
    expect(s.arms.candidate.requests).toBe(148);
    expect(s.arms.candidate.success.successes).toBe(145);
    expect(s.arms.control.meanLatencyMs).toBeCloseTo(100 + 262 / 2, 9);
  });

  it('holds until both arms have min_samples', () => {
    const s = summarizeOutcomes([...arm('control', 500, 400), ...arm('candidate', 60, 50)], plan(0.1));
    expect(s.recommendation).toMatchObject({ action: 'hold', nextShare: 0.1 });
    expect(s.recommendation.reason).toMatch(/60 of 100/);
  });

  it('promotes 10% → 50% → 100% when the candidate is not worse beyond the margin', () => {
    const records = [...arm('control', 2000, 1600), ...arm('candidate', 2000, 1640)];
    expect(summarizeOutcomes(records, plan(0.1)).recommendation).toMatchObject({ action: 'promote', nextShare: 0.5 });
    expect(summarizeOutcomes(records, plan(0.5)).recommendation).toMatchObject({ action: 'promote', nextShare: 1 });
    expect(summarizeOutcomes(records, plan(1)).recommendation).toMatchObject({ action: 'promote', nextShare: 1 });
  });

  it('holds while the candidate interval still reaches below the margin', () => {
    // Candidate 0.78 ± ~0.04 at n = 400 against control 0.80: lower bound ≈ 0.737 < 0.78.
    const s = summarizeOutcomes([...arm('control', 2000, 1600), ...arm('candidate', 400, 312)], plan(0.1));
    expect(s.recommendation.action).toBe('hold');
  });

  it('rolls back when the candidate is clearly worse, even before min_samples', () => {
    const s = summarizeOutcomes([...arm('control', 2000, 1600), ...arm('candidate', 80, 40)], plan(0.1));
    expect(s.recommendation).toMatchObject({ action: 'rollback', nextShare: 0 });
  });

  it('rolls back on a significantly higher error rate', () => {
    const s = summarizeOutcomes([...arm('control', 1000, 800, 5), ...arm('candidate', 1000, 800, 120)], plan(0.5));
    expect(s.recommendation).toMatchObject({ action: 'rollback' });
    expect(s.recommendation.reason).toMatch(/success rate/);
  });

  it('can decide on the success rate instead of feedback', () => {
    const records = [...arm('control', 1000, 800, 10), ...arm('candidate', 1000, 300, 12)];
    expect(summarizeOutcomes(records, plan(0.1, { metric: 'success' })).recommendation.action).toBe('promote');
    expect(summarizeOutcomes(records, plan(0.1)).recommendation.action).toBe('rollback');
  });
});

describe('parseRolloutPlan', () => {
  it('names the key at fault', () => {
    expect(() => parseRolloutPlan({ control: 'a', candidate: 'a', salt: 's', share: 0.3 })).toThrow(/candidate: must differ[\s\S]*share: must be 0 or one of the stages/);
    expect(() => parseRolloutPlan({ control: 'a', candidate: 'b', salt: 's', share: 0.1, stages: [0.5, 0.1] })).toThrow(/stages: must rise/);
  });
});

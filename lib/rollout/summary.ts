/**
 * Per-arm counts and rates of a rollout, with Wilson intervals, and what to do next under the
 * plan: promote to the next stage, hold, or roll back.
 */
import { wilsonInterval, type Proportion } from '../stats/wilson.js';
import type { Arm } from './router.js';
import type { OutcomeRecord } from './outcome-log.js';
import type { RolloutPlan } from './plan.js';

export interface ArmSummary {
  readonly model: string;
  readonly requests: number;
  /** Share of requests answered without an error. */
  readonly success: Proportion;
  /** Share of feedback events that were positive (score ≥ 0.5). */
  readonly feedback: Proportion;
  readonly meanLatencyMs: number | null;
  readonly meanTokens: number | null;
}

export type RolloutAction = 'promote' | 'hold' | 'rollback';

export interface RolloutSummary {
  readonly share: number;
  readonly metric: RolloutPlan['metric'];
  readonly arms: Record<Arm, ArmSummary>;
  readonly recommendation: { readonly action: RolloutAction; readonly nextShare: number; readonly reason: string };
}

function mean(values: number[]): number | null {
  return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
}

function summarizeArm(records: readonly OutcomeRecord[], model: string): ArmSummary {
  const requests = records.filter((r) => r.ok !== undefined);
  const scored = records.filter((r) => r.score !== undefined);
  return {
    model,
    requests: requests.length,
    success: wilsonInterval(requests.filter((r) => r.ok).length, requests.length),
    feedback: wilsonInterval(scored.filter((r) => r.score! >= 0.5).length, scored.length),
    meanLatencyMs: mean(requests.flatMap((r) => (r.latencyMs === undefined ? [] : [r.latencyMs]))),
    meanTokens: mean(requests.flatMap((r) => (r.tokens === undefined ? [] : [r.tokens]))),
  };
}

function nextStage(plan: RolloutPlan): number {
  return plan.stages.find((s) => s > plan.share) ?? plan.share;
}

/**
 * The rules, on the plan's metric (a proportion per arm):
 * - roll back when the candidate is worse beyond doubt: its interval lies wholly below control's
 *   rate minus the allowed regression, or its error rate is significantly above control's;
 * - promote when both arms have `min_samples` and the candidate is not worse beyond the allowed
 *   regression at 95% (its lower bound ≥ control's rate − max_regression);
 * - hold otherwise: not enough data yet, or the intervals still overlap the margin.
 */
export function recommend(plan: RolloutPlan, arms: Record<Arm, ArmSummary>): RolloutSummary['recommendation'] {
  const pick = (a: ArmSummary) => (plan.metric === 'feedback' ? a.feedback : a.success);
  const control = pick(arms.control);
  const candidate = pick(arms.candidate);
  const floor = control.rate - plan.max_regression;
  const errorsWorse = arms.candidate.success.high < arms.control.success.low;
  if (candidate.trials > 0 && control.trials > 0 && (candidate.high < floor || errorsWorse)) {
    const what = errorsWorse ? 'success rate' : plan.metric;
    return { action: 'rollback', nextShare: 0, reason: `candidate ${what} is significantly below control's` };
  }
  const short = Math.min(candidate.trials, control.trials);
  if (short < plan.min_samples) {
    return { action: 'hold', nextShare: plan.share, reason: `${short} of ${plan.min_samples} ${plan.metric} samples in the smaller arm` };
  }
  if (candidate.low >= floor) {
    const nextShare = nextStage(plan);
    const reason = nextShare === plan.share ? 'candidate holds up at the last stage: make it the current version' : `candidate is within ${plan.max_regression} of control at 95%`;
    return { action: 'promote', nextShare, reason };
  }
  return { action: 'hold', nextShare: plan.share, reason: `candidate's 95% interval still reaches below control − ${plan.max_regression}` };
}

export function summarizeOutcomes(records: readonly OutcomeRecord[], plan: RolloutPlan): RolloutSummary {
  const arms: Record<Arm, ArmSummary> = {
    control: summarizeArm(records.filter((r) => r.arm === 'control'), plan.control),
    candidate: summarizeArm(records.filter((r) => r.arm === 'candidate'), plan.candidate),
  };
  return { share: plan.share, metric: plan.metric, arms, recommendation: recommend(plan, arms) };
}

/** Proportions with confidence intervals, shared by rollout summaries and evaluation win rates. */

export interface Proportion {
  readonly successes: number;
  readonly trials: number;
  /** successes / trials; NaN with no trials. */
  readonly rate: number;
  /** Wilson score interval; [0, 1] with no trials. */
  readonly low: number;
  readonly high: number;
}

/** z for a two-sided 95% interval. */
export const Z_95 = 1.959963984540054;

/**
 * Wilson score interval (Wilson 1927): unlike the normal approximation it stays inside [0, 1]
 * and keeps its coverage at small counts and rates near 0 or 1, which is where a new model's
 * first rollout share sits.
 */
export function wilsonInterval(successes: number, trials: number, z = Z_95): Proportion {
  if (!Number.isInteger(successes) || !Number.isInteger(trials) || successes < 0 || trials < 0 || successes > trials) {
    throw new RangeError(`wilsonInterval: need integers 0 ≤ successes ≤ trials, got ${successes}/${trials}`);
  }
  if (trials === 0) return { successes, trials, rate: Number.NaN, low: 0, high: 1 };
  const p = successes / trials;
  const z2 = z * z;
  const denominator = 1 + z2 / trials;
  const centre = (p + z2 / (2 * trials)) / denominator;
  const half = (z / denominator) * Math.sqrt((p * (1 - p)) / trials + z2 / (4 * trials * trials));
  return { successes, trials, rate: p, low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

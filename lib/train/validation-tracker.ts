/**
 * The bookkeeping behind "best checkpoint" and early stopping: the lowest validation loss so far
 * and how many evaluations have passed without beating it. It lives in trainer-state.json, so a
 * resumed run stops early exactly where the uninterrupted one would.
 */

export interface BestLoss {
  metric: number;
  step: number;
}

export interface ValidationRecord {
  /** The loss, or null when it was NaN/Inf. */
  loss: number | null;
  isBest: boolean;
}

export class ValidationTracker {
  constructor(
    private bestSoFar: BestLoss | null = null,
    private sinceBest = 0,
  ) {}

  get best(): BestLoss | null {
    return this.bestSoFar;
  }

  get evalsSinceBest(): number {
    return this.sinceBest;
  }

  /**
   * Records the loss measured after `step` updates. A NaN/Inf loss is never the best (NaN compares
   * false with everything, so it would otherwise never be beaten either) but counts as an
   * evaluation without improvement: a run whose validation loss diverged should stop early too.
   * On a tie the earlier step stays best, as checkpoint retention assumes.
   */
  record(step: number, loss: number): ValidationRecord {
    const finite = Number.isFinite(loss);
    const isBest = finite && (this.bestSoFar === null || loss < this.bestSoFar.metric);
    if (isBest) {
      this.bestSoFar = { metric: loss, step };
      this.sinceBest = 0;
    } else {
      this.sinceBest++;
    }
    return { loss: finite ? loss : null, isBest };
  }
}

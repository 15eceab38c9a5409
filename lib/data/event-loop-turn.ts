/**
 * Long synchronous loops (prepare's passes, dedupe, the trainer's data scans) run in the host's
 * process, often beside a server or a UI: they give the event loop a turn whenever they have held
 * it longer than a small budget, so timers and I/O callbacks are never late by more than that.
 */
import { setImmediate } from 'node:timers/promises';

/** Milliseconds of work between turns: well under the 50 ms a host notices. */
export const TURN_BUDGET_MS = 10;

export class EventLoopTurns {
  private last = performance.now();

  constructor(private readonly budgetMs = TURN_BUDGET_MS) {}

  /**
   * Resolves after a turn of the event loop (setImmediate: timers and I/O run first) when the
   * budget is used up, else at once. `await` it inside the loop.
   */
  async take(): Promise<void> {
    if (performance.now() - this.last < this.budgetMs) return;
    await setImmediate();
    this.last = performance.now();
  }
}

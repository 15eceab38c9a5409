/**
 * Deterministic traffic split between a control and a candidate model. A key (a session or user
 * id) hashes with the salt to a point in [0, 1); points below the share go to the candidate. The
 * point of a key never changes, so a user stays on one arm, and raising the share only moves
 * keys from control to candidate — nobody flips back and forth between stages.
 */
import { createHash } from 'node:crypto';
import { appendOutcome, readOutcomes, type OutcomeRecord } from './outcome-log.js';
import { parseRolloutPlan, type RolloutPlanInput } from './plan.js';
import { summarizeOutcomes, type RolloutSummary } from './summary.js';

export type Arm = 'control' | 'candidate';

export interface RouterOptions {
  /** Model name serving the control arm (the current version). */
  readonly control: string;
  /** Model name serving the candidate arm (the new version). */
  readonly candidate: string;
  /** Fraction of keys sent to the candidate, 0 to 1. */
  readonly share: number;
  /** Changes the assignment of every key; keep it fixed for one experiment. */
  readonly salt: string;
  /** JSONL file that record() appends to; without it outcomes are kept in memory only. */
  readonly log?: string;
  /** The plan's decision rules for summarize(); defaults as in plan.yaml. */
  readonly rules?: Pick<RolloutPlanInput, 'stages' | 'min_samples' | 'metric' | 'max_regression'>;
}

export interface Route {
  readonly arm: Arm;
  readonly model: string;
}

export interface Outcome {
  /** The request was answered without an error. */
  readonly ok?: boolean;
  /** Feedback from the host: 1 good, 0 bad (or a rating scaled to 0..1). */
  readonly score?: number;
  readonly latencyMs?: number;
  readonly tokens?: number;
  readonly detail?: string;
}

export interface Router {
  readonly options: RouterOptions;
  route(key: string): Route;
  /** Appends one outcome for `key` (its arm is derived again from the key). */
  record(key: string, outcome: Outcome): Promise<OutcomeRecord>;
  /** Outcomes recorded through this router in this process. */
  readonly recorded: readonly OutcomeRecord[];
  /** Per-arm rates with Wilson intervals and the plan's recommendation, over the log file (or what this process recorded). */
  summarize(): Promise<RolloutSummary>;
}

const TWO_TO_53 = 2 ** 53;

/** The key's fixed point in [0, 1): the top 53 bits of sha256(salt, key). */
export function keyPoint(salt: string, key: string): number {
  const digest = createHash('sha256').update(salt).update('\0').update(key).digest();
  const high = digest.readUInt32BE(0);
  const low = digest.readUInt32BE(4) >>> 11;
  return (high * 2 ** 21 + low) / TWO_TO_53;
}

function checkOptions(options: RouterOptions): void {
  if (!(options.share >= 0 && options.share <= 1)) throw new RangeError(`router share must be between 0 and 1, got ${options.share}`);
  if (options.control === options.candidate) throw new Error(`router: control and candidate are the same model (${options.control})`);
  if (options.control.length === 0 || options.candidate.length === 0) throw new Error('router: control and candidate need model names');
}

export function createRouter(options: RouterOptions): Router {
  checkOptions(options);
  const recorded: OutcomeRecord[] = [];
  const route = (key: string): Route => {
    const arm: Arm = keyPoint(options.salt, key) < options.share ? 'candidate' : 'control';
    return { arm, model: arm === 'candidate' ? options.candidate : options.control };
  };
  return {
    options,
    route,
    recorded,
    async record(key, outcome) {
      const { arm, model } = route(key);
      const entry: OutcomeRecord = { time: new Date().toISOString(), key, arm, model, ...outcome };
      if (options.log !== undefined) await appendOutcome(options.log, entry);
      recorded.push(entry);
      return entry;
    },
    async summarize() {
      const { control, candidate, share, salt, rules } = options;
      const plan = parseRolloutPlan({ control, candidate, share, salt, ...rules, stages: rules?.stages ?? [...new Set([0.1, 0.5, 1, share])].filter((s) => s > 0).sort((a, b) => a - b) });
      const records = options.log !== undefined ? await readOutcomes(options.log) : recorded;
      return summarizeOutcomes(records, plan);
    },
  };
}

/** The rollout plan (plan.yaml): which models, which stages, and the rules that move between them. */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '../config/config-error.js';
import { formatFromFileName, parseConfigSource } from '../config/config-source.js';
import { problemsFromIssues, type KeyPath } from '../config/zod-problems.js';

export const rolloutPlanSchema = z
  .strictObject({
    /** The model requests name; requests for other models pass through untouched. */
    model: z.string().min(1).optional(),
    control: z.string().min(1),
    candidate: z.string().min(1),
    salt: z.string().min(1),
    /** Shares of traffic the candidate gets, stage by stage. */
    stages: z.array(z.number().gt(0).max(1)).min(1).default([0.1, 0.5, 1]),
    /** The stage in force now: one of `stages`. */
    share: z.number().min(0).max(1),
    /** Requests (or feedback events) each arm needs before a stage may advance. */
    min_samples: z.int().min(1).default(200),
    /** What decides: `feedback` (share of positive scores) or `success` (share of requests without an error). */
    metric: z.enum(['feedback', 'success']).default('feedback'),
    /** How much worse than control the candidate may be (absolute) and still advance. */
    max_regression: z.number().min(0).max(1).default(0.02),
    /** Request header holding the routing key; the request body's `user` field is the fallback. */
    key_header: z.string().min(1).default('x-session-id'),
    /** Where outcomes are appended (relative to the plan file). */
    log: z.string().min(1).default('rollout-outcomes.jsonl'),
  })
  .superRefine((plan, ctx) => {
    if (plan.control === plan.candidate) ctx.addIssue({ code: 'custom', path: ['candidate'], message: 'must differ from control' });
    const sorted = [...plan.stages].every((s, i, all) => i === 0 || all[i - 1]! < s);
    if (!sorted) ctx.addIssue({ code: 'custom', path: ['stages'], message: 'must rise strictly' });
    if (plan.share !== 0 && !plan.stages.includes(plan.share)) {
      ctx.addIssue({ code: 'custom', path: ['share'], message: `must be 0 or one of the stages (${plan.stages.join(', ')})` });
    }
  });

export type RolloutPlan = z.output<typeof rolloutPlanSchema>;
export type RolloutPlanInput = z.input<typeof rolloutPlanSchema>;

export function parseRolloutPlan(input: unknown, options: { file?: string; lineOf?: (path: KeyPath) => number | undefined } = {}): RolloutPlan {
  const result = rolloutPlanSchema.safeParse(input);
  if (!result.success) {
    const problems = problemsFromIssues(result.error.issues, input).map((problem) => {
      const line = options.lineOf?.(problem.path);
      return line ? { ...problem, line } : problem;
    });
    throw new ConfigError(problems, options.file, 'rollout plan');
  }
  return result.data;
}

export async function loadRolloutPlan(path: string): Promise<RolloutPlan> {
  const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new ConfigError([{ message: `cannot read: ${error.code === 'ENOENT' ? 'no such file' : error.message}` }], path, 'rollout plan');
  });
  const source = parseConfigSource(text, formatFromFileName(path), path);
  const plan = parseRolloutPlan(source.value ?? {}, { file: path, lineOf: source.lineOf });
  return { ...plan, log: resolve(dirname(path), plan.log) };
}

/** The demo's evaluation: base and tuned arms on the held-out prompts, through evaluate(). */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ALL_CATEGORIES } from '../eval/eval-results.js';
import { BASE_ARM, evaluate } from '../eval/evaluate.js';
import { demoEvalSet } from './demo-data.js';

export interface DemoArmSummary {
  exactMatch: number;
  tokenF1: number;
  loss: number;
}

export interface DemoEvalSummary {
  base: DemoArmSummary;
  tuned: DemoArmSummary;
  report: string;
}

export async function runDemoEval(base: string, adapter: string, out: string): Promise<DemoEvalSummary> {
  await mkdir(out, { recursive: true });
  const data = join(out, 'eval.jsonl');
  await writeFile(data, demoEvalSet().map((e) => JSON.stringify(e)).join('\n') + '\n');
  const { report, files } = await evaluate({ model: base, adapters: [{ name: 'tuned', path: adapter }], data, out, maxTokens: 32 });
  const arm = (name: string): DemoArmSummary => {
    const gen = report.generation.find((r) => r.arm === name && r.category === ALL_CATEGORIES);
    const lik = report.likelihood.find((r) => r.arm === name && r.category === ALL_CATEGORIES);
    return { exactMatch: gen?.exact_match ?? 0, tokenF1: gen?.token_f1 ?? 0, loss: lik?.loss ?? Number.NaN };
  };
  return { base: arm(BASE_ARM), tuned: arm('tuned'), report: files.find((f) => f.endsWith('.html')) ?? out };
}

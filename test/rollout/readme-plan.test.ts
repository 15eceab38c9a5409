import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseRolloutPlan } from '../../lib/rollout/plan.js';

describe("the README's rollout plan", () => {
  it('is a valid plan with the values it shows', () => {
    const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    const block = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes('candidate:'));
    expect(block).toBeDefined();
    const plan = parseRolloutPlan(parse(block!));
    expect(plan).toMatchObject({ model: 'iceburg', control: 'iceburg-dolphin-mistral-v1', candidate: 'iceburg-dolphin-mistral-v2', share: 0.1, stages: [0.1, 0.5, 1], metric: 'feedback' });
  });
});

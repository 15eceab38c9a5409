/**
 * --emit: a weight-0 turn survives into ShareGPT (which has no weight field) as an extra key, and
 * the report says so instead of dropping the exclusion silently.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveFieldMapping } from '../../lib/data/field-mapping.js';
import { prepareDataset } from '../../lib/data/prepare.js';
import { readInputRecords } from '../../lib/data/record-reader.js';
import { formatReport } from '../../lib/data/report.js';
import { chatmlModel } from '../fixtures/data-model.js';
import { tempDir } from '../helpers/temp-dir.js';

describe('--emit sharegpt with a weight-0 turn', () => {
  it('keeps "weight": 0 on that turn, counts the record, and reads back with the turn excluded', async () => {
    const dir = tempDir('mlxq-emit-');
    const lines = [
      { messages: [{ role: 'user', content: 'First?' }, { role: 'assistant', content: 'A draft answer.', weight: 0 }, { role: 'user', content: 'Again?' }, { role: 'assistant', content: 'The good answer.' }] },
      { messages: [{ role: 'user', content: 'Plain?' }, { role: 'assistant', content: 'Plain answer.' }] },
    ];
    writeFileSync(join(dir, 'in.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n'));
    const out = join(dir, 'out');
    const { report } = await prepareDataset({ inputs: [join(dir, 'in.jsonl')], outDir: out, emit: ['sharegpt', 'chatml'], split: { valid: 0, test: 0 } }, { tokenizer: chatmlModel() });
    expect(report.emitted).toEqual({ sharegpt: 2, chatml: 2 });
    expect(report.emittedWithExtraWeight).toEqual({ sharegpt: 1 });
    expect(formatReport(report)).toContain('sharegpt: 1 record(s) keep a weight-0 turn as an extra "weight": 0 key');

    const emitted = readFileSync(join(out, 'emit', 'train.sharegpt.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { conversations: unknown[] });
    expect(emitted[0]!.conversations).toEqual([
      { from: 'human', value: 'First?' },
      { from: 'gpt', value: 'A draft answer.', weight: 0 },
      { from: 'human', value: 'Again?' },
      { from: 'gpt', value: 'The good answer.' },
    ]);
    const file = { path: join(out, 'emit', 'train.sharegpt.jsonl'), format: 'sharegpt' as const, detected: false, bytes: 0 };
    const weights: Array<number | undefined> = [];
    for await (const o of readInputRecords(file, { mapping: resolveFieldMapping(), reasoning: 'omit' })) {
      if (o.kind === 'record' && o.record.body.kind === 'chat') weights.push(...o.record.body.messages.map((m) => m.weight));
    }
    expect(weights).toEqual([undefined, 0, undefined, undefined, undefined, undefined]);
  });
});

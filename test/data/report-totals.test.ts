/**
 * prepare's totals: rejected, filtered, duplicates and kept equal the sums of the detailed
 * counters, and together with blank lines they account for every line read.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { prepareDataset } from '../../lib/data/prepare.js';
import { formatReport, type PrepareReport } from '../../lib/data/report.js';
import { chatmlModel } from '../fixtures/data-model.js';
import { tempDir } from '../helpers/temp-dir.js';

const chat = (q: string, a: string) => JSON.stringify({ messages: [{ role: 'user', content: q }, { role: 'assistant', content: a }] });
const threeTurns = (i: number) =>
  JSON.stringify({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: `Why ${i}?` }, { role: 'assistant', content: `Because ${i}.` }] });

function corpus(): { lines: string[]; expected: { rejected: number; filtered: number; duplicates: number; kept: number } } {
  const lines: string[] = [];
  // 40 distinct good records with two messages, 6 with three (kept too).
  for (let i = 0; i < 40; i++) lines.push(chat(`Question ${i} about fjord ${i * 7}?`, `Answer ${i}: depth ${i * 13} metres.`));
  for (let i = 0; i < 6; i++) lines.push(threeTurns(i));
  // 5 exact copies of earlier records (whitespace differences included).
  for (let i = 0; i < 5; i++) lines.push(chat(`Question ${i}   about fjord ${i * 7}?`, `Answer ${i}: depth ${i * 13} metres.`));
  // 7 bad lines of three kinds, 2 blank lines.
  lines.push('{"messages": [', '[1, 2]', '{"messages": []}', 'not json', '{"messages": [{"role": "wizard", "content": "x"}]}', '{', '42', '', '');
  // 4 records too long for max_seq_length 40 (dropped: filtered).
  for (let i = 0; i < 4; i++) lines.push(chat(`Long ${i}`, Array.from({ length: 60 }, (_, k) => `word${k}x${i}`).join(' ')));
  return { lines, expected: { rejected: 7, filtered: 4, duplicates: 5, kept: 46 } };
}

const sum = (o: Record<string, number | undefined>) => Object.values(o).reduce<number>((a, b) => a + (b ?? 0), 0);

describe('prepare report totals', () => {
  it('equal the sums of the detailed counters and account for every line', async () => {
    const dir = tempDir('mlxq-totals-');
    const { lines, expected } = corpus();
    writeFileSync(join(dir, 'export.jsonl'), `${lines.join('\n')}\n`);
    const out = join(dir, 'prepared');
    const { report } = await prepareDataset(
      { inputs: [join(dir, 'export.jsonl')], outDir: out, maxSeqLength: 40, nearDuplicateThreshold: null, split: { valid: 0.1, test: 0.1 } },
      { tokenizer: chatmlModel() },
    );
    expect(report.totals).toEqual(expected);
    expect(report.totals.rejected).toBe(sum(report.errors));
    expect(report.totals.filtered).toBe(sum(report.filtered));
    expect(report.totals.duplicates).toBe(report.duplicates.exact + report.duplicates.near);
    expect(report.totals.kept).toBe(report.splits.train.records + report.splits.valid.records + report.splits.test.records);
    const t = report.totals;
    expect(report.blankLines + t.rejected + t.filtered + t.duplicates + t.kept).toBe(report.lines);

    const written = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as PrepareReport;
    expect(written.totals).toEqual(expected);
    expect(formatReport(report).split('\n')[0]).toBe('Totals: 46 records kept, 7 rejected (bad lines), 4 filtered out, 5 duplicates removed');
  });
});

/**
 * The record filters and length policies of prepare, each counted in the report: --min-quality with
 * and without --keep-unscored, --min-messages, and --overlong drop / truncate, where a record cut so
 * that nothing trained is left is "truncated-away", not kept and not miscounted.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { prepareDataset, type PrepareOptionsInput } from '../../lib/data/prepare.js';
import { ConversationEncoder } from '../../lib/tokenizer/conversation-encoder.js';
import { chatmlModel } from '../fixtures/data-model.js';
import { tempDir } from '../helpers/temp-dir.js';

const dir = tempDir('mlxq-filters-');
let runs = 0;

function writeLines(name: string, lines: unknown[]): string {
  const path = join(dir, name);
  writeFileSync(path, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
  return path;
}

async function prepare(path: string, options: Partial<PrepareOptionsInput>) {
  return prepareDataset({ inputs: [path], outDir: join(dir, `out-${runs++}`), split: { valid: 0, test: 0 }, ...options }, { tokenizer: chatmlModel() });
}

type Msg = { role: 'system' | 'user' | 'assistant'; content: string };
const chat = (id: string, quality: number | null, withSystem: boolean): { messages: Msg[]; quality_score: number | null } => ({
  messages: [
    ...(withSystem ? [{ role: 'system' as const, content: 'You are ICEBURG.' }] : []),
    { role: 'user', content: `Question ${id}?` },
    { role: 'assistant', content: `Answer ${id}.` },
  ],
  quality_score: quality,
});

describe('quality and message-count filters', () => {
  const path = writeLines('quality.jsonl', [
    chat('u1', null, false), // unscored, 2 messages
    chat('u2', null, true), // unscored, 3 messages
    chat('s1', 0.9, false), // 2 messages
    chat('s2', 0.5, true), // below 0.8
    chat('s3', 0.95, true),
  ]);

  it('--min-quality drops unscored records unless --keep-unscored', async () => {
    const strict = await prepare(path, { minQuality: 0.8 });
    expect(strict.report.filtered).toEqual({ unscored: 2, 'below-min-quality': 1 });
    expect(strict.manifest.splits.train.records).toBe(2);
    const keep = await prepare(path, { minQuality: 0.8, keepUnscored: true });
    expect(keep.report.filtered).toEqual({ 'below-min-quality': 1 });
    expect(keep.manifest.splits.train.records).toBe(4);
    // Without --min-quality there is nothing to keep them from.
    const none = await prepare(path, { keepUnscored: true });
    expect(none.report.filtered).toEqual({});
    expect(none.manifest.splits.train.records).toBe(5);
  });

  it('--min-messages counts every message, system included; filters apply in order', async () => {
    const min3 = await prepare(path, { minMessages: 3 });
    expect(min3.report.filtered).toEqual({ 'too-few-messages': 2 });
    expect(min3.manifest.splits.train.records).toBe(3);
    expect(min3.report.turnsPerConversation).toEqual({ 3: 3 });
    const both = await prepare(path, { minQuality: 0.8, keepUnscored: true, minMessages: 3 });
    expect(both.report.filtered).toEqual({ 'too-few-messages': 2, 'below-min-quality': 1 });
    expect(both.manifest.splits.train.records).toBe(2);
    expect(both.report.rejectionExamples.map((e) => e.replace(/^.*quality\.jsonl:/, ''))).toEqual([
      '1: too-few-messages: 2 messages < --min-messages 3',
      '3: too-few-messages: 2 messages < --min-messages 3',
      '4: below-min-quality: quality 0.5 < 0.8',
    ]);
  });
});

describe('--max-seq-length with --overlong drop | truncate', () => {
  const words = (n: number, w: string) => Array.from({ length: n }, (_, i) => `${w}${i}`).join(' ');
  const short = chat('short', null, false);
  const longAnswer = { messages: [{ role: 'user', content: 'Tell me everything.' }, { role: 'assistant', content: words(60, 'fact') }] };
  const longPrompt = { messages: [{ role: 'user', content: words(60, 'context') }, { role: 'assistant', content: 'Done.' }] };
  const path = writeLines('lengths.jsonl', [short, longAnswer, longPrompt]);
  const MAX = 48;

  it('the fixture is what the test needs: one short record, one whose answer starts before the cut, one whose answer is beyond it', () => {
    const m = chatmlModel();
    const enc = new ConversationEncoder(m.tokenizer, m.template);
    const lengthOf = (r: { messages: Msg[] }) => enc.encode({ kind: 'chat', messages: r.messages }).ids.length;
    const firstTrained = (r: { messages: Msg[] }) => enc.encode({ kind: 'chat', messages: r.messages }).mask.indexOf(1);
    expect(lengthOf(short)).toBeLessThanOrEqual(MAX);
    expect(lengthOf(longAnswer as { messages: Msg[] })).toBeGreaterThan(MAX);
    expect(firstTrained(longAnswer as { messages: Msg[] })).toBeLessThan(MAX - 1);
    expect(firstTrained(longPrompt as { messages: Msg[] })).toBeGreaterThanOrEqual(MAX);
  });

  it('drop: both long records are dropped and counted', async () => {
    const { report, manifest } = await prepare(path, { maxSeqLength: MAX, overlong: 'drop' });
    expect(report.length).toEqual({ maxSeqLength: MAX, truncated: 0, truncatedAway: 0, dropped: 2 });
    expect(report.filtered).toEqual({ 'too-long': 2 });
    expect(manifest.splits.train.records).toBe(1);
  });

  it('truncate: the long answer is cut and kept; the record whose answer lies beyond the cut is truncated-away', async () => {
    const { report, manifest } = await prepare(path, { maxSeqLength: MAX, overlong: 'truncate' });
    expect(report.length).toEqual({ maxSeqLength: MAX, truncated: 1, truncatedAway: 1, dropped: 0 });
    expect(report.filtered).toEqual({ 'truncated-away': 1 });
    expect(report.rejectionExamples).toEqual([expect.stringMatching(/lengths\.jsonl:3: truncated-away: /)]);
    expect(manifest.splits.train.records).toBe(2);
    expect(report.tokenLength.max).toBe(MAX);
  });
});

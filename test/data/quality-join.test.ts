/**
 * quality_metrics.jsonl joined onto conversations: a metrics score wins over the conversation's own,
 * a later metrics score over an earlier one, and a metrics line without quality_score changes
 * nothing (it used to erase the conversation's own score).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { prepareDataset } from '../../lib/data/prepare.js';
import { QualityJoin } from '../../lib/data/quality-join.js';
import type { DataRecord } from '../../lib/data/record.js';
import { chatmlModel } from '../fixtures/data-model.js';
import { tempDir } from '../helpers/temp-dir.js';

const at = { file: 'f', line: 1 };
const record = (conversationId: string, quality: number | null): DataRecord => ({
  body: { kind: 'text', text: 't' },
  quality,
  conversationId,
  format: 'iceburg-conversations',
  source: at,
});

describe('QualityJoin', () => {
  it('metrics score > own score > unscored; a metrics line without a score keeps what there is', () => {
    const join = new QualityJoin();
    join.add({ conversationId: 'rated-only', quality: null, source: at });
    join.add({ conversationId: 'rescored', quality: 0.4, source: at });
    join.add({ conversationId: 'rescored', quality: 0.95, source: at }); // a later rating replaces
    join.add({ conversationId: 'rescored', quality: null, source: at }); // and is not erased
    join.add({ conversationId: 'nobody', quality: 0.7, source: at });

    const keeps = record('rated-only', 0.9);
    expect(join.apply(keeps)).toBe(false);
    expect(keeps.quality).toBe(0.9);
    const overridden = record('rescored', 0.2);
    expect(join.apply(overridden)).toBe(true);
    expect(overridden.quality).toBe(0.95);
    const unrelated = record('other', null);
    expect(join.apply(unrelated)).toBe(false);
    expect(unrelated.quality).toBeNull();
    expect(join.counts()).toEqual({ metricsRead: 5, metricsWithoutScore: 2, metricsJoined: 1, metricsUnmatched: 1 });
  });
});

describe('prepare with quality_metrics', () => {
  it('filters on the joined score, and a user_rating-only line does not wipe a conversation\'s score', async () => {
    const dir = tempDir('mlxq-qjoin-');
    const ft = join(dir, 'fine_tuning');
    mkdirSync(ft);
    const conv = (id: string, q: number | null, answer: string) =>
      JSON.stringify({ messages: [{ role: 'user', content: `Question for ${id}?` }, { role: 'assistant', content: answer }], metadata: { conversation_id: id, quality_score: q, timestamp: 't' } });
    writeFileSync(
      join(ft, 'conversations.jsonl'),
      [conv('a', 0.9, 'Kept with its own 0.9.'), conv('b', 0.9, 'Rescored to 0.3 by the metrics.'), conv('c', null, 'Scored 0.95 by the metrics only.')].join('\n'),
    );
    writeFileSync(
      join(ft, 'quality_metrics.jsonl'),
      [
        { conversation_id: 'a', quality_metrics: { user_rating: 2 }, timestamp: 't' },
        { conversation_id: 'b', quality_metrics: { user_rating: 5, quality_score: 0.3 }, timestamp: 't' },
        { conversation_id: 'c', quality_metrics: { quality_score: 0.95 }, timestamp: 't' },
      ].map((l) => JSON.stringify(l)).join('\n'),
    );
    const { report, manifest } = await prepareDataset(
      { inputs: [ft], outDir: join(dir, 'out'), minQuality: 0.8, split: { valid: 0, test: 0 } },
      { tokenizer: chatmlModel() },
    );
    expect(report.filtered).toEqual({ 'below-min-quality': 1 });
    expect(report.rejectionExamples).toEqual([expect.stringMatching(/conversations\.jsonl:2: below-min-quality: quality 0\.3 < 0\.8$/)]);
    expect(manifest.splits.train.records).toBe(2);
    const q = report.quality;
    expect([q.scored, q.unscored, q.histogram[9], q.histogram[3]]).toEqual([3, 0, 2, 1]);
    expect([q.metricsRead, q.metricsWithoutScore, q.metricsJoined, q.metricsUnmatched]).toEqual([3, 1, 2, 0]);
  });
});

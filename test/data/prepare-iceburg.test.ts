/**
 * prepare over an ICEBURG data/fine_tuning folder: format detection per file, the quality-metrics
 * join, filters, duplicates, report figures, manifest, shards that read back to the same tokens,
 * --emit, and inspect's highlighting.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { highlightRecord } from '../../lib/data/highlight.js';
import { readManifest } from '../../lib/data/manifest.js';
import { openPreparedDataset } from '../../lib/data/prepared-dataset.js';
import { prepareDataset, type PrepareResult } from '../../lib/data/prepare.js';
import { loadModelTokenizer } from '../../lib/tokenizer/load-tokenizer.js';
import { syntheticConversation } from '../fixtures/data-corpus.js';
import { chatmlModel } from '../fixtures/data-model.js';
import { tempDir } from '../helpers/temp-dir.js';

const dir = tempDir('mlxq-iceburg-');
const ft = join(dir, 'data', 'fine_tuning');
const out = join(dir, 'prepared');
let result: PrepareResult;

const conv = (i: number, quality: number | null) => {
  const c = syntheticConversation(i);
  c.metadata.quality_score = quality;
  return c;
};

beforeAll(async () => {
  mkdirSync(ft, { recursive: true });
  const lines: unknown[] = [];
  for (let i = 0; i < 40; i++) lines.push(conv(i, 0.9)); // 40 good
  for (let i = 40; i < 45; i++) lines.push(conv(i, 0.5)); // 5 below 0.8
  for (let i = 45; i < 48; i++) lines.push(conv(i, null)); // 3 unscored, 2 of them scored by quality_metrics
  lines.push(conv(3, 0.9), conv(4, 0.95)); // 2 exact duplicates
  const near = conv(5, 0.9);
  near.messages[near.messages.length - 1]!.content += ' Indeed.'; // 1 near duplicate of record 5
  lines.push(near);
  writeFileSync(join(ft, 'conversations.jsonl'), `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
  writeFileSync(
    join(ft, 'quality_metrics.jsonl'),
    [
      { conversation_id: 'conv-45', quality_metrics: { user_rating: 5, quality_score: 0.85 }, timestamp: 't' },
      { conversation_id: 'conv-46', quality_metrics: { user_rating: 4, quality_score: 0.82 }, timestamp: 't' },
      { conversation_id: 'conv-999', quality_metrics: { quality_score: 0.99 }, timestamp: 't' },
    ].map((l) => JSON.stringify(l)).join('\n'),
  );
  writeFileSync(
    join(ft, 'reasoning_chains.jsonl'),
    `${JSON.stringify({
      reasoning_chain: [{ step: 1, agent: 'surveyor', thinking: 'Collect sources.', action: 'search', output: {} }],
      final_response: 'Ocean heat content rose steadily since 1990.',
      metadata: { query: 'How has ocean heat changed?', quality_score: 0.9, timestamp: 't' },
    })}\n`,
  );
  writeFileSync(
    join(ft, 'agent_generations.jsonl.gz'),
    gzipSync(
      [
        { agent_name: 'good_agent', generated_code: 'def run():\n    return 1', validation_result: { valid: true }, metadata: { quality_score: 0.9 } },
        { agent_name: 'bad_agent', generated_code: 'def run(:', validation_result: { valid: false }, metadata: { quality_score: 0.9 } },
      ].map((l) => JSON.stringify(l)).join('\n'),
    ),
  );
  result = await prepareDataset(
    { inputs: [join(dir, 'data')], outDir: out, minQuality: 0.8, emit: ['chatml', 'alpaca', 'sharegpt'], reasoning: 'inline', split: { valid: 0.2, test: 0.2 } },
    { tokenizer: chatmlModel() },
  );
});

describe('prepare on an ICEBURG export folder', () => {
  it('detects each file format and counts records by format', () => {
    const formats = Object.fromEntries(result.manifest.sources.map((s) => [s.path.split('/').pop(), s.format]));
    expect(formats).toEqual({
      'quality_metrics.jsonl': 'iceburg-quality',
      'agent_generations.jsonl.gz': 'iceburg-agent',
      'conversations.jsonl': 'iceburg-conversations',
      'reasoning_chains.jsonl': 'iceburg-reasoning',
    });
    expect(result.report.recordsByFormat).toEqual({ 'iceburg-conversations': 51, 'iceburg-reasoning': 1, 'iceburg-agent': 1 });
    // The failed agent generation is routine in that log: filtered, not an error.
    expect(result.report.errors).toEqual({});
  });

  it('joins quality metrics by conversation id, then filters by quality', () => {
    const q = result.report.quality;
    expect([q.metricsRead, q.metricsJoined, q.metricsUnmatched]).toEqual([3, 2, 1]);
    expect(result.report.filtered).toEqual({ 'below-min-quality': 5, unscored: 1, 'invalid-generation': 1 });
    expect(q.unscored).toBe(1);
    expect(q.histogram[5]).toBe(5);
  });

  it('--strict does not stop at a failed agent generation (it is filtered, with its line in rejections.jsonl)', async () => {
    const strict = await prepareDataset({ inputs: [join(dir, 'data')], outDir: join(dir, 'strict'), minQuality: 0.8, strict: true }, { tokenizer: chatmlModel() });
    expect(strict.report.filtered['invalid-generation']).toBe(1);
    const logged = readFileSync(join(dir, 'strict', 'rejections.jsonl'), 'utf8');
    expect(logged).toContain('"reason":"invalid-generation"');
    expect(logged).toMatch(/agent_generations\.jsonl\.gz","line":2,/);
  });

  it('removes 2 exact and 1 near duplicate, leaving 40 + 2 + 1 + 1 records', () => {
    expect([result.report.duplicates.exact, result.report.duplicates.near]).toEqual([2, 1]);
    expect(result.report.duplicates.examples.find((e) => e.kind === 'near')?.kept).toMatch(/conversations\.jsonl:6$/);
    const total = (['train', 'valid', 'test'] as const).reduce((n, s) => n + result.manifest.splits[s].records, 0);
    expect(total).toBe(44);
    expect(result.report.tokenLength.records).toBe(44);
  });

  it('writes a manifest that validates and shards that read back to the encoder\'s tokens', () => {
    const manifest = readManifest(out);
    expect(manifest.tokenizer.vocabSize).toBe(32002);
    expect(manifest.template.name).toBe('chatml');
    const ds = openPreparedDataset(out);
    const model = chatmlModel();
    const emitted = readFileSync(join(out, 'emit', 'train.chatml.jsonl'), 'utf8').trim().split('\n');
    const train = ds.split('train');
    expect(train.size).toBe(emitted.length);
    for (let i = 0; i < train.size; i++) {
      const { messages } = JSON.parse(emitted[i]!) as { messages: Array<{ role: 'user'; content: string }> };
      const { tokens, mask } = train.read(i);
      const direct = model.tokenizer.encode(model.template.render(messages));
      expect(Array.from(tokens)).toEqual([model.tokenizer.bosId, ...direct]);
      expect(mask.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    }
    ds.close();
  });

  it('emits the cleaned records; multi-turn conversations are counted as not representable in alpaca', () => {
    expect(result.report.emitted.chatml).toBe(44);
    expect(result.report.emitted.sharegpt).toBe(44);
    expect((result.report.emitted.alpaca ?? 0) + (result.report.notRepresentable.alpaca ?? 0)).toBe(44);
    const reasoning = readFileSync(join(out, 'emit', 'train.sharegpt.jsonl'), 'utf8') + readFileSync(join(out, 'emit', 'valid.sharegpt.jsonl'), 'utf8') + readFileSync(join(out, 'emit', 'test.sharegpt.jsonl'), 'utf8');
    expect(reasoning).toContain('Reasoning:\\n1. [surveyor] Collect sources. Action: search\\n\\nAnswer:\\nOcean heat content rose steadily since 1990.');
  });

  it('the tokenizer copy reloads with the template used, and inspect highlights the trained text', async () => {
    const reloaded = await loadModelTokenizer(join(out, 'tokenizer'));
    expect(reloaded.tokenizer.fingerprint).toBe(chatmlModel().tokenizer.fingerprint);
    expect(reloaded.template.sha256).toBe(result.manifest.template.sha256);
    const ds = openPreparedDataset(out);
    const { tokens, mask } = ds.split('train').read(0);
    const shown = highlightRecord(reloaded.tokenizer, tokens, mask, false);
    const runs = [...shown.matchAll(/⟦([^⟧]*)⟧/g)].map((m) => m[1]);
    expect(runs.length).toBeGreaterThan(0);
    for (const r of runs) expect(r).toMatch(/<\|im_end\|>$/);
    expect(shown.replaceAll('⟦', '').replaceAll('⟧', '')).toMatch(/^<s><\|im_start\|>/);
    ds.close();
  });
});

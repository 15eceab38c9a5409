import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEvalData, preparedTestItems, readEvalJsonl } from '../../lib/eval/eval-data.js';
import { prepareDataset } from '../../lib/data/prepare.js';
import { loadModelTokenizer } from '../../lib/tokenizer/load-tokenizer.js';
import { conversation, makeTrainFixture, type TrainFixture } from '../fixtures/train-fixture.js';
import { tempDir } from '../helpers/temp-dir.js';

describe('eval data', () => {
  let fx: TrainFixture;
  beforeAll(async () => {
    fx = await makeTrainFixture(24);
  }, 120_000);
  afterAll(() => fx?.cleanup());

  it('reads prompt and messages lines; bad lines come back as file:line with a reason', async () => {
    const file = join(tempDir('eval-data-'), 'eval.jsonl');
    const lines = [
      JSON.stringify({ prompt: 'Hi?', reference: 'Hello', category: 'greet' }),
      JSON.stringify({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Q?' }, { role: 'assistant', content: 'A' }] }),
      '',
      JSON.stringify({ messages: [{ role: 'user', content: 'Open?' }] }),
      '[1, 2]',
      '{"prompt": ',
      JSON.stringify({ prompt: 'x', messages: [{ role: 'user', content: 'y' }] }),
      JSON.stringify({ messages: [{ role: 'user', content: 'Q' }, { role: 'assistant', content: 'A' }], reference: 'B' }),
      JSON.stringify({ messages: [{ role: 'assistant', content: 'only me' }] }),
      JSON.stringify({ messages: [{ role: 'robot', content: 'beep' }] }),
    ];
    await writeFile(file, lines.join('\n') + '\n');
    const { prompts, rejections } = await readEvalJsonl(file);
    expect(prompts).toEqual([
      { id: `${file}:1`, category: 'greet', messages: [{ role: 'user', content: 'Hi?' }], reference: 'Hello' },
      { id: `${file}:2`, category: 'default', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Q?' }], reference: 'A' },
      { id: `${file}:4`, category: 'default', messages: [{ role: 'user', content: 'Open?' }] },
    ]);
    expect(rejections.map((r) => [r.file, r.line, r.reason])).toEqual([
      [file, 5, 'not-an-object'],
      [file, 6, 'broken-json'],
      [file, 7, 'schema'],
      [file, 8, 'no-assistant-turn'],
      [file, 9, 'no-assistant-turn'],
      [file, 10, 'schema'],
    ]);
    expect(rejections[2]!.message).toContain('exactly one of "prompt" or "messages"');
    expect(rejections[5]!.message).toMatch(/^messages\.0\.role: /);
  });

  it('a JSONL item scores prompt + reference with the reference (and its end of turn) supervised; its prompt is the prefix before it', async () => {
    const { tokenizer, template } = await loadModelTokenizer(fx.modelDir);
    const file = join(tempDir('eval-data-'), 'eval.jsonl');
    await writeFile(file, `${JSON.stringify({ prompt: 'Name a glacier.', reference: 'Aletsch' })}\n`);
    const [item] = (await loadEvalData(file, tokenizer, template)).items;
    const first = item!.scored!.mask.indexOf(1);
    expect(item!.promptTokens).toEqual(Array.from(item!.scored!.tokens.subarray(0, first)));
    expect(tokenizer.decode(item!.promptTokens)).toMatch(/Name a glacier\.<\|im_end\|>\s*<\|im_start\|>\s*assistant\n$/);
    const supervised = Array.from(item!.scored!.tokens).filter((_, i) => item!.scored!.mask[i] === 1);
    expect(item!.scored!.mask.slice(first, first + supervised.length).every((m) => m === 1)).toBe(true);
    expect(tokenizer.decode(supervised.slice(0, -1))).toBe('Aletsch');
    expect(supervised.at(-1)).toBe(tokenizer.tokenId('<|im_end|>'));
  });

  it('a prepared folder’s test split: prompt before the last supervised run, the reference is that run without its end of turn', async () => {
    const { tokenizer } = await loadModelTokenizer(fx.modelDir);
    const prepared = join(tempDir('eval-prepared-'), 'p');
    await prepareDataset({ model: fx.modelDir, inputs: [fx.jsonl], outDir: prepared, maxSeqLength: 64, split: { valid: 0, test: 0.4 }, nearDuplicateThreshold: null });
    const items = preparedTestItems(prepared, tokenizer);
    expect(items.length).toBeGreaterThan(2);
    const byQuestion = new Map(Array.from({ length: 24 }, (_, i) => conversation(i)).map((c) => [c.messages[0]!.content, c.messages[1]!.content]));
    for (const item of items) {
      const question = /user\n(.*?)<\|im_end\|>/.exec(item.promptText)![1]!;
      expect(item.reference).toBe(byQuestion.get(question));
      expect(item.promptText).toMatch(/<\|im_start\|>\s*assistant\n$/);
      expect(Array.from(item.scored!.tokens.subarray(0, item.promptTokens.length))).toEqual(item.promptTokens);
    }
  }, 120_000);
});

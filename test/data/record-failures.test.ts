/**
 * One record the encoder cannot handle is that record's rejection, with file:line and a reason;
 * the run goes on (and --strict stops there, naming it). And `▁` (U+2581) in content, which used to
 * abort prepare with a SentencePiece vocabulary, is an ordinary record.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { prepareDataset } from '../../lib/data/prepare.js';
import { openPreparedDataset } from '../../lib/data/prepared-dataset.js';
import type { ModelTokenizer } from '../../lib/tokenizer/load-tokenizer.js';
import { OffsetAlignmentError } from '../../lib/tokenizer/offsets.js';
import type { TextTokenizer } from '../../lib/tokenizer/text-tokenizer.js';
import { chatmlModel } from '../fixtures/data-model.js';
import { tempDir } from '../helpers/temp-dir.js';

const dir = tempDir('mlxq-fail-');
const line = (q: string, a: string) => JSON.stringify({ messages: [{ role: 'user', content: q }, { role: 'assistant', content: a }] });

/** The fixture model, with a tokenizer that fails on chosen texts the way a real failure would surface. */
function failingModel(): ModelTokenizer {
  const model = chatmlModel();
  const real = model.tokenizer;
  const tokenizer = Object.create(real, {
    encodeWithOffsets: {
      value(text: string) {
        if (text.includes('ALIGN-FAIL')) throw new OffsetAlignmentError('token 7 does not match the text at byte 30');
        if (text.includes('BUG')) throw new TypeError('something unexpected');
        return real.encodeWithOffsets(text);
      },
    },
  }) as TextTokenizer;
  return { ...model, tokenizer };
}

describe('a record the encoder cannot handle', () => {
  const path = join(dir, 'export.jsonl');
  writeFileSync(path, [line('Q1', 'fine'), line('Q2', 'ALIGN-FAIL here'), line('Q3', 'also fine'), line('Q4', 'a BUG here'), line('Q5', 'last one')].join('\n'));

  it('is rejected with file:line and a reason; every other record is written', async () => {
    const out = join(dir, 'out');
    const { report, manifest } = await prepareDataset({ inputs: [path], outDir: out, split: { valid: 0, test: 0 } }, { tokenizer: failingModel() });
    expect(report.errors).toEqual({ 'tokenizer-error': 1, 'encode-error': 1 });
    expect(manifest.splits.train.records).toBe(3);
    const logged = readFileSync(join(out, 'rejections.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged).toEqual([
      { reason: 'tokenizer-error', file: path, line: 2, message: 'token 7 does not match the text at byte 30' },
      { reason: 'encode-error', file: path, line: 4, message: 'TypeError: something unexpected' },
    ]);
  });

  it('--strict stops at it, naming file:line and the reason', async () => {
    await expect(prepareDataset({ inputs: [path], outDir: join(dir, 'strict'), strict: true }, { tokenizer: failingModel() })).rejects.toThrow(
      `${path}:2: tokenizer-error: token 7 does not match the text at byte 30 (stopping: --strict)`,
    );
  });
});

describe('`▁` in content with a SentencePiece vocabulary', () => {
  it('is encoded like any other text: no rejection, and the answer is trained', async () => {
    const path = join(dir, 'metaspace.jsonl');
    const answers = ['▁leading', 'mid▁word', 'spaced ▁ out', 'trailing▁', '▁▁double', 'a▁b▁c'];
    writeFileSync(path, answers.map((a, i) => line(`Question ${i} with ▁ too?`, a)).join('\n'));
    const out = join(dir, 'metaspace-out');
    const { report, manifest } = await prepareDataset({ inputs: [path], outDir: out, split: { valid: 0, test: 0 }, nearDuplicateThreshold: null }, { tokenizer: chatmlModel() });
    expect(report.errors).toEqual({});
    expect(manifest.splits.train.records).toBe(answers.length);
    const ds = openPreparedDataset(out);
    const tok = chatmlModel().tokenizer;
    const trained = Array.from({ length: answers.length }, (_, i) => {
      const { tokens, mask } = ds.split('train').read(i);
      const first = mask.indexOf(1);
      const end = mask.lastIndexOf(1) + 1;
      expect(mask.subarray(first, end).every((m) => m === 1)).toBe(true);
      return tok.surfaceText(tokens, first, end);
    });
    ds.close();
    // SentencePiece reads `▁` as a space (as llama.cpp does), so that is what is trained.
    expect(trained.sort()).toEqual(answers.map((a) => `${a.replaceAll('\u2581', ' ')}<|im_end|>`).sort());
  });
});

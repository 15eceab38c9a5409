import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { contentHash } from '../../lib/data/content-hash.js';
import { DuplicateIndex } from '../../lib/data/duplicate-index.js';
import { bandKeys, compactSignature, lshParams, minhashSignature, NUM_PERM, signatureSimilarity } from '../../lib/data/minhash.js';
import { prepareDataset } from '../../lib/data/prepare.js';
import type { RecordBody } from '../../lib/data/record.js';
import { syntheticConversation } from '../fixtures/data-corpus.js';
import { chatmlModel } from '../fixtures/data-model.js';
import { tempDir } from '../helpers/temp-dir.js';

const chat = (q: string, a: string): RecordBody => ({ kind: 'chat', messages: [{ role: 'user', content: q }, { role: 'assistant', content: a }] });
const LONG = Array.from({ length: 60 }, (_, i) => `word${i % 23} item${i}`).join(' ');

describe('duplicates', () => {
  it('exact duplicates ignore whitespace differences; near duplicates are found by MinHash LSH', async () => {
    const bodies = [chat('Q', LONG), chat('Q', `  ${LONG.replace(/ /g, '   ')} `), chat('Q', LONG.replace('item30', 'thing30')), chat('Q', 'something else entirely, unrelated')];
    const lsh = lshParams(0.85);
    const index = new DuplicateIndex(tempDir('mlxq-dd-'), { near: { signatureBytes: NUM_PERM, acceptAt: lsh.acceptAt } });
    bodies.forEach((b, i) => {
      const h = contentHash(b);
      const sig = minhashSignature(b.kind === 'chat' ? b.messages.map((m) => m.content).join(' ') : b.text);
      index.add(i, h.exactHi, h.exactLo, { bands: bandKeys(sig, lsh), signature: compactSignature(sig) });
    });
    const { status, keptAs } = await index.finish();
    expect(Array.from(status)).toEqual([0, 1, 2, 0]);
    expect(Array.from(keptAs)).toEqual([0, 0, 0, 3]);
  });

  it('LSH parameters follow the threshold and signatures estimate Jaccard', () => {
    expect(lshParams(0.5).bands).toBeGreaterThan(lshParams(0.9).bands);
    const a = minhashSignature(LONG);
    expect(signatureSimilarity(a, minhashSignature(LONG))).toBe(1);
    expect(signatureSimilarity(a, minhashSignature('completely different words here for sure'))).toBeLessThan(0.1);
  });
});

describe('splits', () => {
  it('adding records to an export keeps every old record in its old split', async () => {
    const dir = tempDir('mlxq-split-');
    const line = (i: number) => JSON.stringify(syntheticConversation(i));
    writeFileSync(join(dir, 'jan.jsonl'), `${Array.from({ length: 300 }, (_, i) => line(i)).join('\n')}\n`);
    // February's export: the old records in another order, with new ones interleaved.
    const feb = [...Array.from({ length: 300 }, (_, i) => line(299 - i)), ...Array.from({ length: 300 }, (_, i) => line(1000 + i))];
    writeFileSync(join(dir, 'feb.jsonl'), `${feb.sort().join('\n')}\n`);
    const splitOf = async (file: string) => {
      const out = join(dir, `out-${file}`);
      await prepareDataset({ inputs: [join(dir, file)], outDir: out, emit: ['chatml'], split: { valid: 0.1, test: 0.1 } }, { tokenizer: chatmlModel() });
      const where = new Map<string, string>();
      for (const s of ['train', 'valid', 'test']) {
        for (const l of readFileSync(join(out, 'emit', `${s}.chatml.jsonl`), 'utf8').split('\n').filter(Boolean)) {
          where.set(JSON.stringify((JSON.parse(l) as { messages: unknown }).messages), s);
        }
      }
      return where;
    };
    const jan = await splitOf('jan.jsonl');
    const feb2 = await splitOf('feb.jsonl');
    expect(jan.size).toBe(300);
    expect(feb2.size).toBe(600);
    const counts = { train: 0, valid: 0, test: 0 } as Record<string, number>;
    for (const [content, split] of jan) {
      expect(feb2.get(content)).toBe(split);
      counts[split]!++;
    }
    // The fractions are honoured roughly (300 records: binomial spread).
    expect(counts.test).toBeGreaterThan(10);
    expect(counts.valid).toBeGreaterThan(10);
    expect(counts.train).toBeGreaterThan(200);
  });
});

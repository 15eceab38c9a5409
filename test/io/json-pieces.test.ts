import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { jsonPieces, writeJsonInPieces } from '../../lib/io/json-pieces.js';
import { tempDir } from '../helpers/temp-dir.js';

/** A tokenizer.json-like document: a large vocabulary object, a large merges array, small parts. */
function vocabularyDocument(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  for (let i = 0; i < 7000; i++) vocab[`▁tok"${i}\\é😀`] = i;
  const merges = Array.from({ length: 5000 }, (_, i) => (i % 3 === 0 ? [`a${i}`, `b${i}`] : `a${i} b${i}`));
  return {
    version: '1.0',
    added_tokens: [{ id: 0, content: '<unk>', special: true }],
    skipped: undefined,
    fn: () => 1,
    model: { type: 'BPE', dropout: null, vocab, merges, big: Array.from({ length: 4500 }, (_, i) => (i % 7 === 0 ? undefined : i % 5 === 0 ? new Date(i) : i * 0.5)) },
  };
}

describe('JSON in pieces', () => {
  it('joins to exactly what JSON.stringify writes, and cuts large containers into bounded pieces', () => {
    const doc = vocabularyDocument();
    const pieces = [...jsonPieces(doc, 1000)];
    expect(pieces.join('')).toBe(JSON.stringify(doc));
    expect(pieces.length).toBeGreaterThan(16_000);
    expect(Math.max(...pieces.map((p) => p.length))).toBeLessThan(200);
    for (const small of [1, 'x', null, [], {}, [undefined], { a: undefined }, { a: [1, { b: 2 }] }]) expect([...jsonPieces(small, 0)].join('')).toBe(JSON.stringify(small));
    expect(() => [...jsonPieces(undefined)]).toThrow(/no JSON form/);
  });

  it('writes the file atomically and gives the caller a turn between pieces', async () => {
    const dir = tempDir('json-pieces-');
    const doc = vocabularyDocument();
    let turns = 0;
    await writeJsonInPieces(join(dir, 'tokenizer.json'), doc, async () => {
      turns++;
    });
    expect(await readFile(join(dir, 'tokenizer.json'), 'utf8')).toBe(JSON.stringify(doc));
    expect(await readdir(dir)).toEqual(['tokenizer.json']);
    expect(turns).toBeGreaterThan(5);
  });
});

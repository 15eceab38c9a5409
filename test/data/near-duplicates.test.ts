/**
 * Near-duplicate detection, statistically: many independent pairs of shingle sets at an exact,
 * known Jaccard similarity go through the real DuplicateIndex (LSH banding, then verification by
 * estimated Jaccard from the spilled signatures). Pairs a little above the threshold must be found
 * (recall), pairs below it must be kept apart (precision). Deterministic seeds, so a failure is a
 * change in behaviour, not bad luck.
 */

import { describe, expect, it } from 'vitest';
import { DUPLICATE_STATUS, DuplicateIndex } from '../../lib/data/duplicate-index.js';
import { bandKeys, compactSignature, compactSimilarity, lshParams, NUM_PERM, signatureOfShingles } from '../../lib/data/minhash.js';
import { createRng, type Rng } from '../fixtures/rng.js';
import { tempDir } from '../helpers/temp-dir.js';

const UNION = 300;

/** Two sets of random 32-bit shingles whose Jaccard similarity is exactly round(j·300)/300. */
function pairAt(j: number, rng: Rng): [Uint32Array, Uint32Array] {
  const common = Math.round(j * UNION);
  const onlyA = Math.floor((UNION - common) / 2);
  const all = new Set<number>();
  while (all.size < UNION) all.add(Math.floor(rng.next() * 2 ** 32));
  const values = [...all];
  const shared = values.slice(0, common);
  return [Uint32Array.from([...shared, ...values.slice(common, common + onlyA)]), Uint32Array.from([...shared, ...values.slice(common + onlyA)])];
}

/** Fraction of `count` independent pairs at Jaccard j that the index marks as near duplicates. */
async function mergedFraction(threshold: number, j: number, count: number, seed: number): Promise<number> {
  const lsh = lshParams(threshold);
  const index = new DuplicateIndex(tempDir('mlxq-near-'), { near: { signatureBytes: NUM_PERM, acceptAt: lsh.acceptAt } });
  const rng = createRng(seed);
  for (let i = 0; i < count; i++) {
    for (const [k, set] of pairAt(j, rng).entries()) {
      const sig = signatureOfShingles(set);
      // Distinct exact keys: only near-duplicate detection can join these records.
      index.add(2 * i + k, 2 * i + k, 0x5eed, { bands: bandKeys(sig, lsh), signature: compactSignature(sig) });
    }
  }
  const { status, keptAs } = await index.finish();
  let merged = 0;
  for (let i = 0; i < count; i++) {
    expect(status[2 * i]).toBe(DUPLICATE_STATUS.unique); // never joined to another pair's record
    if (status[2 * i + 1] === DUPLICATE_STATUS.near) {
      expect(keptAs[2 * i + 1]).toBe(2 * i);
      merged++;
    }
  }
  return merged / count;
}

describe('near duplicates at known Jaccard similarity', () => {
  it.each([0.85, 0.7, 0.95])('threshold %s: found above it, kept apart below it', async (t) => {
    const at = (delta: number, seed: number) => mergedFraction(t, Math.min(1, t + delta), 400, seed);
    expect(await at(0.05, 1)).toBeGreaterThanOrEqual(0.98);
    expect(await at(0.02, 2)).toBeGreaterThanOrEqual(0.9);
    // The estimate's spread is ~0.03 at mid similarities, so pairs 0.05 below are not all told apart.
    expect(await at(-0.05, 3)).toBeLessThanOrEqual(0.3);
    expect(await at(-0.1, 4)).toBeLessThanOrEqual(0.02);
    expect(await mergedFraction(t, 0.3, 400, 5)).toBe(0);
  });

  it('the default threshold is caught 9 times in 10 at +0.02, where 4 bands × 16 rows without verification caught 56% at 0.9', async () => {
    const p = lshParams(0.85);
    expect(p.bands * p.rows).toBeLessThanOrEqual(NUM_PERM);
    expect(p.acceptAt).toBeLessThanOrEqual(0.85);
    expect(p.acceptAt).toBeGreaterThan(0.82);
    expect(await mergedFraction(0.85, 0.9, 400, 6)).toBeGreaterThanOrEqual(0.99);
  });

  it('signatures estimate Jaccard without bias, with the spread 256 permutations allow', () => {
    const rng = createRng(9);
    for (const j of [0.2, 0.5, 0.8, 0.9]) {
      const estimates: number[] = [];
      for (let i = 0; i < 400; i++) {
        const [a, b] = pairAt(j, rng);
        estimates.push(compactSimilarity(compactSignature(signatureOfShingles(a)), compactSignature(signatureOfShingles(b))));
      }
      const exact = Math.round(j * UNION) / UNION;
      const mean = estimates.reduce((x, y) => x + y, 0) / estimates.length;
      const sd = Math.sqrt(estimates.reduce((x, y) => x + (y - mean) ** 2, 0) / estimates.length);
      const expectedSd = Math.sqrt((exact * (1 - exact)) / NUM_PERM);
      expect(Math.abs(mean - exact)).toBeLessThan(0.006);
      expect(sd).toBeGreaterThan(expectedSd * 0.75);
      expect(sd).toBeLessThan(expectedSd * 1.3);
    }
  });
});

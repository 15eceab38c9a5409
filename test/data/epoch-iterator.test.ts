import { describe, expect, it } from 'vitest';
import type { Batch } from '../../lib/data/batch.js';
import { batchPlanOptionsSchema, planEpoch, planStats } from '../../lib/data/batch-plan.js';
import { EpochIterator } from '../../lib/data/epoch-iterator.js';
import type { RecordSource, TokenRecord } from '../../lib/data/prepared-dataset.js';
import { mulberry32 } from '../../lib/data/rng.js';

/** Record i has tokens 1000*i + 0, 1, 2, ... and mask 1 on odd positions: every value is traceable. */
function syntheticSource(lengths: number[]): RecordSource {
  return {
    size: lengths.length,
    length: (i) => lengths[i]!,
    read: (i): TokenRecord => ({
      tokens: Int32Array.from({ length: lengths[i]! }, (_, j) => 1000 * i + j),
      mask: Uint8Array.from({ length: lengths[i]! }, (_, j) => j % 2),
    }),
  };
}

const rng = mulberry32(3);
const LENGTHS = Array.from({ length: 103 }, () => 2 + Math.floor(rng() * 60));

function take(it: EpochIterator, n: number): Batch[] {
  const out: Batch[] = [];
  for (let i = 0; i < n; i++) out.push(it.next()!);
  return out;
}

describe('EpochIterator', () => {
  it.each(['bucket', 'pack', 'shuffle'] as const)('%s: resuming from a serialised cursor yields the same batches as never stopping', (mode) => {
    const opts = { mode, batchSize: 4, maxSeqLength: 64, seed: 11, windowBatches: 4 };
    const straight = new EpochIterator(syntheticSource(LENGTHS), opts);
    const perEpoch = straight.batchesPerEpoch;
    const reference = take(straight, perEpoch * 2 + 5); // crosses two epoch boundaries

    for (const stopAt of [0, 3, perEpoch - 1, perEpoch, perEpoch + 7]) {
      const first = new EpochIterator(syntheticSource(LENGTHS), opts);
      take(first, stopAt);
      const saved = JSON.parse(JSON.stringify(first.cursor)) as typeof first.cursor;
      const resumed = new EpochIterator(syntheticSource(LENGTHS), { ...opts, cursor: saved });
      expect(take(resumed, reference.length - stopAt)).toEqual(reference.slice(stopAt));
    }
  });

  it('every record appears exactly once per epoch, and epochs are shuffled differently', () => {
    const it2 = new EpochIterator(syntheticSource(LENGTHS), { mode: 'pack', batchSize: 3, maxSeqLength: 64, seed: 1 });
    const n = it2.batchesPerEpoch;
    const e0 = take(it2, n).flatMap((b) => Array.from(b.recordIds));
    const e1 = take(it2, n).flatMap((b) => Array.from(b.recordIds));
    expect([...e0].sort((a, b) => a - b)).toEqual(LENGTHS.map((_, i) => i));
    expect([...e1].sort((a, b) => a - b)).toEqual(LENGTHS.map((_, i) => i));
    expect(e1).not.toEqual(e0);
  });

  it('packed rows: targets are next tokens within a record, positions restart, segments separate records', () => {
    const source = syntheticSource([5, 3, 4]);
    const it3 = new EpochIterator(source, { mode: 'pack', batchSize: 1, maxSeqLength: 16, padMultiple: 1 });
    const b = it3.next()!;
    expect(b.rows).toBe(1);
    expect(b.width).toBe(4 + 2 + 3);
    const order = Array.from(b.recordIds);
    const expectInputs: number[] = [];
    const expectTargets: number[] = [];
    const expectPositions: number[] = [];
    const expectSegments: number[] = [];
    const expectMask: number[] = [];
    order.forEach((r, k) => {
      const len = [5, 3, 4][r]!;
      for (let j = 0; j < len - 1; j++) {
        expectInputs.push(1000 * r + j);
        expectTargets.push(1000 * r + j + 1);
        expectPositions.push(j);
        expectSegments.push(k + 1);
        expectMask.push((j + 1) % 2);
      }
    });
    expect(Array.from(b.inputs)).toEqual(expectInputs);
    expect(Array.from(b.targets)).toEqual(expectTargets);
    expect(Array.from(b.positions)).toEqual(expectPositions);
    expect(Array.from(b.segments)).toEqual(expectSegments);
    expect(Array.from(b.mask)).toEqual(expectMask);
    expect(b.supervisedTokens).toBe(expectMask.reduce((a, c) => a + c, 0));
    expect(Array.from(b.lengths)).toEqual([9]);
  });

  it('bucketed rows are padded with the pad id and mask 0, width rounded to padMultiple', () => {
    const it4 = new EpochIterator(syntheticSource([10, 4]), { mode: 'bucket', batchSize: 2, maxSeqLength: 32, padId: -7, padMultiple: 8 });
    const b = it4.next()!;
    expect(b.width).toBe(16);
    const shortRow = Array.from(b.recordIds).indexOf(1);
    const row = (a: Int32Array | Uint8Array) => Array.from(a.subarray(shortRow * 16, shortRow * 16 + 16));
    expect(row(b.inputs)).toEqual([1000, 1001, 1002, ...new Array<number>(13).fill(-7)]);
    expect(row(b.mask)).toEqual([1, 0, 1, ...new Array<number>(13).fill(0)]);
    expect(row(b.segments)).toEqual([1, 1, 1, ...new Array<number>(13).fill(0)]);
    expect(b.realTokens).toBe(9 + 3);
  });

  it('with records much shorter than a row, packing pads less than bucketing; both count exactly', () => {
    const lengths = Uint32Array.from(LENGTHS);
    const bucket = batchPlanOptionsSchema.parse({ mode: 'bucket', batchSize: 4, maxSeqLength: 256, padMultiple: 1, windowBatches: 2 });
    const pack = batchPlanOptionsSchema.parse({ ...bucket, mode: 'pack' });
    const b = planStats(planEpoch(lengths, bucket, 0), lengths, bucket);
    const p = planStats(planEpoch(lengths, pack, 0), lengths, pack);
    const real = LENGTHS.reduce((a, l) => a + l - 1, 0);
    expect(b.realPositions).toBe(real);
    expect(p.realPositions).toBe(real);
    expect(p.paddingFraction).toBeLessThan(b.paddingFraction);
    expect(p.fillRatio).toBeCloseTo(1 - p.paddingFraction, 12);
  });

  it('a cursor from other data or options is refused', () => {
    const a = new EpochIterator(syntheticSource(LENGTHS), { seed: 1 });
    expect(() => new EpochIterator(syntheticSource(LENGTHS), { seed: 2, cursor: a.cursor })).toThrow(/fingerprint/);
  });
});

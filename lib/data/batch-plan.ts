/**
 * Decides which records go into which row of which batch for one epoch, from record lengths alone
 * (so planning is cheap and needs no token data):
 * - `bucket`: shuffle, then sort by length inside windows of `windowBatches` batches, cut into
 *   batches, shuffle the batches: similar lengths share a batch, so little padding, yet order varies.
 * - `pack`: shuffle, then inside each window pack records into rows of `maxSeqLength` positions
 *   (first-fit decreasing), cut rows into batches, shuffle the batches.
 * - `shuffle`: plain shuffled batches, for comparison.
 * The plan depends only on (lengths, options, seed, epoch): that is what makes cursors resumable.
 */
import { z } from 'zod';
import { epochRng, shuffleInPlace } from './rng.js';

export const batchPlanOptionsSchema = z.object({
  mode: z.enum(['bucket', 'pack', 'shuffle']).default('bucket'),
  /** Rows per batch. */
  batchSize: z.number().int().positive().default(4),
  /** Positions per row; records longer than this + 1 tokens are rejected at planning. */
  maxSeqLength: z.number().int().positive().default(2048),
  seed: z.number().int().default(0),
  windowBatches: z.number().int().positive().default(32),
  /** Row width is rounded up to a multiple of this (kernels like multiples of 8), capped at maxSeqLength. */
  padMultiple: z.number().int().positive().default(8),
  /** Drop the last batch of an epoch when it has fewer rows than batchSize. */
  dropLast: z.boolean().default(false),
});
export type BatchPlanOptions = z.infer<typeof batchPlanOptionsSchema>;
export type BatchPlanOptionsInput = z.input<typeof batchPlanOptionsSchema>;

/** One batch: rows of record indices. */
export type PlannedBatch = number[][];

/** Positions a record occupies in a row: one per predicted token. */
export function recordPositions(length: number): number {
  return Math.max(0, length - 1);
}

export function planEpoch(lengths: ArrayLike<number>, options: BatchPlanOptions, epoch: number): PlannedBatch[] {
  const rng = epochRng(options.seed, epoch);
  const order: number[] = [];
  for (let i = 0; i < lengths.length; i++) {
    const positions = recordPositions(lengths[i]!);
    if (positions === 0) continue; // a single token predicts nothing
    if (positions > options.maxSeqLength) {
      throw new Error(`record ${i} has ${lengths[i]} tokens, more than maxSeqLength ${options.maxSeqLength} + 1`);
    }
    order.push(i);
  }
  shuffleInPlace(order, rng);
  const window = options.batchSize * options.windowBatches;
  const byLengthDesc = (a: number, b: number) => lengths[b]! - lengths[a]! || a - b;
  let rows: number[][] = [];
  if (options.mode === 'pack') {
    // A packing window holds about `windowBatches` batches of full rows, not that many records.
    let positions = 0;
    for (const r of order) positions += recordPositions(lengths[r]!);
    const perRow = order.length === 0 ? 1 : Math.max(1, Math.floor(options.maxSeqLength / (positions / order.length)));
    const packWindow = window * perRow;
    for (let w = 0; w < order.length; w += packWindow) rows.push(...packRows(order.slice(w, w + packWindow).sort(byLengthDesc), lengths, options.maxSeqLength));
  } else if (options.mode === 'bucket') {
    for (let w = 0; w < order.length; w += window) for (const r of order.slice(w, w + window).sort(byLengthDesc)) rows.push([r]);
  } else {
    rows = order.map((r) => [r]);
  }
  const batches: PlannedBatch[] = [];
  for (let b = 0; b < rows.length; b += options.batchSize) batches.push(rows.slice(b, b + options.batchSize));
  if (options.dropLast && batches.length > 0 && batches[batches.length - 1]!.length < options.batchSize) batches.pop();
  if (options.mode !== 'shuffle') shuffleInPlace(batches, rng);
  return batches;
}

function packRows(sortedDesc: number[], lengths: ArrayLike<number>, capacity: number): number[][] {
  const rows: number[][] = [];
  const free: number[] = [];
  for (const r of sortedDesc) {
    const need = recordPositions(lengths[r]!);
    let target = -1;
    for (let i = 0; i < rows.length; i++) {
      if (free[i]! >= need) {
        target = i;
        break;
      }
    }
    if (target < 0) {
      rows.push([]);
      free.push(capacity);
      target = rows.length - 1;
    }
    rows[target]!.push(r);
    free[target]! -= need;
  }
  return rows;
}

export function rowWidth(batch: PlannedBatch, lengths: ArrayLike<number>, options: BatchPlanOptions): number {
  let widest = 0;
  for (const row of batch) {
    let used = 0;
    for (const r of row) used += recordPositions(lengths[r]!);
    widest = Math.max(widest, used);
  }
  const rounded = Math.ceil(widest / options.padMultiple) * options.padMultiple;
  return Math.max(widest, Math.min(rounded, options.maxSeqLength));
}

export interface PlanStats {
  batches: number;
  rows: number;
  realPositions: number;
  paddedPositions: number;
  /** Padding positions / all positions. */
  paddingFraction: number;
  /** Real positions / all positions (1 − paddingFraction). */
  fillRatio: number;
}

export function planStats(plan: PlannedBatch[], lengths: ArrayLike<number>, options: BatchPlanOptions): PlanStats {
  let rows = 0;
  let real = 0;
  let total = 0;
  for (const batch of plan) {
    const width = rowWidth(batch, lengths, options);
    rows += batch.length;
    total += width * batch.length;
    for (const row of batch) for (const r of row) real += recordPositions(lengths[r]!);
  }
  return {
    batches: plan.length,
    rows,
    realPositions: real,
    paddedPositions: total - real,
    paddingFraction: total === 0 ? 0 : (total - real) / total,
    fillRatio: total === 0 ? 0 : real / total,
  };
}

/**
 * Yields training batches epoch after epoch. Its cursor (epoch, next batch index, and a fingerprint
 * of the data and options) is plain JSON: store it in a checkpoint and a new iterator built with it
 * continues at exactly the next batch, because an epoch's plan is a pure function of
 * (lengths, options, seed, epoch).
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Batch } from './batch.js';
import { batchPlanOptionsSchema, planEpoch, recordPositions, rowWidth, type BatchPlanOptions, type BatchPlanOptionsInput, type PlannedBatch } from './batch-plan.js';
import type { RecordSource } from './prepared-dataset.js';

export const dataCursorSchema = z.object({
  version: z.literal(1),
  epoch: z.number().int().nonnegative(),
  /** Index of the next batch to yield within `epoch`. */
  batch: z.number().int().nonnegative(),
  fingerprint: z.string(),
});
export type DataCursor = z.infer<typeof dataCursorSchema>;

export interface EpochIteratorOptions extends BatchPlanOptionsInput {
  /** Id written to padding positions of `inputs`/`targets` (masked out either way). */
  padId?: number;
  /** Stop after this many epochs; default: never stop. */
  epochs?: number;
  cursor?: DataCursor;
}

export class EpochIterator implements Iterable<Batch> {
  readonly options: BatchPlanOptions;
  private readonly padId: number;
  private readonly epochs: number;
  private readonly lengths: Uint32Array;
  private readonly fingerprint: string;
  private epoch = 0;
  private batchIndex = 0;
  private plan: PlannedBatch[] | undefined;

  constructor(
    private readonly source: RecordSource,
    options: EpochIteratorOptions = {},
  ) {
    this.options = batchPlanOptionsSchema.parse(options);
    this.padId = options.padId ?? 0;
    this.epochs = options.epochs ?? Infinity;
    this.lengths = new Uint32Array(source.size);
    for (let i = 0; i < source.size; i++) this.lengths[i] = source.length(i);
    this.fingerprint = createHash('sha256')
      .update(JSON.stringify(this.options))
      .update(new Uint8Array(this.lengths.buffer))
      .digest('hex')
      .slice(0, 32);
    if (options.cursor) {
      const cursor = dataCursorSchema.parse(options.cursor);
      if (cursor.fingerprint !== this.fingerprint) {
        throw new Error('data cursor does not belong to this dataset and batch options (fingerprint differs); resuming would change the data order');
      }
      this.epoch = cursor.epoch;
      this.batchIndex = cursor.batch;
    }
  }

  /** Where the next batch comes from: save this to resume. */
  get cursor(): DataCursor {
    return { version: 1, epoch: this.epoch, batch: this.batchIndex, fingerprint: this.fingerprint };
  }

  private epochPlan(): PlannedBatch[] {
    this.plan ??= planEpoch(this.lengths, this.options, this.epoch);
    return this.plan;
  }

  get batchesPerEpoch(): number {
    return this.epochPlan().length;
  }

  /** True when the current epoch's batches are all taken (the next batch starts a new epoch). */
  get atEpochEnd(): boolean {
    return this.epoch < this.epochs && this.batchIndex >= this.epochPlan().length;
  }

  /** Batches in any epoch (with packing the count varies from epoch to epoch). */
  batchesInEpoch(epoch: number): number {
    return epoch === this.epoch ? this.epochPlan().length : planEpoch(this.lengths, this.options, epoch).length;
  }

  next(): Batch | undefined {
    for (;;) {
      if (this.epoch >= this.epochs) return undefined;
      const plan = this.epochPlan();
      if (plan.length === 0) return undefined;
      if (this.batchIndex < plan.length) {
        const batch = this.assemble(plan[this.batchIndex]!, this.batchIndex);
        this.batchIndex++;
        return batch;
      }
      this.epoch++;
      this.batchIndex = 0;
      this.plan = undefined;
    }
  }

  *[Symbol.iterator](): Iterator<Batch> {
    for (let b = this.next(); b; b = this.next()) yield b;
  }

  private assemble(planned: PlannedBatch, index: number): Batch {
    const rows = planned.length;
    const width = rowWidth(planned, this.lengths, this.options);
    const size = rows * width;
    const inputs = new Int32Array(size).fill(this.padId);
    const targets = new Int32Array(size).fill(this.padId);
    const mask = new Uint8Array(size);
    const positions = new Int32Array(size);
    const segments = new Int32Array(size);
    const lengths = new Int32Array(rows);
    const recordIds: number[] = [];
    let realTokens = 0;
    let supervisedTokens = 0;
    planned.forEach((row, r) => {
      let at = r * width;
      row.forEach((recordIndex, k) => {
        recordIds.push(recordIndex);
        const { tokens, mask: tokenMask } = this.source.read(recordIndex);
        const n = recordPositions(tokens.length);
        inputs.set(tokens.subarray(0, n), at);
        targets.set(tokens.subarray(1, n + 1), at);
        mask.set(tokenMask.subarray(1, n + 1), at);
        for (let j = 0; j < n; j++) {
          positions[at + j] = j;
          segments[at + j] = k + 1;
          supervisedTokens += tokenMask[j + 1]!;
        }
        at += n;
      });
      lengths[r] = at - r * width;
      realTokens += lengths[r]!;
    });
    return {
      epoch: this.epoch,
      index,
      rows,
      width,
      inputs,
      targets,
      mask,
      positions,
      segments,
      lengths,
      recordIds: Int32Array.from(recordIds),
      realTokens,
      supervisedTokens,
    };
  }
}

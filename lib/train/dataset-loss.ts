/** Mean next-token loss and perplexity of a model over a dataset split, in a fixed batch order. */
import { EpochIterator } from '../data/epoch-iterator.js';
import type { RecordSource } from '../data/prepared-dataset.js';
import type { NativeModel } from '../native.js';
import { toNativeBatch } from './training-data.js';

export interface DatasetLossOptions {
  batchSize: number;
  maxSeqLength: number;
  padId: number;
  /** Stop after this many batches; default all. */
  maxBatches?: number;
  signal?: AbortSignal;
}

export interface DatasetLoss {
  /**
   * Summed loss / supervised tokens. NaN when nothing was supervised, and NaN/Inf when the model
   * produced it: callers that log or compare it must check (the trainer records it as null).
   */
  loss: number;
  /** exp(loss); null when it overflows. */
  perplexity: number | null;
  tokens: number;
  batches: number;
  /** True when the signal stopped the pass early: the figures cover only part of the split. */
  aborted: boolean;
}

export async function datasetLoss(model: NativeModel, source: RecordSource, options: DatasetLossOptions): Promise<DatasetLoss> {
  // Same seed every time: evaluations at different steps see the same batches.
  const batches = new EpochIterator(source, {
    mode: 'bucket',
    batchSize: options.batchSize,
    maxSeqLength: options.maxSeqLength,
    seed: 0,
    epochs: 1,
    padId: options.padId,
  });
  let lossSum = 0;
  let tokens = 0;
  let count = 0;
  let aborted = false;
  for (const batch of batches) {
    if (options.maxBatches !== undefined && count >= options.maxBatches) break;
    // Checked before each batch: an abort waits for at most the batch in flight.
    if (options.signal?.aborted) {
      aborted = true;
      break;
    }
    const r = await model.loss(toNativeBatch(batch));
    lossSum += r.loss;
    tokens += r.tokens;
    count++;
  }
  const loss = tokens > 0 ? lossSum / tokens : Number.NaN;
  const ppl = Math.exp(loss);
  return { loss, perplexity: Number.isFinite(ppl) ? ppl : null, tokens, batches: count, aborted };
}

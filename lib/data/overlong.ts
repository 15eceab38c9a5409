/**
 * Records longer than the run's max_seq_length, as training sees them: a prepared folder may hold
 * records up to the length it was prepared at (2048 by default), and a run may train at fewer.
 * `truncate` (mlx-lm's behaviour) cuts such a record, and its loss mask with it, to the first
 * max_seq_length tokens; `drop` leaves it out. A cut record with no supervised token left would
 * teach nothing, so it is left out too (`truncatedAway`). prepare's `--overlong` is the same
 * policy applied when the records are written.
 */
import { EventLoopTurns } from './event-loop-turn.js';
import type { RecordSource, TokenRecord } from './prepared-dataset.js';

export const OVERLONG_POLICIES = ['truncate', 'drop'] as const;
export type OverlongPolicy = (typeof OVERLONG_POLICIES)[number];

export interface OverlongCounts {
  /** Cut to the limit and kept. */
  truncated: number;
  /** Cut to the limit and left out: every supervised token lay beyond it. */
  truncatedAway: number;
  /** Left out by the `drop` policy. */
  dropped: number;
}

export interface FittedRecords {
  source: RecordSource;
  counts: OverlongCounts;
}

/** A source whose records all have at most `maxTokens` tokens; `kept[i]` is record i's index in the original. */
class FittedSource implements RecordSource {
  readonly size: number;

  constructor(
    private readonly original: RecordSource,
    private readonly kept: Uint32Array,
    private readonly maxTokens: number,
  ) {
    this.size = kept.length;
  }

  length(index: number): number {
    return Math.min(this.original.length(this.kept[index]!), this.maxTokens);
  }

  read(index: number): TokenRecord {
    if (!(index >= 0 && index < this.size)) throw new RangeError(`record ${index} is outside this split (${this.size} records)`);
    const record = this.original.read(this.kept[index]!);
    if (record.tokens.length <= this.maxTokens) return record;
    return { tokens: record.tokens.subarray(0, this.maxTokens), mask: record.mask.subarray(0, this.maxTokens) };
  }
}

/** Whether a record cut to `maxTokens` tokens still has a supervised prediction (mask[0] is never one). */
function keepsSupervision(mask: Uint8Array, maxTokens: number): boolean {
  const end = Math.min(mask.length, maxTokens);
  for (let i = 1; i < end; i++) if (mask[i] !== 0) return true;
  return false;
}

/**
 * Applies the policy to every record over `maxTokens` tokens. A source with none is returned as
 * it is, so its batches (and a resumed run's data cursor) are exactly what they were.
 */
export async function fitRecords(source: RecordSource, maxTokens: number, policy: OverlongPolicy): Promise<FittedRecords> {
  const counts: OverlongCounts = { truncated: 0, truncatedAway: 0, dropped: 0 };
  const turns = new EventLoopTurns();
  let overlong = 0;
  for (let i = 0; i < source.size; i++) if (source.length(i) > maxTokens) overlong++;
  if (overlong === 0) return { source, counts };
  const kept: number[] = [];
  for (let i = 0; i < source.size; i++) {
    if (source.length(i) <= maxTokens) {
      kept.push(i);
      continue;
    }
    await turns.take();
    if (policy === 'drop') counts.dropped++;
    // Only the part of the mask that survives the cut decides: a prepared split reads just that.
    else if (keepsSupervision(source.maskPrefix?.(i, maxTokens) ?? source.read(i).mask, maxTokens)) {
      counts.truncated++;
      kept.push(i);
    } else counts.truncatedAway++;
  }
  return { source: new FittedSource(source, Uint32Array.from(kept), maxTokens), counts };
}

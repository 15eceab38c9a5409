/**
 * The fixed-size row prepare's first pass spills per candidate record and its second pass reads
 * back (and the report's file:line examples look up): one layout, written and read only here.
 */
import type { SplitName } from './split.js';
import { SPLITS } from './split.js';

export interface CandidateRow {
  /** Tokens of the (possibly truncated) record. */
  length: number;
  /** Tokens that carry loss. */
  trained: number;
  /** Index of the input file. */
  fileIndex: number;
  line: number;
  split: SplitName;
  /** Messages in the conversation, capped at 65535. */
  turns: number;
  /** NaN when unscored. */
  quality: number;
}

export const CANDIDATE_ROW_BYTES = 24;

const OFFSET = { length: 0, trained: 4, fileIndex: 8, line: 12, split: 16, turns: 18, quality: 20 } as const;

/** A reusable buffer that encodes and decodes rows. */
export class CandidateRowCodec {
  readonly bytes = new Uint8Array(CANDIDATE_ROW_BYTES);
  private readonly view = new DataView(this.bytes.buffer);

  encode(row: CandidateRow): Uint8Array {
    const v = this.view;
    v.setUint32(OFFSET.length, row.length, true);
    v.setUint32(OFFSET.trained, row.trained, true);
    v.setUint32(OFFSET.fileIndex, row.fileIndex, true);
    v.setUint32(OFFSET.line, row.line, true);
    v.setUint8(OFFSET.split, SPLITS.indexOf(row.split));
    v.setUint16(OFFSET.turns, Math.min(row.turns, 0xffff), true);
    v.setFloat32(OFFSET.quality, row.quality, true);
    return this.bytes;
  }

  /** The row now in `bytes`. */
  decode(): CandidateRow {
    const v = this.view;
    return {
      length: v.getUint32(OFFSET.length, true),
      trained: v.getUint32(OFFSET.trained, true),
      fileIndex: v.getUint32(OFFSET.fileIndex, true),
      line: v.getUint32(OFFSET.line, true),
      split: SPLITS[v.getUint8(OFFSET.split)]!,
      turns: v.getUint16(OFFSET.turns, true),
      quality: v.getFloat32(OFFSET.quality, true),
    };
  }
}

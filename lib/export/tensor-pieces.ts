/**
 * A stored tensor that needs no adapter merge streams to the file in pieces of a few MiB: the native
 * transcoder writes rows into one of two buffers reused for the whole export while the other is
 * written. Fresh memory is what costs here: first-touch page faults of a new 262 MB output buffer
 * per tensor took seconds a GB on this VM, and one huge write() is throttled far harder than many
 * small ones; the pieces avoid both and keep the exporter's memory flat.
 */
import type { GgmlTypeName } from '../gguf/ggml-type.js';
import { hfRowOfGgufRow } from '../gguf/tensor-names.js';
import { encodedByteLength, isEncodableGgmlType } from './quantize.js';
import { transcodeRowsInto, type TensorBytes } from './transcode.js';

/** Output bytes per piece. */
const PIECE_BYTES = 8 << 20;

export interface PieceTensor {
  readonly name: string;
  /** Row-major shape. */
  readonly shape: readonly number[];
  readonly stored: TensorBytes;
  /** Heads to interleave Q/K rows over (HF order → GGUF order). */
  readonly permuteHeads: number | undefined;
}

/** The two buffers an export's pieces alternate between. */
export class PiecePool {
  private readonly buffers: Uint8Array[] = [];

  /** Buffer k % 2, at least `bytes` long. */
  buffer(k: number, bytes: number): Uint8Array {
    const i = k % 2;
    const have = this.buffers[i];
    if (have !== undefined && have.byteLength >= bytes) return have;
    const made = new Uint8Array(Math.max(bytes, PIECE_BYTES));
    this.buffers[i] = made;
    return made;
  }
}

/**
 * The tensor's bytes in `type`, PIECE_BYTES at a time; the next piece is transcoded while the caller
 * writes this one. A yielded piece is only valid until the generator resumes.
 */
export async function* transcodedPieces(t: PieceTensor, type: GgmlTypeName, pool: PiecePool, threads: number | undefined): AsyncGenerator<Uint8Array> {
  if (!isEncodableGgmlType(type)) throw new TypeError(`cannot write GGUF type ${type}`);
  const rows = t.shape.length === 2 ? t.shape[0]! : 1;
  const rowBytes = encodedByteLength(type, 1, t.shape.at(-1)!);
  const perPiece = Math.max(1, Math.floor(PIECE_BYTES / rowBytes));
  const rowMap = t.permuteHeads === undefined ? undefined : hfRowOfGgufRow(rows, t.permuteHeads);
  const options = { ...(threads !== undefined ? { threads } : {}), ...(rowMap ? { rowMap } : {}) };
  const start = (first: number, k: number): Promise<number> => {
    const count = Math.min(perPiece, rows - first);
    const promise = transcodeRowsInto(t.stored, t.shape, type, { first, count }, pool.buffer(k, count * rowBytes), options);
    promise.catch(() => undefined); // awaited below; a piece the caller never asks for fails silently
    return promise;
  };
  let pending = start(0, 0);
  for (let first = 0, k = 0; first < rows; first += perPiece, k++) {
    const bytes = await pending;
    if (first + perPiece < rows) pending = start(first + perPiece, k + 1);
    yield pool.buffer(k, 0).subarray(0, bytes);
  }
}

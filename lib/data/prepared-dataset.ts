/**
 * Reads a prepared dataset. Only the per-record lengths are held in memory (4 bytes a record);
 * token ids and masks are read from the shard files on demand with positional reads, so opening a
 * large dataset costs little and the trainer can fetch exactly the records of the next batch.
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { readManifest, type Manifest } from './manifest.js';
import type { SplitName } from './split.js';

export interface TokenRecord {
  tokens: Int32Array;
  /** 1 where predicting this token is trained. */
  mask: Uint8Array;
}

/** What the batch planner and epoch iterator need from a dataset split. */
export interface RecordSource {
  readonly size: number;
  length(index: number): number;
  read(index: number): TokenRecord;
  /** The first `count` mask bytes of a record (fewer if it is shorter), when cheaper than `read`. */
  maskPrefix?(index: number, count: number): Uint8Array;
}

interface ShardHandle {
  tokensPath: string;
  tokensFd: number;
  maskFd: number;
  firstRecord: number;
}

export class PreparedSplit implements RecordSource {
  readonly size: number;
  /** Token count of every record. */
  readonly lengths: Uint32Array;
  private readonly offsets: Float64Array; // token offset of each record inside its shard
  private readonly shardOf: Uint32Array;
  private readonly shards: ShardHandle[] = [];
  /** Ids of the tokenizer the records were made with: anything else is a corrupt or foreign shard. */
  private readonly vocabSize: number;

  constructor(dir: string, manifest: Manifest, readonly name: SplitName) {
    const info = manifest.splits[name];
    this.vocabSize = manifest.tokenizer.vocabSize;
    this.size = info.records;
    this.lengths = new Uint32Array(this.size);
    this.offsets = new Float64Array(this.size);
    this.shardOf = new Uint32Array(this.size);
    let record = 0;
    info.shards.forEach((shard, s) => {
      const path = join(dir, shard.lengths);
      const buf = readFileSync(path);
      if (buf.byteLength !== shard.records * 4) throw new Error(`${path}: ${buf.byteLength} bytes for ${shard.records} records`);
      const lengths = new Uint32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
      let offset = 0;
      const firstRecord = record;
      for (const len of lengths) {
        this.lengths[record] = len;
        this.offsets[record] = offset;
        this.shardOf[record] = s;
        offset += len;
        record++;
      }
      if (offset !== shard.tokenCount) throw new Error(`${path}: lengths sum to ${offset}, manifest says ${shard.tokenCount}`);
      this.shards.push({ tokensPath: join(dir, shard.tokens), tokensFd: openSync(join(dir, shard.tokens), 'r'), maskFd: openSync(join(dir, shard.mask), 'r'), firstRecord });
    });
  }

  length(index: number): number {
    return this.lengths[index]!;
  }

  read(index: number): TokenRecord {
    if (!(index >= 0 && index < this.size)) throw new RangeError(`record ${index} is outside ${this.name} (${this.size} records)`);
    const shard = this.shards[this.shardOf[index]!]!;
    const len = this.lengths[index]!;
    const offset = this.offsets[index]!;
    const tokens = new Int32Array(len);
    readExactly(shard.tokensFd, new Uint8Array(tokens.buffer), offset * 4);
    const mask = new Uint8Array(len);
    readExactly(shard.maskFd, mask, offset);
    // An id outside the vocabulary must never reach the model: MLX's gather does not check it.
    for (let i = 0; i < len; i++) {
      const id = tokens[i]!;
      if (id < 0 || id >= this.vocabSize) {
        throw new RangeError(
          `${shard.tokensPath}: record ${index - shard.firstRecord} of this shard (record ${index} of the ${this.name} split) has token id ${id} at position ${i}, ` +
            `outside the tokenizer's ${this.vocabSize} ids (manifest.json tokenizer.vocabSize); the shard is corrupt or not from this manifest`,
        );
      }
    }
    return { tokens, mask };
  }

  maskPrefix(index: number, count: number): Uint8Array {
    if (!(index >= 0 && index < this.size)) throw new RangeError(`record ${index} is outside ${this.name} (${this.size} records)`);
    const shard = this.shards[this.shardOf[index]!]!;
    const mask = new Uint8Array(Math.min(count, this.lengths[index]!));
    readExactly(shard.maskFd, mask, this.offsets[index]!);
    return mask;
  }

  close(): void {
    for (const s of this.shards) {
      closeSync(s.tokensFd);
      closeSync(s.maskFd);
    }
    this.shards.length = 0;
  }
}

function readExactly(fd: number, out: Uint8Array, position: number): void {
  let off = 0;
  while (off < out.length) {
    const n = readSync(fd, out, off, out.length - off, position + off);
    if (n === 0) throw new Error(`shard ended early at byte ${position + off}`);
    off += n;
  }
}

export class PreparedDataset {
  readonly manifest: Manifest;
  private readonly opened = new Map<SplitName, PreparedSplit>();

  constructor(readonly dir: string) {
    this.manifest = readManifest(dir);
  }

  split(name: SplitName): PreparedSplit {
    let s = this.opened.get(name);
    if (!s) this.opened.set(name, (s = new PreparedSplit(this.dir, this.manifest, name)));
    return s;
  }

  close(): void {
    for (const s of this.opened.values()) s.close();
    this.opened.clear();
  }
}

export function openPreparedDataset(dir: string): PreparedDataset {
  return new PreparedDataset(dir);
}

/** Appends records to a split's shards, starting a new shard when one reaches its token budget. */
import { join } from 'node:path';
import { BufferedFileWriter } from './buffered-file.js';
import type { ShardInfo, SplitInfo } from './manifest.js';
import type { SplitName } from './split.js';

export const DEFAULT_SHARD_TOKENS = 64 * 1024 * 1024; // 256 MiB of int32 per shard

interface OpenShard {
  names: { tokens: string; mask: string; lengths: string };
  tokens: BufferedFileWriter;
  mask: BufferedFileWriter;
  lengths: BufferedFileWriter;
  records: number;
  tokenCount: number;
}

export class SplitShardWriter {
  private readonly shards: ShardInfo[] = [];
  private current: OpenShard | undefined;
  private readonly lengthCell = new Uint32Array(1);
  records = 0;
  tokens = 0;
  trainedTokens = 0;

  constructor(
    private readonly dir: string,
    private readonly split: SplitName,
    private readonly shardTokens = DEFAULT_SHARD_TOKENS,
  ) {}

  private open(): OpenShard {
    const stem = `${this.split}-${String(this.shards.length).padStart(5, '0')}`;
    const names = { tokens: `${stem}.tokens.i32`, mask: `${stem}.mask.u8`, lengths: `${stem}.lengths.u32` };
    const w = (name: string) => new BufferedFileWriter(join(this.dir, name), { sha256: true });
    return { names, tokens: w(names.tokens), mask: w(names.mask), lengths: w(names.lengths), records: 0, tokenCount: 0 };
  }

  private close(shard: OpenShard): void {
    this.shards.push({
      ...shard.names,
      records: shard.records,
      tokenCount: shard.tokenCount,
      sha256: { tokens: shard.tokens.close()!, mask: shard.mask.close()!, lengths: shard.lengths.close()! },
    });
  }

  append(ids: Int32Array, mask: Uint8Array): void {
    if (this.current && this.current.tokenCount > 0 && this.current.tokenCount + ids.length > this.shardTokens) {
      this.close(this.current);
      this.current = undefined;
    }
    const shard = (this.current ??= this.open());
    shard.tokens.writeTyped(ids);
    shard.mask.write(mask);
    this.lengthCell[0] = ids.length;
    shard.lengths.writeTyped(this.lengthCell);
    shard.records++;
    shard.tokenCount += ids.length;
    this.records++;
    this.tokens += ids.length;
    for (let i = 0; i < mask.length; i++) this.trainedTokens += mask[i]!;
  }

  finish(): SplitInfo {
    if (this.current) this.close(this.current);
    this.current = undefined;
    return { records: this.records, tokens: this.tokens, trainedTokens: this.trainedTokens, shards: this.shards };
  }
}

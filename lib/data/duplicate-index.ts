/**
 * Exact and near-duplicate detection with memory that does not grow with the corpus beyond 5 bytes
 * per record: keys (64-bit exact content hash, and one 64-bit LSH band key per band) are spilled to
 * partition files by key, and compact MinHash signatures to one file; each partition is then loaded
 * alone. Records sharing an exact key are joined directly. Records sharing a band key are only
 * candidates: each is compared with the key's first holder by estimated Jaccard (from the
 * signatures on disk) and joined if it reaches the acceptance level, so a chance band collision
 * never removes a record. Joins go into a union-find whose root is the earliest record, which is
 * the one kept; near duplicates thus form clusters (A~B, B~C drops B and C) as in MinHash-LSH
 * dedupe tools.
 */
import { closeSync, mkdirSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BufferedFileWriter } from './buffered-file.js';
import type { EventLoopTurns } from './event-loop-turn.js';
import { compactSimilarity } from './minhash.js';

const EMPTY = 0xffffffff;
/** Signatures kept in memory while a partition is checked (records collide in runs). */
const SIGNATURE_CACHE = 4096;

export const DUPLICATE_STATUS = { unique: 0, exact: 1, near: 2 } as const;

export interface DuplicateResult {
  /** Per record: 0 unique (kept), 1 exact duplicate, 2 near duplicate. */
  status: Uint8Array;
  /** Per record: the record it duplicates (itself when kept). */
  keptAs: Uint32Array;
  /** Candidate pairs compared by signature, and how many of them were accepted. */
  nearCandidates: number;
  nearAccepted: number;
}

export interface DuplicateIndexOptions {
  partitions?: number;
  /** Near-duplicate verification: signature length in bytes, and the estimated Jaccard to accept at. */
  near?: { signatureBytes: number; acceptAt: number };
}

export interface NearKeys {
  /** (hi, lo) pairs, one per LSH band. */
  bands: Uint32Array;
  /** The record's compact signature (minhash.ts compactSignature). */
  signature: Uint8Array;
}

class UnionFind {
  readonly parent: Uint32Array;
  constructor(n: number) {
    this.parent = new Uint32Array(n);
    for (let i = 0; i < n; i++) this.parent[i] = i;
  }
  find(x: number): number {
    const parent = this.parent;
    let root = x;
    while (parent[root] !== root) root = parent[root]!;
    while (parent[x] !== root) {
      const next = parent[x]!;
      parent[x] = root;
      x = next;
    }
    return root;
  }
  /** Joins the two sets; the smaller record index stays the root. */
  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra < rb) this.parent[rb] = ra;
    else if (rb < ra) this.parent[ra] = rb;
  }
}

/** Calls `onCollision(first, record)` for every entry whose key an earlier entry of the file holds. */
function forEachCollision(path: string, onCollision: (first: number, record: number) => void): void {
  const buf = readFileSync(path);
  const entries = new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const n = entries.length / 3;
  let cap = 16;
  while (cap < n * 2) cap *= 2;
  const mask = cap - 1;
  const keysHi = new Uint32Array(cap);
  const keysLo = new Uint32Array(cap);
  const first = new Uint32Array(cap).fill(EMPTY);
  // Entries are in record order within a partition, so the first holder of a key is the earliest.
  for (let e = 0; e < n; e++) {
    const hi = entries[e * 3]!;
    const lo = entries[e * 3 + 1]!;
    const record = entries[e * 3 + 2]!;
    let slot = (lo ^ Math.imul(hi, 0x9e3779b1)) & mask;
    for (;;) {
      if (first[slot] === EMPTY) {
        keysHi[slot] = hi;
        keysLo[slot] = lo;
        first[slot] = record;
        break;
      }
      if (keysHi[slot] === hi && keysLo[slot] === lo) {
        onCollision(first[slot]!, record);
        break;
      }
      slot = (slot + 1) & mask;
    }
  }
}

function partitionWriter(dir: string, kind: string, partition: number): BufferedFileWriter {
  return new BufferedFileWriter(join(dir, `${kind}-${partition}.u32`), { bufferBytes: 1 << 16 });
}

export class DuplicateIndex {
  private readonly partitions: number;
  private readonly exactWriters: BufferedFileWriter[];
  private readonly bandWriters: BufferedFileWriter[];
  private readonly signatures: BufferedFileWriter | undefined;
  private readonly entry = new Uint32Array(3);
  private count = 0;

  constructor(
    private readonly dir: string,
    private readonly options: DuplicateIndexOptions = {},
    opened?: { exact: BufferedFileWriter[]; band: BufferedFileWriter[] },
  ) {
    this.partitions = options.partitions ?? 64;
    mkdirSync(dir, { recursive: true });
    const writers = (kind: string) => Array.from({ length: this.partitions }, (_, p) => partitionWriter(dir, kind, p));
    this.exactWriters = opened?.exact ?? writers('exact');
    this.bandWriters = options.near ? (opened?.band ?? writers('band')) : [];
    this.signatures = options.near ? new BufferedFileWriter(join(dir, 'signatures.u8')) : undefined;
  }

  /** The same index, its partition files opened with a turn of the event loop between them (they are many). */
  static async open(dir: string, options: DuplicateIndexOptions, turns: EventLoopTurns): Promise<DuplicateIndex> {
    mkdirSync(dir, { recursive: true });
    const opened = { exact: [] as BufferedFileWriter[], band: [] as BufferedFileWriter[] };
    for (const kind of options.near ? (['exact', 'band'] as const) : (['exact'] as const)) {
      for (let p = 0; p < (options.partitions ?? 64); p++) {
        await turns.take();
        opened[kind].push(partitionWriter(dir, kind, p));
      }
    }
    return new DuplicateIndex(dir, options, opened);
  }

  private put(writers: BufferedFileWriter[], hi: number, lo: number, record: number): void {
    this.entry[0] = hi;
    this.entry[1] = lo;
    this.entry[2] = record;
    writers[hi % this.partitions]!.writeTyped(this.entry);
  }

  /** Records must be added in order 0, 1, 2, ...; `near` is required when the index verifies near duplicates. */
  add(record: number, exactHi: number, exactLo: number, near: NearKeys | null): void {
    if (record !== this.count) throw new Error(`DuplicateIndex: record ${record} added out of order (expected ${this.count})`);
    if (record >= EMPTY) throw new Error('DuplicateIndex: more than 2^32 - 1 records');
    const size = this.options.near?.signatureBytes;
    if (size !== undefined && near?.signature.length !== size) throw new Error(`DuplicateIndex: record ${record} needs a ${size}-byte signature`);
    this.count++;
    this.put(this.exactWriters, exactHi >>> 0, exactLo >>> 0, record);
    if (near && this.signatures) {
      for (let b = 0; b < near.bands.length; b += 2) this.put(this.bandWriters, near.bands[b]!, near.bands[b + 1]!, record);
      this.signatures.write(near.signature);
    }
  }

  /** Resolves duplicates; `turns` gives the event loop a turn between partitions. */
  async finish(turns?: EventLoopTurns): Promise<DuplicateResult> {
    for (const w of [...this.exactWriters, ...this.bandWriters]) w.close();
    this.signatures?.close();
    const sets = new UnionFind(this.count);
    const exact = new Uint8Array(this.count);
    // Exact keys first, so near verification skips pairs already joined.
    for (let p = 0; p < this.partitions; p++) {
      await turns?.take();
      forEachCollision(join(this.dir, `exact-${p}.u32`), (first, record) => {
        exact[record] = 1;
        sets.union(first, record);
      });
    }
    let nearCandidates = 0;
    let nearAccepted = 0;
    const near = this.options.near;
    if (near) {
      const signatureOf = this.signatureReader(near.signatureBytes);
      try {
        for (let p = 0; p < this.partitions; p++) {
          await turns?.take();
          forEachCollision(join(this.dir, `band-${p}.u32`), (first, record) => {
            if (sets.find(first) === sets.find(record)) return;
            nearCandidates++;
            if (compactSimilarity(signatureOf(first), signatureOf(record)) >= near.acceptAt) {
              nearAccepted++;
              sets.union(first, record);
            }
          });
        }
      } finally {
        signatureOf.close();
      }
    }
    rmSync(this.dir, { recursive: true, force: true });

    const status = new Uint8Array(this.count);
    const keptAs = new Uint32Array(this.count);
    for (let i = 0; i < this.count; i++) {
      const root = sets.find(i);
      keptAs[i] = root;
      if (root !== i) status[i] = exact[i] ? DUPLICATE_STATUS.exact : DUPLICATE_STATUS.near;
    }
    return { status, keptAs, nearCandidates, nearAccepted };
  }

  /** Random access to spilled signatures, with a small most-recently-used cache. */
  private signatureReader(size: number): ((record: number) => Uint8Array) & { close(): void } {
    const fd = openSync(join(this.dir, 'signatures.u8'), 'r');
    const cache = new Map<number, Uint8Array>();
    const read = (record: number): Uint8Array => {
      const hit = cache.get(record);
      if (hit) {
        cache.delete(record);
        cache.set(record, hit);
        return hit;
      }
      const sig = new Uint8Array(size);
      readSync(fd, sig, 0, size, record * size);
      cache.set(record, sig);
      if (cache.size > SIGNATURE_CACHE) cache.delete(cache.keys().next().value!);
      return sig;
    };
    return Object.assign(read, { close: () => closeSync(fd) });
  }
}
